//! S3 additional checksums (`x-amz-checksum-{crc32,crc32c,crc64nvme,sha1,sha256}`) and Content-MD5.
//!
//! AWS sends and expects the checksum's bytes base64-encoded, CRCs as big-endian integers (4 bytes for
//! CRC32/CRC32C, 8 for CRC64NVME). Current SDKs send a CRC by default, either as a header (known
//! before the body) or as an aws-chunked trailer (known after it), announced by `x-amz-trailer`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hyper::HeaderMap;
use sha1::Digest as _;

use crate::s3::error::{S3Error, S3ErrorCode, err};

/// The checksum algorithms S3 supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ChecksumAlgorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

impl ChecksumAlgorithm {
    pub const ALL: [ChecksumAlgorithm; 5] = [
        ChecksumAlgorithm::Crc32,
        ChecksumAlgorithm::Crc32c,
        ChecksumAlgorithm::Crc64Nvme,
        ChecksumAlgorithm::Sha1,
        ChecksumAlgorithm::Sha256,
    ];

    /// The request/response header (and trailer) carrying the value.
    pub fn header_name(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Crc32 => "x-amz-checksum-crc32",
            ChecksumAlgorithm::Crc32c => "x-amz-checksum-crc32c",
            ChecksumAlgorithm::Crc64Nvme => "x-amz-checksum-crc64nvme",
            ChecksumAlgorithm::Sha1 => "x-amz-checksum-sha1",
            ChecksumAlgorithm::Sha256 => "x-amz-checksum-sha256",
        }
    }

    /// The XML element carrying the value (e.g. in CompleteMultipartUpload and ListParts).
    pub fn xml_name(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Crc32 => "ChecksumCRC32",
            ChecksumAlgorithm::Crc32c => "ChecksumCRC32C",
            ChecksumAlgorithm::Crc64Nvme => "ChecksumCRC64NVME",
            ChecksumAlgorithm::Sha1 => "ChecksumSHA1",
            ChecksumAlgorithm::Sha256 => "ChecksumSHA256",
        }
    }

    /// The name used in `x-amz-sdk-checksum-algorithm`, `x-amz-checksum-algorithm` and XML.
    pub fn as_str(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Crc32 => "CRC32",
            ChecksumAlgorithm::Crc32c => "CRC32C",
            ChecksumAlgorithm::Crc64Nvme => "CRC64NVME",
            ChecksumAlgorithm::Sha1 => "SHA1",
            ChecksumAlgorithm::Sha256 => "SHA256",
        }
    }

    /// Parses [`as_str`](Self::as_str) names, case-insensitively (SDKs differ in case).
    pub fn parse(s: &str) -> Option<ChecksumAlgorithm> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s.trim()))
    }

    /// Parses [`header_name`](Self::header_name) names, case-insensitively.
    pub fn from_header_name(s: &str) -> Option<ChecksumAlgorithm> {
        Self::ALL
            .into_iter()
            .find(|a| a.header_name().eq_ignore_ascii_case(s.trim()))
    }

    /// Length of a value in bytes.
    pub fn value_len(self) -> usize {
        match self {
            ChecksumAlgorithm::Crc32 | ChecksumAlgorithm::Crc32c => 4,
            ChecksumAlgorithm::Crc64Nvme => 8,
            ChecksumAlgorithm::Sha1 => 20,
            ChecksumAlgorithm::Sha256 => 32,
        }
    }

    /// Whether the algorithm is a CRC, whose values of consecutive pieces can be combined into
    /// the value of the whole (S3's `FULL_OBJECT` multipart checksums).
    pub fn is_crc(self) -> bool {
        self.crc().is_some()
    }

    fn crc(self) -> Option<crc_fast::CrcAlgorithm> {
        match self {
            ChecksumAlgorithm::Crc32 => Some(crc_fast::CrcAlgorithm::Crc32IsoHdlc),
            ChecksumAlgorithm::Crc32c => Some(crc_fast::CrcAlgorithm::Crc32Iscsi),
            ChecksumAlgorithm::Crc64Nvme => Some(crc_fast::CrcAlgorithm::Crc64Nvme),
            ChecksumAlgorithm::Sha1 | ChecksumAlgorithm::Sha256 => None,
        }
    }
}

impl std::fmt::Display for ChecksumAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One checksum value.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checksum {
    pub algorithm: ChecksumAlgorithm,
    /// Raw bytes (CRCs big-endian), [`ChecksumAlgorithm::value_len`] long.
    pub value: Vec<u8>,
}

