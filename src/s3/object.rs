//! GetObject, HeadObject, PutObject, DeleteObject.

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::{Response, StatusCode};

use super::access::{Decision, ObjectAcl, Principal, decide};
use super::body::{Digester, Digests, Wanted, digesting};
use super::checksum::{Checksum, RequestChecksum, content_md5, md5_mismatch, request_checksum};
use super::ctx::{Ctx, ReqBody, ResBody, empty, full, internal, no_such_key, respond};
use super::error::{S3Error, S3ErrorCode, err};
use super::router::Op;
use super::sigv4::ContentSha256;
use super::sse::{self, KeyFor};
use super::xml;
use crate::model::ModelError;
use crate::model::object::{ObjectData, ObjectMeta, ObjectVersion};
use crate::model::ops::{PutUpload, StoredBody};
use crate::model::sse::CustomerKey;
use crate::util::{rfc2047, timefmt};

/// Largest single PUT (as AWS: 5 GiB; larger objects use multipart uploads).
pub const MAX_PUT_SIZE: u64 = 5 << 30;
/// Largest total size of user metadata (`x-amz-meta-*` names and values), as AWS.
pub const MAX_USER_META: usize = 2048;

/// Headers stored with an object and returned by GET/HEAD.
const STORED_HEADERS: [&str; 6] = [
    "content-type",
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "expires",
];

/// The response headers to store from a PUT (or CreateMultipartUpload) request.
pub fn headers_to_store(ctx: &Ctx) -> Result<Vec<(String, String)>, S3Error> {
    let mut out = vec![];
    let mut user = 0;
    for (name, value) in ctx.headers.iter() {
        let n = name.as_str();
        // Values beyond visible ASCII are kept, not dropped (see util::rfc2047).
        let v = &rfc2047::header_text(value.as_bytes());
        if n == "content-encoding" {
            // aws-chunked is transport framing, not the object's encoding.
            let rest: Vec<&str> = v
                .split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty() && *e != "aws-chunked")
                .collect();
            if !rest.is_empty() {
                out.push((n.to_string(), rest.join(", ")));
            }
        } else if STORED_HEADERS.contains(&n) {
            out.push((n.to_string(), v.to_string()));
        } else if let Some(m) = n.strip_prefix("x-amz-meta-") {
            let v = rfc2047::decode(value.as_bytes());
            user += m.len() + v.len();
            out.push((n.to_string(), v));
        }
    }
    if user > MAX_USER_META {
        return Err(err(
            S3ErrorCode::MetadataTooLarge,
            "Your metadata headers exceed the maximum allowed metadata size (2 KB).",
        ));
    }
    Ok(out)
}

/// The ETag of a new body: its MD5, or random when it is stored encrypted (see
/// [`crate::model::sse::random_etag`]).
pub fn etag_of(md5: [u8; 16], key: Option<&CustomerKey>) -> String {
    match key {
        Some(_) => crate::model::sse::random_etag(),
        None => hex::encode(md5),
    }
}

/// A body received and stored, with its verified digests.
pub struct Received {
    pub stored: StoredBody,
    pub len: u64,
    pub md5: [u8; 16],
    pub checksum: Option<Checksum>,
}

/// What a request announces of its body, to check once it is received.
struct Announced {
    /// Content-Length (the decoded length of an aws-chunked body).
    declared: Option<u64>,
    md5_expected: Option<[u8; 16]>,
    checksum: Option<RequestChecksum>,
    wanted: Wanted,
}

/// The request's announced length (refused past `max`), Content-MD5 and checksum.
fn announced(ctx: &Ctx, max: u64) -> Result<Announced, S3Error> {
    let declared = ctx
        .header("x-amz-decoded-content-length")
        .or(ctx.header("content-length"))
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|l| l > max) {
        return Err(err(
            S3ErrorCode::EntityTooLarge,
            "Your proposed upload exceeds the maximum allowed size.",
        ));
    }
    let md5_expected = content_md5(&ctx.headers)?;
    let checksum = request_checksum(&ctx.headers)?;
    let wanted = Wanted {
        sha256: matches!(ctx.content_sha256, ContentSha256::Literal(_)),
        checksum: checksum.as_ref().map(|c| c.algorithm),
    };
    Ok(Announced {
        declared,
        md5_expected,
        checksum,
        wanted,
    })
}

