//! Tombstone garbage collection.
//!
//! # Why tombstones are kept, and why every replica must have them before one is removed
//!
//! A deletion is an update like any other: the entry becomes a *tombstone* (a CRDT state that wins over
//! every older value), written to a quorum of replicas. Removing it from storage right away would be
//! unsafe: a replica that was offline (or simply outside the write quorum) still holds the old live
//! value, and anti-entropy or a read repair would copy that value back to the others, resurrecting the
//! deleted entry. So [`super::TableData::update_entry`] records every new tombstone in the table's
//! `gc_todo` tree (`key ‖ blake2(value)` → time of the local write, 8 bytes big-endian), and this module
//! removes it only once
//!
//! 1. a **delay** has passed since this node stored it (default [`DEFAULT_GC_DELAY`], 24 h): late writes
//!    still in flight, read repairs and anti-entropy rounds have had time to settle, and an older value
//!    that reaches a replica after the deletion is merged *under* the tombstone while it is still there;
//! 2. **every** storage node of the entry's partition (every active layout version) acknowledged having
//!    merged exactly that tombstone (step *push* below): after that, no replica can hold a live value
//!    older than the tombstone, so removing it cannot let one come back. A quorum is not enough: the one
//!    replica left out is exactly the one that could resurrect the entry. If any replica is unreachable,
//!    the tombstone simply stays and collection is retried later (with a per-node backoff).
//!
//! # Algorithm (the design of Garage's table GC)
//!
//! The worker ([`TableGc::spawn`]) walks `gc_todo` in chunks ([`GcConfig::scan_limit`] rows), picks up to
//! [`GcConfig::batch`] entries older than the delay, and for each:
//! - **stale check**: if the local store no longer holds exactly that value (its BLAKE2 differs from the
//!   hash in the to-do key, or it is gone), the entry changed since (a newer write, or another replica's
//!   GC removed it): the to-do is dropped;
//! - otherwise the entries are grouped by their set of storage nodes, and for each group:
//!   - **push**: the tombstones are sent to every other storage node ([`GcRpc::Update`], merged like any
//!     update); every node must acknowledge;
//!   - **delete**: every other storage node is asked to delete the entry *if its stored value still has
//!     that hash* ([`GcRpc::DeleteIfEqualHash`]; a node holding a newer value keeps it, and it will reach
//!     the others by the usual paths); every node must acknowledge;
//!   - then the entry is deleted locally under the same condition, and the to-do removed (only if its
//!     timestamp did not change meanwhile, i.e. the tombstone was not stored again).
//!
//! Each replica holds its own to-do for the same tombstone and may drive its collection: that is fine,
//! every step is idempotent, and a replica whose copy was already removed by another one just drops its
//! to-do at the stale check. Local removals go through [`super::TableData::delete_if_equal`], which also
//! records the change for the Merkle tree (so anti-entropy does not see a difference to repair).
//!
//! # Back of the envelope
//!
//! - **Space**: a tombstone lives about `delay` + one scan pass (≤ 10 min): with 1 M deletions a day and
//!   ~200-byte tombstones, ~200 MB of tombstones and ~100 MB of to-do rows per replica at steady state.
//! - **Scanning**: the to-do tree is ordered by key, not by time (its format belongs to `data.rs`), so the
//!   worker scans all of it once per pass: [`GcConfig::pass_interval`] (delay / 100 within
//!   [100 ms, 10 min]) between passes, e.g. 1 M rows ≈ 100 MB read every 10 min, about 1 s of local reads
//!   with redb: negligible next to the writes that created them.
//! - **Network**: per batch of 64 tombstones of a partition group, two messages to each of the rf − 1
//!   other replicas (≈ 64 × 200 B, then 64 × 64 B): with rf 3 and 1 M deletions a day, ~63 k messages a
//!   day per driving node (each replica drives its own to-dos, so up to 3× that cluster-wide, the later
//!   ones being cheap stale drops).
//! - **Latency**: none on the request path; GC only runs in the background.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::TableError;
use super::data::TableData;
use super::replication::TableReplication;
use super::schema::{Entry, TableSchema};
use crate::db::{self, Tree};
use crate::layout::System;
use crate::net::{Endpoint, Message, NetError, NodeId, Prio};
use crate::util::hash::{Hash, blake2sum};
use crate::util::time::now_msec;

