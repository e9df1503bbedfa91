//! The lifecycle worker: once per period (a UTC day by default, tunable `lifecycle-interval-secs`)
//! each node walks the buckets whose object-table partition it leads, and
//!
//! - expires the objects an enabled rule of the bucket's lifecycle configuration matches (through
//!   [`Model::delete_object`], as a client's DeleteObject: the delete marker releases the blocks);
//! - aborts the multipart uploads an `AbortIncompleteMultipartUpload` rule makes due (through the
//!   model's abort path: the uploading version is aborted and the parts released);
//! - sweeps single-PUT versions still `Uploading` [`lifecycle-stale-upload-secs`] (default 24 h)
//!   after their timestamp: their coordinator crashed mid-stream, nothing will ever complete them, and
//!   their blocks would be held forever. The delay is measured from the version's timestamp, which is
//!   taken when the PUT starts: a PUT still streaming after that long is aborted too (its commit then
//!   fails and the client gets an error), which is the price of not tracking liveness across nodes.
//!
//! **No double work across nodes:** an object entry lives in the partition of its bucket id; a node
//! handles a bucket only if it is the first node of that partition in the current layout version, and
//! reads its own local copy of the bucket's entries (the writes it makes are quorum writes). During a
//! layout change two nodes may both believe they lead for a moment; every action is idempotent.
//!
//! **Survives restarts:** the state (tree `lifecycle`, versioned) records the period of the last
//! completed run and, for a run under way, the bucket and key reached (saved after each batch): a
//! restart resumes there, and a period already completed is not run again.
//!
//! Before deleting, the worker reads the object again with a quorum and checks that the version it
//! saw is still the current one and still matches: an object overwritten meanwhile is not expired (a
//! write in the few milliseconds between that read and the delete marker is lost, as with any
//! concurrent DeleteObject).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::bucket::Bucket;
use super::mpu::MultipartUpload;
use super::object::{Object, ObjectSchema, ObjectVersion, VersionState};
use super::{Model, ModelError};
use crate::block::start::persisted_tunable;
use crate::db::{self, Db, Tree};
use crate::layout::history::LayoutVersion;
use crate::table::TableData;
use crate::util::background::{Registry, Tunable, Worker, WorkerState, WorkerStatus};
use crate::util::encode::{NoPrevious, Versioned};
use crate::util::hash::Hash;
use crate::util::time::now_msec;

/// Object entries read from the local copy per batch (the position is saved after each).
const BATCH: usize = 100;
const STATE_KEY: &[u8] = b"state";
/// Default period: a day.
pub const DEFAULT_INTERVAL_SECS: u64 = 24 * 3600;
/// Default delay after which a single-PUT version still uploading is swept.
pub const DEFAULT_STALE_UPLOAD_SECS: u64 = 24 * 3600;
/// Wait after a failed batch before trying it again.
const RETRY_DELAY: Duration = Duration::from_secs(10);

/// Persisted progress of the lifecycle worker (tree `lifecycle`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleState {
    /// The period (`now / interval`, the UTC day number by default) of the last completed run.
    #[serde(default)]
    pub last_completed_period: Option<u64>,
    /// When that run finished (ms since the epoch).
    #[serde(default)]
    pub last_completed_at: Option<u64>,
    /// When that run's period began (ms since the epoch): a run is due once the current period
    /// (with the interval in force now) is after the one holding this instant, so that changing
    /// `lifecycle-interval-secs` never stalls the worker.
    #[serde(default)]
    pub last_completed_start: Option<u64>,
    /// The period of the run under way, if any.
    #[serde(default)]
    pub running_period: Option<u64>,
    /// Where the run under way stands: the bucket, and the last key handled in it.
    #[serde(default)]
    pub position: Option<(Hash, Option<String>)>,
    /// What the run under way (or the last one) did.
    #[serde(default)]
    pub run: RunCounts,
    /// Since this node first ran the worker.
    #[serde(default)]
    pub total: RunCounts,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCounts {
    #[serde(default)]
    pub objects_expired: u64,
    #[serde(default)]
    pub uploads_aborted: u64,
    #[serde(default)]
    pub stale_uploads_swept: u64,
}