impl Checksum {
    /// The value as sent in headers, trailers and XML.
    pub fn to_base64(&self) -> String {
        BASE64.encode(&self.value)
    }

    /// Reads a client-sent value: padded standard base64 of exactly the algorithm's length, else
    /// 400 `InvalidRequest` "Value for x-amz-checksum-… header is invalid." (AWS's answer; a value
    /// that decodes but does not match the body is `BadDigest`, see [`Checksum::check`]).
    pub fn from_base64(algorithm: ChecksumAlgorithm, s: &str) -> Result<Checksum, S3Error> {
        match BASE64.decode(s.trim()) {
            Ok(value) if value.len() == algorithm.value_len() => Ok(Checksum { algorithm, value }),
            _ => Err(err(
                S3ErrorCode::InvalidRequest,
                format!("Value for {} header is invalid.", algorithm.header_name()),
            )),
        }
    }

    /// Checks `self` (computed) against what the client sent: `BadDigest` if they differ.
    pub fn check(&self, expected: &Checksum) -> Result<(), S3Error> {
        if self == expected {
            Ok(())
        } else {
            Err(bad_digest(expected.algorithm))
        }
    }
}

/// The `BadDigest` answer for a checksum mismatch, worded as AWS does.
pub fn bad_digest(algorithm: ChecksumAlgorithm) -> S3Error {
    err(
        S3ErrorCode::BadDigest,
        format!("The {algorithm} you specified did not match the calculated checksum."),
    )
}

/// The `BadDigest` answer for a Content-MD5 mismatch.
pub fn md5_mismatch() -> S3Error {
    err(
        S3ErrorCode::BadDigest,
        "The Content-MD5 you specified did not match what we received.",
    )
}

/// Incremental checksum of one algorithm, fed as the body streams.
#[derive(Clone)]
pub struct Checksummer(Inner);

#[derive(Clone)]
enum Inner {
    Crc(ChecksumAlgorithm, crc_fast::Digest),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
}

impl Checksummer {
    pub fn new(algorithm: ChecksumAlgorithm) -> Checksummer {
        Checksummer(match algorithm.crc() {
            Some(crc) => Inner::Crc(algorithm, crc_fast::Digest::new(crc)),
            None if algorithm == ChecksumAlgorithm::Sha1 => Inner::Sha1(sha1::Sha1::new()),
            None => Inner::Sha256(sha2::Sha256::new()),
        })
    }

    pub fn algorithm(&self) -> ChecksumAlgorithm {
        match &self.0 {
            Inner::Crc(a, _) => *a,
            Inner::Sha1(_) => ChecksumAlgorithm::Sha1,
            Inner::Sha256(_) => ChecksumAlgorithm::Sha256,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match &mut self.0 {
            Inner::Crc(_, d) => d.update(data),
            Inner::Sha1(h) => h.update(data),
            Inner::Sha256(h) => h.update(data),
        }
    }

    pub fn finalize(self) -> Checksum {
        let algorithm = self.algorithm();
        let value = match self.0 {
            Inner::Crc(_, d) => crc_bytes(algorithm, d.finalize()),
            Inner::Sha1(h) => h.finalize().to_vec(),
            Inner::Sha256(h) => h.finalize().to_vec(),
        };
        Checksum { algorithm, value }
    }
}

/// A CRC register as AWS sends it: big-endian, 4 bytes for the 32-bit CRCs, 8 for CRC64.
fn crc_bytes(algorithm: ChecksumAlgorithm, crc: u64) -> Vec<u8> {
    match algorithm.value_len() {
        4 => (crc as u32).to_be_bytes().to_vec(),
        _ => crc.to_be_bytes().to_vec(),
    }
}

fn crc_value(c: &Checksum) -> Option<u64> {
    match c.value.as_slice() {
        v @ [_, _, _, _] => Some(u32::from_be_bytes(v.try_into().ok()?) as u64),
        v @ [_, _, _, _, _, _, _, _] => Some(u64::from_be_bytes(v.try_into().ok()?)),
        _ => None,
    }
}

/// Checksum of a whole buffer.
pub fn compute(algorithm: ChecksumAlgorithm, data: &[u8]) -> Checksum {
    let mut c = Checksummer::new(algorithm);
    c.update(data);
    c.finalize()
}

/// What a request asks to check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestChecksum {
    pub algorithm: ChecksumAlgorithm,
    /// The value from the `x-amz-checksum-*` header, checked once the body is read.
    pub expected: Option<Checksum>,
    /// The value comes in the aws-chunked trailer named by `x-amz-trailer`.
    pub in_trailer: bool,
}

