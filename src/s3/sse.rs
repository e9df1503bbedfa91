//! SSE-C request headers (server-side encryption with customer-provided keys): parse and check the
//! `x-amz-server-side-encryption-customer-*` headers (and their `x-amz-copy-source-` forms for the
//! source of a copy), match the key against what a stored version records, and echo the algorithm
//! and key MD5 in responses, with AWS's error for every wrong combination. The encryption itself is
//! [`crate::model::sse`].
//!
//! Server-managed encryption (`x-amz-server-side-encryption: AES256 | aws:kms`) is not offered:
//! Grenier has no key store; such requests are refused (501) by `server::refuse_unhonoured`.

use base64::Engine;
use hyper::HeaderMap;
use hyper::http::response::Builder;

use super::error::{S3Error, S3ErrorCode, err};
use crate::model::sse::{CustomerKey, Encryption};

/// Which request headers carry the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyFor {
    /// The object the request reads or writes (`x-amz-server-side-encryption-customer-*`).
    Target,
    /// The source of a copy (`x-amz-copy-source-server-side-encryption-customer-*`).
    CopySource,
}

impl KeyFor {
    fn prefix(self) -> &'static str {
        match self {
            KeyFor::Target => "x-amz-server-side-encryption-customer-",
            KeyFor::CopySource => "x-amz-copy-source-server-side-encryption-customer-",
        }
    }
}

const ALGORITHM: &str = "AES256";

fn invalid(msg: &str) -> S3Error {
    err(S3ErrorCode::InvalidArgument, msg)
}

/// The customer key a request gives, if any, after AWS's checks: algorithm `AES256`, a base64 key of
/// 32 bytes, and the base64 MD5 of that key, all three present together.
pub fn customer_key(headers: &HeaderMap, which: KeyFor) -> Result<Option<CustomerKey>, S3Error> {
    let get = |name: &str| {
        headers
            .get(format!("{}{name}", which.prefix()))
            .map(|v| v.to_str().unwrap_or("\u{fffd}").trim())
    };
    let (alg, key, md5) = (get("algorithm"), get("key"), get("key-md5"));
    let Some(alg) = alg else {
        if key.is_some() || md5.is_some() {
            return Err(invalid(
                "Requests specifying Server Side Encryption with Customer provided keys must \
                 provide a valid encryption algorithm.",
            ));
        }
        return Ok(None);
    };
    if alg != ALGORITHM {
        return Err(err(
            S3ErrorCode::InvalidEncryptionAlgorithmError,
            "The Encryption request you specified is not valid. Supported value: AES256.",
        ));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = key.ok_or_else(|| {
        invalid(
            "Requests specifying Server Side Encryption with Customer provided keys must provide \
             an appropriate secret key.",
        )
    })?;
    let key: [u8; 32] = b64
        .decode(key)
        .ok()
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| invalid("The secret key was invalid for the specified algorithm."))?;
    let md5 = md5.ok_or_else(|| {
        invalid(
            "Requests specifying Server Side Encryption with Customer provided keys must provide \
             the client calculated MD5 of the secret key.",
        )
    })?;
    let key = CustomerKey::new(key);
    if b64.decode(md5).ok().as_deref() != Some(&key.md5()[..]) {
        return Err(invalid(
            "The calculated MD5 hash of the key did not match the hash that was provided.",
        ));
    }
    Ok(Some(key))
}

/// Check the key a read (GET, HEAD, a copy's source) gives against the version's encryption: an
/// encrypted version needs its key, a plain one takes none.
pub fn check_read(stored: Option<&Encryption>, given: Option<&CustomerKey>) -> Result<(), S3Error> {
    match (stored, given) {
        (None, None) => Ok(()),
        (Some(e), Some(k)) if k.matches(e) => Ok(()),
        (Some(_), Some(_)) => Err(err(
            S3ErrorCode::AccessDenied,
            "The provided encryption key does not match the key the object was stored with.",
        )),
        (Some(_), None) => Err(err(
            S3ErrorCode::InvalidRequest,
            "The object was stored using a form of Server Side Encryption. The correct parameters \
             must be provided to retrieve the object.",
        )),
        (None, Some(_)) => Err(err(
            S3ErrorCode::InvalidRequest,
            "The encryption parameters are not applicable to this object.",
        )),
    }
}

/// Check the key an UploadPart gives against the one its upload was created with.
pub fn check_part(upload: Option<&Encryption>, given: Option<&CustomerKey>) -> Result<(), S3Error> {
    match (upload, given) {
        (None, None) => Ok(()),
        (Some(e), Some(k)) if k.matches(e) => Ok(()),
        _ => Err(err(
            S3ErrorCode::InvalidRequest,
            "The provided encryption parameters did not match the ones used originally.",
        )),
    }
}