impl LifecycleState {
    /// Everything this node's worker did, the run under way included. Computed from this one
    /// snapshot: when a run ends its counts are added to `total` in the same update that clears
    /// `running_period`, so they are never counted twice (a separate "busy" flag read next to
    /// the snapshot could be, and made `worker list` show a run's work twice for a moment).
    fn done(&self) -> u64 {
        let mut done = self.total;
        if self.running_period.is_some() {
            done.add(&self.run);
        }
        done.sum()
    }
}

impl RunCounts {
    fn add(&mut self, o: &RunCounts) {
        self.objects_expired += o.objects_expired;
        self.uploads_aborted += o.uploads_aborted;
        self.stale_uploads_swept += o.stale_uploads_swept;
    }
    fn sum(&self) -> u64 {
        self.objects_expired + self.uploads_aborted + self.stale_uploads_swept
    }
}

impl Versioned for LifecycleState {
    const MARKER: &'static [u8] = b"GRlifecycle01";
    type Previous = NoPrevious;
}

pub struct LifecycleWorker {
    model: Arc<Model>,
    tree: Tree,
    state: std::sync::Mutex<LifecycleState>,
    /// `lifecycle-interval-secs`.
    pub interval: Arc<Tunable>,
    /// `lifecycle-stale-upload-secs`.
    pub stale_upload: Arc<Tunable>,
    busy: AtomicBool,
    errors: AtomicU64,
    last_error: std::sync::Mutex<Option<String>>,
}

/// Open the worker's state, register it and its tunables, and spawn it.
pub fn start(
    model: &Arc<Model>,
    db: &Db,
    registry: &Registry,
) -> Result<tokio::task::JoinHandle<()>, ModelError> {
    let vars = db.open_tree("worker_vars")?;
    let interval = persisted_tunable(
        &vars,
        "lifecycle-interval-secs",
        DEFAULT_INTERVAL_SECS,
        1,
        365 * 24 * 3600,
        "the lifecycle worker runs once per period of this many seconds (86400: once per UTC day)",
    );
    let stale_upload = persisted_tunable(
        &vars,
        "lifecycle-stale-upload-secs",
        DEFAULT_STALE_UPLOAD_SECS,
        1,
        365 * 24 * 3600,
        "a PutObject still uploading this long after it started is aborted (its blocks released)",
    );
    let w = LifecycleWorker::new(model.clone(), db, interval, stale_upload)?;
    registry.add_tunable("lifecycle-interval-secs", w.interval.clone());
    registry.add_tunable("lifecycle-stale-upload-secs", w.stale_upload.clone());
    registry.add_worker(w.clone());
    Ok(tokio::spawn(w.run()))
}

/// What to do with one object entry at `now`.
#[derive(Debug, Default, PartialEq)]
struct Actions {
    /// The current version, to expire.
    expire: Option<ObjectVersion>,
    /// Multipart uploads to abort.
    abort: Vec<ObjectVersion>,
    /// Single-PUT versions left uploading, to abort.
    sweep: Vec<ObjectVersion>,
}

fn plan(
    o: &Object,
    config: Option<&super::lifecycle::LifecycleConfig>,
    now: u64,
    stale_ms: u64,
) -> Actions {
    let mut a = Actions::default();
    for v in &o.versions {
        match &v.state {
            VersionState::Uploading {
                multipart: false, ..
            } if now >= v.timestamp.msec.saturating_add(stale_ms) => a.sweep.push(v.clone()),
            VersionState::Uploading {
                multipart: true, ..
            } if config.is_some_and(|c| c.aborts_upload(&o.key, v.timestamp.msec, now)) => {
                a.abort.push(v.clone())
            }
            _ => {}
        }
    }
    if let (Some(c), Some(cur)) = (config, o.current())
        && let Some(meta) = cur.data().and_then(|d| d.meta())
        && c.expires(&o.key, meta.size, cur.tag_set(), cur.timestamp.msec, now)
    {
        a.expire = Some(cur.clone());
    }
    a
}