/// Default time a tombstone is kept after this node stored it.
pub const DEFAULT_GC_DELAY: Duration = Duration::from_secs(24 * 3600);
/// Most entries one GC message carries (a handler refuses larger batches).
const MAX_ITEMS_PER_MESSAGE: usize = 1024;

/// Tuning of the tombstone GC worker. Build it with [`GcConfig::with_delay`] (or `default()` for 24 h).
#[derive(Clone, Debug)]
pub struct GcConfig {
    /// A tombstone is collected only this long after this node stored it.
    pub delay: Duration,
    /// Most tombstones handled per round.
    pub batch: usize,
    /// Most to-do rows examined per round (the to-do tree is not ordered by time).
    pub scan_limit: usize,
    /// Pause after a full pass over the to-do tree.
    pub pass_interval: Duration,
    /// Timeout of every GC call to another node.
    pub rpc_timeout: Duration,
    /// First retry delay for a node that failed a GC call; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl GcConfig {
    pub fn with_delay(delay: Duration) -> GcConfig {
        GcConfig {
            delay,
            batch: 64,
            scan_limit: 4096,
            pass_interval: (delay / 100)
                .clamp(Duration::from_millis(100), Duration::from_secs(600)),
            rpc_timeout: Duration::from_secs(30),
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig::with_delay(DEFAULT_GC_DELAY)
    }
}

/// GC requests between replicas of a table, on `grenier/table/<name>/gc/v1`.
#[derive(Serialize, Deserialize)]
pub enum GcRpc {
    /// Merge these (encoded) tombstones, like a table update.
    Update(Vec<ByteBuf>),
    /// Delete each `(storage key, value hash)` if the stored value still has that BLAKE2 hash and is a
    /// tombstone.
    DeleteIfEqualHash(Vec<(ByteBuf, Hash)>),
}

#[derive(Serialize, Deserialize)]
pub enum GcRpcResponse {
    Ok,
}

impl Message for GcRpc {
    type Response = GcRpcResponse;
}

/// The RPC path of a table's GC endpoint.
pub fn gc_endpoint_path(table_name: &str) -> String {
    format!("grenier/table/{table_name}/gc/v1")
}

/// One row of `gc_todo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcTodo {
    /// The row's key in `gc_todo` (`key ‖ value_hash`).
    pub todo_key: Vec<u8>,
    /// The entry's storage key (`partition hash ‖ sort key`).
    pub key: Vec<u8>,
    /// BLAKE2 of the tombstone's encoding.
    pub value_hash: Hash,
    /// The row's value (time the tombstone was stored, ms since the epoch, big-endian), kept as is so the
    /// row is removed only if unchanged.
    pub raw_time: Vec<u8>,
}

impl GcTodo {
    /// Parse a `gc_todo` row; `None` if it is malformed.
    pub fn parse(todo_key: &[u8], value: &[u8]) -> Option<GcTodo> {
        if todo_key.len() < 64 || value.len() != 8 {
            return None;
        }
        let (key, vh) = todo_key.split_at(todo_key.len() - 32);
        Some(GcTodo {
            todo_key: todo_key.to_vec(),
            key: key.to_vec(),
            value_hash: vh.try_into().ok()?,
            raw_time: value.to_vec(),
        })
    }

    /// When this node stored the tombstone (ms since the epoch).
    pub fn time_msec(&self) -> u64 {
        self.raw_time
            .as_slice()
            .try_into()
            .map(u64::from_be_bytes)
            .unwrap_or(0)
    }

    /// The partition key hash: the first 32 bytes of the storage key.
    pub fn partition_hash(&self) -> Hash {
        let mut h = [0u8; 32];
        h.copy_from_slice(&self.key[..32]);
        h
    }
}

