//! CreateMultipartUpload, UploadPart, CompleteMultipartUpload, AbortMultipartUpload, ListParts,
//! ListMultipartUploads.

use bytes::Bytes;
use futures::FutureExt;
use hyper::{Response, StatusCode};

use super::bucket::owner_of;
use super::checksum::Checksum;
use super::ctx::{
    Ctx, ResBody, empty, full, internal, part_number, respond, small_body, xml_response,
};
use super::error::{S3Error, S3ErrorCode, err};
use super::mpu_checksum;
use super::object::{Received, etag_of, headers_to_store, receive_then};
use super::sse::{self, KeyFor};
use super::xml;
use crate::model::multipart::{CompleteError, Upload};
use crate::model::object::VersionState;
use crate::model::sse::CustomerKey;
use crate::util::hash::Hash;

/// Largest part (as S3).
pub const MAX_PART_SIZE: u64 = 5 << 30;
/// Most parts or uploads per listing.
const MAX_LIST: usize = 1000;

fn no_such_upload() -> S3Error {
    err(
        S3ErrorCode::NoSuchUpload,
        "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.",
    )
}

/// The upload named by `?uploadId=`.
pub async fn upload_of(ctx: &Ctx) -> Result<(Hash, Upload), S3Error> {
    upload(ctx).await
}

/// The id in `?uploadId=` (hex of 32 bytes; anything else names no upload).
fn upload_id(ctx: &Ctx) -> Result<Hash, S3Error> {
    ctx.route
        .query
        .get("uploadId")
        .and_then(|s| hex::decode(s).ok())
        .and_then(|v| Hash::try_from(&v[..]).ok())
        .ok_or_else(no_such_upload)
}

async fn upload(ctx: &Ctx) -> Result<(Hash, Upload), S3Error> {
    let id = upload_id(ctx)?;
    let u = ctx
        .model()
        .get_upload(&ctx.bucket().id, ctx.object_key(), &id)
        .await
        .map_err(internal)?
        .ok_or_else(no_such_upload)?;
    Ok((id, u))
}

pub async fn create(ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    let headers = headers_to_store(ctx)?;
    let checksum = mpu_checksum::parse_create(&ctx.headers)?;
    let encryption = sse::customer_key(&ctx.headers, KeyFor::Target)?
        .as_ref()
        .map(CustomerKey::encryption);
    let attrs = super::tagging::requested_attrs(ctx)?;
    let id = ctx
        .model()
        .create_multipart(
            ctx.bucket().id,
            ctx.object_key(),
            headers,
            encryption.clone(),
            attrs,
            checksum.clone(),
        )
        .await
        .map_err(internal)?;
    let doc = xml::InitiateMultipartUploadResult {
        bucket: ctx.bucket_name().to_string(),
        key: ctx.object_key().to_string(),
        upload_id: hex::encode(id),
    };
    let mut r = xml_response(doc.to_xml());
    sse::add_response_headers(&mut r, encryption.as_ref());
    mpu_checksum::add_response_headers(&mut r, checksum.as_ref());
    Ok(r)
}

