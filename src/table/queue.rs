//! Persistent queue of cascading updates between tables.
//!
//! A change of an entry of table A sometimes implies a change in table B (deleting an object version
//! releases its block references, for instance). A's schema hook ([`super::TableSchema::updated`]) runs
//! inside A's local transaction, but cannot write to B's replicas from there (that needs the network and
//! a quorum). So the hook **enqueues** the B entry in a local tree, `<B>:insert_queue`, in that same
//! transaction ([`queue_insert`] or [`InsertQueue::insert`]): the A change and the promise to apply the
//! B change are committed together or not at all, and survive a crash. An [`InsertQueueWorker`] then
//! writes queued entries to B with quorum writes, retrying with backoff until they succeed.
//!
//! - Key: B's storage key (`hash(partition key) ‖ sort key`, [`super::data::tree_key`]); value: B's
//!   versioned entry encoding. Enqueuing an entry whose key is already queued **merges** the two (entries
//!   are CRDTs), so the queue holds at most one item per B entry.
//! - The worker removes an item only if it is byte-for-byte what it sent (check-and-delete in one
//!   transaction): an item merged with a newer change while its write was in flight stays and is sent
//!   again. Items are never dropped: a failed write leaves them queued (exponential backoff 1 s → 60 s);
//!   sending one twice is harmless (merges are idempotent).
//! - A failed batch is retried entry by entry at once, so one unreachable partition does not hold back
//!   the entries of the others; and the worker moves through the queue with a cursor, so failing items
//!   at its head do not block the rest.
//!
//! Cost: one extra local row write per cascaded change (in a transaction that happens anyway), and one
//! quorum write to B per change, batched by 64 and run concurrently.

use std::marker::PhantomData;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;
use tokio::sync::Notify;

use super::data::TableData;
use super::replication::TableReplication;
use super::schema::TableSchema;
use super::{Table, TableError};
use crate::crdt::Crdt;
use crate::db::{self, Db, Tree, TxError};
use crate::util::encode::Versioned;

/// Writes a batch of entries to their table (a quorum write each); `Ok` only if all were written.
pub type InsertFn<E> =
    Arc<dyn Fn(Vec<E>) -> BoxFuture<'static, Result<(), TableError>> + Send + Sync>;

/// Name of the queue tree of table `F` (the target table).
pub fn queue_tree_name<F: TableSchema>() -> String {
    format!("{}:insert_queue", F::TABLE_NAME)
}

fn codec_error(tree: &Tree, what: &str, e: impl std::fmt::Display) -> db::Error {
    db::Error::Io {
        path: format!("tree {}", tree.name()).into(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("insert queue: cannot {what} an entry: {e}"),
        ),
    }
}

/// Enqueue `entry` (of table `F`) in `queue_tree`, inside transaction `tx` (typically from another
/// table's `updated` hook; the tree must belong to the same database). An entry already queued under the
/// same key is merged with it.
///
/// Fails (aborting the transaction) if the item already queued cannot be decoded, rather than drop it.
pub fn queue_insert<F: TableSchema>(
    tx: &mut db::Tx<'_>,
    queue_tree: &Tree,
    entry: &F::E,
) -> Result<(), db::Error> {
    let key = TableData::<F>::key_of(entry);
    let merged = match tx.get(queue_tree, &key)? {
        Some(old) => {
            let mut m = F::E::decode(&old).map_err(|e| codec_error(queue_tree, "decode", e))?;
            m.merge(entry);
            m
        }
        None => entry.clone(),
    };
    let bytes = merged
        .encode()
        .map_err(|e| codec_error(queue_tree, "encode", e))?;
    tx.insert(queue_tree, &key, &bytes)?;
    Ok(())
}

/// The insert queue of target table `F`: a handle on its tree (cheap to clone). Open it once per
/// table with [`InsertQueue::open`] and share it between the hooks that enqueue and the worker.
pub struct InsertQueue<F: TableSchema> {
    tree: Tree,
    notify: Arc<Notify>,
    _f: PhantomData<fn() -> F>,
}

