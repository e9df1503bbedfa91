//! Percent-encoding and query strings: the one implementation the S3 router, SigV4, listings
//! (`encoding-type=url`), the admin API and the CLI share.
//!
//! Decoding has two explicit axes:
//! - [`Plus`]: a path segment keeps `+` literal ([`Plus::Literal`]); a form-encoded query part reads
//!   it as a space ([`Plus::Space`]).
//! - strictness: [`decode`] is what a server executes — every `%` must be followed by exactly two hex
//!   digits (`%+F`, which `u8::from_str_radix` alone would take, is refused) and the result must be
//!   UTF-8; [`decode_lenient`] is SigV4's canonical decoding — a bad escape stays literal and the
//!   result is raw bytes. Both agree on every string [`decode`] accepts (`s3::sigv4::fuzz` checks it),
//!   so what is signed is what is executed.
//!
//! Encoding ([`encode`], [`uri_encode`]) keeps the RFC 3986 unreserved set `A-Z a-z 0-9 - _ . ~`
//! (and `/` with [`Encode::Path`]) and writes everything else as `%XX`, upper-case hex. This is
//! AWS's `UriEncode` exactly, part of the SigV4 signature contract: never change it.
//!
//! Query strings: `&`-separated, empty parts skipped, a bare `k` is `k=` ([`split_query`]). For the
//! S3 API ([`parse_query`]) a key given twice keeps its last value.

use std::collections::BTreeMap;

/// How `+` decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plus {
    /// Path segments and headers (`x-amz-copy-source`): `+` is a `+`.
    Literal,
    /// Form-encoded query keys and values: `+` is a space.
    Space,
}

/// Which bytes [`encode`] keeps as they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encode {
    /// Only the unreserved `A-Z a-z 0-9 - _ . ~`: one path segment or query part. SigV4's
    /// `UriEncode(s, encode_slash = true)`.
    Component,
    /// The unreserved set and `/`: object keys in paths, and keys in `encoding-type=url` listings
    /// (a space is `%20`, a `+` is `%2B`, so both `unquote` and `unquote_plus` decode it). SigV4's
    /// `UriEncode(s, encode_slash = false)`.
    Path,
}

/// Why [`decode`] refused a string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A `%` not followed by exactly two hex digits.
    #[error("invalid percent-encoding")]
    BadEscape,
    /// The decoded bytes are not UTF-8.
    #[error("not UTF-8 once decoded")]
    NotUtf8,
}

/// Strict decoding: `%XX` (two hex digits exactly) → byte, `+` per `plus`; any other `%` is an
/// error, and so is a result that is not UTF-8.
pub fn decode(s: &str, plus: Plus) -> Result<String, DecodeError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'%' => {
                let byte = escape_at(b, i).ok_or(DecodeError::BadEscape)?;
                out.push(byte);
                i += 3;
                continue;
            }
            b'+' if plus == Plus::Space => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| DecodeError::NotUtf8)
}

/// SigV4's canonical decoding: `%XX` → byte, an invalid escape stays literal, `+` per `plus`. Total,
/// never longer than `s`.
pub fn decode_lenient(s: &str, plus: Plus) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match (c, escape_at(b, i)) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 2;
            }
            (b'+', _) if plus == Plus::Space => out.push(b' '),
            (c, _) => out.push(c),
        }
        i += 1;
    }
    out
}

/// The byte escaped at `b[i..i + 3]` if that is `%` and two hex digits.
fn escape_at(b: &[u8], i: usize) -> Option<u8> {
    match b.get(i..i + 3)? {
        &[b'%', hi, lo] => Some(hex_digit(hi)? << 4 | hex_digit(lo)?),
        _ => None,
    }
}