/// Receive a request body into `upload` (blocks written as it arrives), computing and checking the
/// digests the request announced (Content-Length, Content-MD5, a literal x-amz-content-sha256,
/// x-amz-checksum-* in a header or trailer). On any failure the upload is aborted.
pub async fn receive(ctx: &mut Ctx, upload: &PutUpload, max: u64) -> Result<Received, S3Error> {
    let Announced {
        declared,
        md5_expected,
        checksum,
        wanted,
    } = announced(ctx, max)?;
    let (stored, d) = store_stream(upload, ctx.take_body(), wanted, max).await?;
    let verdict = verify_digests(ctx, &d, declared, md5_expected, checksum.as_ref());
    match verdict {
        Ok(checksum) => Ok(Received {
            stored,
            len: d.len,
            md5: d.md5,
            checksum,
        }),
        Err(e) => {
            let _ = upload.abort(Some(&stored)).await;
            Err(e)
        }
    }
}

/// [`receive`], running `on_end` as soon as the whole body was received and its digests checked
/// (size, MD5, the checksum to store), while its last blocks may still be in flight: the two go on
/// in parallel, and both must succeed. The first failure cancels the other.
pub async fn receive_then<T, Fut>(
    ctx: &mut Ctx,
    upload: &PutUpload,
    max: u64,
    on_end: impl FnOnce(u64, [u8; 16], Option<Checksum>) -> Fut,
) -> Result<(Received, T), S3Error>
where
    Fut: std::future::Future<Output = Result<T, S3Error>>,
{
    let Announced {
        declared,
        md5_expected,
        checksum,
        wanted,
    } = announced(ctx, max)?;
    let digester = Digester::start(wanted);
    let body = digesting(ctx.take_body(), digester.sender(), max);
    let ctx: &Ctx = ctx;
    let write = async { upload.write(body).await.map_err(body_error) };
    // The digester finishes when the write lets the body go, at its end (`PutUpload::write`).
    let end = async {
        let d = digester.finish().await?;
        let checksum = verify_digests(ctx, &d, declared, md5_expected, checksum.as_ref())?;
        let t = on_end(d.len, d.md5, checksum.clone()).await?;
        Ok::<_, S3Error>((d, checksum, t))
    };
    match futures::future::try_join(write, end).await {
        Ok((stored, (d, checksum, t))) => Ok((
            Received {
                stored,
                len: d.len,
                md5: d.md5,
                checksum,
            },
            t,
        )),
        Err(e) => {
            let _ = upload.abort(None).await;
            Err(e)
        }
    }
}

/// Write a body stream into `upload` while a dedicated thread computes its digests. On failure the
/// upload is aborted and the body's own S3 error (e.g. a bad chunk signature) is returned.
pub async fn store_stream(
    upload: &PutUpload,
    body: ReqBody,
    wanted: Wanted,
    max: u64,
) -> Result<(StoredBody, Digests), S3Error> {
    let digester = Digester::start(wanted);
    let body = digesting(body, digester.sender(), max);
    match upload.write(body).await {
        Ok(stored) => Ok((stored, digester.finish().await?)),
        Err(e) => {
            let _ = upload.abort(None).await;
            Err(body_error(e))
        }
    }
}

/// The S3 error of a failed write: the body's own error when the body stream failed (the model keeps
/// it, boxed, in `ModelError::Body`), else an internal error (or 503 when replicas are missing).
fn body_error(e: ModelError) -> S3Error {
    match e {
        ModelError::Body(b) => match b.downcast::<S3Error>() {
            Ok(s3) => *s3,
            Err(other) => internal(ModelError::Body(other)),
        },
        e => internal(e),
    }
}

