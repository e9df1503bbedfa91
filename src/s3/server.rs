//! The S3 HTTP server: one hyper 1 connection task per client, and for each request: route it,
//! authenticate it (SigV4), check the key's permission on the bucket, run the operation, and turn any
//! failure into S3's XML error with its HTTP status and a request id.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use bytes::Bytes;
use futures::TryStreamExt;
use http_body_util::BodyStream;
use hyper::{HeaderMap, Method, Request, Response, StatusCode};

use super::access::{self, Decision, ObjectAcl, Principal};
use super::ctx::{Ctx, ReqBody, ResBody, S3State, empty, full, internal, no_such_bucket};
use super::error::{S3Error, S3ErrorCode, err};
use super::router::{Access, Op, Route, route};
use super::sigv4::{self, ContentSha256, SigningContext};
use super::streaming::{ChunkedDecoder, StreamingMode, Trailers};
use super::{
    acl, attributes, bucket, copy, cors, lifecycle, list, multipart, object, post_object, tagging,
    website, xml,
};
use crate::model::Model;
use crate::model::bucket::Bucket;
use crate::model::key::Key;
use crate::model::object::CannedAcl;
use crate::util::http::{HttpLimits, RequestBody};

/// Largest request header section accepted (bytes); a larger one gets a 431 from hyper before routing.
pub const MAX_HEADER_BYTES: usize = 16 << 10;

/// Serve the S3 API on `addr` until the returned task is aborted or `drain` starts.
pub async fn serve(
    addr: SocketAddr,
    limits: HttpLimits,
    state: Arc<S3State>,
    drain: crate::util::http::Drain,
) -> Result<tokio::task::JoinHandle<()>, std::io::Error> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    Ok(crate::util::http::serve_http1(
        listener,
        limits,
        MAX_HEADER_BYTES.max(8192),
        state,
        handle,
        drain,
    ))
}

async fn handle(state: Arc<S3State>, req: Request<RequestBody>) -> Response<ResBody> {
    let request_id = hex::encode(crate::model::random_bytes::<8>()).to_uppercase();
    let resource = req.uri().path().to_string();
    let head = req.method() == Method::HEAD;
    // botocore before 1.43.77 (every aws CLI 1.x) sends `Expect: 100-continue` on empty PUTs and then
    // misreads the next response on the connection if no `100 Continue` came (none is due when the
    // body is empty): closing such a connection after the response avoids a 60 s stall.
    let close = req
        .headers()
        .get("expect")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
        && req
            .headers()
            .get("content-length")
            .is_some_and(|v| v.as_bytes() == b"0");
    // CORS: the bucket's grant is added to whatever the answer is, errors included.
    let cors_request = cors::CorsRequest::of(&state, &req);
    let mut resp = match handle_inner(state, req).await {
        Ok(r) => r,
        Err(e) => {
            if let Some(detail) = &e.detail {
                tracing::warn!(request_id, code = e.code.as_str(), "{detail}");
            }
            error_response(&e, &resource, &request_id, head)
        }
    };
    if let Some(c) = &cors_request {
        c.add_headers(&mut resp);
    }
    let h = resp.headers_mut();
    if let Ok(v) = request_id.parse() {
        h.insert("x-amz-request-id", v);
    }
    h.insert("server", hyper::header::HeaderValue::from_static("Grenier"));
    if close {
        h.insert(
            "connection",
            hyper::header::HeaderValue::from_static("close"),
        );
    }
    resp
}

pub fn error_response(
    e: &S3Error,
    resource: &str,
    request_id: &str,
    head: bool,
) -> Response<ResBody> {
    let body = if head || e.code == S3ErrorCode::NotModified {
        Bytes::new()
    } else {
        Bytes::from(xml::error_xml(e, resource, request_id))
    };
    let mut r = Response::builder()
        .status(e.status())
        .header("content-type", "application/xml");
    for (name, value) in &e.extra {
        let Ok(value) = hyper::header::HeaderValue::from_str(value) else {
            continue;
        };
        match *name {
            "Region" => r = r.header("x-amz-bucket-region", value),
            "ETag" if e.code == S3ErrorCode::NotModified => r = r.header("etag", value),
            _ => (),
        }
    }
    r.body(full(body)).expect("valid static parts")
}

