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
use serde_json::Value;

use super::{AdminState, ApiError, api, parse_body, parse_body_or, reply};
use crate::block::BlockError;
use crate::block::refs::BlockRef;
use crate::block::scrub::{ScrubCommand, ScrubState};
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
        (&Method::GET, "/v1/workers") => reply(&workers(state)),
        (&Method::POST, "/v1/workers/set") => reply(&set_variable(state, parse_body(body)?)?),
        (&Method::POST, "/v1/repair/scrub") => {
            let req = parse_body_or(body, "command must be start, pause, resume or cancel")?;
            reply(&scrub(state, req)?)
        }
        (&Method::POST, "/v1/repair/blocks") => {
            state.resync.request_scan();
            reply(&api::ScanStarted {
                scan: "started".into(),
            })
        }
        (&Method::POST, "/v1/debug/blocks/generate") => {
            reply(&generate(state, parse_body(body)?).await?)
        }
        (&Method::POST, "/v1/debug/blocks/unref") => reply(&unref(state, parse_body(body)?).await?),
        (&Method::GET, "/v1/debug/blocks/local") => reply(&local_blocks(state).await?),
        (&Method::GET, p) if p.starts_with("/v1/debug/blocks/") => {
            reply(&read_block(state, &p["/v1/debug/blocks/".len()..]).await?)
        }
        _ => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no such admin endpoint: {method} {path}"),
        )),
    }
}

fn workers(state: &AdminState) -> api::Workers {
    api::Workers {
        workers: state.workers.list(),
        variables: state.workers.tunables(),
    }
}

fn set_variable(
    state: &AdminState,
    req: api::SetVariableRequest,
) -> Result<api::VariableSet, ApiError> {
    let name = req
        .name
        .ok_or_else(|| ApiError::bad_request("body must be {\"name\": ..., \"value\": N}"))?;
    let value = req
        .value
        .ok_or_else(|| ApiError::bad_request("\"value\" must be a non-negative integer"))?;
    state
        .workers
        .set(&name, value)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(api::VariableSet { name, value })
}

fn scrub(state: &AdminState, req: api::ScrubRequest) -> Result<api::ScrubStatus, ApiError> {
    let command = req.command.unwrap_or(ScrubCommand::Start);
    let s: ScrubState = state.scrub.command(command)?;
    Ok(api::ScrubStatus {
        running: s.running,
        paused: s.paused,
        position: s.position.map(|h| h.to_vec()),
        checked: s.checked,
        corrupted: s.corrupted,
        started_at: s.started_at,
        last_completed: s.last_completed,
    })
}

async fn local_blocks(state: &AdminState) -> Result<api::LocalBlocks, ApiError> {
    let store = state.block.store.clone();
    let all = tokio::task::spawn_blocking(move || store.list_after(None, usize::MAX))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(api::LocalBlocks {
        blocks: all.iter().map(hex::encode).collect(),
    })
}

/// Read one block through this node, saying who served it and how long it took.
async fn read_block(state: &AdminState, hash: &str) -> Result<api::BlockRead, ApiError> {
    let hash = parse_hash(hash)?;
    let start = Instant::now();
    let (data, node) = state.block.get_block_traced(&hash).await?;
    let elapsed = start.elapsed();
    Ok(api::BlockRead {
        hash: hex::encode(hash),
        len: data.len(),
        blake2: hex::encode(blake2sum(&data)),
        served_by: node.to_hex(),
        elapsed_ms: elapsed.as_secs_f64() * 1000.0,
    })
}

/// The block section of `/v1/stats`.
pub(super) fn stats(state: &AdminState) -> Result<api::BlockStats, ApiError> {
    let b = &state.block;
    let m = &b.metrics;
    let data_dirs = b
        .store
        .dirs()
        .into_iter()
        .map(|d| api::DataDir {
            path: d.path.to_string_lossy().into_owned(),
            capacity: d.capacity,
            read_only: d.read_only,
            avail: d.avail,
            total: d.total,
        })
        .collect();
    Ok(api::BlockStats {
        referenced_blocks: b.rc.tree().len().map_err(BlockError::from)?,
        resync_queue: b.resync.len().map_err(BlockError::from)?,
        resync_errors: b.resync.errors_len().map_err(BlockError::from)?,
        buffer_used: b.buffer_used(),
        blocks_written: m.blocks_written.load(Ordering::Relaxed),
        bytes_written: m.bytes_written.load(Ordering::Relaxed),
        blocks_read_local: m.blocks_read_local.load(Ordering::Relaxed),
        blocks_read_remote: m.blocks_read_remote.load(Ordering::Relaxed),
        blocks_served: m.blocks_served.load(Ordering::Relaxed),
        hedged_reads: m.hedged_reads.load(Ordering::Relaxed),
        corrupted_found: m.corrupted_found.load(Ordering::Relaxed),
        data_dirs,
    })
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
async fn generate(
    state: &AdminState,
    req: api::GenerateRequest,
) -> Result<api::Generated, ApiError> {
    let count = req.count.unwrap_or(1);
    let size = req.size.unwrap_or(state.block_size);
    let name = req.reference.as_deref().unwrap_or("debug");
    if count.saturating_mul(size) > MAX_GENERATE || size == 0 || size > state.block_size {
        return Err(ApiError::bad_request(format!(
            "count × size must be ≤ 1 GiB and 0 < size ≤ block_size ({})",
            state.block_size
        )));
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(req.seed.unwrap_or(0));
    let mut blocks = vec![];
    let start = Instant::now();
    for _ in 0..count {
        let mut data = vec![0u8; size as usize];
        rng.fill_bytes(&mut data);
        if req.compressible.unwrap_or(false) {
            data[size as usize / 8..].fill(b'g');
        }
        let hash = blake2sum(&data);
        state.block.put_block(hash, Bytes::from(data)).await?;
        state
            .block_ref
            .insert(&BlockRef::new(hash, ref_user(name)))
            .await?;
        blocks.push(hex::encode(hash));
    }
    Ok(api::Generated {
        blocks,
        elapsed_ms: start.elapsed().as_secs_f64() * 1000.0,
    })
}

/// Delete the references named `ref` to the given blocks.
async fn unref(state: &AdminState, req: api::UnrefRequest) -> Result<api::Unreferenced, ApiError> {
    let name = req.reference.as_deref().unwrap_or("debug");
    let hashes = req
        .hashes
        .ok_or_else(|| ApiError::bad_request("\"hashes\" must be a list of block hashes"))?;
    for h in &hashes {
        let hash = parse_hash(h)?;
        state
            .block_ref
            .insert(&BlockRef::deleted(hash, ref_user(name)))
            .await?;
    }
    Ok(api::Unreferenced {
        unreferenced: hashes.len(),
    })
}
