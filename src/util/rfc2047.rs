//! Header values beyond visible ASCII: RFC 2047 encoded-words (`=?UTF-8?B?w6k=?=`), the form S3
//! uses for non-ASCII user metadata (`x-amz-meta-*`).
//!
//! AWS decodes encoded-words in a metadata value before storing it, and returns a stored value that
//! is not plain visible US-ASCII as one `=?UTF-8?B?<base64 of its UTF-8 bytes>?=` word ("mail-safe").
//! Raw bytes outside ASCII are read as UTF-8 when they are valid UTF-8 (what most clients send, the
//! Rust SDK among them), else byte for byte as ISO-8859-1 (what HTTP/1.1 historically meant, and what
//! Python's `http.client` sends), so that no value is dropped or refused for its bytes.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// A header value's bytes as text: UTF-8 if they are valid UTF-8, else ISO-8859-1.
pub fn header_text(raw: &[u8]) -> String {
    match std::str::from_utf8(raw) {
        Ok(s) => s.to_string(),
        Err(_) => latin1(raw),
    }
}

fn latin1(raw: &[u8]) -> String {
    raw.iter().map(|&b| char::from(b)).collect()
}

/// A received value, decoded: when it is made only of encoded-words (separated by whitespace, which
/// RFC 2047 drops between adjacent words), their decoded text; otherwise [`header_text`]. A word
/// that does not decode (unknown charset or encoding, bad base64, invalid UTF-8) leaves the value
/// as it was sent.
pub fn decode(raw: &[u8]) -> String {
    let text = header_text(raw);
    let mut out = Vec::new();
    for word in text.split_ascii_whitespace() {
        match decode_word(word) {
            Some(bytes) => out.extend_from_slice(&bytes),
            None => return text,
        }
    }
    if out.is_empty() && text.trim().is_empty() {
        return text;
    }
    String::from_utf8(out).unwrap_or(text)
}

/// One `=?charset?B|Q?text?=` word, as UTF-8 bytes.
fn decode_word(word: &str) -> Option<Vec<u8>> {
    let inner = word.strip_prefix("=?")?.strip_suffix("?=")?;
    let mut parts = inner.splitn(3, '?');
    let (charset, encoding, text) = (parts.next()?, parts.next()?, parts.next()?);
    // RFC 2231 allows a language after the charset: `UTF-8*en`.
    let charset = charset.split('*').next()?.to_ascii_lowercase();
    let bytes = match encoding {
        "B" | "b" => BASE64.decode(text).ok()?,
        "Q" | "q" => decode_q(text)?,
        _ => return None,
    };
    match charset.as_str() {
        "utf-8" | "utf8" | "us-ascii" => String::from_utf8(bytes).ok().map(String::into_bytes),
        "iso-8859-1" | "latin1" => Some(latin1(&bytes).into_bytes()),
        _ => None,
    }
}

/// The "Q" encoding: `_` is a space, `=XX` a byte in hex, anything else itself.
fn decode_q(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'_' => out.push(b' '),
            b'=' => {
                let hex = [bytes.next()?, bytes.next()?];
                let hex = std::str::from_utf8(&hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
            }
            b => out.push(b),
        }
    }
    Some(out)
}

/// A stored value, ready to send as a header: unchanged when it is visible US-ASCII (spaces and
/// tabs allowed) and cannot be mistaken for an encoded-word, else one `=?UTF-8?B?…?=` word. The
/// result is always a valid header value (so building a response never fails on it), and
/// [`decode`] gives the value back.
pub fn encode(value: &str) -> Cow<'_, str> {
    let plain = value
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b));
    if plain && !value.contains("=?") {
        Cow::Borrowed(value)
    } else {
        Cow::Owned(format!("=?UTF-8?B?{}?=", BASE64.encode(value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_what_clients_send() {
        assert_eq!(decode(b"plain value"), "plain value");
        assert_eq!(decode("été 日本".as_bytes()), "été 日本");
        // ISO-8859-1 bytes (not valid UTF-8).
        assert_eq!(decode(b"caf\xe9"), "café");
        assert_eq!(decode(b"=?UTF-8?B?w6l0w6k=?="), "été");
        assert_eq!(decode(b"=?utf-8?q?caf=C3=A9_au_lait?="), "café au lait");
        assert_eq!(decode(b"=?ISO-8859-1?Q?caf=E9?="), "café");
        // Adjacent words: the whitespace between them goes.
        assert_eq!(decode(b"=?UTF-8?B?w6k=?= =?UTF-8?B?w6k=?="), "éé");
        // Not (only) encoded-words, or words that do not decode: kept as sent.
        for kept in [
            "x =?UTF-8?B?w6k=?=",
            "=?UTF-8?B?!!!?=",
            "=?KOI8-R?B?w6k=?=",
            "=?UTF-8?X?w6k=?=",
            "=?UTF-8?B?/w==?=",
            "=?UTF-8?Q?=Z1?=",
            "=??=",
            "",
        ] {
            assert_eq!(decode(kept.as_bytes()), kept, "{kept}");
        }
    }

    #[test]
    fn encodes_what_headers_cannot_carry() {
        assert_eq!(encode("plain value\t1"), "plain value\t1");
        assert_eq!(encode("été"), "=?UTF-8?B?w6l0w6k=?=");
        assert_eq!(encode("a\r\nb"), "=?UTF-8?B?YQ0KYg==?=");
        assert_eq!(
            encode("=?UTF-8?B?w6k=?="),
            "=?UTF-8?B?PT9VVEYtOD9CP3c2az0/PQ==?="
        );
        for v in ["", "x", "été", "a\r\nb\u{0}", "=?x?=", "日本"] {
            assert_eq!(decode(encode(v).as_bytes()), v);
        }
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Any stored text goes out as a valid header value and comes back exactly.
            #[test]
            fn encode_then_decode(v in any::<String>()) {
                let e = encode(&v);
                prop_assert!(hyper::header::HeaderValue::from_str(&e).is_ok());
                prop_assert_eq!(decode(e.as_bytes()), v);
            }

            /// Any received bytes decode to some text, without panicking.
            #[test]
            fn decode_any_bytes(raw in proptest::collection::vec(any::<u8>(), 0..64)) {
                let _ = decode(&raw);
            }

            /// Words built from any text decode to it.
            #[test]
            fn decode_words(v in "\\PC{1,20}", q in any::<bool>()) {
                let word = if q {
                    let mut s = "=?UTF-8?Q?".to_string();
                    for b in v.bytes() {
                        s.push_str(&format!("={b:02X}"));
                    }
                    s + "?="
                } else {
                    format!("=?UTF-8?B?{}?=", BASE64.encode(&v))
                };
                prop_assert_eq!(decode(word.as_bytes()), v);
            }
        }
    }
}