impl<F: TableSchema> Clone for InsertQueue<F> {
    fn clone(&self) -> Self {
        InsertQueue {
            tree: self.tree.clone(),
            notify: self.notify.clone(),
            _f: PhantomData,
        }
    }
}

impl<F: TableSchema> InsertQueue<F> {
    /// Open (creating if needed) the tree `<F>:insert_queue` of `db`.
    pub fn open(db: &Db) -> Result<InsertQueue<F>, db::Error> {
        Ok(InsertQueue {
            tree: db.open_tree(queue_tree_name::<F>())?,
            notify: Arc::new(Notify::new()),
            _f: PhantomData,
        })
    }

    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    /// [`queue_insert`] into this queue, and wake the worker.
    pub fn insert(&self, tx: &mut db::Tx<'_>, entry: &F::E) -> Result<(), db::Error> {
        queue_insert::<F>(tx, &self.tree, entry)?;
        self.notify.notify_one();
        Ok(())
    }

    /// Wake the worker (after enqueuing through [`queue_insert`] directly).
    pub fn notify(&self) {
        self.notify.notify_one();
    }

    /// Items waiting.
    pub fn len(&self) -> Result<usize, db::Error> {
        self.tree.len()
    }

    pub fn is_empty(&self) -> Result<bool, db::Error> {
        self.tree.is_empty()
    }
}

/// Tuning of an [`InsertQueueWorker`].
#[derive(Clone, Debug)]
pub struct QueueConfig {
    /// Most entries per batch.
    pub batch: usize,
    /// Retry delay after a failed batch, doubling up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// When the queue looks empty, check it again at least this often (enqueuing also wakes the worker).
    pub idle_interval: Duration,
    /// Bound on one call of the inserter.
    pub insert_timeout: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            batch: 64,
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            idle_interval: Duration::from_secs(1),
            insert_timeout: Duration::from_secs(60),
        }
    }
}

/// Counters of an insert queue, see [`InsertQueueWorker::metrics`].
#[derive(Clone, Debug, Serialize)]
pub struct QueueMetrics {
    pub table: &'static str,
    /// Items waiting.
    pub queue_len: usize,
    /// Items written to the table and removed from the queue since start.
    pub inserted: u64,
    /// Failed insert attempts (batches or single entries) since start.
    pub failed_attempts: u64,
    /// Queued items skipped because they could not be decoded (they stay queued).
    pub undecodable: u64,
}

#[derive(Default)]
struct Counters {
    inserted: AtomicU64,
    failed: AtomicU64,
    undecodable: AtomicU64,
}

/// What one batch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Items read from the queue.
    pub read: usize,
    /// Items written and removed.
    pub removed: usize,
    /// Items written but changed meanwhile (kept, sent again later).
    pub changed: usize,
    /// Items whose write failed (kept).
    pub failed: usize,
    /// The batch reached the end of the queue (the cursor starts over).
    pub reached_end: bool,
}

/// Drains an [`InsertQueue`] into its table through an inserter.
pub struct InsertQueueWorker<F: TableSchema> {
    queue: InsertQueue<F>,
    inserter: InsertFn<F::E>,
    config: QueueConfig,
    counters: Counters,
}

impl<F: TableSchema> InsertQueueWorker<F> {
    pub fn new(queue: InsertQueue<F>, inserter: InsertFn<F::E>) -> Arc<Self> {
        Self::with_config(queue, inserter, QueueConfig::default())
    }

    pub fn with_config(
        queue: InsertQueue<F>,
        inserter: InsertFn<F::E>,
        config: QueueConfig,
    ) -> Arc<Self> {
        Arc::new(InsertQueueWorker {
            queue,
            inserter,
            config,
            counters: Counters::default(),
        })
    }

