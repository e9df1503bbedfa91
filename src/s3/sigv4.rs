//! AWS Signature Version 4 for S3: parsing the `Authorization` header or the presigned-URL query,
//! verifying the signature, and a small client-side signer for tests and tools.
//!
//! The canonical request follows S3's rules, which differ from other AWS services: the path is
//! URI-encoded once (no double encoding) and never normalized, the query is decoded the way
//! `application/x-www-form-urlencoded` is (`+` is a space, as the AWS SDKs do) and re-encoded with the
//! unreserved set, header values are trimmed of spaces with inner runs collapsed. The decoding
//! (`util::url::decode_lenient`), `UriEncode` (`util::url::uri_encode`) and the `x-amz-date` format
//! (`util::timefmt`) live in `util`, shared with the router, so what is signed is what is executed.
//!
//! Errors are the S3 error codes AWS uses for the same mistakes, so SDKs react as they do with AWS
//! (notably `AuthorizationHeaderMalformed` carrying `<Region>` makes them retry in the right region).

use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Uri};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::s3::error::{S3Error, S3ErrorCode, err};
use crate::util::timefmt::{format_amz_date, parse_amz_date};
use crate::util::url::{self, Encode, Plus, uri_encode};

type HmacSha256 = Hmac<Sha256>;

/// The only signing algorithm S3 accepts with SigV4.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// `x-amz-content-sha256` value for a body that is not covered by the signature.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// `x-amz-content-sha256` value for an aws-chunked body with a signature on every chunk.
pub const STREAMING_PAYLOAD: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
/// Same, followed by signed trailers.
pub const STREAMING_PAYLOAD_TRAILER: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER";
/// An aws-chunked body without chunk signatures, followed by (unsigned) trailers.
pub const STREAMING_UNSIGNED_PAYLOAD_TRAILER: &str = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";
/// Hex SHA-256 of the empty string (used in chunk strings to sign).
pub const EMPTY_SHA256_HEX: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// Largest accepted distance between the request time and the server clock.
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);
/// Longest lifetime of a presigned URL (7 days), as S3 enforces.
pub const MAX_PRESIGNED_EXPIRES: u64 = 7 * 24 * 3600;

const X_AMZ_DATE: &str = "x-amz-date";
const X_AMZ_CONTENT_SHA256: &str = "x-amz-content-sha256";
const SIGNATURE_MISMATCH: &str = "The request signature we calculated does not match the signature \
                                  you provided. Check your key and signing method.";

/// What `x-amz-content-sha256` says about the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContentSha256 {
    /// The body's SHA-256, which the caller must check against the body (`XAmzContentSHA256Mismatch`).
    Literal([u8; 32]),
    UnsignedPayload,
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`: aws-chunked with chunk signatures.
    StreamingSigned,
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`: signed chunks and signed trailers.
    StreamingSignedTrailer,
    /// `STREAMING-UNSIGNED-PAYLOAD-TRAILER`: plain chunks and unsigned trailers.
    StreamingUnsignedTrailer,
}

impl ContentSha256 {
    /// Parses a header value; anything else is `InvalidArgument` as on AWS, and the SigV4a (ECDSA)
    /// streaming variants are `NotImplemented`.
    pub fn parse(value: &str) -> Result<ContentSha256, S3Error> {
        Ok(match value {
            UNSIGNED_PAYLOAD => ContentSha256::UnsignedPayload,
            STREAMING_PAYLOAD => ContentSha256::StreamingSigned,
            STREAMING_PAYLOAD_TRAILER => ContentSha256::StreamingSignedTrailer,
            STREAMING_UNSIGNED_PAYLOAD_TRAILER => ContentSha256::StreamingUnsignedTrailer,
            v if v.starts_with("STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD") => {
                return Err(err(
                    S3ErrorCode::NotImplemented,
                    "SigV4a (ECDSA) streaming signatures are not supported.",
                ));
            }
            v => {
                let mut hash = [0u8; 32];
                match hex::decode_to_slice(v, &mut hash) {
                    Ok(()) => ContentSha256::Literal(hash),
                    Err(_) => {
                        return Err(err(
                            S3ErrorCode::InvalidArgument,
                            "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, \
                             STREAMING-AWS4-HMAC-SHA256-PAYLOAD, \
                             STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, \
                             STREAMING-UNSIGNED-PAYLOAD-TRAILER or a valid sha256 value.",
                        )
                        .with("ArgumentName", X_AMZ_CONTENT_SHA256));
                    }
                }
            }
        })
    }

    /// Whether the body is `aws-chunked` encoded.
    pub fn is_streaming(&self) -> bool {
        matches!(
            self,
            ContentSha256::StreamingSigned
                | ContentSha256::StreamingSignedTrailer
                | ContentSha256::StreamingUnsignedTrailer
        )
    }
}

/// Where the signature came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthKind {
    Header,
    Presigned { expires_secs: u64 },
}

/// A syntactically valid SigV4 authorization, not yet verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedAuth {
    pub access_key: String,
    /// Scope date, `yyyymmdd`.
    pub date: String,
    pub region: String,
    pub service: String,
    /// Lowercase names, in the order the client listed them.
    pub signed_headers: Vec<String>,
    /// Hex signature as sent.
    pub signature: String,
    /// Request time, `yyyymmddThhmmssZ` (from `x-amz-date`, `Date` or `X-Amz-Date`).
    pub amz_date: String,
    pub kind: AuthKind,
    pub content_sha256: ContentSha256,
}

/// What a verified request leaves for checking aws-chunked signatures.
#[derive(Clone)]
pub struct SigningContext {
    pub signing_key: [u8; 32],
    /// `date/region/s3/aws4_request`.
    pub scope: String,
    pub amz_date: String,
    /// The request's own signature: the "previous signature" of the first chunk.
    pub seed_signature: String,
}

impl std::fmt::Debug for SigningContext {
    /// Leaves the signing key out so that it never ends up in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningContext")
            .field("scope", &self.scope)
            .field("amz_date", &self.amz_date)
            .field("seed_signature", &self.seed_signature)
            .finish_non_exhaustive()
    }
}

impl SigningContext {
    /// Signature of one aws-chunked chunk, chained on the previous one (AWS "chunked upload").
    pub fn chunk_signature(&self, previous: &str, chunk_sha256: &[u8; 32]) -> String {
        let to_sign = format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{}\n{}\n{}",
            self.amz_date,
            self.scope,
            previous,
            EMPTY_SHA256_HEX,
            hex::encode(chunk_sha256)
        );
        hex::encode(hmac_sha256(&self.signing_key, to_sign.as_bytes()))
    }

    /// Signature of the trailer section: `trailer_sha256` hashes the trailers as `name:value\n` lines.
    pub fn trailer_signature(&self, previous: &str, trailer_sha256: &[u8; 32]) -> String {
        let to_sign = format!(
            "AWS4-HMAC-SHA256-TRAILER\n{}\n{}\n{}\n{}",
            self.amz_date,
            self.scope,
            previous,
            hex::encode(trailer_sha256)
        );
        hex::encode(hmac_sha256(&self.signing_key, to_sign.as_bytes()))
    }
}

/// Finds the SigV4 authorization of a request. `None` = anonymous (no `Authorization` header and no
/// `X-Amz-Algorithm` query parameter). Only checks syntax: see [`verify`].
pub fn parse(
    _method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Option<ParsedAuth>, S3Error> {
    let query = query_pairs(uri.query().unwrap_or(""));
    let presigned = query.iter().any(|(k, _)| k == "X-Amz-Algorithm");
    match (headers.get(header::AUTHORIZATION), presigned) {
        (Some(_), true) => Err(err(
            S3ErrorCode::InvalidArgument,
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter or the \
             Authorization header should be specified",
        )),
        (Some(value), false) => parse_header_auth(value, headers).map(Some),
        (None, true) => parse_presigned(&query, headers).map(Some),
        (None, false) if query.iter().any(|(k, _)| k == "AWSAccessKeyId") => Err(unsupported()),
        (None, false) => Ok(None),
    }
}

/// SigV2 and other schemes: S3 regions opened after 2014 answer exactly this.
fn unsupported() -> S3Error {
    err(
        S3ErrorCode::InvalidRequest,
        "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.",
    )
}

/// `Authorization: AWS4-HMAC-SHA256 Credential=AK/date/region/s3/aws4_request, SignedHeaders=a;b,
/// Signature=hex`.
fn parse_header_auth(value: &HeaderValue, headers: &HeaderMap) -> Result<ParsedAuth, S3Error> {
    let value = value
        .to_str()
        .map_err(|_| header_malformed("invalid characters"))?;
    let rest = match value.strip_prefix(ALGORITHM) {
        Some(rest) if rest.starts_with([' ', ',']) => rest,
        _ => return Err(unsupported()),
    };
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| header_malformed("expected key=value"))?;
        match k.trim() {
            "Credential" => credential = Some(v.trim()),
            "SignedHeaders" => signed = Some(v.trim()),
            "Signature" => signature = Some(v.trim()),
            _ => return Err(header_malformed(&format!("unexpected element '{k}'"))),
        }
    }
    let credential = credential.ok_or_else(|| header_malformed("missing Credential"))?;
    let signed = signed.ok_or_else(|| header_malformed("missing SignedHeaders"))?;
    let signature = signature.ok_or_else(|| header_malformed("missing Signature"))?;
    let scope = parse_credential(credential).ok_or_else(|| {
        header_malformed(
            "the Credential is mal-formed; expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".",
        )
    })?;
    let signed_headers =
        parse_signed_headers(signed).ok_or_else(|| header_malformed("bad SignedHeaders"))?;
    let content_sha256 = match headers.get(X_AMZ_CONTENT_SHA256) {
        Some(v) => ContentSha256::parse(v.to_str().unwrap_or(""))?,
        None => {
            return Err(err(
                S3ErrorCode::InvalidRequest,
                "Missing required header for this request: x-amz-content-sha256",
            ));
        }
    };
    Ok(ParsedAuth {
        access_key: scope.access_key,
        date: scope.date,
        region: scope.region,
        service: scope.service,
        signed_headers,
        signature: signature.to_string(),
        amz_date: header_amz_date(headers)?,
        kind: AuthKind::Header,
        content_sha256,
    })
}

