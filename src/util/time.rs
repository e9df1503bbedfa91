//! Time helpers.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// Environment variable that shifts this process's wall clock by a signed number of milliseconds.
/// For tests only: it lets one node of a test cluster behave like a machine whose clock is wrong.
pub const CLOCK_OFFSET_ENV: &str = "GRENIER_TEST_CLOCK_OFFSET_MS";

fn offset() -> i64 {
    static OFFSET: OnceLock<i64> = OnceLock::new();
    *OFFSET.get_or_init(|| {
        std::env::var(CLOCK_OFFSET_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    })
}

/// Milliseconds since the Unix epoch, wall clock.
pub fn now_msec() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    now.saturating_add_signed(offset())
}