impl LifecycleWorker {
    fn new(
        model: Arc<Model>,
        db: &Db,
        interval: Arc<Tunable>,
        stale_upload: Arc<Tunable>,
    ) -> Result<Arc<LifecycleWorker>, ModelError> {
        let tree = db.open_tree("lifecycle")?;
        let state = match tree.get(STATE_KEY)? {
            Some(v) => LifecycleState::decode(&v).map_err(|e| db::Error::Corrupt(e.to_string()))?,
            None => LifecycleState::default(),
        };
        Ok(Arc::new(LifecycleWorker {
            model,
            tree,
            state: std::sync::Mutex::new(state),
            interval,
            stale_upload,
            busy: AtomicBool::new(false),
            errors: AtomicU64::new(0),
            last_error: std::sync::Mutex::new(None),
        }))
    }

    pub fn state(&self) -> LifecycleState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut LifecycleState)) -> Result<(), ModelError> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut s);
        let bytes = s.encode().map_err(|e| db::Error::Corrupt(e.to_string()))?;
        self.tree.insert(STATE_KEY, bytes)?;
        Ok(())
    }

    fn interval_ms(&self) -> u64 {
        self.interval.get().max(1).saturating_mul(1000)
    }

    fn error(&self, e: impl std::fmt::Display) {
        tracing::warn!("lifecycle worker: {e}");
        self.errors.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
    }

    async fn run(self: Arc<Self>) {
        loop {
            let now = now_msec();
            let interval = self.interval_ms();
            let period = now / interval;
            let done = self
                .state()
                .last_completed_start
                .is_some_and(|start| start / interval >= period);
            if done {
                let next = (period + 1).saturating_mul(interval);
                let wait = next.saturating_sub(now).clamp(1, 1000);
                tokio::time::sleep(Duration::from_millis(wait)).await;
                continue;
            }
            self.busy.store(true, Ordering::Relaxed);
            let r = self.run_period(period, interval).await;
            self.busy.store(false, Ordering::Relaxed);
            if let Err(e) = r {
                self.error(e);
                tokio::time::sleep(RETRY_DELAY).await;
            }
        }
    }

    /// Run (or resume) the pass of `period`, to its end.
    async fn run_period(&self, period: u64, interval: u64) -> Result<(), ModelError> {
        if self.state().running_period != Some(period) {
            self.update(|s| {
                s.running_period = Some(period);
                s.position = None;
                s.run = RunCounts::default();
            })?;
            tracing::info!("lifecycle worker: starting the run of period {period}");
        }
        let mut buckets = self.model.list_buckets()?;
        buckets.sort_by_key(|b| b.id);
        for b in buckets {
            let start = match self.state().position {
                Some((id, _)) if b.id < id => continue,
                Some((id, key)) if b.id == id => key,
                _ => None,
            };
            if !self.leads(&b) {
                continue;
            }
            self.walk_bucket(&b, start).await?;
        }
        let now = now_msec();
        self.update(|s| {
            let run = s.run;
            s.total.add(&run);
            s.last_completed_period = Some(period);
            s.last_completed_at = Some(now);
            s.last_completed_start = Some(period.saturating_mul(interval));
            s.running_period = None;
            s.position = None;
        })?;
        let r = self.state().run;
        tracing::info!(
            "lifecycle worker: period {period} done: {} objects expired, {} uploads aborted, {} stale uploads swept",
            r.objects_expired,
            r.uploads_aborted,
            r.stale_uploads_swept
        );
        Ok(())
    }

    /// Whether this node is the first node of the bucket's object partition (current layout).
    fn leads(&self, b: &Bucket) -> bool {
        let h = self.model.system.layout.history();
        let nodes = h.current().nodes_of(LayoutVersion::partition_of(&b.id));
        nodes.first() == Some(&self.model.system.id())
    }

    /// Handle the bucket's entries (local copy) after key `start`, saving the position per batch.
    async fn walk_bucket(&self, b: &Bucket, mut start: Option<String>) -> Result<(), ModelError> {
        let config = b.params().and_then(|p| p.lifecycle()).cloned();
        let config = config.filter(|c| c.has_enabled_action());
        loop {
            let begin = start.as_ref().map(|k| {
                let mut k = k.clone().into_bytes();
                k.push(0);
                k
            });
            let page =
                self.model
                    .objects
                    .data
                    .read_range(&b.id, begin.as_deref(), None, BATCH, false)?;
            let now = now_msec();
            let stale_ms = self.stale_upload.get().saturating_mul(1000);
            let mut counts = RunCounts::default();
            for raw in &page {
                let o = match TableData::<ObjectSchema>::decode(raw) {
                    Ok(o) => o,
                    Err(e) => {
                        self.error(e);
                        continue;
                    }
                };
                let a = plan(&o, config.as_ref(), now, stale_ms);
                self.apply(&o, a, config.as_ref(), &mut counts).await?;
                start = Some(o.key);
            }
            let done = page.len() < BATCH;
            let pos = (b.id, start.clone());
            self.update(|s| {
                s.run.add(&counts);
                s.position = Some(pos);
            })?;
            if done {
                return Ok(());
            }
            tokio::task::yield_now().await;
        }
    }

    async fn apply(
        &self,
        o: &Object,
        a: Actions,
        config: Option<&super::lifecycle::LifecycleConfig>,
        counts: &mut RunCounts,
    ) -> Result<(), ModelError> {
        let m = &self.model;
        for v in a.sweep {
            // As `PutUpload::abort`: the version is marked aborted, its blocks released.
            let aborted = ObjectVersion {
                state: VersionState::Aborted,
                ..v
            };
            m.objects
                .insert(&Object::new(o.bucket, o.key.clone(), vec![aborted]))
                .await?;
            counts.stale_uploads_swept += 1;
        }
        for v in a.abort {
            m.abort_upload(MultipartUpload::new(v.uuid, o.bucket, o.key.clone()), &v)
                .await?;
            counts.uploads_aborted += 1;
        }
        if let (Some(seen), Some(c)) = (a.expire, config) {
            // Only if what a quorum has now is still the version seen, and it still expires.
            let fresh = m.get_object(&o.bucket, &o.key).await?;
            let still = fresh.as_ref().and_then(|f| f.current()).filter(|cur| {
                cur.uuid == seen.uuid
                    && cur.data().and_then(|d| d.meta()).is_some_and(|meta| {
                        c.expires(
                            &o.key,
                            meta.size,
                            cur.tag_set(),
                            cur.timestamp.msec,
                            now_msec(),
                        )
                    })
            });
            if still.is_some() {
                m.delete_object(&o.bucket, &o.key).await?;
                counts.objects_expired += 1;
            }
        }
        Ok(())
    }
}