/// The request time for header auth: `x-amz-date`, else `Date` (which AWS also accepts).
fn header_amz_date(headers: &HeaderMap) -> Result<String, S3Error> {
    let invalid = || {
        err(
            S3ErrorCode::AccessDenied,
            "AWS authentication requires a valid Date or x-amz-date header",
        )
    };
    if let Some(v) = headers.get(X_AMZ_DATE) {
        let v = v.to_str().map_err(|_| invalid())?;
        return parse_amz_date(v).map(|_| v.to_string()).ok_or_else(invalid);
    }
    let date = headers.get(header::DATE).ok_or_else(invalid)?;
    let date = date.to_str().map_err(|_| invalid())?;
    let time = httpdate::parse_http_date(date).map_err(|_| invalid())?;
    Ok(format_amz_date(time))
}

/// Presigned URL: `X-Amz-Algorithm`, `X-Amz-Credential`, `X-Amz-Date`, `X-Amz-Expires`,
/// `X-Amz-SignedHeaders`, `X-Amz-Signature` in the query.
fn parse_presigned(query: &[(String, String)], headers: &HeaderMap) -> Result<ParsedAuth, S3Error> {
    let get = |name: &'static str| {
        let mut values = query
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str());
        match (values.next(), values.next()) {
            (Some(v), None) => Ok(v),
            (None, _) => Err(query_error(&format!(
                "Query-string authentication requires the {name} parameter"
            ))),
            (Some(_), Some(_)) => Err(query_error(&format!("{name} must appear only once"))),
        }
    };
    if get("X-Amz-Algorithm")? != ALGORITHM {
        return Err(query_error(
            "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"",
        ));
    }
    let scope = parse_credential(get("X-Amz-Credential")?).ok_or_else(|| {
        query_error(
            "Error parsing the X-Amz-Credential parameter; the Credential is mal-formed; \
                     expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".",
        )
    })?;
    let amz_date = get("X-Amz-Date")?;
    if parse_amz_date(amz_date).is_none() {
        return Err(query_error(
            "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"",
        ));
    }
    let expires_secs = parse_expires(get("X-Amz-Expires")?)?;
    let signed_headers = parse_signed_headers(get("X-Amz-SignedHeaders")?)
        .ok_or_else(|| query_error("X-Amz-SignedHeaders is mal-formed"))?;
    let content_sha256 = ContentSha256::parse(&presigned_payload_hash(query, headers))?;
    Ok(ParsedAuth {
        access_key: scope.access_key,
        date: scope.date,
        region: scope.region,
        service: scope.service,
        signed_headers,
        signature: get("X-Amz-Signature")?.to_string(),
        amz_date: amz_date.to_string(),
        kind: AuthKind::Presigned { expires_secs },
        content_sha256,
    })
}

/// `X-Amz-Expires`: whole seconds, at most [`MAX_PRESIGNED_EXPIRES`], with AWS's messages for a value
/// that is not a number, negative, or over a week. 0 is accepted here and is expired on arrival
/// ([`check_time`]), as on AWS.
fn parse_expires(value: &str) -> Result<u64, S3Error> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if value.strip_prefix('-').is_some_and(digits) {
        return Err(query_error("X-Amz-Expires must be non-negative"));
    }
    if !digits(value) {
        return Err(query_error("X-Amz-Expires should be a number"));
    }
    // Too many digits for u64 is still a number, and more than a week.
    let n = value.parse::<u64>().unwrap_or(u64::MAX);
    if n > MAX_PRESIGNED_EXPIRES {
        return Err(query_error(
            "X-Amz-Expires must be less than a week (in seconds) that is 604800",
        ));
    }
    Ok(n)
}

/// The payload hash a presigned URL was signed with: an `X-Amz-Content-Sha256` query parameter,
/// else the header, else `UNSIGNED-PAYLOAD` (what SDKs presign with).
fn presigned_payload_hash(query: &[(String, String)], headers: &HeaderMap) -> String {
    let from_query = query
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(X_AMZ_CONTENT_SHA256));
    match (from_query, headers.get(X_AMZ_CONTENT_SHA256)) {
        (Some((_, v)), _) => v.clone(),
        (None, Some(v)) => v.to_str().unwrap_or("").to_string(),
        (None, None) => UNSIGNED_PAYLOAD.to_string(),
    }
}

struct Scope {
    access_key: String,
    date: String,
    region: String,
    service: String,
}

/// `AKID/yyyymmdd/region/service/aws4_request`; the access key is everything before the last four
/// components, the date must be 8 digits.
fn parse_credential(credential: &str) -> Option<Scope> {
    let mut parts = credential.rsplitn(5, '/');
    let terminator = parts.next()?;
    let service = parts.next()?;
    let region = parts.next()?;
    let date = parts.next()?;
    let access_key = parts.next()?;
    let date_ok = date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit());
    if terminator != "aws4_request" || !date_ok || access_key.is_empty() || region.is_empty() {
        return None;
    }
    Some(Scope {
        access_key: access_key.to_string(),
        date: date.to_string(),
        region: region.to_string(),
        service: service.to_string(),
    })
}

/// `a;b;c` → lowercase names; empty names are malformed.
fn parse_signed_headers(list: &str) -> Option<Vec<String>> {
    let names: Vec<String> = list
        .split(';')
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    names.iter().all(|h| !h.is_empty()).then_some(names)
}

fn header_malformed(detail: &str) -> S3Error {
    err(
        S3ErrorCode::AuthorizationHeaderMalformed,
        format!("The authorization header is malformed; {detail}"),
    )
}

/// A malformed presigned URL: 400 `AuthorizationQueryParametersError`, as on AWS.
fn query_error(detail: &str) -> S3Error {
    err(
        S3ErrorCode::AuthorizationQueryParametersError,
        detail.to_string(),
    )
}

/// The error for a malformed authorization, in the flavour of where it came from.
fn malformed(kind: AuthKind, detail: &str) -> S3Error {
    match kind {
        AuthKind::Header => header_malformed(detail),
        AuthKind::Presigned { .. } => query_error(detail),
    }
}

/// Checks a parsed authorization against the secret key of its access key: scope (service `s3`,
/// this `region`, date matching the request time), time (skew, presigned expiry), that `host` and
/// every listed header are signed and present, then the signature itself in constant time.
/// Returns what aws-chunked bodies need to check their chunk signatures.
pub fn verify(
    auth: &ParsedAuth,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    secret_key: &str,
    region: &str,
    now: SystemTime,
) -> Result<SigningContext, S3Error> {
    check_scope(auth, region)?;
    check_time(auth, now)?;
    if !auth.signed_headers.iter().any(|h| h == "host") {
        return Err(malformed(auth.kind, "the host header must be signed"));
    }
    let presigned = matches!(auth.kind, AuthKind::Presigned { .. });
    let canonical = canonical_request(
        method,
        uri,
        headers,
        &auth.signed_headers,
        &payload_hash(auth.kind, uri, headers),
        presigned,
    )
    .map_err(|missing| {
        malformed(
            auth.kind,
            &format!("the signed header '{missing}' is missing"),
        )
    })?;
    check_amz_headers_signed(auth, headers)?;
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let key = signing_key(secret_key, &auth.date, &auth.region, &auth.service);
    let expected = hex::encode(hmac_sha256(
        &key,
        string_to_sign(&auth.amz_date, &scope, &canonical).as_bytes(),
    ));
    if !bool::from(expected.as_bytes().ct_eq(auth.signature.as_bytes())) {
        return Err(err(S3ErrorCode::SignatureDoesNotMatch, SIGNATURE_MISMATCH));
    }
    Ok(SigningContext {
        signing_key: key,
        scope,
        amz_date: auth.amz_date.clone(),
        seed_signature: expected,
    })
}

