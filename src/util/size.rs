//! Human-readable byte sizes: parsing (`"500G"`, `"1.5T"`, `"1MiB"`) and short formatting
//! (`"500 GB"`).
//!
//! Parsing rules ([`parse_size`]):
//! - a bare integer is a number of bytes (`"4096"`);
//! - decimal units are powers of 1000: `K`/`KB`, `M`/`MB`, `G`/`GB`, `T`/`TB`, `P`/`PB`;
//! - binary units are powers of 1024: `KiB`, `MiB`, `GiB`, `TiB`, `PiB` (the trailing `B` is
//!   optional, so `Ki` also works);
//! - units are case-insensitive, a single `B` means bytes, and a space may separate the number
//!   from the unit (`"2 TB"`);
//! - the number may have a fractional part (`"1.5T"`) as long as the result is a whole number of
//!   bytes.
//!
//! Formatting ([`format_size`]) always uses decimal units, like disk vendors do for
//! capacities, with at most one decimal: `"999 B"`, `"1.5 kB"`... see the function for details.
//!
//! [`ByteSize`] wraps a byte count for configuration files: it deserializes from either a size
//! string or an integer, and serializes as an integer.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Why a size string could not be parsed. The message shows the bad input and examples.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid size {input:?}: {reason}; expected a number of bytes with an optional unit, \
     e.g. \"500G\", \"1.5T\" or \"1MiB\""
)]
pub struct SizeError {
    /// The input as given.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

impl SizeError {
    fn new(input: &str, reason: impl Into<String>) -> Self {
        SizeError {
            input: input.to_string(),
            reason: reason.into(),
        }
    }
}

/// Multiplier for a unit suffix (already lowercased, without surrounding spaces).
fn unit_multiplier(unit: &str) -> Option<u64> {
    let m = match unit {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "m" | "mb" => 1000u64.pow(2),
        "g" | "gb" => 1000u64.pow(3),
        "t" | "tb" => 1000u64.pow(4),
        "p" | "pb" => 1000u64.pow(5),
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        "ti" | "tib" => 1 << 40,
        "pi" | "pib" => 1 << 50,
        _ => return None,
    };
    Some(m)
}

/// Maximum number of digits accepted after the decimal point (keeps the arithmetic exact).
const MAX_FRACTION_DIGITS: usize = 18;

/// Parses a human size such as `"500G"`, `"1.5T"`, `"1MiB"`, `"2 TB"` or `"4096"` into bytes.
///
/// See the [module documentation](self) for the accepted syntax. Errors (garbage, unknown unit,
/// fractional bytes, overflow past `u64::MAX`) carry a message that shows the input.
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    let input = s;
    let s = s.trim();
    if s.is_empty() {
        return Err(SizeError::new(input, "it is empty"));
    }

    // Split "<digits>[.<digits>]" from the unit.
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(num_end);
    let unit = unit.trim_start();

    if number.is_empty() {
        return Err(SizeError::new(input, "it does not start with a number"));
    }
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if frac_part.contains('.') {
        return Err(SizeError::new(input, "the number has more than one '.'"));
    }
    if number.contains('.') && frac_part.is_empty() {
        return Err(SizeError::new(input, "a digit must follow the '.'"));
    }
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(SizeError::new(input, "it does not start with a number"));
    }
    if frac_part.len() > MAX_FRACTION_DIGITS {
        return Err(SizeError::new(input, "too many digits after the '.'"));
    }

    let multiplier = unit_multiplier(&unit.to_ascii_lowercase()).ok_or_else(|| {
        SizeError::new(
            input,
            format!(
                "unknown unit {unit:?} (known units: B, K/KB, M/MB, G/GB, T/TB, P/PB, \
                 KiB, MiB, GiB, TiB, PiB)"
            ),
        )
    })?;

    let overflow = || SizeError::new(input, "it is larger than the maximum (about 18.4 EB)");

    // Integer part: parse digit by digit in u128 so that very long inputs report overflow
    // rather than a parse error.
    let mut int_value: u128 = 0;
    for d in int_part.bytes() {
        int_value = int_value * 10 + u128::from(d - b'0');
        if int_value > u128::from(u64::MAX) {
            return Err(overflow());
        }
    }
    let mut total = int_value * u128::from(multiplier);

    if !frac_part.is_empty() {
        let frac_value: u128 = frac_part
            .parse()
            .map_err(|_| SizeError::new(input, "invalid fractional part"))?;
        let scale = 10u128.pow(frac_part.len() as u32);
        let scaled = frac_value * u128::from(multiplier);
        if !scaled.is_multiple_of(scale) {
            return Err(SizeError::new(input, "it is not a whole number of bytes"));
        }
        total += scaled / scale;
    }

    u64::try_from(total).map_err(|_| overflow())
}