/// Compare what was received with what the request announced; returns the checksum to store.
fn verify_digests(
    ctx: &Ctx,
    d: &Digests,
    declared: Option<u64>,
    md5_expected: Option<[u8; 16]>,
    checksum: Option<&RequestChecksum>,
) -> Result<Option<Checksum>, S3Error> {
    if declared.is_some_and(|l| l != d.len) {
        return Err(err(
            S3ErrorCode::IncompleteBody,
            "You did not provide the number of bytes specified by the Content-Length HTTP header.",
        ));
    }
    if md5_expected.is_some_and(|m| m != d.md5) {
        return Err(md5_mismatch());
    }
    if let (ContentSha256::Literal(exp), Some(got)) = (&ctx.content_sha256, d.sha256)
        && *exp != got
    {
        return Err(err(
            S3ErrorCode::XAmzContentSHA256Mismatch,
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        ));
    }
    let (Some(req), Some(got)) = (checksum, &d.checksum) else {
        return Ok(None);
    };
    let expected = match &req.expected {
        Some(e) => Some(e.clone()),
        None if req.in_trailer => {
            let t = ctx
                .trailers
                .as_ref()
                .and_then(|t| t.checksum(req.algorithm).transpose());
            Some(t.ok_or_else(|| {
                err(
                    S3ErrorCode::InvalidRequest,
                    format!(
                        "The request announced an {} trailer but the body did not carry it.",
                        req.algorithm.header_name()
                    ),
                )
            })??)
        }
        None => None,
    };
    if let Some(e) = &expected {
        got.check(e)?;
    }
    Ok(Some(got.clone()))
}

pub async fn put_object(ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    let headers = headers_to_store(ctx)?;
    let sse_key = sse::customer_key(&ctx.headers, KeyFor::Target)?;
    let attrs = super::tagging::requested_attrs(ctx)?;
    let model = ctx.model().clone();
    let upload = model
        .start_put(
            ctx.bucket().id,
            ctx.object_key().to_string(),
            headers.clone(),
        )
        .encrypted(sse_key.clone());
    let Received {
        stored,
        len,
        md5,
        checksum: checksum_value,
    } = receive(ctx, &upload, MAX_PUT_SIZE).await?;
    let etag = etag_of(md5, sse_key.as_ref());
    let encryption = sse_key.as_ref().map(CustomerKey::encryption);
    let meta = ObjectMeta {
        size: len,
        etag: etag.clone(),
        headers,
        checksum: checksum_value
            .as_ref()
            .map(|c| (c.algorithm.as_str().to_string(), c.to_base64())),
        parts: None,
        encryption: encryption.clone(),
    };
    upload.commit(stored, meta, attrs).await.map_err(internal)?;
    let mut r = Response::builder()
        .status(StatusCode::OK)
        .header("etag", format!("\"{etag}\""));
    r = sse::response_headers(r, encryption.as_ref());
    if let Some(c) = &checksum_value {
        r = r.header(c.algorithm.header_name(), c.to_base64());
    }
    respond(r, full(Bytes::new()))
}

pub async fn delete_object(ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    ctx.model()
        .delete_object(&ctx.bucket().id, ctx.object_key())
        .await
        .map_err(internal)?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// The byte range a GET asks for, validated against the object size.
fn parse_range(h: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, S3Error> {
    let Some(spec) = h.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None); // several ranges: S3 answers with the whole object
    }
    let (a, b) = spec.split_once('-').unwrap_or((spec, ""));
    let (a, b) = (a.trim(), b.trim());
    let unsatisfiable = || {
        err(
            S3ErrorCode::InvalidRange,
            "The requested range is not satisfiable",
        )
        .with("RangeRequested", format!("bytes={spec}"))
        .with("ActualObjectSize", size.to_string())
    };
    let range = match (decimal(a), decimal(b)) {
        (Some(start), Some(end)) if start <= end => (start, end.saturating_add(1).min(size)),
        (Some(start), _) if b.is_empty() => (start, size),
        (None, Some(n)) if a.is_empty() && n > 0 => (size.saturating_sub(n), size),
        _ => return Ok(None), // not a valid range header: ignored, as HTTP says
    };
    if range.0 >= size {
        return Err(unsatisfiable());
    }
    Ok(Some(range))
}

/// A byte position of a range header: ASCII digits only (`u64::from_str` alone takes a `+`). A
/// position too large for u64 is still a position, past the end of any object: `u64::MAX`.
pub(super) fn decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(s.parse().unwrap_or(u64::MAX))
}

