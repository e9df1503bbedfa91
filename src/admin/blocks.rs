//! Blocks and background workers.
//!
//! - `GET /v1/workers`: every worker's state and progress, and the tunables.
//! - `POST /v1/workers/set` `{"name": "resync-tranquility", "value": 0}`: change a tunable now.
//! - `POST /v1/repair/scrub` `{"command": "start|pause|resume|cancel"}`: control the scrub.
//! - `POST /v1/repair/blocks`: queue a check of every block this node references or holds.
//! - Test tools under `/v1/debug/blocks` (the two POSTs only with `test_hooks = true`): `POST .../generate` `{"count", "size", "seed", "ref",
//!   "compressible"}` writes deterministic pseudo-random blocks with a reference named `ref`;
//!   `GET .../<hash>` reads one (reporting who served it and how long it took); `GET .../local` lists
//!   the blocks stored on this node; `POST .../unref` `{"ref", "hashes"}` deletes references.

use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use rand::{RngCore, SeedableRng};
use serde_json::{Value, json};

use super::{AdminState, ApiError};
use crate::block::BlockError;
use crate::block::refs::BlockRef;
use crate::block::scrub::ScrubCommand;
use crate::util::hash::{Hash, blake2sum};

/// Largest test write accepted by `generate`.
const MAX_GENERATE: u64 = 1 << 30;