/// Formats a byte count in a short human form for tables, with decimal units (powers of 1000,
/// like disk capacities) and at most one decimal, dropped when it is zero: `"0 B"`, `"999 B"`,
/// `"1.5 kB"`, `"500 GB"`, `"1 MB"` (for 1 MiB = 1,048,576 bytes), `"2.2 TB"`.
///
/// Units are `B`, `kB`, `MB`, `GB`, `TB`, `PB`, `EB`. The output parses back with
/// [`parse_size`] (to within the rounding of the single decimal).
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let bytes = u128::from(bytes);
    let mut idx = 1;
    while idx + 1 < UNITS.len() && bytes >= 1000u128.pow(idx as u32 + 1) {
        idx += 1;
    }
    // Value in tenths of the unit, rounded half up.
    let div = 1000u128.pow(idx as u32);
    let mut tenths = (bytes * 10 + div / 2) / div;
    if tenths >= 10_000 && idx + 1 < UNITS.len() {
        // e.g. 999.96 kB rounds to 1000.0 kB: show 1 MB instead.
        idx += 1;
        let div = 1000u128.pow(idx as u32);
        tenths = (bytes * 10 + div / 2) / div;
    }
    let unit = UNITS[idx];
    if tenths.is_multiple_of(10) {
        format!("{} {unit}", tenths / 10)
    } else {
        format!("{}.{} {unit}", tenths / 10, tenths % 10)
    }
}

/// A number of bytes, as written in configuration files.
///
/// Deserializes from a size string (`"1MiB"`, `"2T"`, see [`parse_size`]) or from a non-negative
/// integer (bytes); serializes as an integer. `Display` uses [`format_size`], `FromStr` uses
/// [`parse_size`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The number of bytes.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl From<u64> for ByteSize {
    fn from(v: u64) -> Self {
        ByteSize(v)
    }
}

impl From<ByteSize> for u64 {
    fn from(v: ByteSize) -> Self {
        v.0
    }
}

impl FromStr for ByteSize {
    type Err = SizeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_size(s).map(ByteSize)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_size(self.0))
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0)
    }
}

struct ByteSizeVisitor;