/// Whether an `If-Match`/`If-None-Match` style header (a list of ETags, or `*`) names `etag`.
pub(super) fn etag_matches(header: &str, etag: &str) -> bool {
    header
        .split(',')
        .map(|t| t.trim().trim_start_matches("W/").trim_matches('"'))
        .any(|t| t == "*" || t == etag)
}

pub(super) fn precondition_failed() -> S3Error {
    err(
        S3ErrorCode::PreconditionFailed,
        "At least one of the pre-conditions you specified did not hold",
    )
}

/// `If-*` preconditions (RFC 7232 order, as S3 applies them).
fn check_preconditions(ctx: &Ctx, etag: &str, modified_msec: u64) -> Result<(), S3Error> {
    let matches = |h: &str| etag_matches(h, etag);
    let modified_secs = modified_msec / 1000;
    let since = timefmt::parse_http_date;
    let failed = precondition_failed;
    let not_modified = || err(S3ErrorCode::NotModified, "Not Modified");
    if let Some(h) = ctx.header("if-match") {
        if !matches(h) {
            return Err(failed());
        }
    } else if let Some(t) = ctx.header("if-unmodified-since").and_then(since)
        && modified_secs > t
    {
        return Err(failed());
    }
    if let Some(h) = ctx.header("if-none-match") {
        if matches(h) {
            return Err(not_modified());
        }
    } else if let Some(t) = ctx.header("if-modified-since").and_then(since)
        && modified_secs <= t
    {
        return Err(not_modified());
    }
    Ok(())
}

/// The object's current version and its metadata, else `NoSuchKey`.
pub(super) async fn current(ctx: &Ctx) -> Result<(ObjectVersion, ObjectMeta), S3Error> {
    let object = ctx
        .model()
        .get_object(&ctx.bucket().id, ctx.object_key())
        .await
        .map_err(internal)?;
    let current = object.as_ref().and_then(|o| o.current());
    // Before anything else is answered (404, 304, 412): an anonymous request for a private or
    // absent object learns nothing.
    ctx.check_object(current)?;
    let version = current.cloned();
    let meta = version
        .as_ref()
        .and_then(|v| v.data())
        .and_then(ObjectData::meta)
        .cloned();
    version.zip(meta).ok_or_else(|| no_such_key(ctx))
}