/// What one scan of `gc_todo` found.
#[derive(Debug, Default)]
pub struct Selection {
    /// Rows old enough to be collected (at most `batch`).
    pub due: Vec<GcTodo>,
    /// Malformed rows `(key, value)`, to drop.
    pub malformed: Vec<(Vec<u8>, Vec<u8>)>,
    /// Where the next scan continues (after this key); `None` when the scan reached the end of the tree.
    pub next: Option<Vec<u8>>,
    /// Rows examined.
    pub examined: usize,
}

/// Scan `gc_todo` after `after` (from the start if `None`): at most `scan_limit` rows, stopping once
/// `batch` rows stored at or before `now_msec − delay_msec` were found.
pub fn select_due(
    gc_todo: &Tree,
    after: Option<&[u8]>,
    now_msec: u64,
    delay_msec: u64,
    scan_limit: usize,
    batch: usize,
) -> Result<Selection, db::Error> {
    let low = match after {
        Some(k) => Bound::Excluded(k),
        None => Bound::Unbounded,
    };
    let deadline = now_msec.saturating_sub(delay_msec);
    let mut sel = Selection::default();
    let mut last: Option<Vec<u8>> = None;
    let mut reached_end = true;
    for row in gc_todo.range((low, Bound::<&[u8]>::Unbounded))? {
        let (k, v) = row?;
        sel.examined += 1;
        match GcTodo::parse(&k, &v) {
            Some(t) if t.time_msec() <= deadline => sel.due.push(t),
            Some(_) => (),
            None => sel.malformed.push((k.clone(), v)),
        }
        last = Some(k);
        if sel.due.len() >= batch.max(1) || sel.examined >= scan_limit.max(1) {
            reached_end = false;
            break;
        }
    }
    sel.next = if reached_end { None } else { last };
    Ok(sel)
}

/// Remove a `gc_todo` row only if it still has the value `expected` (a tombstone stored again meanwhile
/// refreshed it, and must wait again).
pub fn remove_todo_if_equal(
    gc_todo: &Tree,
    key: &[u8],
    expected: &[u8],
) -> Result<bool, db::Error> {
    gc_todo
        .db()
        .clone()
        .transaction(|tx| match tx.get(gc_todo, key)? {
            Some(v) if v == expected => {
                tx.remove(gc_todo, key)?;
                Ok(true)
            }
            _ => Ok(false),
        })
        .map_err(db::flatten)
}

/// The stored encoding of `key` if its BLAKE2 is `value_hash` and it is a tombstone.
pub fn current_tombstone<F: TableSchema>(
    data: &TableData<F>,
    key: &[u8],
    value_hash: &Hash,
) -> Result<Option<Vec<u8>>, TableError> {
    let Some(bytes) = data.read_entry(key)? else {
        return Ok(None);
    };
    if blake2sum(&bytes) != *value_hash {
        return Ok(None);
    }
    // Only tombstones get to-dos; check anyway rather than trust a hash sent by another node.
    if !TableData::<F>::decode(&bytes)?.is_tombstone() {
        return Ok(None);
    }
    Ok(Some(bytes))
}

/// Delete the entry at `key` if its stored encoding has BLAKE2 `value_hash` and is a tombstone (keeping
/// the Merkle tree right, through [`TableData::delete_if_equal`]). Returns whether it was deleted.
pub fn delete_if_equal_hash<F: TableSchema>(
    data: &TableData<F>,
    key: &[u8],
    value_hash: &Hash,
) -> Result<bool, TableError> {
    match current_tombstone(data, key, value_hash)? {
        // `delete_if_equal` compares the bytes again inside its transaction: a concurrent change wins.
        Some(bytes) => data.delete_if_equal(key, &bytes),
        None => Ok(false),
    }
}

