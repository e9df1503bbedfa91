//! Resync: make each node hold exactly the blocks it should.
//!
//! A persistent queue (tree `block_resync`, keys `when (ms, big-endian) ++ hash`) lists blocks to check
//! and when. Entries come from reference-count changes (in the same transaction), from corrupted copies
//! found by reads and scrub, and from full scans (at startup, after a layout change, and on
//! `grenier repair blocks`), which queue every block this node references or holds.
//!
//! Checking a block decides, from the local reference count, whether this node is one of the block's
//! storage nodes (every active layout version), and whether the file is here:
//!
//! | here | storage node | reference count | action |
//! |---|---|---|---|
//! | no  | yes | > 0 | fetch it from a replica (nearest first) |
//! | yes | no  | any | offload: send it to every storage node that needs it, delete it once each one has it or does not need it |
//! | yes | yes | 0, past the delay | delete it |
//! | yes | yes | none | unclaimed: deletable after the safety delay unless a reference comes |
//!
//! A held block outside its primary data directory (a drive marked read-only, capacities changed) is
//! moved to it on the way. A failed check is retried with exponential backoff (tree
//! `block_resync_errors`). Workers (`resync-worker-count`, 1..8) pop due entries; after each, a worker
//! sleeps `resync-tranquility` times as long as the work took, leaving the disk to clients.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::BlockError;
use super::manager::BlockManager;
use crate::util::background::{Tunable, Worker, WorkerState, WorkerStatus};
use crate::util::hash::Hash;
use crate::util::time::now_msec;

/// Most resync workers.
pub const MAX_WORKERS: u64 = 8;
/// Entries queued per transaction by a scan.
const SCAN_BATCH: usize = 1000;

/// What a check did, for the counters.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Nothing,
    Fetched,
    Offloaded,
    Deleted,
}

/// The resync workers and full scans.
pub struct Resync {
    manager: Arc<BlockManager>,
    pub workers: Arc<Tunable>,
    pub tranquility: Arc<Tunable>,
    busy: AtomicU64,
    done: AtomicU64,
    fetched: AtomicU64,
    offloaded: AtomicU64,
    deleted: AtomicU64,
    failures: AtomicU64,
    last_error: std::sync::Mutex<Option<String>>,
    scan: std::sync::Mutex<ScanState>,
    scan_requested: Notify,
}

#[derive(Default, Clone)]
struct ScanState {
    running: bool,
    queued: u64,
    finished_at: Option<u64>,
}

impl Resync {
    pub fn new(
        manager: Arc<BlockManager>,
        workers: Arc<Tunable>,
        tranquility: Arc<Tunable>,
    ) -> Arc<Resync> {
        Arc::new(Resync {
            manager,
            workers,
            tranquility,
            busy: AtomicU64::new(0),
            done: AtomicU64::new(0),
            fetched: AtomicU64::new(0),
            offloaded: AtomicU64::new(0),
            deleted: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_error: std::sync::Mutex::new(None),
            scan: std::sync::Mutex::new(ScanState::default()),
            scan_requested: Notify::new(),
        })
    }

    /// Start the workers, the scanner, and a scan now and after every layout change.
    pub fn spawn(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks: Vec<_> = (0..MAX_WORKERS)
            .map(|i| {
                let r = self.clone();
                tokio::spawn(async move { r.worker_loop(i).await })
            })
            .collect();
        let r = self.clone();
        tasks.push(tokio::spawn(async move { r.scan_loop().await }));
        let r = self.clone();
        tasks.push(tokio::spawn(async move {
            // Scan when the set of active layout versions changes (a new version, or old ones retired),
            // not on every tracker update.
            let active = |r: &Resync| {
                let h = r.manager.system.layout.history();
                h.versions.iter().map(|v| v.version).collect::<Vec<_>>()
            };
            let mut changes = r.manager.system.layout.subscribe();
            let mut last = active(&r);
            r.request_scan();
            while changes.changed().await.is_ok() {
                let now = active(&r);
                if now != last {
                    last = now;
                    r.request_scan();
                }
            }
        }));
        tasks
    }

    /// Queue a check of every block this node references or holds (`grenier repair blocks`).
    pub fn request_scan(&self) {
        self.scan_requested.notify_one();
    }