pub async fn get_object(ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    let model = ctx.model().clone();
    let (version, meta) = current(ctx).await?;
    let sse_key = sse::customer_key(&ctx.headers, KeyFor::Target)?;
    sse::check_read(meta.encryption.as_ref(), sse_key.as_ref())?;
    let last_modified = version.timestamp.msec;
    check_preconditions(ctx, &meta.etag, last_modified).map_err(|e| {
        if e.code == S3ErrorCode::NotModified {
            // 304 carries the validators.
            e.with("ETag", format!("\"{}\"", meta.etag))
        } else {
            e
        }
    })?;
    let mut range = parse_range(ctx.header("range"), meta.size)?;
    if let Some(p) = ctx.route.query.get("partNumber") {
        let n = super::ctx::part_number(p)?;
        let invalid = || {
            err(
                S3ErrorCode::InvalidPart,
                "The requested partnumber is not satisfiable",
            )
        };
        range = match meta.parts {
            None if n == 1 => Some((0, meta.size)),
            None => return Err(invalid()),
            Some(_) => Some(
                model
                    .part_range(&version, n)
                    .await
                    .map_err(internal)?
                    .ok_or_else(invalid)?,
            ),
        };
    }
    let (begin, end) = range.unwrap_or((0, meta.size));
    let mut r = Response::builder()
        .status(if range.is_some() {
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        })
        .header("etag", format!("\"{}\"", meta.etag))
        .header("last-modified", timefmt::http_date(last_modified))
        .header("accept-ranges", "bytes")
        .header("content-length", (end - begin).to_string());
    r = sse::response_headers(r, meta.encryption.as_ref());
    if range.is_some() {
        r = r.header(
            "content-range",
            format!("bytes {begin}-{}/{}", end.saturating_sub(1), meta.size),
        );
    }
    let mut has_type = false;
    for (n, v) in &meta.headers {
        has_type |= n == "content-type";
        let v = if n.starts_with("x-amz-meta-") {
            rfc2047::encode(v)
        } else {
            v.into()
        };
        r = r.header(n.as_str(), v.as_ref());
    }
    if !has_type {
        r = r.header("content-type", "binary/octet-stream");
    }
    // The tag count, to whoever may read the tags (as S3).
    let tags = version.tag_set().len();
    if tags > 0
        && decide(
            &ctx.principal,
            Op::GetObjectTagging,
            ctx.bucket.as_ref(),
            ObjectAcl::Known(version.canned_acl()),
        ) == Decision::Allow
    {
        r = r.header("x-amz-tagging-count", tags.to_string());
    }
    if let Some(parts) = meta.parts
        && ctx.route.query.contains_key("partNumber")
    {
        r = r.header("x-amz-mp-parts-count", parts.to_string());
    }
    // A checksum describes the whole object: not sent with a range (as S3).
    if range.is_none()
        && ctx
            .header("x-amz-checksum-mode")
            .is_some_and(|m| m.eq_ignore_ascii_case("enabled"))
        && let Some((alg, value)) = &meta.checksum
        && let Some(a) = super::checksum::ChecksumAlgorithm::parse(alg)
    {
        r = r.header(a.header_name(), value.as_str()).header(
            "x-amz-checksum-type",
            super::mpu_checksum::stored_type(value),
        );
    }
    // As AWS: an anonymous request may not rewrite the response headers (a link to a public file with
    // `response-content-type=text/html` would make a user's upload a page of the store's domain).
    if matches!(ctx.principal, Principal::Anonymous)
        && ctx.route.query.keys().any(|q| q.starts_with("response-"))
    {
        return Err(err(
            S3ErrorCode::InvalidRequest,
            "Request specific response headers cannot be used for anonymous GET requests.",
        ));
    }
    for (q, h) in [
        ("response-content-type", "content-type"),
        ("response-content-language", "content-language"),
        ("response-expires", "expires"),
        ("response-cache-control", "cache-control"),
        ("response-content-disposition", "content-disposition"),
        ("response-content-encoding", "content-encoding"),
    ] {
        if let Some(v) = ctx.route.query.get(q) {
            // Decoded from the query, so it may hold anything (control characters, line breaks).
            let value = hyper::header::HeaderValue::from_str(v).map_err(|_| {
                err(
                    S3ErrorCode::InvalidArgument,
                    format!("The value of {q} is not a valid header value."),
                )
                .with("ArgumentName", q.to_string())
            })?;
            if let Some(hs) = r.headers_mut() {
                hs.remove(h);
            }
            r = r.header(h, value);
        }
    }
    if ctx.method == hyper::Method::HEAD || begin == end {
        return respond(r, full(Bytes::new()));
    }
    let stream = model
        .read_object(
            &version,
            begin,
            end,
            crate::model::ops::GET_READ_AHEAD,
            sse_key.as_ref(),
        )
        .await
        .map_err(internal)?;
    let body = StreamBody::new(stream.map(|c| {
        c.map(Frame::data)
            .map_err(|e| std::io::Error::other(e.to_string()))
    }));
    respond(r, BodyExt::boxed_unsync(body))
}

/// Deletions of one DeleteObjects request run this many at a time.
const DELETE_CONCURRENCY: usize = 32;