/// Counters of a table's GC, see [`TableGc::metrics`].
#[derive(Clone, Debug, Serialize)]
pub struct GcMetrics {
    pub table: &'static str,
    /// Tombstones waiting in `gc_todo` (due or not).
    pub pending: usize,
    /// Tombstones this node collected (deleted everywhere) since it started.
    pub collected: u64,
    /// To-dos dropped because the entry had changed or was already collected.
    pub stale_dropped: u64,
    /// Batches that could not be collected (a replica failed) and will be retried.
    pub failed_batches: u64,
    /// Nodes currently in backoff after a failed GC call.
    pub nodes_backed_off: usize,
}

#[derive(Default)]
struct Counters {
    collected: AtomicU64,
    stale: AtomicU64,
    failed: AtomicU64,
}

/// What one GC round did (for logs and tests).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoundReport {
    pub examined: usize,
    pub due: usize,
    pub collected: usize,
    pub stale_dropped: usize,
    /// Due tombstones left for later: a replica failed or is in backoff, or there is no layout.
    pub deferred: usize,
    /// The round reached the end of the to-do tree (a pass is complete).
    pub pass_done: bool,
}

struct Backoff {
    failures: u32,
    retry_at: Instant,
}

/// The tombstone GC of one table on this node. Create it with [`TableGc::new`] (which installs the GC
/// RPC handler: every node must create it, even one that never runs the worker), then
/// [`TableGc::spawn`] the worker.
pub struct TableGc<F: TableSchema, R: TableReplication> {
    data: Arc<TableData<F>>,
    replication: Arc<R>,
    system: Arc<System>,
    endpoint: Endpoint<GcRpc>,
    config: GcConfig,
    counters: Counters,
    backoff: Mutex<HashMap<NodeId, Backoff>>,
}

impl<F: TableSchema, R: TableReplication> TableGc<F, R> {
    /// Build the GC of a table and install its RPC handler on `grenier/table/<name>/gc/v1`.
    pub fn new(
        data: Arc<TableData<F>>,
        replication: Arc<R>,
        system: Arc<System>,
        config: GcConfig,
    ) -> Arc<Self> {
        let endpoint = Endpoint::new(&system.net, &gc_endpoint_path(F::TABLE_NAME));
        let d = data.clone();
        endpoint.set_simple_handler(move |_from, req: GcRpc| {
            let d = d.clone();
            async move {
                Self::handle(d, req)
                    .await
                    .map_err(|e| NetError::Remote(e.to_string()))
            }
        });
        Arc::new(TableGc {
            data,
            replication,
            system,
            endpoint,
            config,
            counters: Counters::default(),
            backoff: Mutex::new(HashMap::new()),
        })
    }

    async fn handle(d: Arc<TableData<F>>, req: GcRpc) -> Result<GcRpcResponse, TableError> {
        let n = match &req {
            GcRpc::Update(v) => v.len(),
            GcRpc::DeleteIfEqualHash(v) => v.len(),
        };
        if n > MAX_ITEMS_PER_MESSAGE {
            return Err(TableError::Protocol(format!(
                "GC message with {n} items (at most {MAX_ITEMS_PER_MESSAGE})"
            )));
        }
        // Durable writes block on fsync: keep them off the async workers.
        blocking(move || {
            match req {
                GcRpc::Update(entries) => {
                    for e in entries {
                        d.update_entry(&e)?;
                    }
                }
                GcRpc::DeleteIfEqualHash(items) => {
                    for (key, vh) in items {
                        if delete_if_equal_hash(&d, &key, &vh)? {
                            tracing::debug!("{}: GC removed a tombstone on request", F::TABLE_NAME);
                        }
                    }
                }
            }
            Ok(GcRpcResponse::Ok)
        })
        .await
    }

    pub fn config(&self) -> &GcConfig {
        &self.config
    }

