//! What every S3 handler shares: the request context [`Ctx`] (route, key, resolved bucket, body) and
//! the server state it points to, the body types, and the helpers that build responses and turn model
//! failures into S3 errors. Handlers (`bucket.rs`, `object.rs`, …) import this module; `server.rs`
//! imports the handlers, so neither depends back on the other.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::{HeaderMap, Method, Response, StatusCode};

use super::access::{Decision, ObjectAcl, Principal, decide};
use super::error::{S3Error, S3ErrorCode, err};
use super::router::Route;
use super::sigv4::ContentSha256;
use super::streaming::Trailers;
use crate::model::bucket::Bucket;
use crate::model::key::Key;
use crate::model::multipart::MAX_PART_NUMBER;
use crate::model::object::ObjectVersion;
use crate::model::{Model, ModelError};

pub type ResBody = UnsyncBoxBody<Bytes, std::io::Error>;
/// A request body as decoded bytes (plain or aws-chunked), with S3 errors.
pub type ReqBody = std::pin::Pin<Box<dyn futures::Stream<Item = Result<Bytes, S3Error>> + Send>>;

pub struct S3State {
    pub model: Arc<Model>,
    pub region: String,
    pub root_domain: Option<String>,
    /// `[s3_api] xml_body_max`: largest XML request body read.
    pub xml_body_max: usize,
}

/// Everything a handler needs about a request that passed authentication and permission checks.
pub struct Ctx {
    pub state: Arc<S3State>,
    pub route: Route,
    pub method: Method,
    pub headers: HeaderMap,
    /// Who is asking: a key whose signature was checked, or anonymous.
    pub principal: Principal,
    /// The request is allowed only if the object it reads turns out to be readable by its principal
    /// ([`Decision::DependsOnObject`](super::access::Decision)): the handler decides again once it has
    /// read the object's entry.
    pub object_check: bool,
    /// The bucket, resolved (for operations on a bucket or an object).
    pub bucket: Option<Bucket>,
    pub content_sha256: ContentSha256,
    /// In a mutex only so that `&Ctx` can be held across awaits (the stream itself is not `Sync`).
    pub body: std::sync::Mutex<Option<ReqBody>>,
    /// Trailers of an aws-chunked body, once it has been read.
    pub trailers: Option<Trailers>,
}