impl Worker for LifecycleWorker {
    fn status(&self) -> Vec<WorkerStatus> {
        let s = self.state();
        let busy = self.busy.load(Ordering::Relaxed);
        let last = match (s.last_completed_at, s.last_completed_start) {
            (Some(at), Some(start)) => format!(
                "last run finished {} (period from {})",
                crate::util::timefmt::iso8601(at),
                crate::util::timefmt::iso8601(start)
            ),
            _ => "never run".to_string(),
        };
        let progress = if s.running_period.is_some() {
            format!(
                "running: {} objects expired, {} uploads aborted, {} stale uploads swept so far; {last}",
                s.run.objects_expired, s.run.uploads_aborted, s.run.stale_uploads_swept
            )
        } else {
            format!(
                "{last}: {} objects expired, {} uploads aborted, {} stale uploads swept; total {} expired, {} aborted, {} swept",
                s.run.objects_expired,
                s.run.uploads_aborted,
                s.run.stale_uploads_swept,
                s.total.objects_expired,
                s.total.uploads_aborted,
                s.total.stale_uploads_swept
            )
        };
        vec![WorkerStatus {
            name: "lifecycle".into(),
            state: if busy {
                WorkerState::Busy
            } else {
                WorkerState::Idle
            },
            progress: Some(progress),
            queue_length: None,
            done: s.done(),
            errors: self.errors.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }]
    }
}

#[cfg(test)]
mod tests {
    use serde_bytes::ByteBuf;