async fn handle_inner(
    state: Arc<S3State>,
    req: Request<RequestBody>,
) -> Result<Response<ResBody>, S3Error> {
    let (parts, body) = req.into_parts();
    let host = parts
        .headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .or(parts.uri.host());
    let r = route(
        &parts.method,
        host,
        parts.uri.path(),
        parts.uri.query(),
        &parts.headers,
        state.root_domain.as_deref(),
    )?;
    if r.op == Op::PostObject {
        return form_upload(state, r, parts, body).await;
    }
    // A CORS preflight carries no credentials: answered from the bucket's rules, never signed.
    if r.op == Op::Options {
        let bucket = match r.bucket.as_deref() {
            Some(name) => state.model.bucket_by_name_local(name).map_err(internal)?,
            None => None,
        };
        return cors::preflight(bucket.as_ref(), &parts.headers);
    }
    let Some(auth) = sigv4::parse(&parts.method, &parts.uri, &parts.headers)? else {
        return anonymous(state, r, parts).await;
    };
    let key = state
        .model
        .key_for_request(&auth.access_key)
        .await
        .map_err(internal)?
        .ok_or_else(|| {
            err(
                S3ErrorCode::InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records.",
            )
        })?;
    let secret = key.params().map(|p| p.secret.clone()).unwrap_or_default();
    let signing = sigv4::verify(
        &auth,
        &parts.method,
        &parts.uri,
        &parts.headers,
        &secret,
        &state.region,
        SystemTime::now(),
    )?;
    let first = authorize(&state.model, &key, &r).await;
    // This node's copy of the key may be a moment behind a permission or a local bucket name given
    // through another node: ask a majority before saying no (or before leaving it to the object).
    let stale = match &first {
        Err(e) => matches!(
            e.code,
            S3ErrorCode::AccessDenied | S3ErrorCode::NoSuchBucket
        ),
        Ok((_, decision)) => *decision == Decision::DependsOnObject,
    };
    let (key, (bucket, decision)) = if stale {
        match state
            .model
            .key_by_id_fresh(&key.id)
            .await
            .map_err(internal)?
        {
            Some(fresh) => {
                let again = authorize(&state.model, &fresh, &r).await?;
                (fresh, again)
            }
            None => (key, first?),
        }
    } else {
        (key, first?)
    };
    let (body, trailers) = request_body(body, &parts.headers, &auth.content_sha256, signing)?;
    let mut ctx = Ctx {
        state: state.clone(),
        route: r,
        method: parts.method,
        headers: parts.headers,
        principal: Principal::Key(key),
        object_check: decision == Decision::DependsOnObject,
        bucket,
        content_sha256: auth.content_sha256,
        body: std::sync::Mutex::new(Some(body)),
        trailers,
    };
    dispatch(&mut ctx).await
}

/// A request without any signature: only what [`access::decide`] lets anyone do (reading public
/// objects, listing public buckets), on buckets by their global name; its body is not read.
async fn anonymous(
    state: Arc<S3State>,
    r: Route,
    parts: hyper::http::request::Parts,
) -> Result<Response<ResBody>, S3Error> {
    // Parts of a presigned URL without its algorithm: a broken signature, never anonymous.
    let query = parts.uri.query().unwrap_or("");
    if crate::util::url::split_query(query).any(|(k, _)| {
        k.eq_ignore_ascii_case("X-Amz-Signature") || k.eq_ignore_ascii_case("X-Amz-Credential")
    }) {
        return Err(err(
            S3ErrorCode::AccessDenied,
            "Query-string authentication requires the X-Amz-Algorithm, X-Amz-Credential,              X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders and X-Amz-Expires parameters.",
        ));
    }
    let denied = || {
        err(
            S3ErrorCode::AccessDenied,
            "Anonymous access is not allowed.",
        )
    };
    let name = r.bucket.as_deref().ok_or_else(denied)?;
    // From the local full copy: an unsigned request with a made-up bucket name costs no RPC.
    let bucket = state
        .model
        .bucket_by_name_local(name)
        .map_err(internal)?
        .ok_or_else(denied)?;
    let decision = access::decide(
        &Principal::Anonymous,
        r.op,
        Some(&bucket),
        ObjectAcl::Unknown,
    );
    if decision == Decision::Deny {
        return Err(denied());
    }
    let mut ctx = Ctx {
        state: state.clone(),
        route: r,
        method: parts.method,
        headers: parts.headers,
        principal: Principal::Anonymous,
        object_check: decision == Decision::DependsOnObject,
        bucket: Some(bucket),
        content_sha256: ContentSha256::UnsignedPayload,
        body: std::sync::Mutex::new(None),
        trailers: None,
    };
    dispatch(&mut ctx).await
}