pub async fn upload_part(ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    let n = part_number(ctx.route.query.get("partNumber").map_or("", |s| s))?;
    let id = upload_id(ctx)?;
    let sse_key = sse::customer_key(&ctx.headers, KeyFor::Target)?;
    let sent = super::checksum::request_checksum(&ctx.headers)?.map(|c| c.algorithm);
    let model = ctx.model().clone();
    let (bucket, key) = (ctx.bucket().id, ctx.object_key().to_string());
    let attempt = model
        .part_attempt(bucket, key.clone())
        .encrypted(sse_key.clone());
    // The upload is read and checked, and the attempt recorded in it, while the body starts to
    // stream: no block is stored before the checks passed (the store gate: a refused part leaves
    // nothing on disk) and none is listed before the attempt is recorded (the gate). The upload is
    // read from this node's replicas when they have it (no round trip), so a part pays one round
    // trip (the registration) while its first blocks are read and hashed.
    let checks = {
        let model = model.clone();
        let (key, sse_key) = (key.clone(), sse_key.clone());
        tokio::spawn(async move {
            let up = model
                .get_upload_local_first(&bucket, &key, &id)
                .await
                .map_err(internal)?
                .ok_or_else(no_such_upload)?;
            sse::check_part(up.encryption.as_ref(), sse_key.as_ref())?;
            mpu_checksum::check_part(up.mpu.checksum.as_ref(), sent)?;
            Ok::<_, S3Error>(up.encryption)
        })
        .map(|r| r.unwrap_or_else(|e| Err(task_died("part check", e))))
        .boxed()
        .shared()
    };
    let registration = {
        let (model, record, checks) = (model.clone(), attempt.attempt(), checks.clone());
        tokio::spawn(async move {
            let encryption = checks.await?;
            model
                .register_part(id, n, &record)
                .await
                .map_err(internal)?;
            Ok::<_, S3Error>(encryption)
        })
        .map(|r| r.unwrap_or_else(|e| Err(task_died("part registration", e))))
        .boxed()
        .shared()
    };
    let store_gate = checks.map(|r| r.is_ok()).boxed().shared();
    let gate = registration.clone().map(|r| r.is_ok()).boxed().shared();
    let attempt = attempt.store_gated(store_gate).gated(gate);
    let record = attempt.attempt();
    // As soon as the body has ended (its digests checked), the part is recorded as pending in the
    // upload, in parallel with the writes of its last blocks: one round trip after the last byte, not
    // two. A pending part whose blocks then failed is told apart by whoever reads it (`mpu` module
    // doc); once they all succeeded, it is confirmed, after the answer.
    let pending = |len: u64, md5: [u8; 16], checksum: Option<Checksum>| {
        let (model, record, registration) = (model.clone(), record.clone(), registration.clone());
        let etag = etag_of(md5, sse_key.as_ref());
        let ck = checksum
            .as_ref()
            .map(|c| (c.algorithm.as_str().to_string(), c.to_base64()));
        async move {
            let encryption = registration.await?;
            model
                .finish_part(id, n, &record, len, etag.clone(), ck.clone(), true)
                .await
                .map_err(internal)?;
            Ok::<_, S3Error>((encryption, len, etag, ck))
        }
    };
    let received = receive_then(ctx, &attempt, MAX_PART_SIZE, pending).await;
    // The registration's refusal (NoSuchUpload, a wrong SSE-C key…) is the answer, not the write's
    // failure that it caused.
    registration.await?;
    let (Received { checksum, .. }, (encryption, len, etag, ck)) = received?;
    // Every block is stored: confirmed after the answer.
    model.part_stored(id, n, record, len, etag.clone(), ck);
    let mut r = Response::builder()
        .status(StatusCode::OK)
        .header("etag", format!("\"{etag}\""));
    if let Some(c) = &checksum {
        r = r.header(c.algorithm.header_name(), c.to_base64());
    }
    r = sse::response_headers(r, encryption.as_ref());
    respond(r, full(Bytes::new()))
}

/// A spawned task of a request died (panicked or was cancelled).
fn task_died(what: &str, e: tokio::task::JoinError) -> S3Error {
    S3Error::internal(S3ErrorCode::InternalError, format!("{what} task: {e}"))
}