fn hex_digit(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Percent-encodes the UTF-8 bytes of `s`; see [`Encode`] for what is kept.
pub fn encode(s: &str, set: Encode) -> String {
    encode_bytes(s.as_bytes(), set)
}

/// [`encode`] for raw bytes (SigV4 re-encodes what [`decode_lenient`] returns).
pub fn encode_bytes(bytes: &[u8], set: Encode) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (b == b'/' && set == Encode::Path)
        {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
    out
}

/// AWS `UriEncode(s, encode_slash)`, as the SigV4 specification names it: every byte but
/// `A-Z a-z 0-9 - _ . ~` becomes `%XX` (upper-case hex); `/` is kept unless `encode_slash` (object
/// keys in paths keep their slashes, query values do not).
pub fn uri_encode(s: &str, encode_slash: bool) -> String {
    let set = if encode_slash {
        Encode::Component
    } else {
        Encode::Path
    };
    encode(s, set)
}

/// The raw `(key, value)` parts of a query string, in order: split on `&`, empty parts skipped, a
/// part without `=` is a key with an empty value. Nothing is decoded.
pub fn split_query(q: &str) -> impl Iterator<Item = (&str, &str)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// [`split_query`], each key and value form-decoded strictly ([`decode`] with [`Plus::Space`]).
pub fn decode_query(q: &str) -> impl Iterator<Item = Result<(String, String), DecodeError>> {
    split_query(q).map(|(k, v)| Ok((decode(k, Plus::Space)?, decode(v, Plus::Space)?)))
}

/// A query string as the S3 API reads it: `a=1&b&c=x%20y` → `{a: 1, b: "", c: "x y"}`, keys and
/// values form-decoded strictly; a key given twice keeps its last value. Any bad part is an error.
pub fn parse_query(q: &str) -> Result<BTreeMap<String, String>, DecodeError> {
    decode_query(q).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn strict_decoding() {
        assert_eq!(decode("a%20b%2Fc", Plus::Literal).unwrap(), "a b/c");
        assert_eq!(decode("%zz", Plus::Literal), Err(DecodeError::BadEscape));
        assert_eq!(decode("%ff", Plus::Literal), Err(DecodeError::NotUtf8));
        assert_eq!(decode("a+b", Plus::Literal).unwrap(), "a+b");
        assert_eq!(decode("a+b%2B", Plus::Space).unwrap(), "a b+");
        for s in ["%", "%2", "a%2", "%zz", "%+F", "a%+0b", "%-1"] {
            for plus in [Plus::Literal, Plus::Space] {
                assert_eq!(decode(s, plus), Err(DecodeError::BadEscape), "{s}");
            }
        }
        assert_eq!(decode("%2Fa%2f", Plus::Literal).unwrap(), "/a/");
        assert_eq!(decode("%C3%A4", Plus::Literal).unwrap(), "ä");
    }

    #[test]
    fn lenient_decoding() {
        assert_eq!(decode_lenient("%4a%4A%4%+", Plus::Space), b"JJ%4% ");
        assert_eq!(decode_lenient("%4a%4A%4%+", Plus::Literal), b"JJ%4%+");
        assert_eq!(decode_lenient("%+F%-1%zz%", Plus::Literal), b"%+F%-1%zz%");
        assert_eq!(decode_lenient("%FF", Plus::Literal), [0xFF]);
    }

    #[test]
    fn encoding() {
        assert_eq!(uri_encode("a b/ü*~+", false), "a%20b/%C3%BC%2A~%2B");
        assert_eq!(uri_encode("a/b", true), "a%2Fb");
        assert_eq!(
            encode("photos/2006/a b+c.jpg", Encode::Path),
            "photos/2006/a%20b%2Bc.jpg"
        );
        assert_eq!(encode("AZaz09-_.~/", Encode::Path), "AZaz09-_.~/");
        assert_eq!(encode("AZaz09-_.~/", Encode::Component), "AZaz09-_.~%2F");
        assert_eq!(encode("100%", Encode::Path), "100%25");
        assert_eq!(encode("\u{1}\n&<", Encode::Path), "%01%0A%26%3C");
        assert_eq!(
            encode("été/한글", Encode::Path),
            "%C3%A9t%C3%A9/%ED%95%9C%EA%B8%80"
        );
        assert_eq!(encode_bytes(&[0xFF, b'a'], Encode::Component), "%FFa");
    }

    #[test]
    fn query_strings() {
        let q = parse_query("a=1&b&c=x%20y+z&&d=%2B").unwrap();
        let want: BTreeMap<String, String> = [("a", "1"), ("b", ""), ("c", "x y z"), ("d", "+")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(q, want);
        // A repeated key keeps its last value.
        assert_eq!(parse_query("k=1&k=2").unwrap()["k"], "2");
        assert_eq!(parse_query("k=%zz"), Err(DecodeError::BadEscape));
        assert_eq!(parse_query("k=%+F"), Err(DecodeError::BadEscape));
        assert_eq!(
            split_query("a=b=c&&x").collect::<Vec<_>>(),
            [("a", "b=c"), ("x", "")]
        );
        // Bad parts can be skipped one by one.
        let ok: Vec<_> = decode_query("a=%zz&b=1").filter_map(Result::ok).collect();
        assert_eq!(ok, [("b".to_string(), "1".to_string())]);
    }

    proptest! {
        /// decode(encode(x)) == x for every encoding set and every decoding mode.
        #[test]
        fn decode_inverts_encode(s in "\\PC{0,40}", raw in "[ -~]{0,40}") {
            for s in [&s, &raw] {
                for set in [Encode::Component, Encode::Path] {
                    let e = encode(s, set);
                    prop_assert!(e.is_ascii());
                    for plus in [Plus::Literal, Plus::Space] {
                        prop_assert_eq!(&decode(&e, plus).unwrap(), s);
                        prop_assert_eq!(decode_lenient(&e, plus), s.as_bytes());
                    }
                }
            }
        }

        /// Both decoders agree on what the strict one accepts, and the lenient one never grows a
        /// string.
        #[test]
        fn strict_and_lenient_agree(s in "[%+a-fA-F0-9zZ/ ]{0,30}|\\PC{0,30}") {
            for plus in [Plus::Literal, Plus::Space] {
                let lenient = decode_lenient(&s, plus);
                prop_assert!(lenient.len() <= s.len());
                if let Ok(strict) = decode(&s, plus) {
                    prop_assert_eq!(strict.into_bytes(), lenient);
                }
            }
        }
    }
}