/// The checksum a request carries: an `x-amz-checksum-<alg>` header (value known now), an
/// `x-amz-trailer: x-amz-checksum-<alg>` (value in the trailer), or only
/// `x-amz-sdk-checksum-algorithm` (compute and store, nothing to compare). At most one algorithm:
/// several, or an SDK algorithm contradicting the value's, is `InvalidRequest`.
pub fn request_checksum(headers: &HeaderMap) -> Result<Option<RequestChecksum>, S3Error> {
    let in_headers: Vec<ChecksumAlgorithm> = ChecksumAlgorithm::ALL
        .into_iter()
        .filter(|a| headers.contains_key(a.header_name()))
        .collect();
    let trailer = trailer_algorithm(headers)?;
    if in_headers.len() + usize::from(trailer.is_some()) > 1 {
        return Err(multiple());
    }
    let expected = match in_headers.first() {
        Some(&alg) => {
            let value = headers.get(alg.header_name()).and_then(|v| v.to_str().ok());
            Some(Checksum::from_base64(alg, value.unwrap_or(""))?)
        }
        None => None,
    };
    let sdk = match headers.get("x-amz-sdk-checksum-algorithm") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(ChecksumAlgorithm::parse)
                .ok_or_else(|| {
                    err(
                        S3ErrorCode::InvalidRequest,
                        "Value for x-amz-sdk-checksum-algorithm header is invalid.",
                    )
                })?,
        ),
        None => None,
    };
    let named = expected.as_ref().map(|c| c.algorithm).or(trailer);
    let Some(algorithm) = named.or(sdk) else {
        return Ok(None);
    };
    if sdk.is_some_and(|s| s != algorithm) {
        return Err(err(
            S3ErrorCode::InvalidRequest,
            format!(
                "Value for x-amz-sdk-checksum-algorithm header is invalid: the checksum sent is {algorithm}."
            ),
        ));
    }
    Ok(Some(RequestChecksum {
        algorithm,
        expected,
        in_trailer: trailer.is_some(),
    }))
}

fn multiple() -> S3Error {
    err(
        S3ErrorCode::InvalidRequest,
        "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
    )
}

/// The checksum announced in `x-amz-trailer` (a comma-separated list of trailer names, of which S3
/// only supports checksums).
fn trailer_algorithm(headers: &HeaderMap) -> Result<Option<ChecksumAlgorithm>, S3Error> {
    let Some(value) = headers.get("x-amz-trailer") else {
        return Ok(None);
    };
    let unsupported = || {
        err(
            S3ErrorCode::InvalidRequest,
            "The value specified in the x-amz-trailer header is not supported",
        )
    };
    let mut found = None;
    for name in value.to_str().map_err(|_| unsupported())?.split(',') {
        let name = name.trim();
        if name.is_empty() {
            continue;
        }
        let alg = ChecksumAlgorithm::from_header_name(name).ok_or_else(unsupported)?;
        if found.replace(alg).is_some() {
            return Err(multiple());
        }
    }
    Ok(found)
}

/// The `Content-MD5` header: base64 of 16 bytes, else `InvalidDigest`.
pub fn content_md5(headers: &HeaderMap) -> Result<Option<[u8; 16]>, S3Error> {
    let Some(value) = headers.get("content-md5") else {
        return Ok(None);
    };
    let invalid = || {
        err(
            S3ErrorCode::InvalidDigest,
            "The Content-MD5 you specified was invalid.",
        )
    };
    let decoded = BASE64
        .decode(value.to_str().map_err(|_| invalid())?.trim())
        .map_err(|_| invalid())?;
    decoded.try_into().map(Some).map_err(|_| invalid())
}

/// S3's `COMPOSITE` multipart checksum: the checksum of the concatenated raw part checksums,
/// rendered `<base64>-<number of parts>`.
pub fn composite(alg: ChecksumAlgorithm, parts: &[Checksum]) -> String {
    let mut c = Checksummer::new(alg);
    for part in parts {
        c.update(&part.value);
    }
    format!("{}-{}", c.finalize().to_base64(), parts.len())
}