impl Visitor<'_> for ByteSizeVisitor {
    type Value = ByteSize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a size such as \"500G\" or \"1MiB\", or a number of bytes")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
        Ok(ByteSize(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
        u64::try_from(v)
            .map(ByteSize)
            .map_err(|_| E::custom(format!("invalid size {v}: a size cannot be negative")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
        parse_size(v).map(ByteSize).map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ByteSizeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_integers_are_bytes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("  4096  "), Ok(4096));
        assert_eq!(parse_size("12B"), Ok(12));
        assert_eq!(parse_size("12 b"), Ok(12));
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
    }

    #[test]
    fn decimal_units() {
        assert_eq!(parse_size("1K"), Ok(1000));
        assert_eq!(parse_size("1k"), Ok(1000));
        assert_eq!(parse_size("1KB"), Ok(1000));
        assert_eq!(parse_size("1kb"), Ok(1000));
        assert_eq!(parse_size("3M"), Ok(3_000_000));
        assert_eq!(parse_size("500G"), Ok(500_000_000_000));
        assert_eq!(parse_size("500 GB"), Ok(500_000_000_000));
        assert_eq!(parse_size("2T"), Ok(2_000_000_000_000));
        assert_eq!(parse_size("2tb"), Ok(2_000_000_000_000));
        assert_eq!(parse_size("1P"), Ok(1_000_000_000_000_000));
        assert_eq!(parse_size("1PB"), Ok(1_000_000_000_000_000));
    }

    #[test]
    fn binary_units() {
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("1kib"), Ok(1024));
        assert_eq!(parse_size("1Ki"), Ok(1024));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("1 MIB"), Ok(1 << 20));
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("1TiB"), Ok(1 << 40));
        assert_eq!(parse_size("1PiB"), Ok(1 << 50));
    }

    #[test]
    fn decimals() {
        assert_eq!(parse_size("1.5T"), Ok(1_500_000_000_000));
        assert_eq!(parse_size("1.5KiB"), Ok(1536));
        assert_eq!(parse_size("0.5M"), Ok(500_000));
        assert_eq!(parse_size(".5K"), Ok(500));
        assert_eq!(parse_size("2.25 GiB"), Ok(9 << 28));
        assert_eq!(parse_size("1.000"), Ok(1));
    }

    #[test]
    fn garbage_is_rejected_with_input_and_example() {
        for bad in [
            "",
            "   ",
            "G",
            "abc",
            "-1G",
            "+1G",
            "1..5G",
            "1.G",
            "1.2.3G",
            "1 X",
            "1GBB",
            "1_000",
            "1e9",
            "0x10",
            "1 G B",
            "1.5",
            "0.0001K",
            "1.1234567890123456789T",
        ] {
            let err = parse_size(bad).expect_err(bad);
            let msg = err.to_string();
            assert!(msg.contains(&format!("{bad:?}")), "{msg}");
            assert!(
                msg.contains("\"500G\"") && msg.contains("\"1MiB\""),
                "{msg}"
            );
        }
    }

    #[test]
    fn overflow_is_rejected() {
        for bad in [
            "18446744073709551616",
            "18447P",
            "16384PiB",
            "99999999999999999999999999",
        ] {
            let err = parse_size(bad).expect_err(bad);
            assert!(err.to_string().contains(bad), "{err}");
        }
        // Just below the limit still works.
        assert_eq!(parse_size("16383PiB"), Ok(16383u64 << 50));
    }

    #[test]
    fn format() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(999), "999 B");
        assert_eq!(format_size(1000), "1 kB");
        assert_eq!(format_size(1500), "1.5 kB");
        assert_eq!(format_size(1 << 20), "1 MB");
        assert_eq!(format_size(500_000_000_000), "500 GB");
        assert_eq!(format_size(2_200_000_000_000), "2.2 TB");
        assert_eq!(format_size(999_960), "1 MB");
        assert_eq!(format_size(999_940), "999.9 kB");
        assert_eq!(format_size(u64::MAX), "18.4 EB");
    }

    #[test]
    fn format_parses_back() {
        for v in [0u64, 999, 1000, 1500, 500_000_000_000, 2_200_000_000_000] {
            assert_eq!(parse_size(&format_size(v)), Ok(v));
        }
    }

    #[test]
    fn bytesize_serde() {
        #[derive(Debug, Deserialize, Serialize)]
        struct T {
            a: ByteSize,
            b: ByteSize,
        }
        let t: T = toml::from_str("a = \"1MiB\"\nb = 4096\n").unwrap();
        assert_eq!(t.a, ByteSize(1 << 20));
        assert_eq!(t.b, ByteSize(4096));
        assert_eq!(toml::to_string(&t).unwrap(), "a = 1048576\nb = 4096\n");

        let err = toml::from_str::<T>("a = \"1XB\"\nb = 1\n").unwrap_err();
        assert!(err.message().contains("\"1XB\""), "{err}");
        let err = toml::from_str::<T>("a = -1\nb = 1\n").unwrap_err();
        assert!(err.message().contains("negative"), "{err}");
        let err = toml::from_str::<T>("a = true\nb = 1\n").unwrap_err();
        assert!(err.message().contains("\"500G\""), "{err}");
    }

    #[test]
    fn bytesize_str() {
        assert_eq!("2T".parse::<ByteSize>(), Ok(ByteSize(2_000_000_000_000)));
        assert_eq!(ByteSize(500_000_000_000).to_string(), "500 GB");
        assert_eq!(u64::from(ByteSize(7)), 7);
    }
}