/// A browser form upload (PostObject): unsigned at the HTTP level, its credentials are in the form,
/// checked by the handler (`s3::post_object`) before anything is stored.
async fn form_upload(
    state: Arc<S3State>,
    r: Route,
    parts: hyper::http::request::Parts,
    body: RequestBody,
) -> Result<Response<ResBody>, S3Error> {
    let unsigned = SigningContext {
        signing_key: [0; 32],
        scope: String::new(),
        amz_date: String::new(),
        seed_signature: String::new(),
    };
    let plain = ContentSha256::UnsignedPayload;
    let (body, _) = request_body(body, &parts.headers, &plain, unsigned)?;
    let mut ctx = Ctx {
        state,
        route: r,
        method: parts.method,
        headers: parts.headers,
        principal: Principal::Anonymous,
        object_check: false,
        bucket: None,
        content_sha256: plain,
        body: std::sync::Mutex::new(Some(body)),
        trailers: None,
    };
    dispatch(&mut ctx).await
}

/// Resolve the bucket and check the key's permission for the operation ([`access::decide`]).
async fn authorize(
    model: &Model,
    key: &Key,
    r: &Route,
) -> Result<(Option<Bucket>, Decision), S3Error> {
    let params = key
        .params()
        .ok_or_else(|| err(S3ErrorCode::InvalidAccessKeyId, "The key was deleted."))?;
    let who = Principal::Key(key.clone());
    match r.op.needs() {
        Access::None => Ok((None, Decision::Allow)),
        Access::CreateBucket => {
            let name = r.bucket.as_deref().unwrap_or("");
            let existing = model.bucket_for_key(key, name).await.map_err(internal)?;
            match existing {
                // Re-creating one's own bucket is answered by the handler (BucketAlreadyOwnedByYou).
                Some(b) => Ok((Some(b), Decision::Allow)),
                None if *params.allow_create_bucket.get() => Ok((None, Decision::Allow)),
                None => Err(access::access_denied()),
            }
        }
        _ => {
            let name = r.bucket.as_deref().unwrap_or("");
            let b = model
                .bucket_for_key(key, name)
                .await
                .map_err(internal)?
                .ok_or_else(|| no_such_bucket(name))?;
            match access::decide(&who, r.op, Some(&b), ObjectAcl::Unknown) {
                Decision::Deny => Err(access::access_denied()),
                d => Ok((Some(b), d)),
            }
        }
    }
}