    use super::*;
    use crate::crdt::Timestamp;
    use crate::model::lifecycle::{DAY_MS, Expiration, LifecycleConfig, LifecycleRule};
    use crate::model::object::{ObjectData, ObjectMeta};

    fn version(id: u8, msec: u64, state: VersionState) -> ObjectVersion {
        ObjectVersion::new([id; 32], Timestamp::new(msec, 0, 0), state)
    }

    fn uploading(multipart: bool) -> VersionState {
        VersionState::Uploading {
            multipart,
            headers: vec![],
            encryption: None,
        }
    }

    fn complete(size: u64) -> VersionState {
        VersionState::Complete(ObjectData::Inline {
            meta: ObjectMeta {
                size,
                etag: "e".into(),
                headers: vec![],
                checksum: None,
                parts: None,
                encryption: None,
            },
            bytes: ByteBuf::from(vec![0; size as usize]),
        })
    }

    #[test]
    fn plan_expires_aborts_and_sweeps_what_is_due() {
        let t0 = 10 * DAY_MS + 3_600_000;
        let stale = DEFAULT_STALE_UPLOAD_SECS * 1000;
        let o = Object::new(
            [1; 32],
            "logs/a".into(),
            vec![
                version(1, t0, complete(5)),
                version(2, t0 + 1, uploading(false)),
                version(3, t0 + 2, uploading(true)),
            ],
        );
        let config = LifecycleConfig {
            rules: vec![LifecycleRule {
                enabled: true,
                expiration: Some(Expiration::Days(1)),
                abort_incomplete_mpu_days: Some(2),
                ..LifecycleRule::default()
            }],
        };
        // Nothing is due yet, not even the stale PUT.
        assert_eq!(
            plan(&o, Some(&config), t0 + 1000, stale),
            Actions::default()
        );
        // The next midnight after t0 + 1 day: the object expires; the PUT is stale by then too.
        let a = plan(&o, Some(&config), 12 * DAY_MS, stale);
        assert_eq!(a.expire.map(|v| v.uuid), Some([1; 32]));
        assert_eq!(
            a.sweep.iter().map(|v| v.uuid).collect::<Vec<_>>(),
            vec![[2; 32]]
        );
        assert!(a.abort.is_empty(), "the upload is due a day later");
        let a = plan(&o, Some(&config), 13 * DAY_MS, stale);
        assert_eq!(
            a.abort.iter().map(|v| v.uuid).collect::<Vec<_>>(),
            vec![[3; 32]]
        );
        // Without a configuration only the sweep applies; a live PUT (recent) is never swept.
        let a = plan(&o, None, 13 * DAY_MS, stale);
        assert!(a.expire.is_none() && a.abort.is_empty() && a.sweep.len() == 1);
        // The PUT started at t0 + 1: stale exactly `stale` ms later, not a millisecond before.
        assert_eq!(plan(&o, None, t0 + 1 + stale, stale).sweep.len(), 1);
        assert!(plan(&o, None, t0 + stale, stale).sweep.is_empty());
    }

    #[test]
    fn state_encodes_and_decodes() {
        let s = LifecycleState {
            last_completed_period: Some(3),
            position: Some(([2; 32], Some("k".into()))),
            ..LifecycleState::default()
        };
        let bytes = s.encode().unwrap();
        assert_eq!(LifecycleState::decode(&bytes).unwrap(), s);
    }

    /// `worker list` shows a run's work once: while it runs, and after its end (when its counts
    /// have moved into the total), never both (a CI run saw 6 for 3 objects expired).
    #[test]
    fn the_work_done_counts_a_run_once() {
        let three = RunCounts {
            objects_expired: 3,
            ..RunCounts::default()
        };
        let mut s = LifecycleState {
            running_period: Some(7),
            run: three,
            ..LifecycleState::default()
        };
        assert_eq!(s.done(), 3, "under way");
        // The end of the run, as `run_period` records it.
        s.total.add(&three);
        s.running_period = None;
        assert_eq!(s.done(), 3, "ended");
        s.running_period = Some(8);
        s.run = RunCounts::default();
        assert_eq!(s.done(), 3, "the next run, just begun");
    }
}
