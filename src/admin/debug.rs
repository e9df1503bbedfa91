//! Table statistics and the test key-value table.
//!
//! `/v1/debug/kv/<partition>/<key>`: PUT `{"value": "..."}`, GET, DELETE; `/v1/debug/kv/<partition>` GET
//! lists (`?start=<key>&limit=<n>&reverse=true`, `limit` at most [`MAX_KV_LIST`]). Path segments are
//! percent-decoded. The kv endpoints exist only with `test_hooks = true` (routing in `admin/mod.rs`).

use hyper::{Method, StatusCode};
use serde_json::Value;

use super::{AdminState, ApiError, api, parse_body_or, reply};
use crate::table::kv::KvEntry;
use crate::table::{TableMetrics, sync::LastFullSync};
use crate::util::url::{self, DecodeError, Plus};

/// Most entries one kv listing returns.
pub const MAX_KV_LIST: usize = 10_000;

pub(super) async fn route(
    state: &AdminState,
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: Value,
) -> Result<Value, ApiError> {
    if path == "/v1/repair/tables" && method == Method::POST {
        return reply(&repair_tables(state).await?);
    }
    if path == "/v1/stats" {
        return reply(&stats(state)?);
    }
    let rest = path.strip_prefix("/v1/debug/kv/").ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("no such admin endpoint: {method} {path}"),
        )
    })?;
    kv(state, method, path, rest, query, body).await
}

/// A full anti-entropy pass of every table.
async fn repair_tables(state: &AdminState) -> Result<api::TablesRepaired, ApiError> {
    let mut tables = vec![];
    for t in &state.tables {
        let m = t.metrics()?;
        let synced = t.sync_now().await;
        tables.push(api::TableSynced {
            table: m.table.to_string(),
            synced,
        });
    }
    Ok(api::TablesRepaired { tables })
}

fn stats(state: &AdminState) -> Result<api::Stats, ApiError> {
    let mut tables = vec![];
    for t in &state.tables {
        tables.push(table_stats(t.metrics()?));
    }
    Ok(api::Stats {
        node: state.system.id().to_hex(),
        health: super::cluster::health_api(state.system.health().health),
        tables,
        blocks: super::blocks::stats(state)?,
    })
}

fn table_stats(m: TableMetrics) -> api::TableStats {
    api::TableStats {
        table: m.table.to_string(),
        entries: m.entries,
        merkle_todo: m.merkle_todo,
        gc_todo: m.gc_todo,
        local_writes: m.local_writes,
        last_full_sync: m.last_full_sync.map(|s: LastFullSync| api::LastFullSync {
            at_msec: s.at_msec,
            complete: s.complete,
            partitions_differing: s.partitions_differing,
            entries_pushed: s.entries_pushed,
        }),
    }
}

/// `/v1/debug/kv/<partition>[/<key>]` (`rest` is what follows `/v1/debug/kv/`).
async fn kv(
    state: &AdminState,
    method: &Method,
    path: &str,
    rest: &str,
    query: Option<&str>,
    body: Value,
) -> Result<Value, ApiError> {
    let (partition, key) = match rest.split_once('/') {
        Some((p, k)) => (percent_decode(p)?, Some(percent_decode(k)?)),
        None => (percent_decode(rest)?, None),
    };
    let kv = state.kv.as_ref().ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            "the test kv table exists only with `test_hooks = true`".into(),
        )
    })?;
    let by = state.system.id().as_u64();
    match (method, key) {
        (&Method::PUT, Some(key)) => {
            let req: api::KvPutRequest =
                parse_body_or(body, "body must be {\"value\": \"<string>\"}")?;
            let value = req
                .value
                .ok_or_else(|| ApiError::bad_request("body must be {\"value\": \"<string>\"}"))?;
            kv.insert(&KvEntry::new_by(
                by,
                &partition,
                &key,
                Some(value.into_bytes()),
            ))
            .await?;
            reply(&api::KvStored {
                partition,
                key,
                stored: true,
            })
        }
        (&Method::DELETE, Some(key)) => {
            kv.insert(&KvEntry::new_by(by, &partition, &key, None))
                .await?;
            reply(&api::KvDeleted {
                partition,
                key,
                deleted: true,
            })
        }
        (&Method::GET, Some(key)) => match kv.get(&partition, &key).await? {
            Some(e) if e.value().is_some() => reply(&kv_entry(&e)),
            _ => Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("no entry {partition}/{key}"),
            )),
        },
        (&Method::GET, None) => {
            let (start, limit, reverse) = list_params(query)?;
            let entries = kv
                .get_range(&partition, start.as_ref(), None, limit, reverse)
                .await?;
            reply(&api::KvList {
                partition,
                entries: entries.iter().map(kv_entry).collect(),
            })
        }
        _ => Err(ApiError(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not supported on {path}"),
        )),
    }
}

/// `?start=<key>&limit=<n>&reverse=true` of a kv listing.
fn list_params(query: Option<&str>) -> Result<(Option<String>, usize, bool), ApiError> {
    let params = parse_query(query);
    let start = params
        .iter()
        .find(|(k, _)| k == "start")
        .map(|(_, v)| v.clone());
    let limit = params
        .iter()
        .find(|(k, _)| k == "limit")
        .map(|(_, v)| {
            v.parse::<usize>()
                .map_err(|_| ApiError::bad_request("limit must be a number"))
        })
        .transpose()?
        .unwrap_or(1000)
        .min(MAX_KV_LIST);
    let reverse = params.iter().any(|(k, v)| k == "reverse" && v == "true");
    Ok((start, limit, reverse))
}

fn kv_entry(e: &KvEntry) -> api::KvEntry {
    api::KvEntry {
        key: e.key.clone(),
        value: e.value().map(|v| String::from_utf8_lossy(v).into_owned()),
    }
}

fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    url::decode_query(q.unwrap_or(""))
        .filter_map(Result::ok)
        .collect()
}

/// A path segment, strictly decoded ([`url::decode`]), errors as 400s.
pub(super) fn percent_decode(s: &str) -> Result<String, ApiError> {
    url::decode(s, Plus::Literal).map_err(|e| match e {
        DecodeError::BadEscape => ApiError::bad_request(format!("bad percent-encoding in `{s}`")),
        DecodeError::NotUtf8 => ApiError::bad_request(format!("`{s}` is not UTF-8 once decoded")),
    })
}

#[cfg(test)]
mod tests {
    /// The admin API decodes as the S3 router does: a signed hex escape (`%+F`, which the old
    /// `from_str_radix` decoder here accepted) is a bad escape, and errors name the segment.
    #[test]
    fn percent_decoding_is_strict() {
        assert_eq!(super::percent_decode("a%20b%2Fc").unwrap(), "a b/c");
        for s in ["%zz", "%+F", "a%+0b"] {
            let e = super::percent_decode(s).unwrap_err();
            assert_eq!(e.1, format!("bad percent-encoding in `{s}`"));
        }
        let e = super::percent_decode("%ff").unwrap_err();
        assert_eq!(e.1, "`%ff` is not UTF-8 once decoded");
        let q = super::parse_query(Some("start=a+b&bad=%+F&limit=2"));
        assert_eq!(
            q,
            [("start".into(), "a b".into()), ("limit".into(), "2".into())]
        );
    }
}