    async fn worker_loop(self: Arc<Self>, index: u64) {
        let queue = self.manager.resync.clone();
        loop {
            if index >= self.workers.get() {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            let notified = queue.notify.notified();
            // Off the async threads: the commit may wait for another writer's fsync.
            let popped = {
                let queue = queue.clone();
                spawn_blocking(move || Ok(queue.pop_due(now_msec())?)).await
            };
            let wait = match popped {
                Ok(Ok(hash)) => {
                    self.check_and_throttle(hash).await;
                    continue;
                }
                Ok(Err(Some(when))) => Duration::from_millis(when.saturating_sub(now_msec())),
                Ok(Err(None)) => Duration::from_secs(10),
                Err(e) => {
                    self.record_error(format!("resync queue: {e}"));
                    Duration::from_secs(10)
                }
            };
            tokio::select! {
                _ = notified => (),
                _ = tokio::time::sleep(wait.min(Duration::from_secs(10))) => (),
            }
        }
    }

    async fn check_and_throttle(&self, hash: Hash) {
        let start = Instant::now();
        self.busy.fetch_add(1, Ordering::Relaxed);
        let res = self.check(&hash).await;
        self.busy.fetch_sub(1, Ordering::Relaxed);
        self.done.fetch_add(1, Ordering::Relaxed);
        let queue = &self.manager.resync;
        match res {
            Ok(outcome) => {
                let counter = match outcome {
                    Outcome::Fetched => Some(&self.fetched),
                    Outcome::Offloaded => Some(&self.offloaded),
                    Outcome::Deleted => Some(&self.deleted),
                    Outcome::Nothing => None,
                };
                if let Some(c) = counter {
                    c.fetch_add(1, Ordering::Relaxed);
                }
                if let Err(e) = queue.succeeded(&hash) {
                    self.record_error(format!("resync queue: {e}"));
                }
            }
            Err(e) => {
                let msg = format!("block {}: {e}", hex::encode(hash));
                tracing::warn!("resync: {msg}; will retry");
                self.record_error(msg);
                if let Err(e) = queue.failed(&hash) {
                    self.record_error(format!("resync queue: {e}"));
                }
            }
        }
        let t = self.tranquility.get() as u32;
        if t > 0 {
            tokio::time::sleep(start.elapsed() * t).await;
        }
    }

    fn record_error(&self, msg: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(msg);
    }

    /// Check one block and act (see the module documentation's table).
    async fn check(&self, hash: &Hash) -> Result<Outcome, BlockError> {
        let m = &self.manager;
        let now = now_msec();
        let rc = m.rc.get(hash)?;
        let mine = m.storage_nodes(hash).contains(&m.system.id());
        let have = {
            let (store, h) = (m.store.clone(), *hash);
            spawn_blocking(move || {
                store.move_to_primary(&h)?;
                Ok(store.contains(&h))
            })
            .await?
        };
        match (have, mine) {
            (false, true) if rc.is_some_and(|v| v.is_needed()) => {
                let (block, _plain, from) = m.fetch_remote(hash).await?;
                m.write_local(*hash, block).await?;
                tracing::debug!(
                    "resync: fetched {} from {}",
                    hex::encode(hash),
                    from.short()
                );
                Ok(Outcome::Fetched)
            }
            (true, false) => self.offload(hash).await,
            (true, true) => match rc {
                None => {
                    m.rc.record_written(&[*hash])?;
                    Ok(Outcome::Nothing)
                }
                Some(v) if v.is_deletable(now) => {
                    self.delete_local(hash).await?;
                    Ok(Outcome::Deleted)
                }
                Some(_) => Ok(Outcome::Nothing),
            },
            (false, _) => {
                if rc.is_some_and(|v| v.is_deletable(now)) {
                    m.rc.clear_if_deletable(hash)?;
                }
                Ok(Outcome::Nothing)
            }
        }
    }

    /// This node holds a block it no longer stores: give it to every storage node that needs it, and
    /// delete it only once each of them has it or does not need it.
    async fn offload(&self, hash: &Hash) -> Result<Outcome, BlockError> {
        let m = &self.manager;
        let nodes = m.storage_nodes(hash);
        if nodes.is_empty() {
            return Err(BlockError::NoLayout);
        }
        let mut block = None;
        for node in &nodes {
            let (_have, needed) = m
                .need_query(node, *hash)
                .await
                .map_err(BlockError::peer("asking", node))?;
            if !needed {
                continue;
            }
            if block.is_none() {
                block = m.read_local(hash).await?;
            }
            let Some(b) = &block else {
                return Ok(Outcome::Nothing);
            };
            m.put_to(node, *hash, b)
                .await
                .map_err(BlockError::peer("sending to", node))?;
        }
        // The layout may have changed while we were sending.
        if m.storage_nodes(hash).contains(&m.system.id()) {
            return Ok(Outcome::Nothing);
        }
        self.delete_local(hash).await?;
        Ok(Outcome::Offloaded)
    }

    async fn delete_local(&self, hash: &Hash) -> Result<(), BlockError> {
        let (store, h) = (self.manager.store.clone(), *hash);
        spawn_blocking(move || store.delete(&h).map(drop)).await?;
        self.manager.rc.clear_if_deletable(hash)?;
        Ok(())
    }

    // ---- scans ----------------------------------------------------------------------------------

    async fn scan_loop(self: Arc<Self>) {
        loop {
            self.scan_requested.notified().await;
            self.set_scan(|s| {
                s.running = true;
                s.queued = 0;
            });
            if let Err(e) = self.scan_once().await {
                self.record_error(format!("block scan: {e}"));
            }
            self.set_scan(|s| {
                s.running = false;
                s.finished_at = Some(now_msec());
            });
        }
    }

    fn set_scan(&self, f: impl FnOnce(&mut ScanState)) {
        f(&mut self.scan.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Queue every block with a reference count here, then every block file here.
    async fn scan_once(&self) -> Result<(), BlockError> {
        let m = &self.manager;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let batch: Vec<Hash> = {
                let iter = match &after {
                    None => m.rc.tree().iter()?,
                    Some(k) => m.rc.tree().range((
                        std::ops::Bound::Excluded(k.clone()),
                        std::ops::Bound::Unbounded,
                    ))?,
                };
                let mut out = Vec::with_capacity(SCAN_BATCH);
                for item in iter.take(SCAN_BATCH) {
                    let (k, _) = item?;
                    if let Ok(h) = Hash::try_from(&k[..]) {
                        out.push(h);
                    }
                }
                out
            };
            let Some(last) = batch.last() else { break };
            after = Some(last.to_vec());
            self.queue_scanned(&batch)?;
            tokio::task::yield_now().await;
        }
        let mut after: Option<Hash> = None;
        loop {
            let (store, a) = (m.store.clone(), after);
            let batch = spawn_blocking(move || store.list_after(a.as_ref(), SCAN_BATCH)).await?;
            let Some(last) = batch.last() else { break };
            after = Some(*last);
            self.queue_scanned(&batch)?;
            tokio::task::yield_now().await;
        }
        Ok(())
    }

    fn queue_scanned(&self, batch: &[Hash]) -> Result<(), BlockError> {
        self.manager.resync.enqueue_many(batch, now_msec())?;
        self.set_scan(|s| s.queued += batch.len() as u64);
        Ok(())
    }
}

impl Worker for Resync {
    fn status(&self) -> Vec<WorkerStatus> {
        let queue = self.manager.resync.len().unwrap_or(0) as u64;
        let busy = self.busy.load(Ordering::Relaxed);
        let due = self
            .manager
            .resync
            .next_due()
            .ok()
            .flatten()
            .is_some_and(|t| t <= now_msec());
        let state = if busy > 0 {
            WorkerState::Busy
        } else if due {
            WorkerState::Throttled
        } else {
            WorkerState::Idle
        };
        let errors_pending = self.manager.resync.errors_len().unwrap_or(0);
        let resync = WorkerStatus {
            name: "block resync".into(),
            state,
            progress: Some(format!(
                "{} workers, tranquility {}; fetched {}, offloaded {}, deleted {}; {} blocks awaiting retry",
                self.workers.get(),
                self.tranquility.get(),
                self.fetched.load(Ordering::Relaxed),
                self.offloaded.load(Ordering::Relaxed),
                self.deleted.load(Ordering::Relaxed),
                errors_pending
            )),
            queue_length: Some(queue),
            done: self.done.load(Ordering::Relaxed),
            errors: self.failures.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        };
        let scan = self.scan.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let scan = WorkerStatus {
            name: "block scan".into(),
            state: if scan.running {
                WorkerState::Busy
            } else {
                WorkerState::Idle
            },
            progress: Some(match (scan.running, scan.finished_at) {
                (true, _) => format!("{} blocks queued for a check so far", scan.queued),
                (false, Some(t)) => format!(
                    "last scan queued {} blocks, finished {} s ago",
                    scan.queued,
                    now_msec().saturating_sub(t) / 1000
                ),
                (false, None) => "no scan yet".into(),
            }),
            queue_length: None,
            done: scan.queued,
            errors: 0,
            last_error: None,
        };
        vec![resync, scan]
    }
}

/// Run blocking file work off the async threads.
pub(super) async fn spawn_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BlockError> + Send + 'static,
) -> Result<T, BlockError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BlockError::Task("blocking task", e))?
}