/// Every `x-amz-*` header present must be signed, as on AWS: such headers change what a request does
/// (`x-amz-copy-source` turns a PUT into a copy, `x-amz-meta-*`, `x-amz-acl`, `x-amz-checksum-*`,
/// `x-amz-metadata-directive`…), so one added to a presigned URL or to a header-signed request after
/// signing must not be obeyed. (Query parameters need no such check: the whole query is in the
/// canonical request.) AWS answers 403 AccessDenied and lists the offending headers.
fn check_amz_headers_signed(auth: &ParsedAuth, headers: &HeaderMap) -> Result<(), S3Error> {
    let mut unsigned: Vec<&str> = headers
        .keys()
        .map(|name| name.as_str())
        .filter(|name| name.starts_with("x-amz-"))
        .filter(|name| !auth.signed_headers.iter().any(|s| s == name))
        .collect();
    if unsigned.is_empty() {
        return Ok(());
    }
    unsigned.sort_unstable();
    Err(err(
        S3ErrorCode::AccessDenied,
        "There were headers present in the request which were not signed",
    )
    .with("HeadersNotSigned", unsigned.join(", ")))
}

/// The hashed-payload line of the canonical request: the `x-amz-content-sha256` header as sent
/// (header auth requires it), or what a presigned URL was signed with.
fn payload_hash(kind: AuthKind, uri: &Uri, headers: &HeaderMap) -> String {
    match kind {
        AuthKind::Header => {
            let value = headers
                .get(X_AMZ_CONTENT_SHA256)
                .and_then(|v| v.to_str().ok());
            value.unwrap_or("").to_string()
        }
        AuthKind::Presigned { .. } => {
            presigned_payload_hash(&query_pairs(uri.query().unwrap_or("")), headers)
        }
    }
}

/// Service `s3`, the cluster's region (SDKs read `<Region>` to retry), scope date = request date.
fn check_scope(auth: &ParsedAuth, region: &str) -> Result<(), S3Error> {
    if auth.service != "s3" {
        return Err(malformed(
            auth.kind,
            &format!(
                "incorrect service '{}'. This endpoint belongs to 's3'.",
                auth.service
            ),
        ));
    }
    if auth.region != region {
        let detail = format!(
            "the region '{}' is wrong; expecting '{region}'",
            auth.region
        );
        let message = match auth.kind {
            AuthKind::Header => format!("The authorization header is malformed; {detail}"),
            AuthKind::Presigned { .. } => {
                format!("Error parsing the X-Amz-Credential parameter; {detail}")
            }
        };
        // SDKs read <Region> to retry in the right one, whichever way the request was signed.
        return Err(err(S3ErrorCode::AuthorizationHeaderMalformed, message).with("Region", region));
    }
    if !auth.amz_date.starts_with(&auth.date) {
        return Err(malformed(
            auth.kind,
            "Invalid credential date. Date is not the same as X-Amz-Date.",
        ));
    }
    Ok(())
}

/// Header auth: within 15 minutes of `now`. Presigned: started no more than 15 minutes in the future,
/// lifetime not yet over (a lifetime of 0 always is: 403 AccessDenied "Request has expired").
fn check_time(auth: &ParsedAuth, now: SystemTime) -> Result<(), S3Error> {
    let time =
        parse_amz_date(&auth.amz_date).ok_or_else(|| malformed(auth.kind, "invalid date"))?;
    let skewed = || {
        err(
            S3ErrorCode::RequestTimeTooSkewed,
            "The difference between the request time and the current time is too large.",
        )
        .with("RequestTime", auth.amz_date.clone())
        .with("ServerTime", format_amz_date(now))
        .with(
            "MaxAllowedSkewMilliseconds",
            MAX_SKEW.as_millis().to_string(),
        )
    };
    let future = time.duration_since(now).unwrap_or(Duration::ZERO);
    let past = now.duration_since(time).unwrap_or(Duration::ZERO);
    if future > MAX_SKEW {
        return Err(skewed());
    }
    match auth.kind {
        AuthKind::Header if past > MAX_SKEW => Err(skewed()),
        AuthKind::Header => Ok(()),
        AuthKind::Presigned { expires_secs } => {
            // A lifetime of 0 is over as soon as it starts (AWS: "Request has expired").
            if expires_secs == 0 || past > Duration::from_secs(expires_secs) {
                return Err(err(S3ErrorCode::AccessDenied, "Request has expired")
                    .with("X-Amz-Expires", expires_secs.to_string())
                    .with(
                        "Expires",
                        format_amz_date(time + Duration::from_secs(expires_secs)),
                    )
                    .with("ServerTime", format_amz_date(now)));
            }
            Ok(())
        }
    }
}

/// The canonical request, as bytes (header values need not be UTF-8). `Err(name)` when a signed header
/// is absent. `presigned` leaves `X-Amz-Signature` out of the query.
pub fn canonical_request(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    signed_headers: &[String],
    hashed_payload: &str,
    presigned: bool,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_uri(uri.path()).as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_query(uri.query().unwrap_or(""), presigned).as_bytes());
    out.push(b'\n');
    for name in signed_headers {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        canonical_header_value(uri, headers, name, &mut out).ok_or_else(|| name.clone())?;
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(signed_headers.join(";").as_bytes());
    out.push(b'\n');
    out.extend_from_slice(hashed_payload.as_bytes());
    Ok(out)
}

/// All values of one header, each trimmed of spaces (S3 trims spaces only) with inner runs of spaces
/// collapsed, joined by `,`. `host` falls back to the URI authority (HTTP/2 has no Host header).
/// `None` if absent.
fn canonical_header_value(
    uri: &Uri,
    headers: &HeaderMap,
    name: &str,
    out: &mut Vec<u8>,
) -> Option<()> {
    let mut values = headers
        .get_all(name)
        .iter()
        .map(HeaderValue::as_bytes)
        .peekable();
    if values.peek().is_none() {
        let authority = uri.authority().filter(|_| name == "host")?;
        out.extend_from_slice(authority.as_str().as_bytes());
        return Some(());
    }
    for (i, value) in values.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let start = value.iter().position(|&b| b != b' ').unwrap_or(value.len());
        let end = value
            .iter()
            .rposition(|&b| b != b' ')
            .map_or(start, |e| e + 1);
        let trimmed = &value[start..end];
        for (j, &b) in trimmed.iter().enumerate() {
            if b != b' ' || trimmed.get(j + 1) != Some(&b' ') {
                out.push(b);
            }
        }
    }
    Some(())
}

/// The path as received, each `/`-separated segment decoded then encoded once (so `%2F` inside a
/// segment stays `%2F`), never normalized. An empty path is `/`.
pub fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".to_string();
    }
    let segments: Vec<String> = path
        .split('/')
        .map(|segment| {
            url::encode_bytes(
                &url::decode_lenient(segment, Plus::Literal),
                Encode::Component,
            )
        })
        .collect();
    segments.join("/")
}

/// Query parameters decoded (`+` = space), re-encoded with the unreserved set, sorted by key then
/// value, `k=v` joined by `&` (a bare `k` is `k=`).
pub fn canonical_query(query: &str, skip_signature: bool) -> String {
    let canonical = |s| url::encode_bytes(&url::decode_lenient(s, Plus::Space), Encode::Component);
    let mut pairs: Vec<(String, String)> = url::split_query(query)
        .map(|(k, v)| (canonical(k), canonical(v)))
        .filter(|(k, _)| !(skip_signature && k == "X-Amz-Signature"))
        .collect();
    pairs.sort();
    let pairs: Vec<String> = pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.join("&")
}

/// Decoded query parameters, lossily as text (for reading the `X-Amz-*` parameters).
fn query_pairs(query: &str) -> Vec<(String, String)> {
    let text = |s| String::from_utf8_lossy(&url::decode_lenient(s, Plus::Space)).into_owned();
    url::split_query(query)
        .map(|(k, v)| (text(k), text(v)))
        .collect()
}

/// `AWS4-HMAC-SHA256\n<time>\n<scope>\n<hex sha256(canonical request)>`.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &[u8]) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request))
    )
}

/// The key derived from the secret for one day, region and service. It only changes daily, so callers
/// may cache it by (access key, date, region).
pub fn signing_key(secret_key: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac_sha256(format!("AWS4{secret_key}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, b"aws4_request")
}

/// HMAC-SHA256 (any key length is valid for HMAC, so this cannot fail).
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().into()
}

// ---------------------------------------------------------------------------------------------
// Client side: a small signer, for tests and tools.

/// Who signs, and for which region.
#[derive(Clone, Copy, Debug)]
pub struct Credentials<'a> {
    pub access_key: &'a str,
    pub secret_key: &'a str,
    pub region: &'a str,
}