/// The request body as decoded bytes: aws-chunked framing removed (chunk signatures checked, the
/// decoded length checked against `x-amz-decoded-content-length`), HTTP errors turned into
/// `IncompleteBody`, and a body that stalled (the listener's `body_stall_timeout_secs`) into
/// `RequestTimeout`, as AWS answers it. Also returns the handle on the trailers of an aws-chunked body.
fn request_body(
    body: RequestBody,
    headers: &HeaderMap,
    sha: &ContentSha256,
    signing: SigningContext,
) -> Result<(ReqBody, Option<Trailers>), S3Error> {
    // The aws-chunked decoder reports any read error as `IncompleteBody`: remember a stall here.
    let stalled = Arc::new(AtomicBool::new(false));
    let seen = stalled.clone();
    let raw = TryStreamExt::inspect_err(BodyStream::new(body), move |e| {
        if e.is_stall() {
            seen.store(true, Ordering::Relaxed);
        }
    })
    .try_filter_map(|frame| async move { Ok(frame.into_data().ok()) });
    let timed_out = move |e: S3Error| {
        if stalled.load(Ordering::Relaxed) {
            request_timeout()
        } else {
            e
        }
    };
    let mode = match sha {
        ContentSha256::StreamingSigned => Some(StreamingMode::Signed(signing)),
        ContentSha256::StreamingSignedTrailer => Some(StreamingMode::SignedTrailer(signing)),
        ContentSha256::StreamingUnsignedTrailer => Some(StreamingMode::UnsignedTrailer),
        _ => None,
    };
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let chunked =
        header("content-encoding").is_some_and(|v| v.split(',').any(|e| e.trim() == "aws-chunked"));
    Ok(match mode {
        Some(mode) => {
            let mut d = ChunkedDecoder::new(Box::pin(raw), mode);
            if let Some(len) = header("x-amz-decoded-content-length").and_then(|v| v.parse().ok()) {
                d = d.with_decoded_length(len);
            }
            let trailers = d.trailers_handle();
            (Box::pin(d.map_err(timed_out)), Some(trailers))
        }
        None if chunked => {
            return Err(err(
                S3ErrorCode::InvalidRequest,
                "aws-chunked encoding needs a STREAMING-* x-amz-content-sha256.",
            ));
        }
        None => {
            let plain = raw.map_err(|e| {
                err(
                    S3ErrorCode::IncompleteBody,
                    format!("The request body could not be read: {e}"),
                )
            });
            (Box::pin(plain.map_err(timed_out)), None)
        }
    })
}

/// Refuse a request carrying a header whose promise Grenier cannot keep (encryption, object lock,
/// grants and canned ACLs other than private/public-read, conditional writes, website redirects):
/// silently ignoring it would store an object the client believes is encrypted, locked or shared as
/// asked when it is not. NotImplemented (501), before anything is stored. `x-amz-acl` and
/// `x-amz-tagging` are checked here too (400 for a bad value), on the operations that honour them.
pub fn refuse_unhonoured(op: Op, headers: &HeaderMap) -> Result<(), S3Error> {
    let refuse = |what: &str| {
        Err(err(
            S3ErrorCode::NotImplemented,
            format!("{what} is not supported by Grenier; nothing was changed."),
        ))
    };
    let takes_acl = matches!(
        op,
        Op::PutObject
            | Op::CopyObject
            | Op::CreateMultipartUpload
            | Op::CreateBucket
            | Op::PutObjectAcl
            | Op::PutBucketAcl
    );
    let takes_tags = matches!(
        op,
        Op::PutObject | Op::CopyObject | Op::CreateMultipartUpload
    );
    for (name, value) in headers {
        let n = name.as_str();
        let v = value.to_str().unwrap_or("");
        // SSE-C (`…-customer-*`) is honoured (`s3::sse`); encryption with keys the store would
        // manage (SSE-S3, SSE-KMS, bucket keys) is not.
        let sse = n
            .strip_prefix("x-amz-copy-source-")
            .unwrap_or(n)
            .strip_prefix("x-amz-server-side-encryption");
        if sse.is_some_and(|rest| !rest.starts_with("-customer-")) {
            return refuse(&format!("Server-side encryption with managed keys ({n})"));
        }
        if n.starts_with("x-amz-object-lock-") || n == "x-amz-bypass-governance-retention" {
            return refuse(&format!("Object lock ({n})"));
        }
        if n.starts_with("x-amz-grant-") {
            return refuse(&format!(
                "Access grants ({n}; only the canned ACLs private and public-read)"
            ));
        }
        if n == "x-amz-acl" && access::parse_canned_acl(v)? == CannedAcl::PublicRead && !takes_acl {
            return refuse(&format!("The canned ACL {v:?} on {}", op.name()));
        }
        if n == "x-amz-tagging" && takes_tags {
            let v = value.to_str().map_err(|_| {
                err(
                    S3ErrorCode::InvalidTag,
                    "The x-amz-tagging header is not valid",
                )
            })?;
            tagging::parse_tagging_header(v)?;
        } else if n == "x-amz-tagging" && !v.is_empty() {
            return refuse(&format!("Object tagging (x-amz-tagging) on {}", op.name()));
        }
        if n == "x-amz-website-redirect-location" || n == "x-amz-write-offset-bytes" {
            return refuse(n);
        }
    }
    let conditional_write = matches!(
        op,
        Op::PutObject | Op::CopyObject | Op::CompleteMultipartUpload
    ) && (headers.contains_key("if-match")
        || headers.contains_key("if-none-match"));
    if conditional_write {
        return refuse("A conditional write (If-Match / If-None-Match on a write)");
    }
    Ok(())
}

