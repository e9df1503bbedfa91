//! CopyObject and UploadPartCopy.
//!
//! CopyObject shares the source's blocks (content addressing: nothing is read or rewritten, whatever
//! the size), unless the copy changes the SSE-C encryption (another key, or to or from plain data):
//! then the source is read, decrypted and stored again under the new key. UploadPartCopy streams the source range into a new part attempt, which hashes it again
//! (the range rarely falls on block boundaries); equal blocks are stored once all the same.

use bytes::Bytes;
use futures::StreamExt;
use hyper::Response;

use super::body::Wanted;
use super::ctx::part_number;
use super::ctx::{Ctx, ResBody, internal, no_such_bucket, xml_response};
use super::error::{S3Error, S3ErrorCode, err};
use super::object::{etag_matches, headers_to_store, precondition_failed, store_stream};
use super::sse::{self, KeyFor};
use super::xml;
use crate::model::object::{ObjectMeta, ObjectVersion, VersionAttrs};
use crate::model::ops::meta_of;
use crate::model::sse::CustomerKey;
use crate::util::timefmt;
use crate::util::url::{self, Plus};

/// The source object of a copy, found and readable by the request's key.
struct Source {
    bucket: crate::model::bucket::Bucket,
    key: String,
    version: ObjectVersion,
    meta: ObjectMeta,
    /// The SSE-C key of an encrypted source (checked against it).
    sse_key: Option<CustomerKey>,
}

async fn source(ctx: &Ctx) -> Result<Source, S3Error> {
    let raw = ctx.header("x-amz-copy-source").unwrap_or("");
    let raw = raw.split_once('?').map_or(raw, |(p, _)| p);
    let decoded = url::decode(raw.trim_start_matches('/'), Plus::Literal)?;
    let (b, k) = decoded.split_once('/').ok_or_else(|| {
        err(
            S3ErrorCode::InvalidArgument,
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
        )
        .with("ArgumentName", "x-amz-copy-source")
    })?;
    let key = ctx.key()?;
    let bucket = ctx
        .model()
        .bucket_for_key(key, b)
        .await
        .map_err(internal)?
        .ok_or_else(|| no_such_bucket(b))?;
    if !key.permissions(&bucket.id).read {
        let fresh = ctx
            .model()
            .key_by_id_fresh(&key.id)
            .await
            .map_err(internal)?;
        if !fresh.is_some_and(|k| k.permissions(&bucket.id).read) {
            return Err(err(S3ErrorCode::AccessDenied, "Access Denied"));
        }
    }
    let version = ctx
        .model()
        .get_object(&bucket.id, k)
        .await
        .map_err(internal)?
        .and_then(|o| o.current().cloned())
        .ok_or_else(|| {
            err(S3ErrorCode::NoSuchKey, "The specified key does not exist.").with("Key", k)
        })?;
    let meta = meta_of(&version).cloned().expect("current() has data");
    let sse_key = sse::customer_key(&ctx.headers, KeyFor::CopySource)?;
    sse::check_read(meta.encryption.as_ref(), sse_key.as_ref())?;
    check_copy_conditions(ctx, &meta.etag, version.timestamp.msec)?;
    Ok(Source {
        bucket,
        key: k.to_string(),
        version,
        meta,
        sse_key,
    })
}

/// `x-amz-{what}-directive`: COPY (the default) or REPLACE (true).
fn replaces(ctx: &Ctx, what: &str) -> Result<bool, S3Error> {
    let name = format!("x-amz-{what}-directive");
    match ctx.header(&name) {
        None | Some("COPY") => Ok(false),
        Some("REPLACE") => Ok(true),
        Some(_) => Err(err(
            S3ErrorCode::InvalidArgument,
            format!("Unknown {what} directive."),
        )
        .with("ArgumentName", name)),
    }
}

/// `x-amz-copy-source-if-*`: every failure is 412, as S3.
fn check_copy_conditions(ctx: &Ctx, etag: &str, modified_msec: u64) -> Result<(), S3Error> {
    let matches = |h: &str| etag_matches(h, etag);
    let secs = timefmt::parse_http_date;
    let modified = modified_msec / 1000;
    let h = |n: &str| ctx.header(n);
    if h("x-amz-copy-source-if-match").is_some_and(|v| !matches(v))
        || h("x-amz-copy-source-if-none-match").is_some_and(matches)
        || h("x-amz-copy-source-if-unmodified-since")
            .and_then(secs)
            .is_some_and(|t| modified > t)
        || h("x-amz-copy-source-if-modified-since")
            .and_then(secs)
            .is_some_and(|t| modified <= t)
    {
        return Err(precondition_failed());
    }
    Ok(())
}