/// A header-signed request: the `Authorization` value, and the context to sign aws-chunked bodies
/// (its `seed_signature` is the request signature).
#[derive(Clone, Debug)]
pub struct ClientSignature {
    pub authorization: String,
    pub context: SigningContext,
}

/// Signs a request in place the way an SDK would: adds `host` (from the URI authority),
/// `x-amz-date` (`now`) and `x-amz-content-sha256` (`UNSIGNED-PAYLOAD`) when absent, signs every
/// header present, and sets `Authorization`. Set `x-amz-content-sha256` beforehand for a literal hash
/// or a streaming mode.
pub fn sign(
    method: &Method,
    uri: &Uri,
    headers: &mut HeaderMap,
    creds: &Credentials<'_>,
    now: SystemTime,
) -> ClientSignature {
    headers.remove(header::AUTHORIZATION);
    insert_if_absent(headers, header::HOST, uri.authority().map(|a| a.as_str()));
    insert_if_absent(
        headers,
        HeaderName::from_static(X_AMZ_DATE),
        Some(&format_amz_date(now)),
    );
    insert_if_absent(
        headers,
        HeaderName::from_static(X_AMZ_CONTENT_SHA256),
        Some(UNSIGNED_PAYLOAD),
    );
    let amz_date = headers
        .get(X_AMZ_DATE)
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| format_amz_date(now), str::to_string);
    let mut names: Vec<String> = headers.keys().map(|n| n.as_str().to_string()).collect();
    names.sort();
    names.dedup();
    let hashed = headers
        .get(X_AMZ_CONTENT_SHA256)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(UNSIGNED_PAYLOAD);
    // Every name comes from `headers`, so no signed header can be missing.
    let canonical =
        canonical_request(method, uri, headers, &names, hashed, false).unwrap_or_default();
    let context = client_context(creds, &amz_date, &canonical);
    let authorization = format!(
        "{ALGORITHM} Credential={}/{}, SignedHeaders={}, Signature={}",
        creds.access_key,
        context.scope,
        names.join(";"),
        context.seed_signature
    );
    if let Ok(value) = HeaderValue::from_str(&authorization) {
        headers.insert(header::AUTHORIZATION, value);
    }
    ClientSignature {
        authorization,
        context,
    }
}

/// A presigned URL's query string for `uri` (its own query kept first), valid `expires_secs` from
/// `now`, signing only `host` (from `headers`, else the URI authority) with `UNSIGNED-PAYLOAD`.
pub fn presign(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    creds: &Credentials<'_>,
    now: SystemTime,
    expires_secs: u64,
) -> String {
    let amz_date = format_amz_date(now);
    let scope = format!("{}/{}/s3/aws4_request", &amz_date[..8], creds.region);
    let credential = uri_encode(&format!("{}/{scope}", creds.access_key), true);
    let auth_params = format!(
        "X-Amz-Algorithm={ALGORITHM}&X-Amz-Credential={credential}&X-Amz-Date={amz_date}\
         &X-Amz-Expires={expires_secs}&X-Amz-SignedHeaders=host"
    );
    let query = match uri.query() {
        Some(q) if !q.is_empty() => format!("{q}&{auth_params}"),
        _ => auth_params,
    };
    let with_query = Uri::builder()
        .path_and_query(format!("{}?{query}", uri.path()))
        .build()
        .unwrap_or_else(|_| uri.clone());
    let mut host_only = HeaderMap::new();
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    insert_if_absent(
        &mut host_only,
        header::HOST,
        host.or(uri.authority().map(|a| a.as_str())),
    );
    let canonical = canonical_request(
        method,
        &with_query,
        &host_only,
        &["host".to_string()],
        UNSIGNED_PAYLOAD,
        true,
    )
    .unwrap_or_default();
    let context = client_context(creds, &amz_date, &canonical);
    format!("{query}&X-Amz-Signature={}", context.seed_signature)
}

/// Signs a canonical request: the signing context whose seed is the request signature.
fn client_context(creds: &Credentials<'_>, amz_date: &str, canonical: &[u8]) -> SigningContext {
    let date = amz_date.get(..8).unwrap_or("");
    let scope = format!("{date}/{}/s3/aws4_request", creds.region);
    let key = signing_key(creds.secret_key, date, creds.region, "s3");
    let signature = hex::encode(hmac_sha256(
        &key,
        string_to_sign(amz_date, &scope, canonical).as_bytes(),
    ));
    SigningContext {
        signing_key: key,
        scope,
        amz_date: amz_date.to_string(),
        seed_signature: signature,
    }
}

