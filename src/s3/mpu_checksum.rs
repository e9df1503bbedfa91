//! Checksums of multipart uploads: the algorithm and type declared at CreateMultipartUpload
//! (`x-amz-checksum-algorithm`, `x-amz-checksum-type`), the parts' checksums it requires, and the
//! object's checksum computed at CompleteMultipartUpload: `COMPOSITE` (the checksum of the
//! concatenated raw part checksums, `<base64>-<parts>`) or `FULL_OBJECT` (the CRC of the whole
//! object, combined from the parts' CRCs and sizes).
//!
//! | algorithm | FULL_OBJECT | COMPOSITE | default |
//! | --- | --- | --- | --- |
//! | CRC32, CRC32C | yes | yes | COMPOSITE |
//! | CRC64NVME | yes | no | FULL_OBJECT |
//! | SHA1, SHA256 | no | yes | COMPOSITE |

use hyper::HeaderMap;

use super::checksum::{Checksum, ChecksumAlgorithm, bad_digest, composite, full_object};
use super::error::{S3Error, S3ErrorCode, err};
use super::xml::CompletedPart;
use crate::model::mpu::{MpuPart, UploadChecksum};

pub const FULL_OBJECT: &str = "FULL_OBJECT";
pub const COMPOSITE: &str = "COMPOSITE";

fn invalid(msg: impl Into<String>) -> S3Error {
    err(S3ErrorCode::InvalidRequest, msg)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, S3Error> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| invalid(format!("Value for {name} header is invalid.")))
        })
        .transpose()
}

/// The type named by `x-amz-checksum-type`, if sent: `Some(true)` for FULL_OBJECT.
fn checksum_type(headers: &HeaderMap) -> Result<Option<bool>, S3Error> {
    match header(headers, "x-amz-checksum-type")? {
        None => Ok(None),
        Some(t) if t.trim().eq_ignore_ascii_case(FULL_OBJECT) => Ok(Some(true)),
        Some(t) if t.trim().eq_ignore_ascii_case(COMPOSITE) => Ok(Some(false)),
        Some(_) => Err(invalid("Value for x-amz-checksum-type header is invalid.")),
    }
}

/// The algorithm of a declared upload checksum (names are written by [`parse_create`]).
pub fn algorithm(up: &UploadChecksum) -> Option<ChecksumAlgorithm> {
    ChecksumAlgorithm::parse(&up.algorithm)
}

pub fn type_name(full: bool) -> &'static str {
    if full { FULL_OBJECT } else { COMPOSITE }
}

/// CreateMultipartUpload's `x-amz-checksum-algorithm` and `x-amz-checksum-type`.
pub fn parse_create(headers: &HeaderMap) -> Result<Option<UploadChecksum>, S3Error> {
    let ty = checksum_type(headers)?;
    let Some(name) = header(headers, "x-amz-checksum-algorithm")? else {
        return match ty {
            None => Ok(None),
            Some(_) => Err(invalid(
                "The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header.",
            )),
        };
    };
    let alg = ChecksumAlgorithm::parse(name).ok_or_else(|| {
        invalid("Checksum algorithm provided is unsupported. Please try again with any of the valid types: [CRC32, CRC32C, CRC64NVME, SHA1, SHA256]")
    })?;
    let full = ty.unwrap_or(alg == ChecksumAlgorithm::Crc64Nvme);
    let supported = if full {
        alg.is_crc()
    } else {
        alg != ChecksumAlgorithm::Crc64Nvme
    };
    if !supported {
        return Err(invalid(format!(
            "The {} checksum type cannot be used with the {} checksum algorithm.",
            type_name(full),
            alg.as_str().to_lowercase()
        )));
    }
    Ok(Some(UploadChecksum {
        algorithm: alg.as_str().to_string(),
        full_object: full,
    }))
}

/// The response headers announcing an upload's checksum (CreateMultipartUpload).
pub fn add_response_headers<B>(r: &mut hyper::Response<B>, up: Option<&UploadChecksum>) {
    let Some(up) = up else { return };
    for (name, value) in [
        ("x-amz-checksum-algorithm", up.algorithm.as_str()),
        ("x-amz-checksum-type", type_name(up.full_object)),
    ] {
        if let Ok(v) = hyper::header::HeaderValue::from_str(value) {
            r.headers_mut().insert(name, v);
        }
    }
}