impl Ctx {
    pub fn model(&self) -> &Arc<Model> {
        &self.state.model
    }
    pub fn bucket(&self) -> &Bucket {
        self.bucket
            .as_ref()
            .expect("resolved for bucket operations")
    }
    pub fn bucket_name(&self) -> &str {
        self.route.bucket.as_deref().unwrap_or("")
    }
    pub fn object_key(&self) -> &str {
        self.route.key.as_deref().unwrap_or("")
    }
    pub fn take_body(&mut self) -> ReqBody {
        self.body
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_else(|| Box::pin(futures::stream::empty()))
    }
    /// The request's key; AccessDenied for an anonymous request (which the permission check only lets
    /// through to operations that need no key).
    pub fn key(&self) -> Result<&Key, S3Error> {
        self.principal
            .key()
            .ok_or_else(super::access::access_denied)
    }
    /// For a request let through with [`Ctx::object_check`]: whether the object (its current version,
    /// None when absent) is readable by the principal. AccessDenied otherwise (also when absent, so
    /// that nothing is learnt of what exists).
    pub fn check_object(&self, current: Option<&ObjectVersion>) -> Result<(), S3Error> {
        if !self.object_check {
            return Ok(());
        }
        let acl = current.map_or(ObjectAcl::Absent, |v| ObjectAcl::Known(v.canned_acl()));
        match decide(&self.principal, self.route.op, self.bucket.as_ref(), acl) {
            Decision::Allow => Ok(()),
            Decision::Deny | Decision::DependsOnObject => Err(super::access::access_denied()),
        }
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub fn no_such_bucket(name: &str) -> S3Error {
    err(
        S3ErrorCode::NoSuchBucket,
        "The specified bucket does not exist",
    )
    .with("BucketName", name)
}

/// A model failure as S3 sees it.
pub fn internal(e: ModelError) -> S3Error {
    if matches!(e, ModelError::VersionGone) {
        // A version an overwrite superseded meanwhile (a read of it, or a PUT whose clock was behind
        // and could not write itself above): retrying reads, or writes above, the new one.
        S3Error {
            detail: Some(e.to_string()),
            ..S3Error::new(
                S3ErrorCode::ServiceUnavailable,
                "The object was overwritten by another request meanwhile. Please retry.",
            )
        }
    } else if e.is_unavailable() {
        S3Error::internal(S3ErrorCode::ServiceUnavailable, e.to_string())
    } else {
        S3Error::internal(S3ErrorCode::InternalError, e.to_string())
    }
}

/// Finish a response. Header values may come from a request or stored metadata: one the builder
/// refuses becomes an error answer (logged), never a panic of the connection's task.
pub fn respond(
    r: hyper::http::response::Builder,
    body: ResBody,
) -> Result<Response<ResBody>, S3Error> {
    r.body(body).map_err(|e| {
        S3Error::internal(
            S3ErrorCode::InternalError,
            format!("invalid response header: {e}"),
        )
    })
}

pub fn full(b: impl Into<Bytes>) -> ResBody {
    Full::new(b.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

pub fn empty(status: StatusCode) -> Response<ResBody> {
    Response::builder()
        .status(status)
        .body(full(Bytes::new()))
        .expect("valid static parts")
}

pub fn xml_response(body: String) -> Response<ResBody> {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/xml")
        .body(full(body))
        .expect("valid static parts")
}

/// Check a small body against a literal `x-amz-content-sha256`.
pub fn check_sha256(sha: &ContentSha256, body: &[u8]) -> Result<(), S3Error> {
    if let ContentSha256::Literal(expected) = sha {
        let got: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(body).into();
        if &got != expected {
            return Err(err(
                S3ErrorCode::XAmzContentSHA256Mismatch,
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            ));
        }
    }
    Ok(())
}

/// Read a small body (XML) fully, checking its payload hash.
pub async fn small_body(ctx: &mut Ctx, max: usize) -> Result<Bytes, S3Error> {
    let body = ctx.take_body();
    let b = super::body::collect_small(body.boxed(), max).await?;
    check_sha256(&ctx.content_sha256, &b)?;
    Ok(b)
}

/// Check a small body read whole (XML) against the Content-MD5 and `x-amz-checksum-*` headers it
/// came with (`BadDigest` on a mismatch).
pub fn check_small_body_digests(headers: &HeaderMap, body: &[u8]) -> Result<(), S3Error> {
    use super::checksum::{compute, content_md5, md5_mismatch, request_checksum};
    if let Some(expected) = content_md5(headers)? {
        let got: [u8; 16] = <md5::Md5 as md5::Digest>::digest(body).into();
        if got != expected {
            return Err(md5_mismatch());
        }
    }
    if let Some(req) = request_checksum(headers)?
        && let Some(expected) = &req.expected
    {
        compute(req.algorithm, body).check(expected)?;
    }
    Ok(())
}

pub fn no_such_key(ctx: &Ctx) -> S3Error {
    err(S3ErrorCode::NoSuchKey, "The specified key does not exist.").with("Key", ctx.object_key())
}

/// The current version of the request's object, for an operation on it (`versionId` checked by
/// [`current_version_only`]); NoSuchKey when there is none.
pub async fn current_version(ctx: &Ctx) -> Result<ObjectVersion, S3Error> {
    current_version_only(ctx)?;
    ctx.model()
        .get_object(&ctx.bucket().id, ctx.object_key())
        .await
        .map_err(internal)?
        .and_then(|o| o.current().cloned())
        .ok_or_else(|| no_such_key(ctx))
}

/// A `versionId` query parameter of an operation on an object's current version: versioning is not
/// supported, so only `null` (the id S3 gives objects of unversioned buckets) names it.
pub fn current_version_only(ctx: &Ctx) -> Result<(), S3Error> {
    match ctx.route.query.get("versionId").map(String::as_str) {
        None | Some("null") => Ok(()),
        Some(_) => Err(
            err(S3ErrorCode::InvalidArgument, "Invalid version id specified")
                .with("ArgumentName", "versionId"),
        ),
    }
}

/// A `partNumber` query parameter: 1 to 10000 (`InvalidArgument` otherwise).
pub fn part_number(s: &str) -> Result<u32, S3Error> {
    s.parse::<u32>()
        .ok()
        .filter(|n| (1..=MAX_PART_NUMBER).contains(n))
        .ok_or_else(|| {
            err(
                S3ErrorCode::InvalidArgument,
                "Part number must be an integer between 1 and 10000, inclusive",
            )
            .with("ArgumentName", "partNumber")
        })
}