pub async fn delete_objects(ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    let body = super::ctx::small_body(ctx, ctx.state.xml_body_max).await?;
    super::ctx::check_small_body_digests(&ctx.headers, &body)?;
    let req = xml::parse_delete(&body)?;
    let model = ctx.model().clone();
    let bucket = ctx.bucket().id;
    let results: Vec<_> = futures::stream::iter(req.objects)
        .map(|o| {
            let model = model.clone();
            async move {
                let r = if o.key.is_empty() || o.key.len() > super::router::MAX_KEY_LEN {
                    Err((S3ErrorCode::InvalidArgument, "Invalid key".to_string()))
                } else {
                    model.delete_object(&bucket, &o.key).await.map_err(|e| {
                        let s = internal(e);
                        (s.code, s.message)
                    })
                };
                (o, r)
            }
        })
        .buffered(DELETE_CONCURRENCY)
        .collect()
        .await;
    let mut doc = xml::DeleteResult::default();
    for (o, r) in results {
        match r {
            Ok(()) if req.quiet => (),
            Ok(()) => doc.deleted.push(xml::DeletedObject {
                key: o.key,
                version_id: o.version_id,
                delete_marker: None,
                delete_marker_version_id: None,
            }),
            Err((code, message)) => doc.errors.push(xml::DeleteError {
                key: o.key,
                version_id: o.version_id,
                code,
                message,
            }),
        }
    }
    Ok(super::ctx::xml_response(doc.to_xml()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_error_comes_back_as_the_s3_error() {
        // The body stream's own S3 error travels through the model unchanged...
        let too_large = err(S3ErrorCode::EntityTooLarge, "too large");
        let e = ModelError::Body(Box::new(too_large.clone()));
        assert_eq!(body_error(e), too_large);
        // ...another error of a body stream, or of the model, is an internal error.
        let io = std::io::Error::other("reset");
        assert_eq!(
            body_error(ModelError::Body(Box::new(io))).code,
            S3ErrorCode::InternalError
        );
        assert_eq!(
            body_error(ModelError::Invalid("x".into())).code,
            S3ErrorCode::InternalError
        );
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range(Some("bytes=0-0"), 10).unwrap(), Some((0, 1)));
        assert_eq!(parse_range(Some("bytes=2-"), 10).unwrap(), Some((2, 10)));
        assert_eq!(parse_range(Some("bytes=-3"), 10).unwrap(), Some((7, 10)));
        assert_eq!(parse_range(Some("bytes=-30"), 10).unwrap(), Some((0, 10)));
        assert_eq!(parse_range(Some("bytes=5-100"), 10).unwrap(), Some((5, 10)));
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10).unwrap(), None);
        assert_eq!(parse_range(Some("items=0-1"), 10).unwrap(), None);
        assert_eq!(parse_range(None, 10).unwrap(), None);
        assert_eq!(
            parse_range(Some("bytes=2-99999999999999999999"), 10).unwrap(),
            Some((2, 10))
        );
        for huge in ["bytes=99999999999999999999-", "bytes=18446744073709551615-"] {
            let e = parse_range(Some(huge), 10).unwrap_err();
            assert_eq!(e.code, S3ErrorCode::InvalidRange);
        }
        let e = parse_range(Some("bytes=10-"), 10).unwrap_err();
        assert_eq!(e.code, S3ErrorCode::InvalidRange);
        assert!(parse_range(Some("bytes=0-"), 0).is_err());
    }
}