/// CompleteMultipartUpload. A retry of a Complete that succeeded (its answer lost) gets the same
/// answer while the object is still that upload's (see `Model::complete_upload`).
pub async fn complete(ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    let body = small_body(ctx, ctx.state.xml_body_max).await?;
    let parts = xml::parse_complete_multipart_upload(&body)?;
    let id = upload_id(ctx)?;
    let list: Vec<(u32, String)> = parts
        .iter()
        .map(|p| (p.part_number, p.etag.clone()))
        .collect();
    let v = ctx
        .model()
        .complete_upload(
            &ctx.bucket().id,
            ctx.object_key(),
            &id,
            &list,
            Box::new(|up: &Upload| {
                let finished = up.mpu.finished_parts();
                mpu_checksum::complete(up.mpu.checksum.as_ref(), &finished, &parts, &ctx.headers)
                    .map_err(|e| Box::new(e) as _)
            }),
        )
        .await
        .map_err(|e| match e {
            CompleteError::NoSuchUpload => no_such_upload(),
            CompleteError::InvalidPart(n) => err(
                S3ErrorCode::InvalidPart,
                format!("One or more of the specified parts could not be found (part {n}). The part may not have been uploaded, or the specified entity tag may not match the part's entity tag."),
            ),
            CompleteError::CompletedWithOtherParts => err(
                S3ErrorCode::InvalidPart,
                "One or more of the specified parts could not be found: the upload was completed with another list of parts.",
            ),
            CompleteError::InvalidPartOrder => err(
                S3ErrorCode::InvalidPartOrder,
                "The list of parts was not in ascending order. Parts must be ordered by part number.",
            ),
            CompleteError::EntityTooSmall(n) => err(
                S3ErrorCode::EntityTooSmall,
                format!("Your proposed upload is smaller than the minimum allowed object size (part {n})."),
            ),
            CompleteError::EntityTooLarge => err(
                S3ErrorCode::EntityTooLarge,
                "Your proposed upload exceeds the maximum allowed object size.",
            ),
            CompleteError::Refused(e) => match e.downcast::<S3Error>() {
                Ok(e) => *e,
                Err(e) => internal(crate::model::ModelError::Body(e)),
            },
            CompleteError::Model(e) => internal(e),
        })?;
    let meta = crate::model::ops::meta_of(&v);
    let doc = xml::CompleteMultipartUploadResult {
        location: format!("/{}/{}", ctx.bucket_name(), ctx.object_key()),
        bucket: ctx.bucket_name().to_string(),
        key: ctx.object_key().to_string(),
        etag: meta.map(|m| m.etag.clone()).unwrap_or_default(),
        checksums: mpu_checksum::elements(meta.and_then(|m| m.checksum.as_ref())),
    };
    let mut r = xml_response(doc.to_xml());
    sse::add_response_headers(&mut r, meta.and_then(|m| m.encryption.as_ref()));
    Ok(r)
}

/// A stored checksum (algorithm, base64) as its XML element (`ChecksumCRC32`…, value).
fn checksum_element((alg, v): &(String, String)) -> Option<(String, String)> {
    super::checksum::ChecksumAlgorithm::parse(alg).map(|a| (a.xml_name().to_string(), v.clone()))
}

pub async fn abort(ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    let (_, up) = upload(ctx).await?;
    ctx.model().abort_multipart(&up).await.map_err(internal)?;
    Ok(empty(StatusCode::NO_CONTENT))
}

fn max_param(ctx: &Ctx, name: &str) -> Result<usize, S3Error> {
    match ctx.route.query.get(name) {
        None => Ok(MAX_LIST),
        Some(v) => v.parse::<usize>().map(|n| n.min(MAX_LIST)).map_err(|_| {
            err(
                S3ErrorCode::InvalidArgument,
                format!("Provided {name} not an integer"),
            )
            .with("ArgumentName", name)
        }),
    }
}

