//! Scrub: read every local block, verify it against its hash, move corrupted copies aside and refetch
//! them from replicas (through the resync queue).
//!
//! A scrub walks the blocks in hash order in batches, saving its position after each batch (tree
//! `block_scrub`), so a restart resumes where it stopped. It starts by itself [`SCRUB_INTERVAL`] after
//! the previous one finished, and on demand (`grenier repair scrub`); it can be paused, resumed and
//! cancelled. After each block the worker sleeps `scrub-tranquility` times as long as the check took.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::BlockError;
use super::manager::BlockManager;
use super::resync::spawn_blocking;
use crate::db::{self, Db, Tree};
use crate::util::background::{Tunable, Worker, WorkerState, WorkerStatus};
use crate::util::encode::{NoPrevious, Versioned};
use crate::util::hash::Hash;
use crate::util::time::now_msec;

/// A full scrub starts this long after the previous one finished.
pub const SCRUB_INTERVAL: Duration = Duration::from_secs(30 * 24 * 3600);
const BATCH: usize = 64;
const STATE_KEY: &[u8] = b"state";

/// Persisted progress of the scrub.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubState {
    /// A scrub is under way (maybe paused).
    pub running: bool,
    pub paused: bool,
    /// Last block checked by the running scrub.
    pub position: Option<Hash>,
    /// Blocks checked / corrupted found by the running (or last) scrub.
    pub checked: u64,
    pub corrupted: u64,
    pub started_at: Option<u64>,
    /// When the last complete scrub finished (ms), if ever.
    pub last_completed: Option<u64>,
}

impl Versioned for ScrubState {
    const MARKER: &'static [u8] = b"GRscrub01";
    type Previous = NoPrevious;
}

/// What an operator can ask of the scrub.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScrubCommand {
    Start,
    Pause,
    Resume,
    Cancel,
}

pub struct Scrub {
    manager: Arc<BlockManager>,
    tree: Tree,
    state: std::sync::Mutex<ScrubState>,
    pub tranquility: Arc<Tunable>,
    wake: Notify,
    busy: AtomicBool,
    last_error: std::sync::Mutex<Option<String>>,
}

impl Scrub {
    pub fn new(
        manager: Arc<BlockManager>,
        db: &Db,
        tranquility: Arc<Tunable>,
    ) -> Result<Arc<Scrub>, db::Error> {
        let tree = db.open_tree("block_scrub")?;
        let state = match tree.get(STATE_KEY)? {
            Some(v) => ScrubState::decode(&v).map_err(|e| db::Error::Corrupt(e.to_string()))?,
            // First start: the first periodic scrub comes one interval from now.
            None => ScrubState {
                last_completed: Some(now_msec()),
                ..ScrubState::default()
            },
        };
        Ok(Arc::new(Scrub {
            manager,
            tree,
            state: std::sync::Mutex::new(state),
            tranquility,
            wake: Notify::new(),
            busy: AtomicBool::new(false),
            last_error: std::sync::Mutex::new(None),
        }))
    }

    pub fn state(&self) -> ScrubState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Apply an operator command; returns the new state.
    pub fn command(&self, c: ScrubCommand) -> Result<ScrubState, BlockError> {
        let s = self.update(|s| match c {
            ScrubCommand::Start => {
                *s = ScrubState {
                    running: true,
                    started_at: Some(now_msec()),
                    last_completed: s.last_completed,
                    ..ScrubState::default()
                }
            }
            ScrubCommand::Pause => s.paused = s.running,
            ScrubCommand::Resume => s.paused = false,
            ScrubCommand::Cancel => {
                s.running = false;
                s.paused = false;
            }
        })?;
        self.wake.notify_one();
        Ok(s)
    }