    /// Run the GC worker until the task is aborted.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move { me.run().await })
    }

    async fn run(&self) {
        let mut cursor: Option<Vec<u8>> = None;
        let mut err_backoff = self.config.min_backoff;
        loop {
            match self.round(&mut cursor).await {
                Ok(r) => {
                    err_backoff = self.config.min_backoff;
                    if r.collected > 0 || r.stale_dropped > 0 || r.deferred > 0 {
                        tracing::debug!("{} GC round: {r:?}", F::TABLE_NAME);
                    }
                    if r.pass_done {
                        tokio::time::sleep(self.config.pass_interval).await;
                    } else {
                        tokio::task::yield_now().await;
                    }
                }
                Err(e) => {
                    tracing::warn!("{} GC: {e}; retrying in {:?}", F::TABLE_NAME, err_backoff);
                    tokio::time::sleep(err_backoff).await;
                    err_backoff = (err_backoff * 2).min(self.config.max_backoff);
                }
            }
        }
    }

    /// One GC round: scan a chunk of `gc_todo` after `cursor` (updated), collect what is due.
    /// The worker calls it in a loop; tests and debugging may call it directly.
    pub async fn round(&self, cursor: &mut Option<Vec<u8>>) -> Result<RoundReport, TableError> {
        let (d, after, cfg) = (self.data.clone(), cursor.clone(), self.config.clone());
        let delay_msec = u64::try_from(cfg.delay.as_millis()).unwrap_or(u64::MAX);
        let sel = blocking(move || {
            Ok(select_due(
                &d.gc_todo,
                after.as_deref(),
                now_msec(),
                delay_msec,
                cfg.scan_limit,
                cfg.batch,
            )?)
        })
        .await?;
        *cursor = sel.next.clone();
        let mut report = RoundReport {
            examined: sel.examined,
            due: sel.due.len(),
            pass_done: sel.next.is_none(),
            ..Default::default()
        };

        // Local checks: drop malformed and stale to-dos, keep the current tombstones.
        let d = self.data.clone();
        let (malformed, due) = (sel.malformed, sel.due);
        let (live, stale) = blocking(move || {
            for (k, v) in malformed {
                tracing::warn!("{}: dropping a malformed GC to-do row", F::TABLE_NAME);
                remove_todo_if_equal(&d.gc_todo, &k, &v)?;
            }
            let mut live = vec![];
            let mut stale = 0;
            for t in due {
                match current_tombstone(&d, &t.key, &t.value_hash)? {
                    Some(bytes) => live.push((t, bytes)),
                    None => {
                        if remove_todo_if_equal(&d.gc_todo, &t.todo_key, &t.raw_time)? {
                            stale += 1;
                        }
                    }
                }
            }
            Ok((live, stale))
        })
        .await?;
        report.stale_dropped = stale;
        self.counters
            .stale
            .fetch_add(stale as u64, Ordering::Relaxed);

        // Group by the set of storage nodes; skip groups with a node in backoff.
        let mut groups: BTreeMap<Vec<NodeId>, Vec<(GcTodo, Vec<u8>)>> = BTreeMap::new();
        for (t, bytes) in live {
            let mut nodes = self.replication.storage_nodes(&t.partition_hash());
            nodes.sort();
            nodes.dedup();
            if nodes.is_empty() || self.any_backed_off(&nodes) {
                report.deferred += 1;
                continue;
            }
            groups.entry(nodes).or_default().push((t, bytes));
        }
        let mut futs: FuturesUnordered<_> = groups
            .into_iter()
            .map(|(nodes, items)| async move {
                let n = items.len();
                (n, self.collect_group(nodes, items).await)
            })
            .collect();
        while let Some((n, res)) = futs.next().await {
            match res {
                Ok(c) => {
                    report.collected += c;
                    self.counters
                        .collected
                        .fetch_add(c as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    report.deferred += n;
                    self.counters.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(
                        "{} GC: {n} tombstones kept for a later try: {e}",
                        F::TABLE_NAME
                    );
                }
            }
        }
        if report.collected > 0 {
            tracing::info!(
                "{} GC: collected {} tombstones",
                F::TABLE_NAME,
                report.collected
            );
        }
        Ok(report)
    }

    /// Push the tombstones to every other storage node, have them all delete, then delete locally.
    /// Returns how many tombstones were removed locally.
    async fn collect_group(
        &self,
        nodes: Vec<NodeId>,
        items: Vec<(GcTodo, Vec<u8>)>,
    ) -> Result<usize, TableError> {
        let me = self.system.id();
        let remote: Vec<NodeId> = nodes.into_iter().filter(|n| *n != me).collect();
        if !remote.is_empty() {
            let updates = GcRpc::Update(
                items
                    .iter()
                    .map(|(_, b)| ByteBuf::from(b.clone()))
                    .collect(),
            );
            self.call_all(&remote, updates).await?;
            let deletes = GcRpc::DeleteIfEqualHash(
                items
                    .iter()
                    .map(|(t, _)| (ByteBuf::from(t.key.clone()), t.value_hash))
                    .collect(),
            );
            self.call_all(&remote, deletes).await?;
        }
        let d = self.data.clone();
        blocking(move || {
            let mut removed = 0;
            for (t, _) in items {
                if delete_if_equal_hash(&d, &t.key, &t.value_hash)? {
                    removed += 1;
                }
                remove_todo_if_equal(&d.gc_todo, &t.todo_key, &t.raw_time)?;
            }
            Ok(removed)
        })
        .await
    }

    /// Send `msg` to every node; fails unless every one of them acknowledges.
    async fn call_all(&self, nodes: &[NodeId], msg: GcRpc) -> Result<(), TableError> {
        let msg = Arc::new(msg);
        let mut futs: FuturesUnordered<_> = nodes
            .iter()
            .map(|node| {
                let (ep, msg, node) = (self.endpoint.clone(), msg.clone(), *node);
                let timeout = self.config.rpc_timeout;
                async move { (node, ep.call(&node, &msg, Prio::Normal, timeout).await) }
            })
            .collect();
        let mut errors = vec![];
        let mut got = 0;
        while let Some((node, res)) = futs.next().await {
            match res {
                Ok(GcRpcResponse::Ok) => {
                    got += 1;
                    self.clear_backoff(&node);
                }
                Err(e) => {
                    errors.push(format!("{}: {e}", node.short()));
                    self.record_failure(node);
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(TableError::Quorum {
                needed: nodes.len(),
                got,
                errors,
            })
        }
    }

    fn any_backed_off(&self, nodes: &[NodeId]) -> bool {
        let now = Instant::now();
        let b = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
        nodes
            .iter()
            .any(|n| b.get(n).is_some_and(|x| x.retry_at > now))
    }

    fn record_failure(&self, node: NodeId) {
        let mut b = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
        let e = b.entry(node).or_insert(Backoff {
            failures: 0,
            retry_at: Instant::now(),
        });
        let wait = self
            .config
            .min_backoff
            .saturating_mul(1u32 << e.failures.min(16))
            .min(self.config.max_backoff);
        e.failures = e.failures.saturating_add(1);
        e.retry_at = Instant::now() + wait;
    }

    fn clear_backoff(&self, node: &NodeId) {
        self.backoff
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(node);
    }

    /// Counters, and the number of pending to-dos.
    pub fn metrics(&self) -> Result<GcMetrics, TableError> {
        let now = Instant::now();
        let backed_off = self
            .backoff
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|b| b.retry_at > now)
            .count();
        Ok(GcMetrics {
            table: F::TABLE_NAME,
            pending: self.data.gc_todo.len()?,
            collected: self.counters.collected.load(Ordering::Relaxed),
            stale_dropped: self.counters.stale.load(Ordering::Relaxed),
            failed_batches: self.counters.failed.load(Ordering::Relaxed),
            nodes_backed_off: backed_off,
        })
    }
}

/// Run local database work (which may block on fsync) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, TableError> + Send + 'static,
) -> Result<T, TableError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| TableError::Task("GC task failed", e))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crdt::Lww;
    use crate::db::Db;
    use crate::table::kv::{KvEntry, KvSchema};

    fn entry(key: &str, ts: u64, value: Option<&[u8]>) -> KvEntry {
        KvEntry {
            partition: "p".into(),
            key: key.into(),
            value: Lww::raw(ts, value.map(|v| ByteBuf::from(v.to_vec()))),
        }
    }

    fn put(d: &TableData<KvSchema>, e: &KvEntry) {
        d.update_entry(&TableData::<KvSchema>::encode(e).unwrap())
            .unwrap();
    }

    fn todos(d: &TableData<KvSchema>) -> Vec<GcTodo> {
        d.gc_todo
            .iter()
            .unwrap()
            .map(|r| {
                let (k, v) = r.unwrap();
                GcTodo::parse(&k, &v).unwrap()
            })
            .collect()
    }

    /// Rewrite a to-do's time (to make it due without waiting).
    fn age(d: &TableData<KvSchema>, t: &GcTodo, time: u64) {
        d.gc_todo.insert(&t.todo_key, time.to_be_bytes()).unwrap();
    }

    #[test]
    fn tombstones_get_parsable_todos() {
        let d = TableData::new(KvSchema, &Db::open_mem()).unwrap();
        put(&d, &entry("a", 1, Some(b"x")));
        assert!(todos(&d).is_empty(), "live values have no to-do");
        let before = now_msec();
        put(&d, &entry("a", 2, None));
        let t = todos(&d);
        assert_eq!(t.len(), 1);
        let key = TableData::<KvSchema>::key_of(&entry("a", 2, None));
        assert_eq!(t[0].key, key);
        assert_eq!(t[0].partition_hash()[..], key[..32]);
        let stored = d.read_entry(&key).unwrap().unwrap();
        assert_eq!(t[0].value_hash, blake2sum(&stored));
        assert!(t[0].time_msec() >= before && t[0].time_msec() <= now_msec());
        assert!(GcTodo::parse(b"short", &[0; 8]).is_none());
        assert!(GcTodo::parse(&[0; 70], &[0; 7]).is_none());
    }

    #[test]
    fn select_due_respects_delay_batch_and_cursor() {
        let d = TableData::new(KvSchema, &Db::open_mem()).unwrap();
        for i in 0..10 {
            put(&d, &entry(&format!("k{i}"), 5, None));
        }
        let all = todos(&d);
        // Half of them are old.
        for (i, t) in all.iter().enumerate() {
            age(&d, t, if i % 2 == 0 { 1_000 } else { 10_000 });
        }
        let now = 11_000;
        // Delay 5 s: only the five old ones are due.
        let s = select_due(&d.gc_todo, None, now, 5_000, 100, 64).unwrap();
        assert_eq!(s.due.len(), 5);
        assert_eq!(s.examined, 10);
        assert!(s.next.is_none(), "whole tree scanned");
        assert!(s.due.iter().all(|t| t.time_msec() == 1_000));
        // Delay 0: all due; a batch of 3 stops early and gives a cursor; continuing covers the rest.
        let mut seen = vec![];
        let mut cursor: Option<Vec<u8>> = None;
        loop {
            let s = select_due(&d.gc_todo, cursor.as_deref(), now, 0, 100, 3).unwrap();
            assert!(s.due.len() <= 3);
            seen.extend(s.due.into_iter().map(|t| t.todo_key));
            cursor = s.next;
            if cursor.is_none() {
                break;
            }
        }
        assert_eq!(
            seen,
            all.iter().map(|t| t.todo_key.clone()).collect::<Vec<_>>()
        );
        // The scan limit bounds the rows read even when nothing is due.
        let s = select_due(&d.gc_todo, None, now, 1_000_000, 4, 64).unwrap();
        assert!(s.due.is_empty());
        assert_eq!(s.examined, 4);
        assert_eq!(s.next.as_deref(), Some(&all[3].todo_key[..]));
        // Malformed rows are reported, not parsed.
        d.gc_todo.insert(b"junk", b"x").unwrap();
        let s = select_due(&d.gc_todo, None, now, 0, 100, 64).unwrap();
        assert_eq!(s.malformed, vec![(b"junk".to_vec(), b"x".to_vec())]);
    }

    #[test]
    fn stale_todo_detected_after_newer_write() {
        let d = TableData::new(KvSchema, &Db::open_mem()).unwrap();
        put(&d, &entry("a", 2, None));
        let t = todos(&d).remove(0);
        assert!(
            current_tombstone(&d, &t.key, &t.value_hash)
                .unwrap()
                .is_some()
        );
        // A newer live value replaces the tombstone: the to-do is stale.
        put(&d, &entry("a", 3, Some(b"back")));
        assert!(
            current_tombstone(&d, &t.key, &t.value_hash)
                .unwrap()
                .is_none()
        );
        assert!(!delete_if_equal_hash(&d, &t.key, &t.value_hash).unwrap());
        assert_eq!(d.len().unwrap(), 1, "the newer value stays");
        // A gone entry is stale too.
        let other = TableData::new(KvSchema, &Db::open_mem()).unwrap();
        assert!(
            current_tombstone(&other, &t.key, &t.value_hash)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn delete_if_equal_hash_only_removes_that_tombstone() {
        let d = TableData::new(KvSchema, &Db::open_mem()).unwrap();
        put(&d, &entry("a", 2, None));
        put(&d, &entry("b", 2, Some(b"live")));
        let t = todos(&d).remove(0);
        let key_b = TableData::<KvSchema>::key_of(&entry("b", 2, None));
        let bytes_b = d.read_entry(&key_b).unwrap().unwrap();
        // A live value is never deleted, even with its exact hash.
        assert!(!delete_if_equal_hash(&d, &key_b, &blake2sum(&bytes_b)).unwrap());
        // Wrong hash: kept.
        assert!(!delete_if_equal_hash(&d, &t.key, &[7; 32]).unwrap());
        assert!(d.read_entry(&t.key).unwrap().is_some());
        // Merkle to-do is cleared first, to check the deletion records its own.
        d.merkle_todo.remove(&t.key).unwrap();
        assert!(delete_if_equal_hash(&d, &t.key, &t.value_hash).unwrap());
        assert!(d.read_entry(&t.key).unwrap().is_none());
        assert_eq!(d.merkle_todo.get(&t.key).unwrap(), Some(vec![]));
        // Idempotent.
        assert!(!delete_if_equal_hash(&d, &t.key, &t.value_hash).unwrap());
    }

    #[test]
    fn todo_removed_only_if_unchanged() {
        let d = TableData::new(KvSchema, &Db::open_mem()).unwrap();
        put(&d, &entry("a", 2, None));
        let t = todos(&d).remove(0);
        // Stored again meanwhile (new time): kept.
        age(&d, &t, t.time_msec() + 1);
        assert!(!remove_todo_if_equal(&d.gc_todo, &t.todo_key, &t.raw_time).unwrap());
        assert_eq!(d.gc_todo.len().unwrap(), 1);
        let t2 = todos(&d).remove(0);
        assert!(remove_todo_if_equal(&d.gc_todo, &t2.todo_key, &t2.raw_time).unwrap());
        assert!(d.gc_todo.is_empty().unwrap());
    }

    #[test]
    fn gc_rpc_encoding_is_stable() {
        let m = GcRpc::DeleteIfEqualHash(vec![(ByteBuf::from(vec![1, 2]), [3; 32])]);
        let b = rmp_serde::to_vec_named(&m).unwrap();
        let back: GcRpc = rmp_serde::from_slice(&b).unwrap();
        let GcRpc::DeleteIfEqualHash(v) = back else {
            panic!("wrong variant")
        };
        assert_eq!(v, vec![(ByteBuf::from(vec![1, 2]), [3; 32])]);
        assert_eq!(gc_endpoint_path("kv"), "grenier/table/kv/gc/v1");
        let c = GcConfig::with_delay(Duration::from_secs(1));
        assert_eq!(c.pass_interval, Duration::from_millis(100));
        assert_eq!(GcConfig::default().pass_interval, Duration::from_secs(600));
    }
}