fn type_mismatch(expected: ChecksumAlgorithm, got: Option<ChecksumAlgorithm>) -> S3Error {
    invalid(format!(
        "Checksum Type mismatch occurred, expected checksum Type: {}, actual checksum Type: {}",
        expected.as_str().to_lowercase(),
        got.map_or("null".to_string(), |a| a.as_str().to_lowercase())
    ))
}

/// UploadPart to an upload that declared an algorithm must carry a checksum of that algorithm
/// (header, trailer or `x-amz-sdk-checksum-algorithm`); checked before the body is read.
pub fn check_part(
    up: Option<&UploadChecksum>,
    sent: Option<ChecksumAlgorithm>,
) -> Result<(), S3Error> {
    let Some(expected) = up.and_then(algorithm) else {
        return Ok(());
    };
    if sent != Some(expected) {
        return Err(type_mismatch(expected, sent));
    }
    Ok(())
}

fn invalid_part(n: u32) -> S3Error {
    err(
        S3ErrorCode::InvalidPart,
        format!(
            "One or more of the specified parts could not be found (part {n}). The part may not have been uploaded, or the specified entity tag may not match the part's entity tag."
        ),
    )
}

/// A stored part checksum `(algorithm, base64)`, decoded.
fn stored(p: &MpuPart) -> Option<Checksum> {
    let (alg, value) = p.checksum.as_ref()?;
    Checksum::from_base64(ChecksumAlgorithm::parse(alg)?, value).ok()
}

/// The whole-object checksum of CompleteMultipartUpload: checks the parts' `Checksum…` elements
/// against the stored part checksums (`InvalidPart` on a mismatch), computes the object's checksum
/// of the upload's algorithm and type, checks it against an `x-amz-checksum-<alg>` header
/// (`BadDigest`), and returns it as stored in the object's metadata: `(algorithm, value)`.
/// Parts not found are left to the model, which answers `InvalidPart`.
pub fn complete<T>(
    up: Option<&UploadChecksum>,
    finished: &[(u32, T, MpuPart)],
    requested: &[CompletedPart],
    headers: &HeaderMap,
) -> Result<Option<(String, String)>, S3Error> {
    let sent_type = checksum_type(headers)?;
    let mut sent_value = None;
    for a in ChecksumAlgorithm::ALL {
        if let Some(v) = header(headers, a.header_name())?
            && sent_value.replace((a, v.trim())).is_some()
        {
            return Err(invalid(
                "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
            ));
        }
    }
    let alg = up.and_then(algorithm);
    let full = up.is_some_and(|u| u.full_object);
    if let Some(t) = sent_type
        && (alg.is_none() || t != full)
    {
        return Err(invalid(format!(
            "The upload was created using the {} checksum mode. The complete request must use the same checksum mode.",
            up.map_or("null", |u| type_name(u.full_object))
        )));
    }
    if let Some((a, _)) = sent_value
        && alg != Some(a)
    {
        return Err(invalid(format!(
            "The upload was created using {} checksum. The complete request must use the same checksum algorithm.",
            alg.map_or("no".to_string(), |a| a.as_str().to_lowercase())
        )));
    }
    let mut parts: Vec<(Checksum, u64)> = vec![];
    for p in requested {
        let found = finished.iter().find(|(n, _, f)| {
            *n == p.part_number && f.etag.as_deref() == Some(p.etag.trim_matches('"'))
        });
        let Some((_, _, f)) = found else {
            return Ok(None);
        };
        let have = stored(f);
        for (name, value) in &p.checksums {
            let Some(a) = ChecksumAlgorithm::ALL
                .into_iter()
                .find(|a| a.xml_name() == name)
            else {
                continue;
            };
            let given = Checksum::from_base64(a, value).map_err(|_| invalid_part(p.part_number))?;
            if have.as_ref() != Some(&given) {
                return Err(invalid_part(p.part_number));
            }
        }
        let Some(alg) = alg else { continue };
        let named = p.checksums.iter().any(|(name, _)| name == alg.xml_name());
        if !full && !named {
            return Err(invalid(format!(
                "The upload was created using a {} checksum. The complete request must include the checksum for each part. It was missing for part {} in the request.",
                alg.as_str().to_lowercase(),
                p.part_number
            )));
        }
        match have {
            Some(c) if c.algorithm == alg => parts.push((c, f.size.unwrap_or(0))),
            _ => return Err(invalid_part(p.part_number)),
        }
    }
    let Some(alg) = alg else { return Ok(None) };
    let value = if full {
        full_object(alg, &parts)
            .ok_or_else(|| invalid_part(0))?
            .to_base64()
    } else {
        let raw: Vec<Checksum> = parts.into_iter().map(|(c, _)| c).collect();
        composite(alg, &raw)
    };
    if let Some((_, sent)) = sent_value {
        // A composite value may be sent with or without its `-N` suffix.
        let matches = sent == value || (!full && value.split('-').next() == Some(sent));
        if !matches {
            return Err(bad_digest(alg));
        }
    }
    Ok(Some((alg.as_str().to_string(), value)))
}