pub async fn list_parts(ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    let (id, up) = upload(ctx).await?;
    let max = max_param(ctx, "max-parts")?;
    let marker: u32 = match ctx.route.query.get("part-number-marker") {
        Some(m) => m.parse().map_err(|_| {
            err(
                S3ErrorCode::InvalidArgument,
                "Provided part-number-marker not an integer",
            )
            .with("ArgumentName", "part-number-marker")
        })?,
        None => 0,
    };
    let all: Vec<_> = up
        .mpu
        .finished_parts()
        .into_iter()
        .filter(|(n, _, _)| *n > marker)
        .collect();
    let truncated = all.len() > max;
    let shown: Vec<_> = all.into_iter().take(max).collect();
    let owner = owner_of(ctx);
    let doc = xml::ListPartsResult {
        bucket: ctx.bucket_name().to_string(),
        key: ctx.object_key().to_string(),
        upload_id: hex::encode(id),
        initiator: owner.clone(),
        owner,
        checksum_algorithm: up.mpu.checksum.as_ref().map(|c| c.algorithm.clone()),
        checksum_type: (up.mpu.checksum.as_ref())
            .map(|c| mpu_checksum::type_name(c.full_object).to_string()),
        part_number_marker: marker,
        next_part_number_marker: shown.last().map(|(n, _, _)| *n),
        max_parts: max as u32,
        is_truncated: truncated,
        parts: shown
            .iter()
            .map(|(n, ts, p)| xml::PartSummary {
                part_number: *n,
                last_modified_msec: ts.msec,
                etag: p.etag.clone().unwrap_or_default(),
                size: p.size.unwrap_or(0),
                checksums: p.checksum.iter().filter_map(checksum_element).collect(),
            })
            .collect(),
    };
    Ok(xml_response(doc.to_xml()))
}

pub async fn list_uploads(ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    let q = ctx.route.query.clone();
    let prefix = q.get("prefix").cloned().unwrap_or_default();
    let delimiter = q.get("delimiter").cloned().filter(|d| !d.is_empty());
    let key_marker = q.get("key-marker").cloned().unwrap_or_default();
    let id_marker = q.get("upload-id-marker").cloned().unwrap_or_default();
    let url = super::list::url_encoding(&q)?;
    let max = max_param(ctx, "max-uploads")?;
    let start = if key_marker.as_str() > prefix.as_str() {
        key_marker.clone()
    } else {
        prefix.clone()
    };
    let objects = ctx
        .model()
        .list_uploading(&ctx.bucket().id, &start, 10 * MAX_LIST)
        .await
        .map_err(internal)?;
    let owner = owner_of(ctx);
    let mut doc = xml::ListMultipartUploadsResult {
        bucket: ctx.bucket_name().to_string(),
        key_marker: key_marker.clone(),
        upload_id_marker: id_marker.clone(),
        delimiter: delimiter.clone(),
        prefix: prefix.clone(),
        max_uploads: max as u32,
        url_encoding: url,
        ..Default::default()
    };
    let mut count = 0;
    'outer: for o in objects {
        if !o.key.starts_with(&prefix) {
            continue;
        }
        if let Some(d) = &delimiter
            && let Some(i) = o.key[prefix.len()..].find(d.as_str())
        {
            let cp = o.key[..prefix.len() + i + d.len()].to_string();
            if doc.common_prefixes.last() != Some(&cp) {
                if count >= max {
                    doc.is_truncated = true;
                    break;
                }
                doc.common_prefixes.push(cp);
                count += 1;
            }
            continue;
        }
        for v in &o.versions {
            let VersionState::Uploading {
                multipart: true, ..
            } = v.state
            else {
                continue;
            };
            let uid = hex::encode(v.uuid);
            if o.key == key_marker && uid <= id_marker {
                continue;
            }
            if o.key < key_marker {
                continue;
            }
            if count >= max {
                doc.is_truncated = true;
                break 'outer;
            }
            doc.next_key_marker = Some(o.key.clone());
            doc.next_upload_id_marker = Some(uid.clone());
            doc.uploads.push(xml::UploadSummary {
                key: o.key.clone(),
                upload_id: uid,
                initiator: owner.clone(),
                owner: owner.clone(),
                initiated_msec: v.timestamp.msec,
            });
            count += 1;
        }
    }
    if !doc.is_truncated {
        doc.next_key_marker = None;
        doc.next_upload_id_marker = None;
    }
    Ok(xml_response(doc.to_xml()))
}