/// The response headers that say a version is SSE-C encrypted (and with which key).
pub fn response_headers(mut r: Builder, enc: Option<&Encryption>) -> Builder {
    if let Some(Encryption::SseC { key_md5 }) = enc {
        let md5 = base64::engine::general_purpose::STANDARD.encode(key_md5);
        r = r
            .header("x-amz-server-side-encryption-customer-algorithm", ALGORITHM)
            .header("x-amz-server-side-encryption-customer-key-md5", md5);
    }
    r
}

/// [`response_headers`] for a response already built (an XML document).
pub fn add_response_headers<B>(r: &mut hyper::Response<B>, enc: Option<&Encryption>) {
    if let Some(hs) = response_headers(hyper::Response::builder(), enc).headers_mut() {
        r.headers_mut().extend(hs.drain());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5::Digest;

    fn headers(pairs: &[(&str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.insert(
                hyper::header::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn b64(b: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    fn sse(alg: &str, key: &[u8], md5_of: &[u8]) -> HeaderMap {
        let p = "x-amz-server-side-encryption-customer-";
        headers(&[
            (&format!("{p}algorithm"), alg.to_string()),
            (&format!("{p}key"), b64(key)),
            (&format!("{p}key-MD5"), b64(&md5::Md5::digest(md5_of))),
        ])
    }

    #[test]
    fn a_well_formed_key_is_accepted_and_identified_by_its_md5() {
        let k = customer_key(&sse("AES256", &[5; 32], &[5; 32]), KeyFor::Target)
            .unwrap()
            .unwrap();
        assert_eq!(k.md5(), <[u8; 16]>::from(md5::Md5::digest([5u8; 32])));
        assert!(
            customer_key(&sse("AES256", &[5; 32], &[5; 32]), KeyFor::CopySource)
                .unwrap()
                .is_none(),
            "the copy-source headers are other names"
        );
        assert!(
            customer_key(&HeaderMap::new(), KeyFor::Target)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn every_malformed_combination_gets_aws_error() {
        let code = |h: &HeaderMap| customer_key(h, KeyFor::Target).unwrap_err().code;
        assert_eq!(
            code(&sse("aws:kms", &[5; 32], &[5; 32])),
            S3ErrorCode::InvalidEncryptionAlgorithmError
        );
        assert_eq!(
            code(&sse("AES256", &[5; 16], &[5; 16])),
            S3ErrorCode::InvalidArgument,
            "a 128-bit key"
        );
        assert_eq!(
            code(&sse("AES256", &[5; 32], &[6; 32])),
            S3ErrorCode::InvalidArgument,
            "the MD5 of another key"
        );
        let p = "x-amz-server-side-encryption-customer-";
        let only_alg = headers(&[(&format!("{p}algorithm"), "AES256".into())]);
        assert_eq!(code(&only_alg), S3ErrorCode::InvalidArgument);
        let no_md5 = headers(&[
            (&format!("{p}algorithm"), "AES256".into()),
            (&format!("{p}key"), b64(&[5; 32])),
        ]);
        assert_eq!(code(&no_md5), S3ErrorCode::InvalidArgument);
        let no_alg = headers(&[(&format!("{p}key"), b64(&[5; 32]))]);
        assert_eq!(code(&no_alg), S3ErrorCode::InvalidArgument);
        let bad_b64 = headers(&[
            (&format!("{p}algorithm"), "AES256".into()),
            (&format!("{p}key"), "!!not base64!!".into()),
            (&format!("{p}key-md5"), b64(&[0; 16])),
        ]);
        assert_eq!(code(&bad_b64), S3ErrorCode::InvalidArgument);
    }

    #[test]
    fn reads_need_exactly_the_key_the_version_was_stored_with() {
        let k = CustomerKey::new([1; 32]);
        let other = CustomerKey::new([2; 32]);
        let e = k.encryption();
        assert!(check_read(None, None).is_ok());
        assert!(check_read(Some(&e), Some(&k)).is_ok());
        assert_eq!(
            check_read(Some(&e), Some(&other)).unwrap_err().code,
            S3ErrorCode::AccessDenied
        );
        assert_eq!(
            check_read(Some(&e), None).unwrap_err().code,
            S3ErrorCode::InvalidRequest
        );
        assert_eq!(
            check_read(None, Some(&k)).unwrap_err().code,
            S3ErrorCode::InvalidRequest
        );
        assert!(check_part(Some(&e), Some(&k)).is_ok());
        assert!(check_part(Some(&e), Some(&other)).is_err());
        assert!(check_part(None, Some(&k)).is_err());
        assert!(check_part(Some(&e), None).is_err());
    }
}