    fn update(&self, f: impl FnOnce(&mut ScrubState)) -> Result<ScrubState, BlockError> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut s);
        let bytes = s.encode().map_err(|e| db::Error::Corrupt(e.to_string()))?;
        self.tree.insert(STATE_KEY, bytes)?;
        Ok(s.clone())
    }

    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let s = self.clone();
        tokio::spawn(async move { s.run().await })
    }

    async fn run(self: Arc<Self>) {
        loop {
            let st = self.state();
            if !st.running {
                let due = st
                    .last_completed
                    .map(|t| t + SCRUB_INTERVAL.as_millis() as u64)
                    .unwrap_or(0);
                if now_msec() >= due {
                    self.log_err(self.command(ScrubCommand::Start).map(drop));
                    continue;
                }
                let wait = Duration::from_millis(due - now_msec()).min(Duration::from_secs(3600));
                tokio::select! { _ = self.wake.notified() => (), _ = tokio::time::sleep(wait) => () }
                continue;
            }
            if st.paused {
                self.wake.notified().await;
                continue;
            }
            let r = self.step(st.position).await;
            self.log_err(r);
        }
    }

    /// Check the next batch of blocks after `position`.
    async fn step(&self, position: Option<Hash>) -> Result<(), BlockError> {
        let store = self.manager.store.clone();
        let batch = spawn_blocking(move || store.list_after(position.as_ref(), BATCH)).await?;
        if batch.is_empty() {
            self.update(|s| {
                s.running = false;
                s.last_completed = Some(now_msec());
            })?;
            tracing::info!("scrub finished: {:?}", self.state());
            return Ok(());
        }
        for hash in batch {
            let st = self.state();
            if !st.running || st.paused {
                return self.update(|_| ()).map(drop);
            }
            let start = Instant::now();
            self.busy.store(true, Ordering::Relaxed);
            let corrupted = self.check(&hash).await;
            self.busy.store(false, Ordering::Relaxed);
            {
                // Saved once per batch (below): a restart re-checks at most one batch.
                let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
                s.position = Some(hash);
                s.checked += 1;
                s.corrupted += corrupted as u64;
            }
            let t = self.tranquility.get() as u32;
            if t > 0 {
                tokio::time::sleep(start.elapsed() * t).await;
            }
        }
        self.update(|_| ())?;
        Ok(())
    }

    /// Verify one block; a corrupted one is moved aside and queued for refetch. True if corrupted.
    async fn check(&self, hash: &Hash) -> bool {
        let block = match self.manager.read_local(hash).await {
            Ok(Some(b)) => b,
            Ok(None) => return false,
            Err(e) => {
                self.log_err(Err(e));
                return false;
            }
        };
        let h = *hash;
        match spawn_blocking(move || block.verify(&h).map(drop)).await {
            Ok(()) => false,
            Err(e) => {
                self.manager.on_corrupt(hash, &e).await;
                true
            }
        }
    }

    fn log_err(&self, r: Result<(), BlockError>) {
        if let Err(e) = r {
            tracing::error!("scrub: {e}");
            *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
        }
    }
}

impl Worker for Scrub {
    fn status(&self) -> Vec<WorkerStatus> {
        let s = self.state();
        let state = match (s.running, s.paused, self.busy.load(Ordering::Relaxed)) {
            (true, true, _) => WorkerState::Paused,
            (true, false, true) => WorkerState::Busy,
            (true, false, false) => WorkerState::Throttled,
            (false, _, _) => WorkerState::Idle,
        };
        let progress = if s.running {
            // Hashes are uniform: the position's first two bytes tell how far through the hash space.
            let pct = s
                .position
                .map(|p| u16::from_be_bytes([p[0], p[1]]) as f64 / 655.36)
                .unwrap_or(0.0);
            format!(
                "{pct:.1}% ({} blocks checked, {} corrupted), tranquility {}",
                s.checked,
                s.corrupted,
                self.tranquility.get()
            )
        } else {
            let next = s
                .last_completed
                .map(|t| (t + SCRUB_INTERVAL.as_millis() as u64).saturating_sub(now_msec()) / 1000)
                .unwrap_or(0);
            format!(
                "last scrub checked {} blocks, {} corrupted; next in {} h",
                s.checked,
                s.corrupted,
                next / 3600
            )
        };
        vec![WorkerStatus {
            name: "block scrub".into(),
            state,
            progress: Some(progress),
            queue_length: None,
            done: s.checked,
            errors: s.corrupted,
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }]
    }
}
