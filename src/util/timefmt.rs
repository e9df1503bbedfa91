//! Time formats on the wire, in one place:
//! - RFC 7231 IMF-fixdate (`Mon, 12 Oct 2009 17:50:30 GMT`) for `Last-Modified` and the `If-*`
//!   headers, through the `httpdate` crate ([`http_date`], [`parse_http_date`]);
//! - ISO 8601 as S3 writes it in XML (`2009-10-12T17:50:30.000Z`, [`iso8601`]);
//! - SigV4's basic format (`20130524T000000Z`, [`format_amz_date`], [`parse_amz_date`]).
//!
//! Instants are milliseconds since the Unix epoch (as stored in object metadata), except for the
//! SigV4 forms, which work on `SystemTime` like the signer. Formatting never panics: instants after
//! 9999-12-31T23:59:59.999Z are clamped to it (HTTP and XML dates have four-digit years).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Latest instant the HTTP and XML formats show (9999-12-31T23:59:59.999Z); later ones are clamped.
const MAX_MSEC: u64 = 253_402_300_799_999;

/// ISO 8601 as S3 writes it in XML: `2009-10-12T17:50:30.000Z` (UTC, milliseconds).
pub fn iso8601(msec_since_epoch: u64) -> String {
    let msec = msec_since_epoch.min(MAX_MSEC);
    let (y, mo, d, h, mi, s) = civil(msec / 1000);
    format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
        msec % 1000
    )
}

/// RFC 7231 IMF-fixdate, for `Last-Modified` and friends: `Mon, 12 Oct 2009 17:50:30 GMT`
/// (milliseconds are dropped).
pub fn http_date(msec: u64) -> String {
    // Clamped first: `httpdate` panics on years past 9999.
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(msec.min(MAX_MSEC) / 1000))
}

/// An HTTP date header (any of the three RFC 7231 forms) as seconds since the epoch; `None` if
/// unparsable or before 1970.
pub fn parse_http_date(header: &str) -> Option<u64> {
    httpdate::parse_http_date(header)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
}

/// `yyyymmddThhmmssZ` → time; `None` unless exactly that shape and a real date.
pub fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b.get(8) != Some(&b'T') || b.get(15) != Some(&b'Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let digits = s.get(r)?;
        digits
            .bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| digits.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, sec) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let days = days_from_civil(y as i64, mo, d);
    if civil_from_days(days) != (y as i64, mo, d) || days < 0 {
        return None; // e.g. February 30th, or before 1970
    }
    let secs = days as u64 * 86400 + (h * 3600 + mi * 60 + sec) as u64;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Time → `yyyymmddThhmmssZ` (times before 1970 print as 1970).
pub fn format_amz_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// (year, month, day, hour, minute, second) of a count of seconds since the epoch.
fn civil(secs: u64) -> (i64, u32, u32, u64, u64, u64) {
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let sod = secs % 86_400;
    (y, mo, d, sod / 3600, sod / 60 % 60, sod % 60)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Inverse of [`days_from_civil`]: (year, month 1–12, day 1–31).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 2009-10-12T17:50:30Z.
    const T: u64 = 1_255_369_830_000;

    fn t0() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_369_353_600)
    }

    #[test]
    fn dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(T), "2009-10-12T17:50:30.000Z");
        assert_eq!(iso8601(T + 7), "2009-10-12T17:50:30.007Z");
        assert_eq!(iso8601(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(iso8601(u64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(T + 999), "Mon, 12 Oct 2009 17:50:30 GMT");
        assert_eq!(http_date(784_111_777_000), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(u64::MAX), "Fri, 31 Dec 9999 23:59:59 GMT");
        // Agrees with httpdate over a spread of instants.
        for s in (0..4_000_000_000u64).step_by(86_400 * 37 + 3_607) {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(s);
            assert_eq!(http_date(s * 1000), httpdate::fmt_http_date(t));
        }
    }

    #[test]
    fn amz_dates_round_trip() {
        assert_eq!(
            t0().duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1369353600
        );
        assert_eq!(format_amz_date(t0()), "20130524T000000Z");
        for s in ["20000229T235959Z", "19700101T000000Z", "20991231T120000Z"] {
            assert_eq!(format_amz_date(parse_amz_date(s).unwrap()), s);
        }
        for s in [
            "20130229T000000Z",
            "20130524T240000Z",
            "2013-05-24T00:00:00Z",
            "20130524T000000",
            "+0130524T000000Z",
        ] {
            assert_eq!(parse_amz_date(s), None, "{s}");
        }
    }

    proptest! {
        /// The HTTP date reads back to the second; XML and SigV4 dates name the same day.
        #[test]
        fn formats_agree(msec in 0u64..253_402_300_800_000) {
            prop_assert_eq!(parse_http_date(&http_date(msec)), Some(msec / 1000));
            let t = UNIX_EPOCH + Duration::from_secs(msec / 1000);
            let amz = format_amz_date(t);
            let iso = iso8601(msec);
            prop_assert_eq!(&iso[..4], &amz[..4]);
            prop_assert_eq!(&iso[5..7], &amz[4..6]);
            prop_assert_eq!(&iso[8..10], &amz[6..8]);
            prop_assert_eq!(parse_amz_date(&amz), Some(t));
        }
    }
}