/// S3's `FULL_OBJECT` multipart checksum for CRCs: the CRC of the whole object, combined from each
/// part's CRC and length without reading the data again. `None` for SHA algorithms, or if a part's
/// checksum is of another algorithm.
pub fn full_object(alg: ChecksumAlgorithm, parts: &[(Checksum, u64)]) -> Option<Checksum> {
    let crc = alg.crc()?;
    let mut whole = compute(alg, b"");
    for (part, len) in parts {
        if part.algorithm != alg {
            return None;
        }
        let acc = crc_value(&whole)?;
        let combined = crc_fast::checksum_combine(crc, acc, crc_value(part)?, *len);
        whole.value = crc_bytes(alg, combined);
    }
    Some(whole)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use hyper::header::{HeaderName, HeaderValue};
    use proptest::prelude::*;

    /// A header map of `(name, value)` pairs (repeats appended).
    pub(crate) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn known_vectors() {
        let hex_of = |alg| hex::encode(compute(alg, b"123456789").value);
        assert_eq!(hex_of(ChecksumAlgorithm::Crc32), "cbf43926");
        assert_eq!(hex_of(ChecksumAlgorithm::Crc32c), "e3069283");
        assert_eq!(hex_of(ChecksumAlgorithm::Crc64Nvme), "ae8b14860a799888");
        assert_eq!(
            hex_of(ChecksumAlgorithm::Sha1),
            "f7c3bc1d808e04732adf679965ccc34ca7ae3441"
        );
        assert_eq!(
            hex_of(ChecksumAlgorithm::Sha256),
            "15e2b0d3c33891ebb0f1ef609ec419420c20e320ce94c65fbc8c3312448eb225"
        );
        // AWS's trailer example: 66560 bytes of 'a' have x-amz-checksum-crc32c sOO8/Q==.
        assert_eq!(
            compute(ChecksumAlgorithm::Crc32c, &[b'a'; 66560]).to_base64(),
            "sOO8/Q=="
        );
        // `crc32 of "hello world" is DUoRhQ==`, as S3 answers.
        assert_eq!(
            compute(ChecksumAlgorithm::Crc32, b"hello world").to_base64(),
            "DUoRhQ=="
        );
        assert_eq!(
            compute(ChecksumAlgorithm::Crc32, b"").to_base64(),
            "AAAAAA=="
        );
    }

    #[test]
    fn names_round_trip() {
        for alg in ChecksumAlgorithm::ALL {
            assert_eq!(ChecksumAlgorithm::parse(alg.as_str()), Some(alg));
            assert_eq!(
                ChecksumAlgorithm::parse(&alg.as_str().to_lowercase()),
                Some(alg)
            );
            assert_eq!(
                ChecksumAlgorithm::from_header_name(alg.header_name()),
                Some(alg)
            );
            assert_eq!(compute(alg, b"x").value.len(), alg.value_len());
            assert!(alg.xml_name().ends_with(alg.as_str()));
        }
        assert_eq!(ChecksumAlgorithm::parse("MD5"), None);
    }

    #[test]
    fn base64_values_are_checked() {
        let c = Checksum::from_base64(ChecksumAlgorithm::Crc32, "DUoRhQ==").unwrap();
        assert_eq!(c.to_base64(), "DUoRhQ==");
        for bad in ["DUoRhQ", "DUoRhQAA", "!!!!", ""] {
            let e = Checksum::from_base64(ChecksumAlgorithm::Crc32, bad).unwrap_err();
            assert_eq!(
                (e.code, e.message.as_str()),
                (
                    S3ErrorCode::InvalidRequest,
                    "Value for x-amz-checksum-crc32 header is invalid."
                ),
                "{bad}"
            );
        }
        let other = compute(ChecksumAlgorithm::Crc32, b"hello");
        let e = other.check(&c).unwrap_err();
        assert_eq!(e.code, S3ErrorCode::BadDigest);
        assert_eq!(
            e.message,
            "The CRC32 you specified did not match the calculated checksum."
        );
        compute(ChecksumAlgorithm::Crc32, b"hello world")
            .check(&c)
            .unwrap();
    }

    #[test]
    fn request_checksum_cases() {
        assert_eq!(request_checksum(&headers(&[])).unwrap(), None);
        let r = request_checksum(&headers(&[("x-amz-checksum-crc32", "DUoRhQ==")]))
            .unwrap()
            .unwrap();
        assert_eq!(r.algorithm, ChecksumAlgorithm::Crc32);
        assert_eq!(r.expected.unwrap().to_base64(), "DUoRhQ==");
        assert!(!r.in_trailer);
        let r = request_checksum(&headers(&[
            ("x-amz-trailer", "x-amz-checksum-crc64nvme"),
            ("x-amz-sdk-checksum-algorithm", "CRC64NVME"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            (r.algorithm, r.expected, r.in_trailer),
            (ChecksumAlgorithm::Crc64Nvme, None, true)
        );
        let r = request_checksum(&headers(&[("x-amz-sdk-checksum-algorithm", "sha256")]))
            .unwrap()
            .unwrap();
        assert_eq!(
            (r.algorithm, r.expected, r.in_trailer),
            (ChecksumAlgorithm::Sha256, None, false)
        );
        // Not checksum values: ignored.
        let r = request_checksum(&headers(&[
            ("x-amz-checksum-type", "FULL_OBJECT"),
            ("x-amz-checksum-mode", "ENABLED"),
        ]));
        assert_eq!(r.unwrap(), None);
    }

    #[test]
    fn request_checksum_errors() {
        let code = |pairs: &[(&str, &str)]| request_checksum(&headers(pairs)).unwrap_err().code;
        let crc = ("x-amz-checksum-crc32", "DUoRhQ==");
        assert_eq!(
            code(&[crc, ("x-amz-checksum-sha1", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=")]),
            S3ErrorCode::InvalidRequest
        );
        assert_eq!(
            code(&[crc, ("x-amz-trailer", "x-amz-checksum-crc32")]),
            S3ErrorCode::InvalidRequest
        );
        assert_eq!(
            code(&[("x-amz-trailer", "x-amz-checksum-crc32,x-amz-checksum-sha1")]),
            S3ErrorCode::InvalidRequest
        );
        assert_eq!(
            code(&[("x-amz-trailer", "x-amz-meta-foo")]),
            S3ErrorCode::InvalidRequest
        );
        assert_eq!(
            code(&[crc, ("x-amz-sdk-checksum-algorithm", "SHA256")]),
            S3ErrorCode::InvalidRequest
        );
        assert_eq!(
            code(&[("x-amz-sdk-checksum-algorithm", "MD5")]),
            S3ErrorCode::InvalidRequest
        );
        assert_eq!(
            code(&[("x-amz-checksum-crc32", "nope")]),
            S3ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn content_md5_header() {
        assert_eq!(content_md5(&headers(&[])).unwrap(), None);
        // MD5("") = d41d8cd98f00b204e9800998ecf8427e.
        let md5 = content_md5(&headers(&[("content-md5", "1B2M2Y8AsgTpgAmY7PhCfg==")]))
            .unwrap()
            .unwrap();
        assert_eq!(hex::encode(md5), "d41d8cd98f00b204e9800998ecf8427e");
        for bad in ["1B2M2Y8AsgTpgAmY7PhC", "AAAA", "not base64!"] {
            let e = content_md5(&headers(&[("content-md5", bad)])).unwrap_err();
            assert_eq!(e.code, S3ErrorCode::InvalidDigest, "{bad}");
        }
        assert_eq!(md5_mismatch().code, S3ErrorCode::BadDigest);
    }

    #[test]
    fn composite_checksum() {
        let parts = [
            compute(ChecksumAlgorithm::Crc32, b"part one"),
            compute(ChecksumAlgorithm::Crc32, b"two"),
        ];
        let mut concat = parts[0].value.clone();
        concat.extend_from_slice(&parts[1].value);
        let expected = format!(
            "{}-2",
            compute(ChecksumAlgorithm::Crc32, &concat).to_base64()
        );
        assert_eq!(composite(ChecksumAlgorithm::Crc32, &parts), expected);
    }

    proptest! {
        /// Feeding in pieces gives the one-shot value, and CRC parts combine into the whole's CRC.
        #[test]
        fn incremental_and_full_object(data in proptest::collection::vec(any::<u8>(), 0..2000), cuts in proptest::collection::vec(any::<usize>(), 0..5)) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (data.len() + 1)).collect();
            cuts.sort();
            for alg in ChecksumAlgorithm::ALL {
                let mut c = Checksummer::new(alg);
                let mut parts = vec![];
                let mut start = 0;
                for &end in cuts.iter().chain(std::iter::once(&data.len())) {
                    c.update(&data[start..end]);
                    parts.push((compute(alg, &data[start..end]), (end - start) as u64));
                    start = end;
                }
                let whole = compute(alg, &data);
                prop_assert_eq!(&c.finalize(), &whole);
                if alg.is_crc() {
                    prop_assert_eq!(full_object(alg, &parts), Some(whole));
                } else {
                    prop_assert_eq!(full_object(alg, &parts), None);
                }
            }
        }
    }
}
