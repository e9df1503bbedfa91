//! The resync queue: a persistent queue (tree `block_resync`, keys `when (ms, big-endian) ++ hash`) of
//! blocks to check and when, with a per-block retry counter and exponential backoff (tree
//! `block_resync_errors`). Filled by reference-count changes (same transaction, [`super::rc`]), reads,
//! scrub and scans; drained by the workers of [`super::resync`]. Kept apart from the workers so that the
//! manager and the reference counts can queue checks without depending on them.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::db::{self, Db, Tree, Tx};
use crate::util::encode::{NoPrevious, Versioned};
use crate::util::hash::Hash;
use crate::util::time::now_msec;

/// After a block's first reference appears, check it this much later (the block normally arrives with
/// its write in the meantime).
pub const CHECK_AFTER_REF_MS: u64 = 10_000;
const MIN_BACKOFF_MS: u64 = 5_000;
const MAX_BACKOFF_MS: u64 = 3_600_000;

#[derive(Clone)]
pub struct ResyncQueue {
    queue: Tree,
    errors: Tree,
    pub(super) notify: Arc<Notify>,
}

/// Consecutive failures for one block.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
struct ErrorCounter {
    count: u64,
    last_try: u64,
}

impl Versioned for ErrorCounter {
    const MARKER: &'static [u8] = b"GRrserr01";
    type Previous = NoPrevious;
}

fn queue_key(hash: &Hash, when: u64) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..8].copy_from_slice(&when.to_be_bytes());
    k[8..].copy_from_slice(hash);
    k
}

impl ResyncQueue {
    pub fn open(db: &Db) -> Result<ResyncQueue, db::Error> {
        Ok(ResyncQueue {
            queue: db.open_tree("block_resync")?,
            errors: db.open_tree("block_resync_errors")?,
            notify: Arc::new(Notify::new()),
        })
    }

    /// Queue a check of `hash` at `when` (ms), inside a transaction.
    pub fn enqueue_tx(&self, tx: &mut Tx<'_>, hash: &Hash, when: u64) -> Result<(), db::Error> {
        tx.insert(&self.queue, queue_key(hash, when), [])?;
        self.notify.notify_waiters();
        Ok(())
    }

    pub fn enqueue(&self, hash: &Hash, when: u64) -> Result<(), db::Error> {
        self.queue.insert(queue_key(hash, when), [])?;
        self.notify.notify_waiters();
        Ok(())
    }

    /// Queue many checks in one transaction.
    pub fn enqueue_many(&self, hashes: &[Hash], when: u64) -> Result<(), db::Error> {
        let r = self.queue.db().transaction(|tx| {
            for h in hashes {
                tx.insert(&self.queue, queue_key(h, when), [])?;
            }
            Ok::<(), db::TxError<db::Error>>(())
        });
        r.map_err(db::flatten)?;
        self.notify.notify_waiters();
        Ok(())
    }

    pub fn len(&self) -> Result<usize, db::Error> {
        self.queue.len()
    }

    pub fn is_empty(&self) -> Result<bool, db::Error> {
        self.queue.is_empty()
    }

    /// When the first queued check is due (ms), if any.
    pub fn next_due(&self) -> Result<Option<u64>, db::Error> {
        Ok(self
            .queue
            .first()?
            .map(|(k, _)| u64::from_be_bytes(k[..8].try_into().expect("8 bytes"))))
    }

    /// Blocks whose last check failed.
    pub fn errors_len(&self) -> Result<usize, db::Error> {
        self.errors.len()
    }

    /// Take the first entry due at `now`: `Ok(hash)`, or `Err(Some(when))` for the next due time, or
    /// `Err(None)` when the queue is empty.
    ///
    /// The removal is a lazy commit (it does not wait for an fsync: a written block queues a check,
    /// and a check per block must not cost a disk flush): a crash may bring the entry back, and the
    /// block is then checked twice, which is harmless.
    pub(super) fn pop_due(&self, now: u64) -> Result<Result<Hash, Option<u64>>, db::Error> {
        let r = self.queue.db().transaction_lazy(|tx| {
            let Some((k, _)) = tx.first(&self.queue)? else {
                return Ok(Err(None));
            };
            let when = u64::from_be_bytes(k[..8].try_into().expect("8 bytes"));
            if when > now {
                return Ok(Err(Some(when)));
            }
            tx.remove(&self.queue, &k)?;
            let hash: Hash = k[8..40].try_into().expect("32 bytes");
            Ok::<_, db::TxError<db::Error>>(Ok(hash))
        });
        r.map_err(db::flatten)
    }

    /// Record a failure and queue a retry with exponential backoff; returns the retry time.
    pub(super) fn failed(&self, hash: &Hash) -> Result<u64, db::Error> {
        let now = now_msec();
        let mut c = match self.errors.get(hash)? {
            Some(v) => ErrorCounter::decode(&v).unwrap_or_default(),
            None => ErrorCounter::default(),
        };
        c.count += 1;
        c.last_try = now;
        let backoff = (MIN_BACKOFF_MS << (c.count - 1).min(20)).min(MAX_BACKOFF_MS);
        let bytes = c.encode().map_err(|e| db::Error::Corrupt(e.to_string()))?;
        self.errors.insert(hash, bytes)?;
        self.enqueue(hash, now + backoff)?;
        Ok(now + backoff)
    }

    /// Forget the failures of a block checked successfully (a lazy commit, and none at all when there
    /// were none: the common case costs a read).
    pub(super) fn succeeded(&self, hash: &Hash) -> Result<(), db::Error> {
        if self.errors.get(hash)?.is_none() {
            return Ok(());
        }
        let r = self.errors.db().transaction_lazy(|tx| {
            tx.remove(&self.errors, hash)?;
            Ok::<(), db::TxError<db::Error>>(())
        });
        r.map_err(db::flatten)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_pops_due_entries_in_time_order_and_backs_off() {
        let db = Db::open_mem();
        let q = ResyncQueue::open(&db).unwrap();
        let (a, b) = ([1u8; 32], [2u8; 32]);
        q.enqueue(&a, 2_000).unwrap();
        q.enqueue(&b, 1_000).unwrap();
        assert_eq!(q.pop_due(500).unwrap(), Err(Some(1_000)));
        assert_eq!(q.pop_due(1_500).unwrap(), Ok(b));
        assert_eq!(q.pop_due(1_500).unwrap(), Err(Some(2_000)));
        assert_eq!(q.pop_due(5_000).unwrap(), Ok(a));
        assert_eq!(q.pop_due(5_000).unwrap(), Err(None));

        let t1 = q.failed(&a).unwrap();
        let t2 = q.failed(&a).unwrap();
        assert!(t2 - t1 >= MIN_BACKOFF_MS, "the retry delay doubles");
        assert_eq!(q.errors_len().unwrap(), 1);
        assert_eq!(q.len().unwrap(), 2);
        q.succeeded(&a).unwrap();
        assert_eq!(q.errors_len().unwrap(), 0);
    }
}