impl From<BlockError> for ApiError {
    fn from(e: BlockError) -> ApiError {
        let status = match &e {
            BlockError::NotFound(_) => StatusCode::NOT_FOUND,
            BlockError::Quorum { .. } | BlockError::NoLayout => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

pub(super) async fn route(
    state: &AdminState,
    method: &Method,
    path: &str,
    body: Value,
) -> Result<Value, ApiError> {
    match (method, path) {
        (&Method::GET, "/v1/workers") => Ok(json!({
            "workers": state.workers.list(),
            "variables": state.workers.tunables(),
        })),
        (&Method::POST, "/v1/workers/set") => {
            let name = body["name"].as_str().ok_or_else(|| {
                ApiError::bad_request("body must be {\"name\": ..., \"value\": N}")
            })?;
            let value = body["value"]
                .as_u64()
                .ok_or_else(|| ApiError::bad_request("\"value\" must be a non-negative integer"))?;
            state
                .workers
                .set(name, value)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            Ok(json!({"name": name, "value": value}))
        }
        (&Method::POST, "/v1/repair/scrub") => {
            let command: ScrubCommand = match &body["command"] {
                Value::Null => ScrubCommand::Start,
                c => serde_json::from_value(c.clone()).map_err(|_| {
                    ApiError::bad_request("command must be start, pause, resume or cancel")
                })?,
            };
            Ok(json!(state.scrub.command(command)?))
        }
        (&Method::POST, "/v1/repair/blocks") => {
            state.resync.request_scan();
            Ok(json!({"scan": "started"}))
        }
        (&Method::POST, "/v1/debug/blocks/generate") => generate(state, &body).await,
        (&Method::POST, "/v1/debug/blocks/unref") => unref(state, &body).await,
        (&Method::GET, "/v1/debug/blocks/local") => {
            let store = state.block.store.clone();
            let all = tokio::task::spawn_blocking(move || store.list_after(None, usize::MAX))
                .await
                .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
            Ok(json!({"blocks": all.iter().map(hex::encode).collect::<Vec<_>>()}))
        }
        (&Method::GET, p) if p.starts_with("/v1/debug/blocks/") => {
            let hash = parse_hash(&p["/v1/debug/blocks/".len()..])?;
            let start = Instant::now();
            let (data, node) = state.block.get_block_traced(&hash).await?;
            let elapsed = start.elapsed();
            Ok(json!({
                "hash": hex::encode(hash),
                "len": data.len(),
                "blake2": hex::encode(blake2sum(&data)),
                "served_by": node.to_hex(),
                "elapsed_ms": elapsed.as_secs_f64() * 1000.0,
            }))
        }
        _ => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no such admin endpoint: {method} {path}"),
        )),
    }
}

/// The block section of `/v1/stats`.
pub(super) fn stats(state: &AdminState) -> Result<Value, ApiError> {
    let b = &state.block;
    let m = &b.metrics;
    let dirs: Vec<Value> = b
        .store
        .dirs()
        .into_iter()
        .map(|d| {
            json!({"path": d.path, "capacity": d.capacity, "read_only": d.read_only,
                   "avail": d.avail, "total": d.total})
        })
        .collect();
    Ok(json!({
        "referenced_blocks": b.rc.tree().len().map_err(crate::block::BlockError::from)?,
        "resync_queue": b.resync.len().map_err(crate::block::BlockError::from)?,
        "resync_errors": b.resync.errors_len().map_err(crate::block::BlockError::from)?,
        "buffer_used": b.buffer_used(),
        "blocks_written": m.blocks_written.load(Ordering::Relaxed),
        "bytes_written": m.bytes_written.load(Ordering::Relaxed),
        "blocks_read_local": m.blocks_read_local.load(Ordering::Relaxed),
        "blocks_read_remote": m.blocks_read_remote.load(Ordering::Relaxed),
        "blocks_served": m.blocks_served.load(Ordering::Relaxed),
        "hedged_reads": m.hedged_reads.load(Ordering::Relaxed),
        "corrupted_found": m.corrupted_found.load(Ordering::Relaxed),
        "data_dirs": dirs,
    }))
}

fn parse_hash(s: &str) -> Result<Hash, ApiError> {
    let v = hex::decode(s).map_err(|_| ApiError::bad_request("a block hash is 64 hex digits"))?;
    v.try_into()
        .map_err(|_| ApiError::bad_request("a block hash is 64 hex digits"))
}

fn ref_user(name: &str) -> Hash {
    blake2sum(format!("debug-ref:{name}").as_bytes())
}

/// Write `count` deterministic blocks of `size` bytes (seeded), each with a reference named `ref`.
async fn generate(state: &AdminState, body: &Value) -> Result<Value, ApiError> {
    let count = body["count"].as_u64().unwrap_or(1);
    let size = body["size"].as_u64().unwrap_or(state.block_size);
    let seed = body["seed"].as_u64().unwrap_or(0);
    let compressible = body["compressible"].as_bool().unwrap_or(false);
    let name = body["ref"].as_str().unwrap_or("debug");
    if count.saturating_mul(size) > MAX_GENERATE || size == 0 || size > state.block_size {
        return Err(ApiError::bad_request(format!(
            "count × size must be ≤ 1 GiB and 0 < size ≤ block_size ({})",
            state.block_size
        )));
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut hashes = vec![];
    let start = Instant::now();
    for _ in 0..count {
        let mut data = vec![0u8; size as usize];
        rng.fill_bytes(&mut data);
        if compressible {
            data[size as usize / 8..].fill(b'g');
        }
        let hash = blake2sum(&data);
        state.block.put_block(hash, Bytes::from(data)).await?;
        state
            .block_ref
            .insert(&BlockRef::new(hash, ref_user(name)))
            .await?;
        hashes.push(hex::encode(hash));
    }
    Ok(json!({"blocks": hashes, "elapsed_ms": start.elapsed().as_secs_f64() * 1000.0}))
}

/// Delete the references named `ref` to the given blocks.
async fn unref(state: &AdminState, body: &Value) -> Result<Value, ApiError> {
    let name = body["ref"].as_str().unwrap_or("debug");
    let hashes = body["hashes"]
        .as_array()
        .ok_or_else(|| ApiError::bad_request("\"hashes\" must be a list of block hashes"))?;
    for h in hashes {
        let hash = parse_hash(h.as_str().unwrap_or(""))?;
        state
            .block_ref
            .insert(&BlockRef::deleted(hash, ref_user(name)))
            .await?;
    }
    Ok(json!({"unreferenced": hashes.len()}))
}