pub async fn copy_object(ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    let src = source(ctx).await?;
    let replace = replaces(ctx, "metadata")?;
    let replace_tags = replaces(ctx, "tagging")?;
    // The ACL is the request's (default private, as S3: a copy does not inherit the source's); the
    // tags are the source's unless the directive is REPLACE.
    let mut attrs = super::tagging::requested_attrs(ctx)?;
    if !replace_tags {
        attrs.tags = src.version.tags.clone();
    }
    let dst_key = sse::customer_key(&ctx.headers, KeyFor::Target)?;
    let encryption = dst_key.as_ref().map(CustomerKey::encryption);
    let same = src.bucket.id == ctx.bucket().id && src.key == ctx.object_key();
    if same && !replace && encryption == src.meta.encryption {
        return Err(err(
            S3ErrorCode::InvalidRequest,
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.",
        ));
    }
    let mut meta = src.meta.clone();
    if replace {
        meta.headers = headers_to_store(ctx)?;
    }
    let (etag, last_modified_msec) = if encryption == src.meta.encryption {
        // Same key (or both plain): the blocks are shared as they are.
        let v = ctx
            .model()
            .copy_object(
                &src.version,
                ctx.bucket().id,
                ctx.object_key(),
                meta.clone(),
                attrs,
            )
            .await
            .map_err(internal)?;
        (meta.etag, v.timestamp.msec)
    } else {
        reencrypt(ctx, &src, meta, dst_key, attrs).await?
    };
    let doc = xml::CopyObjectResult {
        etag,
        last_modified_msec,
        checksums: vec![],
    };
    let mut r = xml_response(doc.to_xml());
    sse::add_response_headers(&mut r, encryption.as_ref());
    Ok(r)
}

/// A copy to another key (or from or to plain data): the source is read, decrypted, and stored
/// again, encrypted with the destination's key. Returns the new ETag and timestamp.
async fn reencrypt(
    ctx: &Ctx,
    src: &Source,
    mut meta: ObjectMeta,
    dst_key: Option<CustomerKey>,
    attrs: VersionAttrs,
) -> Result<(String, u64), S3Error> {
    let model = ctx.model().clone();
    let upload = model
        .start_put(
            ctx.bucket().id,
            ctx.object_key().to_string(),
            meta.headers.clone(),
        )
        .encrypted(dst_key.clone());
    let data = model
        // No read-ahead: see `model::ops` on memory.
        .read_object(&src.version, 0, src.meta.size, 1, src.sse_key.as_ref())
        .await
        .map_err(internal)?
        .map(|r: Result<Bytes, crate::model::ModelError>| r.map_err(internal));
    let (stored, d) = store_stream(&upload, Box::pin(data), Wanted::default(), u64::MAX).await?;
    meta.etag = super::object::etag_of(d.md5, dst_key.as_ref());
    // The object is now one body: no parts, and a checksum only if it was of the whole body.
    if meta.parts.take().is_some() {
        meta.checksum = None;
    }
    let v = upload
        .commit(stored, meta.clone(), attrs)
        .await
        .map_err(internal)?;
    Ok((meta.etag, v.timestamp.msec))
}

/// `x-amz-copy-source-range: bytes=first-last`, within the source.
fn copy_range(ctx: &Ctx, size: u64) -> Result<(u64, u64), S3Error> {
    let Some(h) = ctx.header("x-amz-copy-source-range") else {
        return Ok((0, size));
    };
    let bad = || {
        err(
            S3ErrorCode::InvalidArgument,
            format!("Range specified is not valid for source object of size: {size}"),
        )
        .with("ArgumentName", "x-amz-copy-source-range")
    };
    let spec = h.trim().strip_prefix("bytes=").ok_or_else(bad)?;
    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
    let (a, b) = (
        super::object::decimal(a.trim()).ok_or_else(bad)?,
        super::object::decimal(b.trim()).ok_or_else(bad)?,
    );
    if a > b || b >= size {
        return Err(bad());
    }
    Ok((a, b + 1))
}

pub async fn upload_part_copy(ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    let n = part_number(ctx.route.query.get("partNumber").map_or("", |s| s))?;
    let src = source(ctx).await?;
    let (begin, end) = copy_range(ctx, src.meta.size)?;
    let (id, up) = super::multipart::upload_of(ctx).await?;
    let dst_key = sse::customer_key(&ctx.headers, KeyFor::Target)?;
    sse::check_part(up.encryption.as_ref(), dst_key.as_ref())?;
    let model = ctx.model().clone();
    let attempt = model
        .start_part(&up, n)
        .await
        .map_err(internal)?
        .encrypted(dst_key.clone());
    let data = if begin == end {
        futures::stream::empty().boxed()
    } else {
        model
            // No read-ahead: see `model::ops` on memory.
            .read_object(&src.version, begin, end, 1, src.sse_key.as_ref())
            .await
            .map_err(internal)?
            .boxed()
    };
    let data = data.map(|r: Result<Bytes, crate::model::ModelError>| r.map_err(internal));
    let (stored, d) = store_stream(
        &attempt,
        Box::pin(data),
        Wanted::default(),
        super::multipart::MAX_PART_SIZE,
    )
    .await?;
    let etag = super::object::etag_of(d.md5, dst_key.as_ref());
    model
        .finish_part(
            id,
            n,
            &attempt.attempt(),
            stored.size(),
            etag.clone(),
            None,
            false,
        )
        .await
        .map_err(internal)?;
    let doc = xml::CopyPartResult {
        etag,
        last_modified_msec: attempt.timestamp.msec,
        checksums: vec![],
    };
    let mut r = xml_response(doc.to_xml());
    sse::add_response_headers(&mut r, up.encryption.as_ref());
    Ok(r)
}