/// Property-based fuzzing of the Range and `If-*` header parsing (case count: `PROPTEST_CASES`,
/// default 256; `script/fuzz` runs them for a given time).
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// RFC 9110 single byte range, as the reference: `bytes=first-[last]` or `bytes=-suffix`,
    /// digits only; anything else is ignored (`Ok(None)`).
    fn model(h: &str, size: u64) -> Result<Option<(u64, u64)>, ()> {
        let Some(spec) = h.trim().strip_prefix("bytes=") else {
            return Ok(None);
        };
        if spec.contains(',') {
            return Ok(None);
        }
        let (a, b) = spec.split_once('-').unwrap_or((spec, ""));
        let num = |s: &str| {
            let s = s.trim();
            if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
                None
            } else {
                // 1*DIGIT: a position too large for u64 is still a position (past any end).
                Some(s.parse::<u64>().unwrap_or(u64::MAX))
            }
        };
        let range = match (num(a), num(b)) {
            (Some(first), Some(last)) if first <= last => (first, last.saturating_add(1).min(size)),
            (Some(first), None) if b.trim().is_empty() => (first, size),
            (None, Some(n)) if a.trim().is_empty() && n > 0 => (size.saturating_sub(n), size),
            _ => return Ok(None),
        };
        if range.0 >= size {
            return Err(());
        }
        Ok(Some(range))
    }

    /// `<unit>=<first><sep><last><rest>`, each piece usual or odd.
    fn rangeish() -> impl Strategy<Value = String> {
        let number = (
            prop::sample::select(vec!["", "", "", "+", "-", " ", "\t", "x"]),
            prop_oneof![
                "[0-9]{0,3}",
                Just("18446744073709551615".to_string()),
                Just("18446744073709551616".to_string()),
            ],
            prop::sample::select(vec!["", "", "", " ", "x", "é"]),
        )
            .prop_map(|(pre, digits, post)| format!("{pre}{digits}{post}"));
        (
            prop::sample::select(vec!["bytes=", " bytes= ", "bytes", "Bytes=", "items=", ""]),
            number.clone(),
            prop::sample::select(vec!["-", "-", "", "--", ",", "-,", "="]),
            number,
            prop::sample::select(vec!["", "", ",0-1", " ", "-"]),
        )
            .prop_map(|(unit, a, sep, b, rest)| format!("{unit}{a}{sep}{b}{rest}"))
    }

    proptest! {
        /// Any Range header: never a panic, and exactly what RFC 9110 says (a satisfiable range
        /// within the object, InvalidRange, or ignored).
        #[test]
        fn range_parsing_follows_the_rfc(
            h in prop_oneof![rangeish(), "\\PC{0,30}"],
            size in prop_oneof![0u64..20, any::<u64>()],
        ) {
            let got = parse_range(Some(&h), size);
            if let Ok(Some((a, b))) = got {
                prop_assert!(a < b && b <= size);
            }
            match (got, model(&h, size)) {
                (Ok(g), Ok(m)) => prop_assert_eq!(g, m, "{:?}", h),
                (Err(e), Err(())) => prop_assert_eq!(e.code, S3ErrorCode::InvalidRange),
                (g, m) => prop_assert!(false, "{:?}: got {:?}, expected {:?}", h, g, m),
            }
        }

        /// If-Match / If-None-Match lists: any value is safe, and a list naming the ETag (quoted,
        /// weak or not, among others) matches it.
        #[test]
        fn etag_lists(
            h in "\\PC{0,40}",
            etag in "[0-9a-f]{1,32}(-[0-9]{1,5})?",
            others in prop::collection::vec("[0-9a-f]{1,32}", 0..3),
            weak in any::<bool>(),
        ) {
            let _ = etag_matches(&h, &etag);
            let mut list: Vec<String> = others.iter().map(|o| format!("\"{o}x\"")).collect();
            prop_assert!(!etag_matches(&list.join(", "), &etag) || list.is_empty());
            list.insert(list.len() / 2, format!("{}\"{etag}\"", if weak { "W/" } else { "" }));
            prop_assert!(etag_matches(&list.join(" ,"), &etag));
            prop_assert!(etag_matches("*", &etag));
        }

        /// If-Modified-Since and friends: any value is safe, and every HTTP date we write reads
        /// back as its second.
        #[test]
        fn http_dates(h in "\\PC{0,40}", msec in 0u64..253_402_300_800_000) {
            let _ = timefmt::parse_http_date(&h);
            prop_assert_eq!(timefmt::parse_http_date(&timefmt::http_date(msec)), Some(msec / 1000));
        }

        /// Part numbers from the query: any string is safe, and accepted ones are 1..=10000.
        #[test]
        fn part_numbers(s in "\\PC{0,12}", n in any::<u32>()) {
            if let Ok(n) = crate::s3::ctx::part_number(&s) {
                prop_assert!((1..=10_000).contains(&n));
            }
            prop_assert_eq!(crate::s3::ctx::part_number(&n.to_string()).is_ok(), (1..=10_000).contains(&n));
        }
    }

    /// Found by `range_parsing_follows_the_rfc`: `u64::from_str` takes a leading `+`, so
    /// `bytes=+1-` was served as a range; RFC 9110 positions are digits only (else the header is
    /// ignored and the whole object sent, as for any invalid range).
    #[test]
    fn range_positions_are_digits_only() {
        for h in ["bytes=+1-", "bytes=1-+5", "bytes=-+3", "bytes=+0-+0"] {
            assert_eq!(parse_range(Some(h), 10).unwrap(), None, "{h}");
        }
        assert_eq!(
            parse_range(Some("bytes= 1 - 5 "), 10).unwrap(),
            Some((1, 6))
        );
    }
}
