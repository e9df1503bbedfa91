//! Access keys and buckets (the `grenier key ...` and `grenier bucket ...` commands).
//!
//! - `GET /v1/keys`, `POST /v1/keys` `{"name"}`, `POST /v1/keys/import` `{"id", "secret", "name"}`,
//!   `GET /v1/keys/info?key=<id|name>&show_secret=true`, `POST /v1/keys/delete` `{"key"}`,
//!   `POST /v1/keys/allow` `{"key", "create_bucket": bool}`.
//! - `GET /v1/buckets`, `POST /v1/buckets` `{"name"}`, `GET /v1/buckets/info?bucket=<name|id>`,
//!   `POST /v1/buckets/delete` `{"bucket"}`, `POST /v1/buckets/allow` and `/v1/buckets/deny`
//!   `{"bucket", "key", "read", "write", "owner"}` (allow adds the given rights, deny removes them),
//!   `POST /v1/buckets/alias` `{"bucket", "alias", "key"?}` and `/v1/buckets/unalias` `{"alias", "key"?}`
//!   (a global name, or with `key` a name only that key sees).

use std::collections::BTreeMap;

use hyper::{Method, StatusCode};
use serde_json::Value;

use super::{AdminState, ApiError, api, parse_body, reply};
use crate::model::bucket::Bucket;
use crate::model::key::{Key, Permissions};
use crate::model::{Model, ModelError};
use crate::util::url;