/// The type of a stored object checksum: a composite value ends in `-<parts>` (never in base64).
pub fn stored_type(value: &str) -> &'static str {
    type_name(!value.contains('-'))
}

/// The response elements of a stored object checksum: `Checksum<ALG>` and `ChecksumType`.
pub fn elements(stored: Option<&(String, String)>) -> Vec<(String, String)> {
    let Some((alg, value)) = stored else {
        return vec![];
    };
    let Some(a) = ChecksumAlgorithm::parse(alg) else {
        return vec![];
    };
    vec![
        (a.xml_name().to_string(), value.clone()),
        ("ChecksumType".to_string(), stored_type(value).to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::checksum::compute;
    use crate::s3::checksum::tests::headers;

    fn up(alg: &str, full: bool) -> UploadChecksum {
        UploadChecksum {
            algorithm: alg.into(),
            full_object: full,
        }
    }

    #[test]
    fn create_headers() {
        let p = |pairs: &[(&str, &str)]| parse_create(&headers(pairs));
        assert_eq!(p(&[]).unwrap(), None);
        let alg = "x-amz-checksum-algorithm";
        let ty = "x-amz-checksum-type";
        assert_eq!(p(&[(alg, "crc32")]).unwrap(), Some(up("CRC32", false)));
        assert_eq!(
            p(&[(alg, "CRC64NVME")]).unwrap(),
            Some(up("CRC64NVME", true))
        );
        assert_eq!(
            p(&[(alg, "CRC32C"), (ty, "FULL_OBJECT")]).unwrap(),
            Some(up("CRC32C", true))
        );
        assert_eq!(
            p(&[(alg, "SHA256"), (ty, "COMPOSITE")]).unwrap(),
            Some(up("SHA256", false))
        );
        for bad in [
            vec![(alg, "MD5")],
            vec![(ty, "COMPOSITE")],
            vec![(alg, "CRC32"), (ty, "PARTIAL")],
            vec![(alg, "SHA1"), (ty, "FULL_OBJECT")],
            vec![(alg, "CRC64NVME"), (ty, "COMPOSITE")],
        ] {
            assert_eq!(
                p(&bad).unwrap_err().code,
                S3ErrorCode::InvalidRequest,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn parts_must_carry_the_declared_algorithm() {
        check_part(None, None).unwrap();
        check_part(None, Some(ChecksumAlgorithm::Sha1)).unwrap();
        let u = up("CRC32", false);
        check_part(Some(&u), Some(ChecksumAlgorithm::Crc32)).unwrap();
        let e = check_part(Some(&u), None).unwrap_err();
        assert_eq!(e.code, S3ErrorCode::InvalidRequest);
        assert_eq!(
            e.message,
            "Checksum Type mismatch occurred, expected checksum Type: crc32, actual checksum Type: null"
        );
        let e = check_part(Some(&u), Some(ChecksumAlgorithm::Sha256)).unwrap_err();
        assert_eq!(e.code, S3ErrorCode::InvalidRequest);
    }

    fn part(n: u32, alg: ChecksumAlgorithm, data: &[u8]) -> (u32, (), MpuPart) {
        let c = compute(alg, data);
        (
            n,
            (),
            MpuPart {
                version: [n as u8; 32],
                etag: Some(format!("e{n}")),
                size: Some(data.len() as u64),
                checksum: Some((alg.as_str().into(), c.to_base64())),
                pending: false,
            },
        )
    }

    fn req(n: u32, checksums: &[(&str, String)]) -> CompletedPart {
        CompletedPart {
            part_number: n,
            etag: format!("\"e{n}\""),
            checksums: checksums
                .iter()
                .map(|(a, b)| (a.to_string(), b.clone()))
                .collect(),
        }
    }

    #[test]
    fn complete_composite_and_full_object() {
        let alg = ChecksumAlgorithm::Crc32;
        let finished = [part(1, alg, b"hello "), part(2, alg, b"world")];
        let b64 = |d: &[u8]| compute(alg, d).to_base64();
        let with = [
            req(1, &[("ChecksumCRC32", b64(b"hello "))]),
            req(2, &[("ChecksumCRC32", b64(b"world"))]),
        ];
        let none = HeaderMap::new();
        // Composite: checksum of the concatenated part checksums, `-2`.
        let (a, v) = complete(Some(&up("CRC32", false)), &finished, &with, &none)
            .unwrap()
            .unwrap();
        let raw = [compute(alg, b"hello "), compute(alg, b"world")];
        assert_eq!((a.as_str(), v.clone()), ("CRC32", composite(alg, &raw)));
        assert!(v.ends_with("-2"));
        assert_eq!(stored_type(&v), COMPOSITE);
        // Composite requires every part's checksum in the request.
        let without = [req(1, &[]), req(2, &[])];
        let e = complete(Some(&up("CRC32", false)), &finished, &without, &none).unwrap_err();
        assert_eq!(e.code, S3ErrorCode::InvalidRequest);
        // Full object: the CRC of the whole, part checksums optional.
        let (_, v) = complete(Some(&up("CRC32", true)), &finished, &without, &none)
            .unwrap()
            .unwrap();
        assert_eq!(v, b64(b"hello world"));
        assert_eq!(stored_type(&v), FULL_OBJECT);
        // The whole-object header is checked.
        let good = headers(&[("x-amz-checksum-crc32", &b64(b"hello world"))]);
        complete(Some(&up("CRC32", true)), &finished, &without, &good).unwrap();
        let bad = headers(&[("x-amz-checksum-crc32", &b64(b"other"))]);
        let e = complete(Some(&up("CRC32", true)), &finished, &without, &bad).unwrap_err();
        assert_eq!(e.code, S3ErrorCode::BadDigest);
        // A wrong part checksum is InvalidPart.
        let wrong = [req(1, &[("ChecksumCRC32", b64(b"nope"))]), req(2, &[])];
        let e = complete(Some(&up("CRC32", true)), &finished, &wrong, &none).unwrap_err();
        assert_eq!(e.code, S3ErrorCode::InvalidPart);
        // Without a declared algorithm: nothing stored, whole-object headers refused.
        assert_eq!(complete(None, &finished, &with, &none).unwrap(), None);
        let e = complete(None, &finished, &without, &good).unwrap_err();
        assert_eq!(e.code, S3ErrorCode::InvalidRequest);
        // A part not found is left to the model.
        assert_eq!(
            complete(Some(&up("CRC32", true)), &finished, &[req(3, &[])], &none).unwrap(),
            None
        );
    }

    #[test]
    fn response_elements() {
        assert!(elements(None).is_empty());
        let e = elements(Some(&("CRC32C".into(), "AAAAAA==-3".into())));
        assert_eq!(
            e,
            vec![
                ("ChecksumCRC32C".to_string(), "AAAAAA==-3".to_string()),
                ("ChecksumType".to_string(), "COMPOSITE".to_string())
            ]
        );
    }
}
