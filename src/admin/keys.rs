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
use serde_json::{Value, json};

use super::{AdminState, ApiError};
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
    let s = |k: &str| -> Result<String, ApiError> {
        body[k]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ApiError::bad_request(format!("\"{k}\" is required")))
    };
    match (method, path) {
        (&Method::GET, "/v1/keys") => {
            let keys: Vec<Value> = m
                .list_keys()?
                .iter()
                .map(|k| json!({"id": k.id, "name": key_name(k)}))
                .collect();
            Ok(json!({ "keys": keys }))
        }
        (&Method::POST, "/v1/keys") => {
            let k = m.create_key(&s("name")?).await?;
            Ok(key_json(m, &k, true))
        }
        (&Method::POST, "/v1/keys/import") => {
            let id = s("id")?;
            let name = body["name"].as_str().unwrap_or(&id).to_string();
            let k = m.import_key(&id, &s("secret")?, &name).await?;
            Ok(key_json(m, &k, true))
        }
        (&Method::GET, "/v1/keys/info") => {
            let pat = q
                .get("key")
                .ok_or_else(|| ApiError::bad_request("?key= is required"))?;
            let k = m.find_key(pat).await?;
            Ok(key_json(
                m,
                &k,
                q.get("show_secret").map(String::as_str) == Some("true"),
            ))
        }
        (&Method::POST, "/v1/keys/delete") => {
            let k = m.delete_key(&s("key")?).await?;
            Ok(json!({"id": k.id, "deleted": true}))
        }
        (&Method::POST, "/v1/keys/allow") => {
            let create = body["create_bucket"].as_bool().ok_or_else(|| {
                ApiError::bad_request("\"create_bucket\": true|false is required")
            })?;
            let k = m
                .set_key_permissions(&s("key")?, None, Some(create))
                .await?;
            Ok(key_json(m, &k, false))
        }
        (&Method::GET, "/v1/buckets") => {
            let mut list: Vec<Value> = m
                .list_buckets()?
                .iter()
                .filter_map(|b| {
                    b.params().map(|p| {
                        json!({"id": hex::encode(b.id), "name": p.name.get(), "created": p.created})
                    })
                })
                .collect();
            list.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
            Ok(json!({ "buckets": list }))
        }
        (&Method::POST, "/v1/buckets") => {
            let b = m.create_bucket(&s("name")?, None).await?;
            bucket_json(m, &b).await
        }
        (&Method::GET, "/v1/buckets/info") => {
            let pat = q
                .get("bucket")
                .ok_or_else(|| ApiError::bad_request("?bucket= is required"))?;
            let b = m.bucket_by_name_or_id(pat).await?;
            bucket_json(m, &b).await
        }
        (&Method::POST, "/v1/buckets/delete") => {
            let b = m.bucket_by_name_or_id(&s("bucket")?).await?;
            m.delete_bucket(&b).await?;
            Ok(json!({"id": hex::encode(b.id), "deleted": true}))
        }
        (&Method::POST, "/v1/buckets/alias") => {
            let b = m.bucket_by_name_or_id(&s("bucket")?).await?;
            m.alias_bucket(&b, &s("alias")?, body["key"].as_str())
                .await?;
            bucket_json(m, &b).await
        }
        (&Method::POST, "/v1/buckets/unalias") => {
            m.unalias_bucket(&s("alias")?, body["key"].as_str()).await?;
            Ok(json!({"alias": s("alias")?, "removed": true}))
        }
        (&Method::POST, "/v1/buckets/allow" | "/v1/buckets/deny") => {
            let allow = path.ends_with("allow");
            let b = m.bucket_by_name_or_id(&s("bucket")?).await?;
            let k = m.find_key(&s("key")?).await?;
            let flag = |n: &str| body[n].as_bool().unwrap_or(false);
            let (read, write, owner) = (flag("read"), flag("write"), flag("owner"));
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
            bucket_json(m, &b).await
        }
        _ => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no such admin endpoint: {method} {path}"),
        )),
    }
}

fn parse_query(q: Option<&str>) -> BTreeMap<String, String> {
    url::parse_query(q.unwrap_or("")).unwrap_or_default()
}

fn key_name(k: &Key) -> String {
    k.params().map(|p| p.name.get().clone()).unwrap_or_default()
}

fn perms_json(p: &Permissions) -> Value {
    json!({"read": p.read, "write": p.write, "owner": p.owner})
}

fn key_json(m: &Model, k: &Key, secret: bool) -> Value {
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
            let mut v = perms_json(perms);
            v["id"] = json!(hex::encode(id));
            v["name"] = json!(name);
            buckets.push(v);
        }
    }
    let mut v = json!({
        "id": k.id,
        "name": key_name(k),
        "allow_create_bucket": k.params().is_some_and(|p| *p.allow_create_bucket.get()),
        "buckets": buckets,
    });
    if secret {
        v["secret"] = json!(k.params().map(|p| p.secret.clone()));
    }
    v
}

async fn bucket_json(m: &Model, b: &Bucket) -> Result<Value, ApiError> {
    let id = &b.id;
    let (objects, bytes) = m.bucket_usage(id).await?;
    let keys: Vec<Value> = m
        .bucket_keys(id)?
        .iter()
        .map(|(k, p)| {
            let mut v = perms_json(p);
            v["id"] = json!(k.id);
            v["name"] = json!(key_name(k));
            v
        })
        .collect();
    let local_aliases: Vec<Value> = m
        .list_keys()?
        .iter()
        .flat_map(|k| {
            k.params()
                .into_iter()
                .flat_map(|p| p.local_aliases.iter())
                .filter(|(_, v)| **v == Some(*id))
                .map(|(a, _)| json!({"key": k.id, "alias": a}))
                .collect::<Vec<_>>()
        })
        .collect();
    Ok(json!({
        "id": hex::encode(b.id),
        "name": b.params().map(|p| p.name.get().clone()),
        "local_aliases": local_aliases,
        "created": b.params().map(|p| p.created),
        "objects": objects,
        "bytes": bytes,
        "keys": keys,
    }))
}