impl From<ModelError> for ApiError {
    fn from(e: ModelError) -> ApiError {
        let status = match &e {
            ModelError::NoSuchBucket(_) | ModelError::NoSuchAccessKey(_) => StatusCode::NOT_FOUND,
            ModelError::BucketExists(_) | ModelError::BucketNotEmpty(_) => StatusCode::CONFLICT,
            ModelError::InvalidBucketName(_)
            | ModelError::Invalid(_)
            | ModelError::AmbiguousKey(_) => StatusCode::BAD_REQUEST,
            ModelError::Table(crate::table::TableError::Quorum { .. })
            | ModelError::Table(crate::table::TableError::NoLayout) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

pub(super) async fn route(
    state: &AdminState,
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: Value,
) -> Result<Value, ApiError> {
    let m = &state.model;
    let q = parse_query(query);
    match (method, path) {
        (&Method::GET, "/v1/keys") => reply(&list_keys(m)?),
        (&Method::POST, "/v1/keys") => reply(&create_key(m, parse_body(body)?).await?),
        (&Method::POST, "/v1/keys/import") => reply(&import_key(m, parse_body(body)?).await?),
        (&Method::GET, "/v1/keys/info") => reply(&key_info(m, &q).await?),
        (&Method::POST, "/v1/keys/delete") => reply(&delete_key(m, parse_body(body)?).await?),
        (&Method::POST, "/v1/keys/allow") => reply(&allow_key(m, parse_body(body)?).await?),
        (&Method::GET, "/v1/buckets") => reply(&list_buckets(m)?),
        (&Method::POST, "/v1/buckets") => reply(&create_bucket(m, parse_body(body)?).await?),
        (&Method::GET, "/v1/buckets/info") => reply(&find_bucket(m, &q).await?),
        (&Method::POST, "/v1/buckets/delete") => reply(&delete_bucket(m, parse_body(body)?).await?),
        (&Method::POST, "/v1/buckets/alias") => reply(&alias(m, parse_body(body)?).await?),
        (&Method::POST, "/v1/buckets/unalias") => reply(&unalias(m, parse_body(body)?).await?),
        (&Method::POST, "/v1/buckets/allow") => reply(&rights(m, parse_body(body)?, true).await?),
        (&Method::POST, "/v1/buckets/deny") => reply(&rights(m, parse_body(body)?, false).await?),
        (&Method::POST, "/v1/buckets/public") => reply(&public(m, parse_body(body)?).await?),
        (&Method::POST, "/v1/buckets/website") => reply(&website(m, parse_body(body)?).await?),
        _ => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no such admin endpoint: {method} {path}"),
        )),
    }
}

/// A required request field, with the answer clients have always had when it is missing.
fn required(v: Option<String>, name: &str) -> Result<String, ApiError> {
    v.ok_or_else(|| ApiError::bad_request(format!("\"{name}\" is required")))
}

fn list_keys(m: &Model) -> Result<api::KeyList, ApiError> {
    let keys = m
        .list_keys()?
        .iter()
        .map(|k| api::KeyListItem {
            id: k.id.clone(),
            name: key_name(k),
        })
        .collect();
    Ok(api::KeyList { keys })
}

async fn create_key(m: &Model, req: api::CreateRequest) -> Result<api::KeyInfo, ApiError> {
    let k = m.create_key(&required(req.name, "name")?).await?;
    Ok(key_info_of(m, &k, true))
}

async fn import_key(m: &Model, req: api::ImportKeyRequest) -> Result<api::KeyInfo, ApiError> {
    let id = required(req.id, "id")?;
    let name = req.name.unwrap_or_else(|| id.clone());
    let k = m
        .import_key(&id, &required(req.secret, "secret")?, &name)
        .await?;
    Ok(key_info_of(m, &k, true))
}

async fn key_info(m: &Model, q: &BTreeMap<String, String>) -> Result<api::KeyInfo, ApiError> {
    let pat = q
        .get("key")
        .ok_or_else(|| ApiError::bad_request("?key= is required"))?;
    let k = m.find_key(pat).await?;
    let secret = q.get("show_secret").map(String::as_str) == Some("true");
    Ok(key_info_of(m, &k, secret))
}

async fn delete_key(m: &Model, req: api::KeyRequest) -> Result<api::Deleted, ApiError> {
    let k = m.delete_key(&required(req.key, "key")?).await?;
    Ok(api::Deleted {
        id: k.id,
        deleted: true,
    })
}

async fn allow_key(m: &Model, req: api::KeyRequest) -> Result<api::KeyInfo, ApiError> {
    let create = req
        .create_bucket
        .ok_or_else(|| ApiError::bad_request("\"create_bucket\": true|false is required"))?;
    let k = m
        .set_key_permissions(&required(req.key, "key")?, None, Some(create))
        .await?;
    Ok(key_info_of(m, &k, false))
}

fn list_buckets(m: &Model) -> Result<api::BucketList, ApiError> {
    let mut buckets: Vec<api::BucketListItem> = m
        .list_buckets()?
        .iter()
        .filter_map(|b| {
            b.params().map(|p| api::BucketListItem {
                id: hex::encode(b.id),
                name: p.name.get().clone(),
                created: p.created,
            })
        })
        .collect();
    buckets.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(api::BucketList { buckets })
}

async fn create_bucket(m: &Model, req: api::CreateRequest) -> Result<api::BucketInfo, ApiError> {
    let b = m.create_bucket(&required(req.name, "name")?, None).await?;
    bucket_info(m, &b).await
}

async fn find_bucket(m: &Model, q: &BTreeMap<String, String>) -> Result<api::BucketInfo, ApiError> {
    let pat = q
        .get("bucket")
        .ok_or_else(|| ApiError::bad_request("?bucket= is required"))?;
    bucket_info(m, &m.bucket_by_name_or_id(pat).await?).await
}

async fn delete_bucket(m: &Model, req: api::BucketRequest) -> Result<api::Deleted, ApiError> {
    let b = m
        .bucket_by_name_or_id(&required(req.bucket, "bucket")?)
        .await?;
    // As S3's DeleteBucket: refused while an object is left; uploads under way are aborted with it.
    m.delete_bucket_and_uploads(&b).await?;
    Ok(api::Deleted {
        id: hex::encode(b.id),
        deleted: true,
    })
}

async fn public(m: &Model, req: api::PublicRequest) -> Result<api::BucketInfo, ApiError> {
    let b = m
        .bucket_by_name_or_id(&required(req.bucket, "bucket")?)
        .await?;
    let read = req
        .read
        .ok_or_else(|| ApiError::bad_request("\"read\" is required"))?;
    let b = m.set_bucket_public_read(&b.id, read).await?;
    bucket_info(m, &b).await
}

async fn website(m: &Model, req: api::WebsiteRequest) -> Result<api::BucketInfo, ApiError> {
    let b = m
        .bucket_by_name_or_id(&required(req.bucket, "bucket")?)
        .await?;
    let allow = req
        .allow
        .ok_or_else(|| ApiError::bad_request("\"allow\" is required"))?;
    let config = if allow {
        let index = req.index_document.unwrap_or_else(|| "index.html".into());
        if index.is_empty() || index.contains('/') || index.len() > 1024 {
            return Err(ApiError::bad_request(
                "the index document must be a non-empty name without a slash",
            ));
        }
        if req
            .error_document
            .as_ref()
            .is_some_and(|e| e.is_empty() || e.len() > 1024)
        {
            return Err(ApiError::bad_request("the error document must be a key"));
        }
        // Keeps the bucket's routing rules when only the documents change.
        let rules = b
            .params()
            .and_then(|p| p.website())
            .map(|w| w.routing_rules.clone())
            .unwrap_or_default();
        Some(crate::model::website::WebsiteConfig {
            index_suffix: Some(index),
            error_key: req.error_document,
            redirect_all: None,
            routing_rules: rules,
        })
    } else {
        None
    };
    m.set_bucket_website(&b.id, config).await?;
    let b = m.bucket_by_name_or_id(&hex::encode(b.id)).await?;
    bucket_info(m, &b).await
}

async fn alias(m: &Model, req: api::AliasRequest) -> Result<api::BucketInfo, ApiError> {
    let b = m
        .bucket_by_name_or_id(&required(req.bucket, "bucket")?)
        .await?;
    m.alias_bucket(&b, &required(req.alias, "alias")?, req.key.as_deref())
        .await?;
    bucket_info(m, &b).await
}

async fn unalias(m: &Model, req: api::AliasRequest) -> Result<api::Unaliased, ApiError> {
    let alias = required(req.alias, "alias")?;
    m.unalias_bucket(&alias, req.key.as_deref()).await?;
    Ok(api::Unaliased {
        alias,
        removed: true,
    })
}

/// `allow` adds the rights the request gives, deny (`allow == false`) removes them.
async fn rights(
    m: &Model,
    req: api::RightsRequest,
    allow: bool,
) -> Result<api::BucketInfo, ApiError> {
    let b = m
        .bucket_by_name_or_id(&required(req.bucket, "bucket")?)
        .await?;
    let k = m.find_key(&required(req.key, "key")?).await?;
    let given = |f: Option<bool>| f.unwrap_or(false);
    let (read, write, owner) = (given(req.read), given(req.write), given(req.owner));
    if !(read || write || owner) {
        return Err(ApiError::bad_request(
            "give at least one of read, write, owner",
        ));
    }
    let mut p = k.permissions(&b.id);
    let set = |cur: &mut bool, given: bool| {
        if given {
            *cur = allow;
        }
    };
    set(&mut p.read, read);
    set(&mut p.write, write);
    set(&mut p.owner, owner);
    m.set_key_permissions(&k.id, Some((b.id, p)), None).await?;
    bucket_info(m, &b).await
}

fn parse_query(q: Option<&str>) -> BTreeMap<String, String> {
    url::parse_query(q.unwrap_or("")).unwrap_or_default()
}

fn key_name(k: &Key) -> String {
    k.params().map(|p| p.name.get().clone()).unwrap_or_default()
}

fn grant(id: String, name: String, p: &Permissions) -> api::Grant {
    api::Grant {
        id,
        name,
        read: p.read,
        write: p.write,
        owner: p.owner,
    }
}

/// A key, its rights and the buckets it has rights on; `secret` only when asked.
fn key_info_of(m: &Model, k: &Key, secret: bool) -> api::KeyInfo {
    let mut buckets = vec![];
    let all = m.list_buckets().unwrap_or_default();
    if let Some(p) = k.params() {
        for (id, perms) in p.buckets.iter() {
            if perms.is_none() {
                continue;
            }
            let name = all
                .iter()
                .find(|b| b.id == *id)
                .and_then(|b| b.params().map(|p| p.name.get().clone()));
            let Some(name) = name else { continue };
            buckets.push(grant(hex::encode(id), name, perms));
        }
    }
    api::KeyInfo {
        id: k.id.clone(),
        name: key_name(k),
        allow_create_bucket: k.params().is_some_and(|p| *p.allow_create_bucket.get()),
        buckets,
        secret: if secret {
            k.params().map(|p| p.secret.clone())
        } else {
            None
        },
    }
}

async fn bucket_info(m: &Model, b: &Bucket) -> Result<api::BucketInfo, ApiError> {
    let id = &b.id;
    let (objects, bytes) = m.bucket_usage(id).await?;
    let keys = m
        .bucket_keys(id)?
        .iter()
        .map(|(k, p)| grant(k.id.clone(), key_name(k), p))
        .collect();
    let local_aliases = m
        .list_keys()?
        .iter()
        .flat_map(|k| {
            k.params()
                .into_iter()
                .flat_map(|p| p.local_aliases.iter())
                .filter(|(_, v)| **v == Some(*id))
                .map(|(a, _)| api::LocalAlias {
                    key: k.id.clone(),
                    alias: a.clone(),
                })
                .collect::<Vec<_>>()
        })
        .collect();
    Ok(api::BucketInfo {
        id: hex::encode(b.id),
        name: b.params().map(|p| p.name.get().clone()),
        local_aliases,
        created: b.params().map(|p| p.created),
        objects,
        bytes,
        keys,
        public_read: b.params().is_some_and(|p| p.objects_public()),
        acl: b
            .params()
            .map(|p| p.canned_acl())
            .unwrap_or_default()
            .as_str()
            .to_string(),
        website: b
            .params()
            .and_then(|p| p.website())
            .map(|w| api::WebsiteInfo {
                index_document: w.index_suffix.clone(),
                error_document: w.error_key.clone(),
                redirect_all: w.redirect_all.as_ref().map(|r| match &r.protocol {
                    Some(p) => format!("{p}://{}", r.host_name),
                    None => r.host_name.clone(),
                }),
                routing_rules: w.routing_rules.len(),
            }),
    })
}
