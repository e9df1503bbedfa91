//! ListBuckets, CreateBucket, DeleteBucket, GetBucketLocation, GetBucketVersioning.

use hyper::{Response, StatusCode};

use super::ctx::{Ctx, ResBody, empty, internal, small_body, xml_response};
use super::error::{S3Error, S3ErrorCode, err};
use super::xml::{self, BucketSummary, ListAllMyBucketsResult, Owner};
use crate::model::ModelError;

/// Largest CreateBucket body accepted.
const MAX_CONFIG_BODY: usize = 64 << 10;

pub fn owner_of(ctx: &Ctx) -> Owner {
    Owner {
        id: ctx.key.id.clone(),
        display_name: ctx
            .key
            .params()
            .map(|p| p.name.get().clone())
            .unwrap_or_default(),
    }
}

pub async fn list_buckets(ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    let all = ctx.model().list_buckets().map_err(internal)?;
    let visible = |id: &crate::util::hash::Hash| !ctx.key.permissions(id).is_none();
    let mut buckets: Vec<BucketSummary> = all
        .iter()
        .filter(|b| visible(&b.id))
        .filter_map(|b| {
            b.params().map(|p| BucketSummary {
                name: p.name.get().clone(),
                creation_date_msec: p.created,
            })
        })
        .collect();
    // The key's local aliases, listed under their local name.
    for (alias, id) in ctx
        .key
        .params()
        .into_iter()
        .flat_map(|p| p.local_aliases.iter())
    {
        let Some(id) = id else { continue };
        if let Some(bp) = all.iter().find(|b| b.id == *id).and_then(|b| b.params())
            && visible(id)
        {
            buckets.push(BucketSummary {
                name: alias.clone(),
                creation_date_msec: bp.created,
            });
        }
    }
    buckets.sort_by(|a, b| a.name.cmp(&b.name));
    buckets.dedup_by(|a, b| a.name == b.name);
    let doc = ListAllMyBucketsResult {
        owner: owner_of(ctx),
        buckets,
    };
    Ok(xml_response(doc.to_xml()))
}

pub async fn create_bucket(ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    let body = small_body(ctx, MAX_CONFIG_BODY).await?;
    if let Some(loc) = xml::parse_create_bucket_configuration(&body)?
        && loc != ctx.state.region
    {
        return Err(err(
            S3ErrorCode::InvalidArgument,
            format!(
                "The location constraint {loc:?} is not this service's region ({}).",
                ctx.state.region
            ),
        )
        .with("ArgumentName", "LocationConstraint"));
    }
    let name = ctx.bucket_name().to_string();
    if let Some(b) = &ctx.bucket {
        return Err(if ctx.key.permissions(&b.id).owner {
            err(
                S3ErrorCode::BucketAlreadyOwnedByYou,
                "Your previous request to create the named bucket succeeded and you already own it.",
            )
        } else {
            err(
                S3ErrorCode::BucketAlreadyExists,
                "The requested bucket name is not available.",
            )
        }
        .with("BucketName", name));
    }
    match ctx.model().create_bucket(&name, Some(&ctx.key.id)).await {
        Ok(_) => super::ctx::respond(
            Response::builder()
                .status(StatusCode::OK)
                .header("location", format!("/{name}")),
            super::ctx::full(bytes::Bytes::new()),
        ),
        Err(ModelError::InvalidBucketName(_)) => Err(err(
            S3ErrorCode::InvalidBucketName,
            "The specified bucket is not valid.",
        )
        .with("BucketName", name)),
        Err(ModelError::BucketExists(_)) => Err(err(
            S3ErrorCode::BucketAlreadyExists,
            "The requested bucket name is not available.",
        )
        .with("BucketName", name)),
        Err(e) => Err(internal(e)),
    }
}

pub async fn delete_bucket(ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    let b = ctx.bucket().clone();
    // As S3: refused while an object is left; pending multipart uploads go with the bucket.
    match ctx.model().delete_bucket_and_uploads(&b).await {
        Ok(()) => Ok(empty(StatusCode::NO_CONTENT)),
        Err(ModelError::BucketNotEmpty(_)) => Err(err(
            S3ErrorCode::BucketNotEmpty,
            "The bucket you tried to delete is not empty",
        )
        .with("BucketName", ctx.bucket_name())),
        Err(e) => Err(internal(e)),
    }
}

pub fn location(ctx: &Ctx) -> Result<Response<ResBody>, S3Error> {
    Ok(xml_response(xml::location_constraint_xml(
        &ctx.state.region,
    )))
}

pub fn versioning() -> Result<Response<ResBody>, S3Error> {
    Ok(xml_response(xml::versioning_configuration_xml()))
}
