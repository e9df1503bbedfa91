//! Local reference counts of blocks.
//!
//! The block-reference table (see [`super::refs`]) is sharded by block hash, so the nodes that store a
//! block's references are exactly the nodes that must store the block. Each node keeps, in the tree
//! `block_rc`, how many live references to each block it holds; the count changes in the same
//! transaction as the reference entry (the table's `updated` hook), so it can never drift from the table.
//!
//! A count that drops to zero does not delete the block at once: the entry records a deadline
//! (`block_gc_delay` later) and the block is deleted by the resync worker only if the count is still zero
//! then. The delay covers a reference that is re-added (an object overwritten with the same data), and
//! a block written just before its first reference arrives (every new local block starts as "deletable
//! after the delay" until a reference claims it, so blocks of an interrupted upload are collected too).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::resync_queue::ResyncQueue;
use crate::db::{self, Db, Tree, Tx};
use crate::util::encode::{NoPrevious, Versioned};
use crate::util::hash::Hash;
use crate::util::time::now_msec;

/// The local reference count of a block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RcValue {
    /// Live references held by this node.
    pub count: u64,
    /// With `count == 0`: when (ms since the epoch) the block may be deleted.
    pub deletable_at: Option<u64>,
}

impl Versioned for RcValue {
    const MARKER: &'static [u8] = b"GRrc01";
    type Previous = NoPrevious;
}

impl RcValue {
    /// Referenced: the block must be kept (and fetched if missing).
    pub fn is_needed(&self) -> bool {
        self.count > 0
    }
    /// Unreferenced and past its safety delay at time `now`.
    pub fn is_deletable(&self, now: u64) -> bool {
        self.count == 0 && self.deletable_at.is_none_or(|t| t <= now)
    }
}

#[derive(Clone)]
pub struct BlockRc {
    tree: Tree,
    resync: ResyncQueue,
    gc_delay: Duration,
    /// New block files not yet recorded (see [`BlockRc::on_block_written`]).
    written: Arc<Mutex<Vec<Hash>>>,
    written_notify: Arc<Notify>,
}

impl BlockRc {
    pub fn open(db: &Db, resync: ResyncQueue, gc_delay: Duration) -> Result<BlockRc, db::Error> {
        Ok(BlockRc {
            tree: db.open_tree("block_rc")?,
            resync,
            gc_delay,
            written: Arc::new(Mutex::new(vec![])),
            written_notify: Arc::new(Notify::new()),
        })
    }

    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    /// The count of `hash` (absent: zero, deletable now).
    pub fn get(&self, hash: &Hash) -> Result<Option<RcValue>, db::Error> {
        self.tree.get(hash)?.map(|v| decode(&v)).transpose()
    }

    /// One more live reference (in the reference table's transaction). From 0 to 1, schedule a resync
    /// check a little later: by then the block has normally arrived with its write; if not, resync fetches it.
    pub fn increment(&self, tx: &mut Tx<'_>, hash: &Hash) -> Result<(), db::Error> {
        let mut v = self.get_tx(tx, hash)?.unwrap_or_default();
        v.count += 1;
        v.deletable_at = None;
        self.put_tx(tx, hash, &v)?;
        if v.count == 1 {
            self.resync.enqueue_tx(
                tx,
                hash,
                now_msec() + super::resync_queue::CHECK_AFTER_REF_MS,
            )?;
        }
        Ok(())
    }

    /// One live reference fewer. At zero, the block becomes deletable after the safety delay, and a resync
    /// check is scheduled for then.
    pub fn decrement(&self, tx: &mut Tx<'_>, hash: &Hash) -> Result<(), db::Error> {
        let mut v = self.get_tx(tx, hash)?.unwrap_or_default();
        v.count = v.count.saturating_sub(1);
        if v.count == 0 {
            let at = now_msec() + self.gc_delay.as_millis() as u64;
            v.deletable_at = Some(at);
            self.resync.enqueue_tx(tx, hash, at)?;
        }
        self.put_tx(tx, hash, &v)
    }

    /// A block file was just written here: if nothing references it yet, it is deletable only after the
    /// safety delay (its references are on their way), and checked again then.
    ///
    /// Recorded in the background, many blocks per transaction, so a block write does not wait for a
    /// metadata commit (and its fsync). Losing the record in a crash is harmless: the startup scan finds
    /// the file without a count and records it then.
    pub fn on_block_written(&self, hash: &Hash) {
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(*hash);
        self.written_notify.notify_one();
    }

    /// Record the blocks reported by [`BlockRc::on_block_written`], in batches, until aborted.
    pub fn spawn_recorder(&self) -> tokio::task::JoinHandle<()> {
        let rc = self.clone();
        tokio::spawn(async move {
            loop {
                rc.written_notify.notified().await;
                let batch =
                    std::mem::take(&mut *rc.written.lock().unwrap_or_else(|e| e.into_inner()));
                if let Err(e) = rc.record_written(&batch) {
                    tracing::error!("recording {} new blocks: {e}", batch.len());
                }
            }
        })
    }

    /// Mark unreferenced new blocks as deletable after the delay (one lazy transaction: losing it in a
    /// crash is harmless, see [`BlockRc::on_block_written`]).
    pub fn record_written(&self, hashes: &[Hash]) -> Result<(), db::Error> {
        if hashes.is_empty() {
            return Ok(());
        }
        let at = now_msec() + self.gc_delay.as_millis() as u64;
        let r = self.tree.db().transaction_lazy(|tx| {
            for hash in hashes {
                if self.get_tx(tx, hash)?.is_none() {
                    let v = RcValue {
                        count: 0,
                        deletable_at: Some(at),
                    };
                    self.put_tx(tx, hash, &v)?;
                    self.resync.enqueue_tx(tx, hash, at)?;
                }
            }
            Ok::<(), db::TxError<db::Error>>(())
        });
        r.map_err(db::flatten)
    }

    /// Forget a deleted, unreferenced block's entry (if still unreferenced).
    pub fn clear_if_deletable(&self, hash: &Hash) -> Result<(), db::Error> {
        let r = self.tree.db().transaction(|tx| {
            if let Some(v) = self.get_tx(tx, hash)?
                && v.is_deletable(now_msec())
            {
                tx.remove(&self.tree, hash)?;
            }
            Ok::<(), db::TxError<db::Error>>(())
        });
        r.map_err(db::flatten)
    }

    fn get_tx(&self, tx: &mut Tx<'_>, hash: &Hash) -> Result<Option<RcValue>, db::Error> {
        tx.get(&self.tree, hash)?.map(|v| decode(&v)).transpose()
    }

    fn put_tx(&self, tx: &mut Tx<'_>, hash: &Hash, v: &RcValue) -> Result<(), db::Error> {
        let bytes = v.encode().map_err(|e| db::Error::Corrupt(e.to_string()))?;
        tx.insert(&self.tree, hash, bytes)?;
        Ok(())
    }
}

fn decode(v: &[u8]) -> Result<RcValue, db::Error> {
    RcValue::decode(v).map_err(|e| db::Error::Corrupt(format!("block_rc: {e}")))
}