    /// Run the worker until the task is aborted.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move { me.run().await })
    }

    async fn run(&self) {
        let mut cursor: Option<Vec<u8>> = None;
        let mut backoff = self.config.min_backoff;
        loop {
            match self.process_batch(&mut cursor).await {
                Ok(r) if r.failed > 0 => {
                    tracing::debug!(
                        "{} insert queue: {} entries could not be written, retrying in {backoff:?}",
                        F::TABLE_NAME,
                        r.failed
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.config.max_backoff);
                }
                Ok(r) => {
                    backoff = self.config.min_backoff;
                    if r.reached_end && r.removed == 0 {
                        self.wait_for_work().await;
                    } else {
                        tokio::task::yield_now().await;
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        "{} insert queue: {e}; retrying in {backoff:?}",
                        F::TABLE_NAME
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.config.max_backoff);
                }
            }
        }
    }

    async fn wait_for_work(&self) {
        tokio::select! {
            _ = self.queue.notify.notified() => {
                // Woken from inside the enqueuing transaction: give it time to commit.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            _ = tokio::time::sleep(self.config.idle_interval) => (),
        }
    }

    /// Read up to `batch` items after `cursor` (updated; `None` = from the start), write them through the
    /// inserter, and remove those written and unchanged. Failed items stay queued.
    pub async fn process_batch(
        &self,
        cursor: &mut Option<Vec<u8>>,
    ) -> Result<BatchReport, TableError> {
        let (tree, after, batch) = (self.queue.tree.clone(), cursor.clone(), self.config.batch);
        let (rows, reached_end) = blocking(move || {
            let low = match &after {
                Some(k) => Bound::Excluded(&k[..]),
                None => Bound::Unbounded,
            };
            let mut rows = vec![];
            let mut reached_end = true;
            for row in tree.range((low, Bound::<&[u8]>::Unbounded))? {
                rows.push(row?);
                if rows.len() >= batch.max(1) {
                    reached_end = false;
                    break;
                }
            }
            Ok((rows, reached_end))
        })
        .await?;
        *cursor = if reached_end {
            None
        } else {
            rows.last().map(|(k, _)| k.clone())
        };
        let mut report = BatchReport {
            read: rows.len(),
            reached_end,
            ..Default::default()
        };
        let mut items: Vec<(Vec<u8>, Vec<u8>, F::E)> = Vec::with_capacity(rows.len());
        for (k, v) in rows {
            match TableData::<F>::decode(&v) {
                Ok(e) => items.push((k, v, e)),
                Err(e) => {
                    self.counters.undecodable.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        "{} insert queue: skipping an item that cannot be decoded (kept): {e}",
                        F::TABLE_NAME
                    );
                }
            }
        }
        if items.is_empty() {
            return Ok(report);
        }

        // The whole batch at once; if it fails, each entry alone, so the others still go through.
        let written: Vec<(Vec<u8>, Vec<u8>)> = match self
            .insert(items.iter().map(|(_, _, e)| e.clone()).collect())
            .await
        {
            Ok(()) => items.into_iter().map(|(k, v, _)| (k, v)).collect(),
            Err(e) if items.len() == 1 => {
                tracing::debug!("{} insert queue: write failed: {e}", F::TABLE_NAME);
                report.failed = 1;
                vec![]
            }
            Err(e) => {
                tracing::debug!(
                    "{} insert queue: batch write failed ({e}), retrying entries one by one",
                    F::TABLE_NAME
                );
                let results = futures::future::join_all(
                    items.iter().map(|(_, _, e)| self.insert(vec![e.clone()])),
                )
                .await;
                let mut ok = vec![];
                for ((k, v, _), r) in items.into_iter().zip(results) {
                    match r {
                        Ok(()) => ok.push((k, v)),
                        Err(_) => report.failed += 1,
                    }
                }
                ok
            }
        };

        // Check-and-delete: an item merged with a newer change meanwhile stays for the next pass.
        let tree = self.queue.tree.clone();
        let n_written = written.len();
        let removed = blocking(move || {
            let db = tree.db().clone();
            db.transaction(|tx| {
                let mut removed = 0;
                for (k, v) in &written {
                    if tx.get(&tree, k)?.as_deref() == Some(&v[..]) {
                        tx.remove(&tree, k)?;
                        removed += 1;
                    }
                }
                Ok(removed)
            })
            .map_err(|e: TxError<TableError>| match e {
                TxError::Abort(e) => e,
                TxError::Db(e) => TableError::Db(e),
            })
        })
        .await?;
        report.removed = removed;
        report.changed = n_written - removed;
        self.counters
            .inserted
            .fetch_add(removed as u64, Ordering::Relaxed);
        Ok(report)
    }

    /// One call of the inserter, bounded in time; counts failures.
    async fn insert(&self, entries: Vec<F::E>) -> Result<(), TableError> {
        let res = match tokio::time::timeout(self.config.insert_timeout, (self.inserter)(entries))
            .await
        {
            Ok(r) => r,
            Err(_) => Err(TableError::Timeout {
                what: "insert",
                after: self.config.insert_timeout,
            }),
        };
        if res.is_err() {
            self.counters.failed.fetch_add(1, Ordering::Relaxed);
        }
        res
    }

    pub fn queue(&self) -> &InsertQueue<F> {
        &self.queue
    }

    pub fn metrics(&self) -> Result<QueueMetrics, TableError> {
        Ok(QueueMetrics {
            table: F::TABLE_NAME,
            queue_len: self.queue.len()?,
            inserted: self.counters.inserted.load(Ordering::Relaxed),
            failed_attempts: self.counters.failed.load(Ordering::Relaxed),
            undecodable: self.counters.undecodable.load(Ordering::Relaxed),
        })
    }
}