/// AWS's answer when a request body stops arriving.
fn request_timeout() -> S3Error {
    err(
        S3ErrorCode::RequestTimeout,
        "Your socket connection to the server was not read from or written to within the timeout \
         period. Idle connections will be closed.",
    )
}

async fn dispatch(ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    refuse_unhonoured(ctx.route.op, &ctx.headers)?;
    match ctx.route.op {
        Op::ListBuckets => bucket::list_buckets(ctx).await,
        Op::CreateBucket => bucket::create_bucket(ctx).await,
        Op::HeadBucket => Ok(empty(StatusCode::OK)),
        Op::DeleteBucket => bucket::delete_bucket(ctx).await,
        Op::GetBucketLocation => bucket::location(ctx),
        Op::GetBucketVersioning => bucket::versioning(),
        Op::ListObjects | Op::ListObjectsV2 => list::list_objects(ctx).await,
        Op::HeadObject | Op::GetObject => object::get_object(ctx).await,
        Op::PutObject => object::put_object(ctx).await,
        Op::DeleteObject => object::delete_object(ctx).await,
        Op::DeleteObjects => object::delete_objects(ctx).await,
        Op::CopyObject => copy::copy_object(ctx).await,
        Op::UploadPartCopy => copy::upload_part_copy(ctx).await,
        Op::CreateMultipartUpload => multipart::create(ctx).await,
        Op::UploadPart => multipart::upload_part(ctx).await,
        Op::CompleteMultipartUpload => multipart::complete(ctx).await,
        Op::AbortMultipartUpload => multipart::abort(ctx).await,
        Op::ListParts => multipart::list_parts(ctx).await,
        Op::GetObjectAttributes => attributes::get_object_attributes(ctx).await,
        Op::ListMultipartUploads => multipart::list_uploads(ctx).await,
        Op::GetObjectTagging => tagging::get_object_tagging(ctx).await,
        Op::PutObjectTagging => tagging::put_object_tagging(ctx).await,
        Op::DeleteObjectTagging => tagging::delete_object_tagging(ctx).await,
        Op::GetObjectAcl => acl::get_object_acl(ctx).await,
        Op::PutObjectAcl => acl::put_object_acl(ctx).await,
        Op::GetBucketAcl => acl::get_bucket_acl(ctx).await,
        Op::PutBucketAcl => acl::put_bucket_acl(ctx).await,
        Op::GetBucketWebsite => website::get_bucket_website(ctx).await,
        Op::PutBucketWebsite => website::put_bucket_website(ctx).await,
        Op::DeleteBucketWebsite => website::delete_bucket_website(ctx).await,
        Op::GetBucketCors => cors::get_bucket_cors(ctx).await,
        Op::PutBucketCors => cors::put_bucket_cors(ctx).await,
        Op::DeleteBucketCors => cors::delete_bucket_cors(ctx).await,
        Op::GetBucketLifecycleConfiguration => lifecycle::get_bucket_lifecycle(ctx).await,
        Op::PutBucketLifecycleConfiguration => lifecycle::put_bucket_lifecycle(ctx).await,
        Op::DeleteBucketLifecycle => lifecycle::delete_bucket_lifecycle(ctx).await,
        Op::PostObject => post_object::post_object(ctx).await,
        Op::Options => cors::preflight(ctx.bucket.as_ref(), &ctx.headers),
    }
}