fn insert_if_absent(headers: &mut HeaderMap, name: HeaderName, value: Option<&str>) {
    if headers.contains_key(&name) {
        return;
    }
    if let Some(value) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
        headers.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const AK: &str = "AKIAIOSFODNN7EXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const REGION: &str = "us-east-1";
    const CREDS: Credentials<'static> = Credentials {
        access_key: AK,
        secret_key: SECRET,
        region: REGION,
    };

    /// 2013-05-24T00:00:00Z, the time of every AWS example.
    fn t0() -> SystemTime {
        parse_amz_date("20130524T000000Z").unwrap()
    }

    fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> (Method, Uri, HeaderMap) {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        (method.parse().unwrap(), uri.parse().unwrap(), map)
    }

    fn auth_header(signed: &str, signature: &str) -> String {
        format!(
            "{ALGORITHM} Credential={AK}/20130524/{REGION}/s3/aws4_request,SignedHeaders={signed},Signature={signature}"
        )
    }

    /// Parses and verifies with the AWS example credentials.
    fn check(req: &(Method, Uri, HeaderMap), now: SystemTime) -> Result<SigningContext, S3Error> {
        let (method, uri, headers) = req;
        let auth = parse(method, uri, headers)?.expect("signed request");
        verify(&auth, method, uri, headers, SECRET, REGION, now)
    }

    fn get_object(signature: &str) -> (Method, Uri, HeaderMap) {
        let auth = auth_header("host;range;x-amz-content-sha256;x-amz-date", signature);
        request(
            "GET",
            "/test.txt",
            &[
                ("host", "examplebucket.s3.amazonaws.com"),
                ("range", "bytes=0-9"),
                ("x-amz-content-sha256", EMPTY_SHA256_HEX),
                ("x-amz-date", "20130524T000000Z"),
                ("authorization", &auth),
            ],
        )
    }

    const GET_OBJECT_SIG: &str = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41";

    #[test]
    fn aws_example_get_object() {
        let req = get_object(GET_OBJECT_SIG);
        let ctx = check(&req, t0()).unwrap();
        assert_eq!(ctx.seed_signature, GET_OBJECT_SIG);
        assert_eq!(ctx.scope, "20130524/us-east-1/s3/aws4_request");
        let auth = parse(&req.0, &req.1, &req.2).unwrap().unwrap();
        assert_eq!(auth.access_key, AK);
        assert_eq!(
            auth.content_sha256,
            ContentSha256::Literal(Sha256::digest(b"").into())
        );
        assert_eq!(auth.kind, AuthKind::Header);
    }

    #[test]
    fn client_signer_reproduces_get_object_example() {
        let (method, uri, mut headers) = request(
            "GET",
            "/test.txt",
            &[
                ("host", "examplebucket.s3.amazonaws.com"),
                ("range", "bytes=0-9"),
                ("x-amz-content-sha256", EMPTY_SHA256_HEX),
            ],
        );
        let signed = sign(&method, &uri, &mut headers, &CREDS, t0());
        assert_eq!(
            signed.authorization,
            format!(
                "{ALGORITHM} Credential={AK}/20130524/us-east-1/s3/aws4_request, \
                 SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature={GET_OBJECT_SIG}"
            )
        );
        check(&(method, uri, headers), t0()).unwrap();
    }

    #[test]
    fn aws_example_put_object() {
        let body_hash = hex::encode(Sha256::digest(b"Welcome to Amazon S3."));
        assert_eq!(
            body_hash,
            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
        );
        let auth = auth_header(
            "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
        );
        // `$` sent raw or percent-encoded canonicalizes the same way.
        for path in ["/test$file.text", "/test%24file.text"] {
            let req = request(
                "PUT",
                path,
                &[
                    ("host", "examplebucket.s3.amazonaws.com"),
                    ("date", "Fri, 24 May 2013 00:00:00 GMT"),
                    ("x-amz-date", "20130524T000000Z"),
                    ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
                    ("x-amz-content-sha256", &body_hash),
                    ("authorization", &auth),
                ],
            );
            check(&req, t0()).unwrap();
        }
    }

    #[test]
    fn aws_example_get_bucket_lifecycle_and_list_objects() {
        let cases = [
            (
                "/?lifecycle",
                "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
            ),
            (
                "/?max-keys=2&prefix=J",
                "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
            ),
        ];
        for (uri, sig) in cases {
            let auth = auth_header("host;x-amz-content-sha256;x-amz-date", sig);
            let req = request(
                "GET",
                uri,
                &[
                    ("host", "examplebucket.s3.amazonaws.com"),
                    ("x-amz-date", "20130524T000000Z"),
                    ("x-amz-content-sha256", EMPTY_SHA256_HEX),
                    ("authorization", &auth),
                ],
            );
            check(&req, t0()).unwrap();
        }
    }

    const PRESIGNED_QUERY: &str = "X-Amz-Algorithm=AWS4-HMAC-SHA256\
        &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
        &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
        &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";

    fn presigned(query: &str) -> (Method, Uri, HeaderMap) {
        request(
            "GET",
            &format!("/test.txt?{query}"),
            &[("host", "examplebucket.s3.amazonaws.com")],
        )
    }

    #[test]
    fn aws_example_presigned_get() {
        let req = presigned(PRESIGNED_QUERY);
        let auth = parse(&req.0, &req.1, &req.2).unwrap().unwrap();
        assert_eq!(
            auth.kind,
            AuthKind::Presigned {
                expires_secs: 86400
            }
        );
        assert_eq!(auth.content_sha256, ContentSha256::UnsignedPayload);
        check(&req, t0()).unwrap();
        check(&req, t0() + Duration::from_secs(86400)).unwrap();
        let (method, uri, headers) = request(
            "GET",
            "/test.txt",
            &[("host", "examplebucket.s3.amazonaws.com")],
        );
        assert_eq!(
            presign(&method, &uri, &headers, &CREDS, t0(), 86400),
            PRESIGNED_QUERY
        );
    }

    #[test]
    fn presigned_expired_or_too_early_or_too_long() {
        let req = presigned(PRESIGNED_QUERY);
        let e = check(&req, t0() + Duration::from_secs(86401)).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (S3ErrorCode::AccessDenied, "Request has expired")
        );
        let e = check(&req, t0() - Duration::from_secs(16 * 60)).unwrap_err();
        assert_eq!(e.code, S3ErrorCode::RequestTimeTooSkewed);
        check(&req, t0() - Duration::from_secs(14 * 60)).unwrap();
        // As AWS: a lifetime of 0 has expired even at its start, a lifetime of exactly a week is
        // fine, one second more (or a negative or non-numeric one) is a malformed query.
        let (method, uri, headers) = request("GET", "/test.txt", &[("host", "h")]);
        let at = |expires: u64, now: SystemTime| {
            let query = presign(&method, &uri, &headers, &CREDS, t0(), expires);
            check(&presigned_at("h", &query), now)
        };
        let e = at(0, t0()).unwrap_err();
        assert_eq!(
            (e.code, e.code.status().as_u16(), e.message.as_str()),
            (S3ErrorCode::AccessDenied, 403, "Request has expired")
        );
        let week = Duration::from_secs(MAX_PRESIGNED_EXPIRES);
        at(MAX_PRESIGNED_EXPIRES, t0() + week).unwrap();
        let e = at(MAX_PRESIGNED_EXPIRES, t0() + week + Duration::from_secs(1)).unwrap_err();
        assert_eq!(e.code, S3ErrorCode::AccessDenied);
        for (expires, message) in [
            (
                "604801",
                "X-Amz-Expires must be less than a week (in seconds) that is 604800",
            ),
            (
                "99999999999999999999",
                "X-Amz-Expires must be less than a week (in seconds) that is 604800",
            ),
            ("-1", "X-Amz-Expires must be non-negative"),
            ("1e3", "X-Amz-Expires should be a number"),
            ("+5", "X-Amz-Expires should be a number"),
        ] {
            let bad =
                PRESIGNED_QUERY.replace("X-Amz-Expires=86400", &format!("X-Amz-Expires={expires}"));
            let e = check(&presigned(&bad), t0()).unwrap_err();
            assert_eq!(
                (e.code, e.code.status().as_u16(), e.message.as_str()),
                (S3ErrorCode::AuthorizationQueryParametersError, 400, message),
                "{expires}"
            );
        }
    }

    fn presigned_at(host: &str, query: &str) -> (Method, Uri, HeaderMap) {
        request("GET", &format!("/test.txt?{query}"), &[("host", host)])
    }

    #[test]
    fn presigned_tampering_is_detected() {
        let extra = format!("{PRESIGNED_QUERY}&response-content-type=text%2Fplain");
        let e = check(&presigned(&extra), t0()).unwrap_err();
        assert_eq!(e.code, S3ErrorCode::SignatureDoesNotMatch);
        let e = check(
            &presigned_at("otherbucket.s3.amazonaws.com", PRESIGNED_QUERY),
            t0(),
        )
        .unwrap_err();
        assert_eq!(e.code, S3ErrorCode::SignatureDoesNotMatch);
        let missing = PRESIGNED_QUERY.replace("&X-Amz-SignedHeaders=host", "");
        assert_eq!(
            check(&presigned(&missing), t0()).unwrap_err().code,
            S3ErrorCode::AuthorizationQueryParametersError
        );
        let algo = PRESIGNED_QUERY.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA1");
        assert_eq!(
            check(&presigned(&algo), t0()).unwrap_err().code,
            S3ErrorCode::AuthorizationQueryParametersError
        );
    }

    #[test]
    fn presign_then_verify_keeps_existing_query() {
        let (method, uri, headers) = request(
            "GET",
            "http://h:3900/b/a%20key?versionId=x+y&partNumber=1",
            &[],
        );
        let query = presign(&method, &uri, &headers, &CREDS, t0(), 60);
        assert!(query.starts_with("versionId=x+y&partNumber=1&X-Amz-Algorithm="));
        let req = request("GET", &format!("/b/a%20key?{query}"), &[("host", "h:3900")]);
        check(&req, t0() + Duration::from_secs(30)).unwrap();
    }

    #[test]
    fn aws_example_chunked_seed_and_chunk_signatures() {
        let auth = auth_header(
            "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class",
            "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
        );
        let req = request(
            "PUT",
            "/examplebucket/chunkObject.txt",
            &[
                ("host", "s3.amazonaws.com"),
                ("x-amz-date", "20130524T000000Z"),
                ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
                ("x-amz-content-sha256", STREAMING_PAYLOAD),
                ("content-encoding", "aws-chunked"),
                ("x-amz-decoded-content-length", "66560"),
                ("content-length", "66824"),
                ("authorization", &auth),
            ],
        );
        let ctx = check(&req, t0()).unwrap();
        let chunk =
            |data: &[u8], prev: &str| ctx.chunk_signature(prev, &Sha256::digest(data).into());
        let c1 = chunk(&[b'a'; 65536], &ctx.seed_signature);
        assert_eq!(
            c1,
            "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
        );
        let c2 = chunk(&[b'a'; 1024], &c1);
        assert_eq!(
            c2,
            "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"
        );
        let c3 = chunk(b"", &c2);
        assert_eq!(
            c3,
            "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"
        );
    }

    #[test]
    fn aws_example_chunked_with_trailer_seed() {
        let auth = auth_header(
            "content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer",
            "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e",
        );
        let req = request(
            "PUT",
            "/examplebucket/chunkObject.txt",
            &[
                ("host", "s3.amazonaws.com"),
                ("x-amz-date", "20130524T000000Z"),
                ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
                ("x-amz-content-sha256", STREAMING_PAYLOAD_TRAILER),
                ("content-encoding", "aws-chunked"),
                ("x-amz-decoded-content-length", "66560"),
                ("x-amz-trailer", "x-amz-checksum-crc32c"),
                ("authorization", &auth),
            ],
        );
        let ctx = check(&req, t0()).unwrap();
        let auth = parse(&req.0, &req.1, &req.2).unwrap().unwrap();
        assert_eq!(auth.content_sha256, ContentSha256::StreamingSignedTrailer);
        let trailer = Sha256::digest(b"x-amz-checksum-crc32c:sOO8/Q==\n").into();
        let prev = "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992";
        assert_eq!(
            ctx.trailer_signature(prev, &trailer),
            "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435"
        );
    }

    #[test]
    fn tampering_is_detected() {
        let (method, uri, mut headers) = get_object(GET_OBJECT_SIG);
        headers.insert("range", HeaderValue::from_static("bytes=0-10"));
        let e = check(&(method, uri, headers), t0()).unwrap_err();
        assert_eq!(e.code, S3ErrorCode::SignatureDoesNotMatch);

        let (method, _, headers) = get_object(GET_OBJECT_SIG);
        let e = check(&(method, "/test.txt?x=1".parse().unwrap(), headers), t0()).unwrap_err();
        assert_eq!(e.code, S3ErrorCode::SignatureDoesNotMatch);

        let (method, uri, headers) = get_object(GET_OBJECT_SIG);
        let auth = parse(&method, &uri, &headers).unwrap().unwrap();
        let e = verify(&auth, &method, &uri, &headers, "wrong", REGION, t0()).unwrap_err();
        assert_eq!(e.code, S3ErrorCode::SignatureDoesNotMatch);
        let e = verify(&auth, &Method::PUT, &uri, &headers, SECRET, REGION, t0()).unwrap_err();
        assert_eq!(e.code, S3ErrorCode::SignatureDoesNotMatch);
    }

    #[test]
    fn clock_skew_is_limited_to_15_minutes() {
        let req = get_object(GET_OBJECT_SIG);
        for delta in [Duration::from_secs(14 * 60), Duration::from_secs(15 * 60)] {
            check(&req, t0() + delta).unwrap();
            check(&req, t0() - delta).unwrap();
        }
        for now in [
            t0() + Duration::from_secs(901),
            t0() - Duration::from_secs(901),
        ] {
            let e = check(&req, now).unwrap_err();
            assert_eq!(e.code, S3ErrorCode::RequestTimeTooSkewed);
            assert_eq!(e.status(), hyper::StatusCode::FORBIDDEN);
        }
    }

    #[test]
    fn wrong_region_names_the_right_one() {
        let (method, uri, headers) = get_object(GET_OBJECT_SIG);
        let auth = parse(&method, &uri, &headers).unwrap().unwrap();
        let e = verify(&auth, &method, &uri, &headers, SECRET, "garage", t0()).unwrap_err();
        assert_eq!(e.code, S3ErrorCode::AuthorizationHeaderMalformed);
        assert_eq!(e.extra, vec![("Region", "garage".to_string())]);
        let req = presigned(PRESIGNED_QUERY);
        let auth = parse(&req.0, &req.1, &req.2).unwrap().unwrap();
        let e = verify(&auth, &req.0, &req.1, &req.2, SECRET, "garage", t0()).unwrap_err();
        assert_eq!(e.code, S3ErrorCode::AuthorizationHeaderMalformed);
    }

    #[test]
    fn malformed_or_missing_authorization() {
        let parse_with = |headers: &[(&str, &str)], uri: &str| {
            let (m, u, h) = request("GET", uri, headers);
            parse(&m, &u, &h)
        };
        assert_eq!(parse_with(&[("host", "h")], "/").unwrap(), None);
        let code = |r: Result<Option<ParsedAuth>, S3Error>| r.unwrap_err().code;
        let sha = ("x-amz-content-sha256", EMPTY_SHA256_HEX);
        let date = ("x-amz-date", "20130524T000000Z");
        let good = auth_header("host;x-amz-date", GET_OBJECT_SIG);
        assert_eq!(
            code(parse_with(&[("authorization", &good), date], "/")),
            S3ErrorCode::InvalidRequest
        );
        assert_eq!(
            code(parse_with(
                &[("authorization", &good), sha, date],
                &format!("/?{PRESIGNED_QUERY}")
            )),
            S3ErrorCode::InvalidArgument
        );
        assert_eq!(
            code(parse_with(
                &[("authorization", "AWS AK:sig"), sha, date],
                "/"
            )),
            S3ErrorCode::InvalidRequest
        );
        assert_eq!(
            code(parse_with(&[], "/?AWSAccessKeyId=AK&Signature=x&Expires=1")),
            S3ErrorCode::InvalidRequest
        );
        assert_eq!(
            code(parse_with(&[("authorization", &good), sha], "/")),
            S3ErrorCode::AccessDenied
        );
        let bad_date = ("x-amz-date", "20130532T000000Z");
        assert_eq!(
            code(parse_with(&[("authorization", &good), sha, bad_date], "/")),
            S3ErrorCode::AccessDenied
        );
        let bad_sha = ("x-amz-content-sha256", "abc");
        assert_eq!(
            code(parse_with(&[("authorization", &good), bad_sha, date], "/")),
            S3ErrorCode::InvalidArgument
        );
        for bad in [
            format!(
                "{ALGORITHM} Credential={AK}/20130524/{REGION}/s3/aws4_request,SignedHeaders=host"
            ),
            format!(
                "{ALGORITHM} Credential={AK}/20130524/{REGION}/s3,SignedHeaders=host,Signature=00"
            ),
            format!(
                "{ALGORITHM} Credential={AK}/2013052/{REGION}/s3/aws4_request,SignedHeaders=host,Signature=0"
            ),
            format!(
                "{ALGORITHM} Credential={AK}/20130524/{REGION}/s3/aws4_request,SignedHeaders=a;;b,Signature=0"
            ),
            format!(
                "{ALGORITHM} Credential={AK}/20130524/{REGION}/s3/aws4_request,Foo=1,Signature=0"
            ),
        ] {
            let r = parse_with(&[("authorization", &bad), sha, date], "/");
            assert_eq!(code(r), S3ErrorCode::AuthorizationHeaderMalformed, "{bad}");
        }
    }

    #[test]
    fn scope_host_and_signed_headers_are_checked() {
        let verify_with = |auth: &str, extra: &[(&str, &str)]| {
            let mut headers = vec![
                ("host", "h"),
                ("x-amz-content-sha256", EMPTY_SHA256_HEX),
                ("x-amz-date", "20130524T000000Z"),
                ("authorization", auth),
            ];
            headers.extend_from_slice(extra);
            check(&request("GET", "/", &headers), t0())
                .unwrap_err()
                .code
        };
        let no_host = auth_header("x-amz-date", GET_OBJECT_SIG);
        assert_eq!(
            verify_with(&no_host, &[]),
            S3ErrorCode::AuthorizationHeaderMalformed
        );
        let missing = auth_header("host;x-amz-meta-a", GET_OBJECT_SIG);
        assert_eq!(
            verify_with(&missing, &[]),
            S3ErrorCode::AuthorizationHeaderMalformed
        );
        let ec2 = auth_header("host", GET_OBJECT_SIG).replace("/s3/", "/ec2/");
        assert_eq!(
            verify_with(&ec2, &[]),
            S3ErrorCode::AuthorizationHeaderMalformed
        );
        let other_day = auth_header("host", GET_OBJECT_SIG).replace("20130524", "20130523");
        assert_eq!(
            verify_with(&other_day, &[]),
            S3ErrorCode::AuthorizationHeaderMalformed
        );
    }

    #[test]
    fn every_x_amz_header_present_must_be_signed() {
        // The AWS GetObject example, validly signed, plus one header added after signing: refused
        // before the signature is even looked at, for any x-amz-* header (it could change what the
        // request does), and both for header auth and presigned URLs.
        let (method, uri, headers) = get_object(GET_OBJECT_SIG);
        check(&(method.clone(), uri.clone(), headers.clone()), t0()).unwrap();
        for added in [
            "x-amz-copy-source",
            "x-amz-copy-source-range",
            "x-amz-metadata-directive",
            "x-amz-meta-owner",
            "x-amz-checksum-crc32",
            "x-amz-acl",
            "x-amz-tagging",
        ] {
            let mut h = headers.clone();
            h.insert(
                HeaderName::from_static(added),
                HeaderValue::from_static("anything"),
            );
            let e = check(&(method.clone(), uri.clone(), h), t0()).unwrap_err();
            assert_eq!(e.code, S3ErrorCode::AccessDenied, "{added}");
            assert_eq!(e.extra, vec![("HeadersNotSigned", added.to_string())]);
        }
        let presigned = presigned_at("examplebucket.s3.amazonaws.com", PRESIGNED_QUERY);
        check(&presigned, t0()).unwrap();
        let (method, uri, mut headers) = presigned;
        headers.insert("x-amz-copy-source", HeaderValue::from_static("b/secret"));
        let e = check(&(method, uri, headers), t0()).unwrap_err();
        assert_eq!(e.code, S3ErrorCode::AccessDenied);
    }

    #[test]
    fn date_header_can_replace_x_amz_date() {
        let (method, uri, mut headers) = request(
            "GET",
            "/b/k",
            &[
                ("host", "h"),
                ("date", "Fri, 24 May 2013 00:00:00 GMT"),
                ("x-amz-content-sha256", UNSIGNED_PAYLOAD),
            ],
        );
        let signed: Vec<String> = ["date", "host", "x-amz-content-sha256"]
            .map(String::from)
            .into();
        let canonical =
            canonical_request(&method, &uri, &headers, &signed, UNSIGNED_PAYLOAD, false).unwrap();
        let ctx = client_context(&CREDS, "20130524T000000Z", &canonical);
        let auth = auth_header("date;host;x-amz-content-sha256", &ctx.seed_signature);
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(&auth).unwrap());
        let parsed = parse(&method, &uri, &headers).unwrap().unwrap();
        assert_eq!(parsed.amz_date, "20130524T000000Z");
        assert_eq!(parsed.content_sha256, ContentSha256::UnsignedPayload);
        check(&(method, uri, headers), t0()).unwrap();
    }

    #[test]
    fn canonical_pieces_follow_s3_rules() {
        assert_eq!(uri_encode("a b/ü*~+", false), "a%20b/%C3%BC%2A~%2B");
        assert_eq!(uri_encode("a/b", true), "a%2Fb");
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(
            canonical_uri("/my-object//example//photo.user"),
            "/my-object//example//photo.user"
        );
        assert_eq!(
            canonical_uri("/photos%2Fmonth/a%20b+c*.txt"),
            "/photos%2Fmonth/a%20b%2Bc%2A.txt"
        );
        assert_eq!(canonical_uri("/a/%zz/%c3%a4"), "/a/%25zz/%C3%A4");
        assert_eq!(canonical_uri("/./../x"), "/./../x");
        assert_eq!(canonical_query("b=2&a=2&a=1", false), "a=1&a=2&b=2");
        assert_eq!(
            canonical_query("prefix=a+b%2a~&uploads", false),
            "prefix=a%20b%2A~&uploads="
        );
        assert_eq!(canonical_query("z=1&%C3%A4=1", false), "%C3%A4=1&z=1");
        assert_eq!(canonical_query("X-Amz-Signature=1&a=", true), "a=");
    }

    proptest! {
        /// Whatever the key and query, what the client signer signs the verifier accepts.
        #[test]
        fn sign_then_verify(key in "\\PC{1,40}", value in "\\PC{0,20}", skew in 0u64..900) {
            let path = format!("/bucket/{}", uri_encode(&key, false));
            let uri: Uri = format!("http://127.0.0.1:3900{path}?q={}", uri_encode(&value, true)).parse().unwrap();
            let mut headers = HeaderMap::new();
            headers.insert("x-amz-meta-a", HeaderValue::from_static("  two  spaces  "));
            let signed = sign(&Method::PUT, &uri, &mut headers, &CREDS, t0());
            let server_uri: Uri = format!("{path}?q={}", uri_encode(&value, true)).parse().unwrap();
            let auth = parse(&Method::PUT, &server_uri, &headers).unwrap().unwrap();
            let ctx = verify(&auth, &Method::PUT, &server_uri, &headers, SECRET, REGION, t0() + Duration::from_secs(skew)).unwrap();
            prop_assert_eq!(ctx.seed_signature, signed.context.seed_signature);
        }

        /// Arbitrary header values never panic the parser.
        #[test]
        fn parse_never_panics(value in "[ -~]{0,200}", query in "[ -~&=%]{0,200}") {
            let mut headers = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(header::AUTHORIZATION, v);
            }
            let query: String = query.chars().filter(|c| c.is_ascii_alphanumeric() || "&=%-_.~".contains(*c)).collect();
            if let Ok(uri) = format!("/?{query}").parse::<Uri>() {
                let _ = parse(&Method::GET, &uri, &headers);
            }
        }
    }
}