/// An inserter that writes each entry of a batch to `table` with [`Table::insert`] (a quorum write),
/// all concurrently; it fails if any of them failed (the queue keeps the whole batch, then retries
/// the entries one by one).
pub fn table_inserter<F: TableSchema, R: TableReplication>(
    table: Arc<Table<F, R>>,
) -> InsertFn<F::E> {
    Arc::new(move |entries: Vec<F::E>| {
        let table = table.clone();
        Box::pin(async move {
            let results = futures::future::join_all(entries.iter().map(|e| table.insert(e))).await;
            results
                .into_iter()
                .collect::<Result<Vec<()>, _>>()
                .map(|_| ())
        })
    })
}

/// Run local database work (which may block on fsync) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, TableError> + Send + 'static,
) -> Result<T, TableError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| TableError::Task("insert queue task failed", e))?
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicBool;

    use serde_bytes::ByteBuf;

    use super::*;
    use crate::crdt::Lww;
    use crate::net::NetError;
    use crate::table::kv::{KvEntry, KvSchema};
    use crate::test_support::wait_until;

    fn entry(key: &str, ts: u64, value: &[u8]) -> KvEntry {
        KvEntry {
            partition: "p".into(),
            key: key.into(),
            value: Lww::raw(ts, Some(ByteBuf::from(value.to_vec()))),
        }
    }

    fn enqueue(db: &Db, q: &InsertQueue<KvSchema>, e: &KvEntry) {
        db.transaction(|tx| q.insert(tx, e).map_err(TxError::Abort))
            .unwrap();
    }

    fn queued(q: &InsertQueue<KvSchema>) -> Vec<KvEntry> {
        q.tree()
            .iter()
            .unwrap()
            .map(|r| KvEntry::decode(&r.unwrap().1).unwrap())
            .collect()
    }

    /// A fake table: a map of what was "written", optionally failing, optionally running a callback
    /// while "writing".
    #[derive(Default)]
    struct Fake {
        written: Mutex<BTreeMap<String, KvEntry>>,
        calls: AtomicU64,
        fail: AtomicBool,
        fail_key: Mutex<Option<String>>,
        during: Mutex<Option<Box<dyn FnMut() + Send>>>,
    }

    fn inserter(f: &Arc<Fake>) -> InsertFn<KvEntry> {
        let f = f.clone();
        Arc::new(move |entries: Vec<KvEntry>| {
            let f = f.clone();
            Box::pin(async move {
                f.calls.fetch_add(1, Ordering::Relaxed);
                if let Some(cb) = f.during.lock().unwrap().as_mut() {
                    cb();
                }
                if f.fail.load(Ordering::Relaxed) {
                    return Err(TableError::Net(NetError::Disconnected));
                }
                let bad = f.fail_key.lock().unwrap().clone();
                if let Some(bad) = bad
                    && entries.iter().any(|e| e.key == bad)
                {
                    return Err(TableError::Net(NetError::NotConnected(
                        "partition down".into(),
                    )));
                }
                let mut w = f.written.lock().unwrap();
                for e in entries {
                    match w.get_mut(&e.key) {
                        Some(m) => m.merge(&e),
                        None => {
                            w.insert(e.key.clone(), e);
                        }
                    }
                }
                Ok(())
            })
        })
    }

    fn worker(
        q: &InsertQueue<KvSchema>,
        f: &Arc<Fake>,
        batch: usize,
    ) -> Arc<InsertQueueWorker<KvSchema>> {
        InsertQueueWorker::with_config(
            q.clone(),
            inserter(f),
            QueueConfig {
                batch,
                min_backoff: Duration::from_millis(10),
                max_backoff: Duration::from_millis(40),
                idle_interval: Duration::from_millis(20),
                insert_timeout: Duration::from_secs(5),
            },
        )
    }

    /// Run batches until a full pass removed nothing.
    async fn drain(w: &InsertQueueWorker<KvSchema>) -> Vec<BatchReport> {
        let mut cursor = None;
        let mut reports = vec![];
        loop {
            let r = w.process_batch(&mut cursor).await.unwrap();
            reports.push(r.clone());
            if r.reached_end && r.removed == 0 {
                return reports;
            }
        }
    }

    #[test]
    fn aborted_transaction_queues_nothing() {
        let db = Db::open_mem();
        let q = InsertQueue::<KvSchema>::open(&db).unwrap();
        assert_eq!(q.tree().name(), "kv:insert_queue");
        let r: Result<(), TxError<&str>> = db.transaction(|tx| {
            q.insert(tx, &entry("a", 1, b"x")).map_err(TxError::Db)?;
            Err(TxError::Abort("hook failed"))
        });
        assert!(r.is_err());
        assert!(q.is_empty().unwrap());
        // Committed: queued, under the entry's storage key.
        let e = entry("a", 1, b"x");
        enqueue(&db, &q, &e);
        assert_eq!(q.len().unwrap(), 1);
        let (k, _) = q.tree().first().unwrap().unwrap();
        assert_eq!(k, TableData::<KvSchema>::key_of(&e));
    }

    #[test]
    fn same_key_is_merged() {
        let db = Db::open_mem();
        let q = InsertQueue::<KvSchema>::open(&db).unwrap();
        enqueue(&db, &q, &entry("a", 5, b"new"));
        enqueue(&db, &q, &entry("a", 3, b"old"));
        enqueue(&db, &q, &entry("b", 1, b"other"));
        let v = queued(&q);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].key, "a");
        assert_eq!(
            v[0].value(),
            Some(&b"new"[..]),
            "the merge keeps the newest"
        );
        enqueue(&db, &q, &entry("a", 9, b"newer"));
        assert_eq!(queued(&q)[0].value(), Some(&b"newer"[..]));
        // An undecodable queued item aborts the enqueuing transaction instead of being overwritten.
        let key = TableData::<KvSchema>::key_of(&entry("c", 1, b""));
        q.tree().insert(&key, b"garbage").unwrap();
        let r = db.transaction(|tx| q.insert(tx, &entry("c", 1, b"x")).map_err(TxError::Abort));
        assert!(r.is_err());
        assert_eq!(q.tree().get(&key).unwrap(), Some(b"garbage".to_vec()));
    }

    #[tokio::test]
    async fn worker_drains_in_batches() {
        let db = Db::open_mem();
        let q = InsertQueue::<KvSchema>::open(&db).unwrap();
        for i in 0..150 {
            enqueue(&db, &q, &entry(&format!("k{i:03}"), 1, b"v"));
        }
        let f = Arc::new(Fake::default());
        let w = worker(&q, &f, 64);
        let reports = drain(&w).await;
        assert!(reports.iter().all(|r| r.read <= 64));
        assert!(q.is_empty().unwrap());
        assert_eq!(f.written.lock().unwrap().len(), 150);
        assert_eq!(
            f.calls.load(Ordering::Relaxed),
            3,
            "150 entries in batches of 64"
        );
        let m = w.metrics().unwrap();
        assert_eq!((m.queue_len, m.inserted, m.failed_attempts), (0, 150, 0));
    }

    #[tokio::test]
    async fn failing_inserter_keeps_items_and_retries() {
        let db = Db::open_mem();
        let q = InsertQueue::<KvSchema>::open(&db).unwrap();
        for i in 0..5 {
            enqueue(&db, &q, &entry(&format!("k{i}"), 1, b"v"));
        }
        let f = Arc::new(Fake::default());
        f.fail.store(true, Ordering::Relaxed);
        let w = worker(&q, &f, 64);
        let mut cursor = None;
        let r = w.process_batch(&mut cursor).await.unwrap();
        assert_eq!((r.read, r.removed, r.failed), (5, 0, 5));
        assert_eq!(q.len().unwrap(), 5, "nothing dropped");
        assert!(w.metrics().unwrap().failed_attempts >= 1);

        // The spawned worker keeps retrying with backoff, and succeeds once the table is back.
        let task = w.spawn();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(q.len().unwrap(), 5);
        let calls = f.calls.load(Ordering::Relaxed);
        assert!(calls > 6, "retried: {calls} calls");
        f.fail.store(false, Ordering::Relaxed);
        wait_until("the queue to drain", Duration::from_secs(5), || {
            q.is_empty().unwrap()
        })
        .await;
        assert_eq!(f.written.lock().unwrap().len(), 5);
        // Enqueued later: the worker is woken and writes it.
        enqueue(&db, &q, &entry("late", 1, b"v"));
        wait_until(
            "the late entry to be written",
            Duration::from_secs(5),
            || f.written.lock().unwrap().contains_key("late"),
        )
        .await;
        task.abort();
    }

    #[tokio::test]
    async fn one_failing_entry_does_not_block_the_others() {
        let db = Db::open_mem();
        let q = InsertQueue::<KvSchema>::open(&db).unwrap();
        for i in 0..10 {
            enqueue(&db, &q, &entry(&format!("k{i}"), 1, b"v"));
        }
        let f = Arc::new(Fake::default());
        *f.fail_key.lock().unwrap() = Some("k0".into());
        let w = worker(&q, &f, 4);
        let mut cursor = None;
        let r = w.process_batch(&mut cursor).await.unwrap();
        assert_eq!((r.read, r.removed, r.failed), (4, 3, 1));
        drain(&w).await;
        assert_eq!(
            queued(&q).iter().map(|e| e.key.clone()).collect::<Vec<_>>(),
            vec!["k0"]
        );
        assert_eq!(f.written.lock().unwrap().len(), 9);
    }

    #[tokio::test]
    async fn item_requeued_during_write_is_not_lost() {
        let db = Db::open_mem();
        let q = InsertQueue::<KvSchema>::open(&db).unwrap();
        enqueue(&db, &q, &entry("a", 1, b"first"));
        enqueue(&db, &q, &entry("b", 1, b"only"));
        let f = Arc::new(Fake::default());
        // While the first write is in flight, a newer change of "a" is queued (merged).
        let (db2, q2) = (db.clone(), q.clone());
        let mut once = true;
        *f.during.lock().unwrap() = Some(Box::new(move || {
            if std::mem::take(&mut once) {
                enqueue(&db2, &q2, &entry("a", 2, b"second"));
            }
        }));
        let w = worker(&q, &f, 64);
        let mut cursor = None;
        let r = w.process_batch(&mut cursor).await.unwrap();
        assert_eq!((r.read, r.removed, r.changed), (2, 1, 1));
        let left = queued(&q);
        assert_eq!(left.len(), 1);
        assert_eq!(
            left[0].value(),
            Some(&b"second"[..]),
            "the newer change stays queued"
        );
        drain(&w).await;
        assert!(q.is_empty().unwrap());
        assert_eq!(f.written.lock().unwrap()["a"].value(), Some(&b"second"[..]));
    }
}
