//! Time helpers.
//!
//! The wall clock can be shifted by [`CLOCK_OFFSET_ENV`] so that one node of a test cluster behaves like
//! a machine whose clock is wrong. That variable is read only once [`enable_test_clock_offset`] has been
//! called, which the server does only with `test_hooks = true` in its configuration: in production the
//! variable is ignored.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Environment variable that shifts this process's wall clock by a signed number of milliseconds.
/// For tests only: honoured only after [`enable_test_clock_offset`] (config `test_hooks = true`).
pub const CLOCK_OFFSET_ENV: &str = "GRENIER_TEST_CLOCK_OFFSET_MS";

static OFFSET: AtomicI64 = AtomicI64::new(0);

/// Read [`CLOCK_OFFSET_ENV`] and apply it to [`now_msec`] from now on; returns the offset applied, if
/// the variable is set to a number. Called by the server only when `test_hooks` is on.
pub fn enable_test_clock_offset() -> Option<i64> {
    let v = std::env::var(CLOCK_OFFSET_ENV).ok()?.trim().parse().ok()?;
    OFFSET.store(v, Ordering::Relaxed);
    Some(v)
}

/// Milliseconds since the Unix epoch, wall clock.
pub fn now_msec() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    now.saturating_add_signed(OFFSET.load(Ordering::Relaxed))
}