/// Property-based fuzzing of the parsers and the canonicalizer (case count: `PROPTEST_CASES`,
/// default 256; `script/fuzz` runs them for a given time).
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;
    use std::time::UNIX_EPOCH;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const REGION: &str = "us-east-1";

    fn t0() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_369_353_600)
    }

    /// Strings made of what query strings, paths and auth headers are made of, including broken
    /// escapes and multi-byte characters.
    fn urlish() -> impl Strategy<Value = String> {
        let atoms = prop::sample::select(vec![
            "%",
            "%2",
            "%2F",
            "%2f",
            "%zz",
            "%+F",
            "%-1",
            "%C3%A4",
            "%FF",
            "+",
            "=",
            "&",
            "/",
            "?",
            "#",
            " ",
            "a",
            "Z",
            "0",
            "-",
            "_",
            ".",
            "~",
            "*",
            "ä",
            "😀",
            "\u{0}",
            "\t",
            ";",
            ",",
            "X-Amz-Signature",
            "X-Amz-Algorithm",
            "X-Amz-Credential",
            "X-Amz-Date",
            "X-Amz-Expires",
            "X-Amz-SignedHeaders",
            "AWS4-HMAC-SHA256",
            "AWSAccessKeyId",
            "20130524T000000Z",
            "aws4_request",
            "Credential",
            "SignedHeaders",
            "Signature",
        ]);
        prop::collection::vec(atoms, 0..40).prop_map(|v| v.concat())
    }

    /// Bytes a header value may hold (visible ASCII, space, tab, obs-text).
    fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![
                8 => 0x20u8..0x7f,
                1 => Just(b'\t'),
                1 => 0x80u8..=0xff,
            ],
            0..80,
        )
    }

    /// A query parameter name that does not collide with the authentication parameters.
    fn param_name() -> impl Strategy<Value = String> {
        "\\PC{1,12}".prop_filter("not an auth parameter", |k| {
            let k = k.to_ascii_lowercase();
            !k.starts_with("x-amz-") && k != "awsaccesskeyid"
        })
    }

    fn encode_query(pairs: &[(String, String)]) -> String {
        pairs
            .iter()
            .map(|(k, v)| format!("{}={}", uri_encode(k, true), uri_encode(v, true)))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// Encodes like a sloppy but correct client: lowercase hex, `+` for spaces, unreserved
    /// characters sometimes escaped anyway.
    fn sloppy_encode(s: &str, salt: u64) -> String {
        let mut out = String::new();
        for (i, &b) in s.as_bytes().iter().enumerate() {
            let coin = (salt >> (i % 64)) & 1 == 1;
            if b == b' ' && coin {
                out.push('+');
            } else if b.is_ascii_alphanumeric() && !coin {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02x}"));
            }
        }
        out
    }

    proptest! {
        /// Nothing a client sends makes `parse` (then `verify`) panic.
        #[test]
        fn parse_and_verify_never_panic(
            auth in prop::option::of(header_bytes()),
            date in prop::option::of(header_bytes()),
            sha in prop::option::of(header_bytes()),
            query in urlish(),
            path in urlish(),
        ) {
            let mut headers = HeaderMap::new();
            for (name, value) in [
                (header::AUTHORIZATION.as_str(), auth),
                (X_AMZ_DATE, date),
                (X_AMZ_CONTENT_SHA256, sha),
            ] {
                if let Some(v) = value.and_then(|v| HeaderValue::from_bytes(&v).ok()) {
                    headers.insert(HeaderName::from_static(name), v);
                }
            }
            let path = format!("/{}", path.trim_start_matches('/'));
            let Ok(uri) = format!("{path}?{query}").parse::<Uri>() else {
                return Ok(());
            };
            if let Ok(Some(auth)) = parse(&Method::GET, &uri, &headers) {
                let _ = verify(&auth, &Method::GET, &uri, &headers, SECRET, REGION, t0());
            }
        }

        /// A well-formed Authorization header with arbitrary pieces: no panic, and a bad one is a
        /// 4xx error.
        #[test]
        fn structured_auth_headers_never_panic(
            credential in urlish(), signed in urlish(), signature in urlish(), sep in "[ ,]{1,3}",
            date in "[0-9T Z]{0,18}",
        ) {
            let value = format!("{ALGORITHM}{sep}Credential={credential},SignedHeaders={signed},Signature={signature}");
            let mut headers = HeaderMap::new();
            let Ok(v) = HeaderValue::from_str(&value) else { return Ok(()) };
            headers.insert(header::AUTHORIZATION, v);
            if let Ok(d) = HeaderValue::from_str(&date) {
                headers.insert(X_AMZ_DATE, d);
            }
            headers.insert(X_AMZ_CONTENT_SHA256, HeaderValue::from_static(UNSIGNED_PAYLOAD));
            let uri: Uri = "/b/k".parse().unwrap();
            match parse(&Method::PUT, &uri, &headers) {
                Ok(Some(auth)) => {
                    if let Err(e) = verify(&auth, &Method::PUT, &uri, &headers, SECRET, REGION, t0()) {
                        prop_assert!(e.status().is_client_error(), "{:?}", e);
                    }
                }
                Ok(None) => prop_assert!(false, "an Authorization header is never anonymous"),
                Err(e) => prop_assert!(e.status().is_client_error(), "{:?}", e),
            }
        }

        /// The canonical pieces are total, ASCII, and idempotent (canonicalizing twice changes
        /// nothing), and decoding never grows a string.
        #[test]
        fn canonicalizer_is_total_and_idempotent(s in urlish(), any in "\\PC{0,40}", skip in any::<bool>()) {
            for s in [&s, &any] {
                for plus in [Plus::Literal, Plus::Space] {
                    prop_assert!(url::decode_lenient(s, plus).len() <= s.len());
                }
                let uri = canonical_uri(s);
                prop_assert!(uri.is_ascii());
                prop_assert_eq!(canonical_uri(&uri), uri.clone());
                let q = canonical_query(s, skip);
                prop_assert!(q.is_ascii());
                prop_assert_eq!(canonical_query(&q, skip), q.clone());
                if skip {
                    prop_assert!(!q.split('&').any(|p| p.starts_with("X-Amz-Signature=")));
                }
            }
        }

        /// Equivalent encodings of the same parameters canonicalize the same (so a client's
        /// choice of escaping never breaks its signature).
        #[test]
        fn equivalent_query_encodings_canonicalize_alike(
            pairs in prop::collection::vec(("\\PC{0,8}", "\\PC{0,8}"), 0..6), salt in any::<u64>(),
        ) {
            let strict = encode_query(&pairs);
            let sloppy = pairs
                .iter()
                .enumerate()
                .map(|(i, (k, v))| format!("{}={}", sloppy_encode(k, salt.rotate_left(i as u32)), sloppy_encode(v, !salt)))
                .collect::<Vec<_>>()
                .join("&");
            prop_assert_eq!(canonical_query(&strict, false), canonical_query(&sloppy, false));
            let path: String = pairs.iter().map(|(k, _)| format!("/{}", uri_encode(k, true))).collect();
            let sloppy_path: String = pairs
                .iter()
                .map(|(k, _)| format!("/{}", sloppy_encode(k, salt).replace('+', "%20")))
                .collect();
            prop_assert_eq!(canonical_uri(&path), canonical_uri(&sloppy_path));
        }

        /// S3 canonical header values: spaces trimmed, inner runs collapsed, nothing else touched.
        #[test]
        fn header_values_canonicalize_as_s3_does(value in header_bytes()) {
            let Ok(v) = HeaderValue::from_bytes(&value) else { return Ok(()) };
            let mut headers = HeaderMap::new();
            headers.insert("x-amz-meta-v", v);
            let uri: Uri = "/".parse().unwrap();
            let canonical = canonical_request(&Method::GET, &uri, &headers, &["x-amz-meta-v".into()], "", false).unwrap();
            let line = canonical.split(|&b| b == b'\n').nth(3).unwrap().to_vec();
            let expected: Vec<u8> = value
                .split(|&b| b == b' ')
                .filter(|w| !w.is_empty())
                .collect::<Vec<_>>()
                .join(&b' ');
            prop_assert_eq!(line, [&b"x-amz-meta-v:"[..], &expected].concat());
        }

        /// Dates: any string parses or not without panicking, and what parses prints back the
        /// same; every representable second round-trips.
        #[test]
        fn amz_dates(s in "[0-9TZ+\\-]{14,18}", any in "\\PC{0,20}", secs in 0u64..253_402_300_800) {
            for s in [&s, &any] {
                if let Some(t) = parse_amz_date(s) {
                    prop_assert_eq!(&format_amz_date(t), s);
                }
            }
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            prop_assert_eq!(parse_amz_date(&format_amz_date(t)), Some(t));
        }

        /// Whatever the key, query parameters and extra headers, a header-signed request verifies;
        /// changing any signed part of it afterwards makes it fail.
        #[test]
        fn sign_then_verify_any_request(
            key in "\\PC{1,30}",
            pairs in prop::collection::vec((param_name(), "\\PC{0,12}"), 0..5),
            metas in prop::collection::vec(("[a-z0-9-]{1,12}", "[!-~]([ -~]{0,20}[!-~])?"), 0..4),
            method in prop::sample::select(vec![Method::GET, Method::PUT, Method::POST, Method::DELETE, Method::HEAD]),
            skew in 0u64..900,
            tamper in 0usize..4,
        ) {
            let path = format!("/bucket/{}", uri_encode(&key, false));
            let query = encode_query(&pairs);
            let mut headers = HeaderMap::new();
            for (name, value) in &metas {
                headers.append(
                    HeaderName::from_bytes(format!("x-amz-meta-{name}").as_bytes()).unwrap(),
                    HeaderValue::from_str(value).unwrap(),
                );
            }
            let client_uri: Uri = format!("http://127.0.0.1:3900{path}?{query}").parse().unwrap();
            let signed = sign(&method, &client_uri, &mut headers, &Credentials { access_key: "AK", secret_key: SECRET, region: REGION }, t0());
            let server_uri: Uri = format!("{path}?{query}").parse().unwrap();
            let now = t0() + Duration::from_secs(skew);
            let auth = parse(&method, &server_uri, &headers).unwrap().unwrap();
            let ctx = verify(&auth, &method, &server_uri, &headers, SECRET, REGION, now).unwrap();
            prop_assert_eq!(&ctx.seed_signature, &signed.context.seed_signature);

            // Tampering: another key, another query, another header value, another method.
            let (mut m, mut uri, mut h) = (method.clone(), server_uri.clone(), headers.clone());
            match tamper {
                0 => uri = format!("{path}x?{query}").parse().unwrap(),
                1 => uri = format!("{path}?{query}&tampered=1").parse().unwrap(),
                2 => {
                    h.insert("x-amz-meta-zz-tampered", HeaderValue::from_static("1"));
                    let names = auth.signed_headers.join(";");
                    let value = signed.authorization.replace(&format!("SignedHeaders={names}"), &format!("SignedHeaders={names};x-amz-meta-zz-tampered"));
                    h.insert(header::AUTHORIZATION, HeaderValue::from_str(&value).unwrap());
                }
                _ => m = if method == Method::GET { Method::HEAD } else { Method::GET },
            }
            let auth = parse(&m, &uri, &h).unwrap().unwrap();
            prop_assert!(verify(&auth, &m, &uri, &h, SECRET, REGION, now).is_err());
        }

        /// A presigned URL for any key and query verifies until it expires, and not after.
        #[test]
        fn presign_then_verify_any_request(
            key in "\\PC{1,30}",
            pairs in prop::collection::vec((param_name(), "\\PC{0,12}"), 0..5),
            expires in 1u64..=MAX_PRESIGNED_EXPIRES,
            age in 0u64..=MAX_PRESIGNED_EXPIRES,
        ) {
            let path = format!("/bucket/{}", uri_encode(&key, false));
            let query = encode_query(&pairs);
            let client_uri: Uri = format!("http://127.0.0.1:3900{path}?{query}").parse().unwrap();
            let creds = Credentials { access_key: "AK", secret_key: SECRET, region: REGION };
            let q = presign(&Method::GET, &client_uri, &HeaderMap::new(), &creds, t0(), expires);
            let server_uri: Uri = format!("{path}?{q}").parse().unwrap();
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:3900"));
            let auth = parse(&Method::GET, &server_uri, &headers).unwrap().unwrap();
            let r = verify(&auth, &Method::GET, &server_uri, &headers, SECRET, REGION, t0() + Duration::from_secs(age));
            if age <= expires {
                prop_assert!(r.is_ok(), "{:?}", r.err());
            } else {
                prop_assert_eq!(r.unwrap_err().code, S3ErrorCode::AccessDenied);
            }
        }

        /// The router's decoding (util::url's strict mode) agrees with the canonicalizer's (its
        /// lenient mode) on every string it accepts (what is signed is what is executed).
        #[test]
        fn router_decoding_agrees_with_canonical_decoding(s in urlish()) {
            if let Ok(decoded) = url::decode(&s, Plus::Literal) {
                prop_assert_eq!(decoded.into_bytes(), url::decode_lenient(&s, Plus::Literal));
            }
            if let Ok(decoded) = url::decode(&s, Plus::Space) {
                prop_assert_eq!(decoded.into_bytes(), url::decode_lenient(&s, Plus::Space));
            }
            let _ = url::parse_query(&s);
            // And through the router itself: the key it executes on is the one signed.
            if let Ok(r) = routed(&format!("/bucket/{s}"), None) {
                let key = r.key.unwrap_or_default().into_bytes();
                prop_assert_eq!(key, url::decode_lenient(&s, Plus::Literal));
            }
        }
    }

    fn routed(path: &str, query: Option<&str>) -> Result<crate::s3::router::Route, S3Error> {
        let headers = HeaderMap::new();
        crate::s3::router::route(&Method::GET, Some("localhost"), path, query, &headers, None)
    }

    /// Found by `router_decoding_agrees_with_canonical_decoding`: the router decoded `%+F` (as
    /// `from_str_radix` accepts a sign) while the canonicalizer keeps it literal, so the operation
    /// ran on another name than the one signed. Now the router refuses it, as any bad escape.
    #[test]
    fn router_refuses_signed_hex_escapes() {
        for s in ["%+F", "a%+0b", "%-1"] {
            assert!(url::decode(s, Plus::Literal).is_err(), "{s}");
            assert!(url::parse_query(&format!("k={s}")).is_err(), "{s}");
            assert!(routed(&format!("/bucket/{s}"), None).is_err(), "{s}");
            assert!(routed("/bucket/k", Some(&format!("k={s}"))).is_err(), "{s}");
        }
        assert_eq!(url::decode("%2Fa%2f", Plus::Literal).unwrap(), "/a/");
        let r = routed("/bucket/%2Fa%2f", None).unwrap();
        assert_eq!(r.key.as_deref(), Some("/a/"));
    }
}
