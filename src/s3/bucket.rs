//! ListBuckets (with its pagination), CreateBucket, DeleteBucket, GetBucketLocation, GetBucketVersioning.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hyper::{Response, StatusCode};

use super::ctx::{Ctx, ResBody, empty, internal, small_body, xml_response};
use super::error::{S3Error, S3ErrorCode, err};
use super::xml::{self, BucketSummary, ListAllMyBucketsResult, Owner};
use crate::model::ModelError;

/// Largest CreateBucket body accepted.
const MAX_CONFIG_BODY: usize = 64 << 10;

/// The owner shown in answers: the request's key, or for an anonymous request the bucket's owner (the
/// first key, by id, with the owner permission on it).
pub fn owner_of(ctx: &Ctx) -> Owner {
    let key = match ctx.principal.key() {
        Some(k) => Some(k.clone()),
        None => ctx.bucket.as_ref().and_then(|b| {
            let keys = ctx.model().bucket_keys(&b.id).ok()?;
            keys.into_iter()
                .filter(|(_, p)| p.owner)
                .map(|(k, _)| k)
                .min_by(|a, b| a.id.cmp(&b.id))
        }),
    };
    key.map(|k| Owner {
        display_name: k.params().map(|p| p.name.get().clone()).unwrap_or_default(),
        id: k.id,
    })
    .unwrap_or_default()
}

/// Most buckets per ListBuckets page, and the page size AWS applies when a paginated request
/// (`prefix`, `continuation-token` or `bucket-region`) gives no `max-buckets`.
pub const MAX_BUCKETS: usize = 10_000;

/// ListBuckets' query: `max-buckets` (1 to 10,000), `continuation-token` (a bucket name, opaque),
/// `prefix`, `bucket-region`. `None` for a plain request, which lists every bucket on one page.
#[derive(Debug, Default, PartialEq, Eq)]
struct BucketPage {
    max: usize,
    after: Option<String>,
    prefix: Option<String>,
    region: Option<String>,
}

fn bucket_page(
    q: &std::collections::BTreeMap<String, String>,
) -> Result<Option<BucketPage>, S3Error> {
    let given = [
        "max-buckets",
        "continuation-token",
        "prefix",
        "bucket-region",
    ];
    if !given.iter().any(|p| q.contains_key(*p)) {
        return Ok(None);
    }
    let max = match q.get("max-buckets") {
        None => MAX_BUCKETS,
        Some(m) => m
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_BUCKETS).contains(n))
            .ok_or_else(|| {
                err(
                    S3ErrorCode::InvalidArgument,
                    "Argument maxBuckets must be an integer between 1 and 10000.",
                )
                .with("ArgumentName", "max-buckets")
                .with("ArgumentValue", m.clone())
            })?,
    };
    let after = match q.get("continuation-token") {
        None => None,
        Some(t) => Some(
            URL_SAFE_NO_PAD
                .decode(t)
                .ok()
                .and_then(|raw| String::from_utf8(raw).ok())
                .ok_or_else(|| {
                    err(
                        S3ErrorCode::InvalidArgument,
                        "The continuation token provided is incorrect",
                    )
                    .with("ArgumentName", "continuation-token")
                })?,
        ),
    };
    Ok(Some(BucketPage {
        max,
        after,
        prefix: q.get("prefix").cloned(),
        region: q.get("bucket-region").cloned(),
    }))
}

pub async fn list_buckets(ctx: &mut Ctx) -> Result<Response<ResBody>, S3Error> {
    let page = bucket_page(&ctx.route.query)?;
    let all = ctx.model().list_buckets().map_err(internal)?;
    let key = ctx.key()?;
    let visible = |id: &crate::util::hash::Hash| !key.permissions(id).is_none();
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
    for (alias, id) in key
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
    let mut continuation_token = None;
    let mut prefix = None;
    if let Some(page) = page {
        // Every bucket of the cluster is in its one region.
        let elsewhere = page.region.is_some_and(|r| r != ctx.state.region);
        buckets.retain(|b| {
            !elsewhere
                && page.after.as_ref().is_none_or(|a| b.name > *a)
                && page.prefix.as_ref().is_none_or(|p| b.name.starts_with(p))
        });
        if buckets.len() > page.max {
            buckets.truncate(page.max);
            // Opaque to clients: the last bucket name listed.
            continuation_token = buckets.last().map(|b| URL_SAFE_NO_PAD.encode(&b.name));
        }
        prefix = page.prefix;
    }
    let doc = ListAllMyBucketsResult {
        owner: owner_of(ctx),
        buckets,
        region: ctx.state.region.clone(),
        continuation_token,
        prefix,
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
    let key = ctx.key()?;
    if let Some(b) = &ctx.bucket {
        return Err(if key.permissions(&b.id).owner {
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
    let acl = match ctx.header("x-amz-acl") {
        Some(v) => super::access::parse_canned_acl(v)?,
        None => crate::model::object::CannedAcl::Private,
    };
    // `authorize` found the name free with a quorum read (ctx.bucket is None): no second check.
    match ctx.model().create_bucket_owned_by(key, &name, acl).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn list_buckets_page_parameters() {
        assert_eq!(bucket_page(&query(&[])).unwrap(), None);
        assert_eq!(
            bucket_page(&query(&[("prefix", "ph")])).unwrap(),
            Some(BucketPage {
                max: MAX_BUCKETS,
                prefix: Some("ph".into()),
                ..Default::default()
            })
        );
        let token = URL_SAFE_NO_PAD.encode("photos");
        assert_eq!(
            bucket_page(&query(&[
                ("max-buckets", "2"),
                ("continuation-token", &token)
            ]))
            .unwrap()
            .unwrap(),
            BucketPage {
                max: 2,
                after: Some("photos".into()),
                ..Default::default()
            }
        );
        for bad in ["0", "10001", "-1", "x", ""] {
            let e = bucket_page(&query(&[("max-buckets", bad)])).unwrap_err();
            assert_eq!(e.code, S3ErrorCode::InvalidArgument, "{bad}");
        }
        let e = bucket_page(&query(&[("continuation-token", "!!")])).unwrap_err();
        assert_eq!(e.code, S3ErrorCode::InvalidArgument);
    }
}
