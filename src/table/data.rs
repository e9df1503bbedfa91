//! Local storage of one table's entries on this node.
//!
//! Trees (all in the node's metadata database):
//! - `<table>:entries`: `partition_key_hash (32 bytes) ‖ sort_key` → versioned entry encoding;
//! - `<table>:merkle_todo`: same key → BLAKE2 of the new value (empty when removed); written in the same
//!   transaction as the entry, consumed by the Merkle updater (anti-entropy);
//! - `<table>:gc_todo`: `key ‖ value hash` of tombstones waiting to be collected.
//!
//! Every change goes through [`TableData::update_entry`], which merges the incoming entry with the stored
//! one, writes it only if the merge changed something, and runs the schema's `updated` hook and the to-do
//! bookkeeping in that same transaction.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::TableError;
use super::schema::{Entry, PartitionKey, SortKey, TableSchema};
use crate::crdt::Crdt;
use crate::db::{Db, Tree, TxError};
use crate::util::encode::Versioned;
use crate::util::hash::{Hash, blake2sum};

pub struct TableData<F: TableSchema> {
    pub schema: F,
    pub db: Db,
    pub store: Tree,
    pub merkle_todo: Tree,
    pub gc_todo: Tree,
    pub(crate) writes: AtomicU64,
}

/// The storage key of an entry.
pub fn tree_key(partition_hash: &Hash, sort_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(32 + sort_key.len());
    k.extend_from_slice(partition_hash);
    k.extend_from_slice(sort_key);
    k
}

impl<F: TableSchema> TableData<F> {
    pub fn new(schema: F, db: &Db) -> Result<Arc<TableData<F>>, TableError> {
        let name = F::TABLE_NAME;
        Ok(Arc::new(TableData {
            schema,
            db: db.clone(),
            store: db.open_tree(format!("{name}:entries"))?,
            merkle_todo: db.open_tree(format!("{name}:merkle_todo"))?,
            gc_todo: db.open_tree(format!("{name}:gc_todo"))?,
            writes: AtomicU64::new(0),
        }))
    }

    pub fn key_of(entry: &F::E) -> Vec<u8> {
        tree_key(&entry.partition_key().hash(), entry.sort_key().sort_key())
    }

    pub fn decode(bytes: &[u8]) -> Result<F::E, TableError> {
        F::E::decode(bytes).map_err(|e| TableError::Decode(F::TABLE_NAME, e.to_string()))
    }

    pub fn encode(entry: &F::E) -> Result<Vec<u8>, TableError> {
        entry
            .encode()
            .map_err(|e| TableError::Decode(F::TABLE_NAME, e.to_string()))
    }

    pub fn read_entry(&self, key: &[u8]) -> Result<Option<Vec<u8>>, TableError> {
        Ok(self.store.get(key)?)
    }

    /// Entries of one partition key from `begin` (inclusive), in order (or reverse order), that match
    /// `filter` or are tombstones (see [`TableSchema::Filter`]), at most `limit`.
    pub fn read_range(
        &self,
        partition_hash: &Hash,
        begin: Option<&[u8]>,
        filter: Option<&F::Filter>,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<Vec<u8>>, TableError> {
        self.read_range_bounded(partition_hash, begin, filter, limit, usize::MAX, reverse)
    }

    /// [`Self::read_range`], stopping as well once the entries returned reach `max_bytes` in all (the
    /// entry that crosses it included), after the first two: an answer is bounded in memory whatever
    /// the entries' sizes, and one read from an inclusive `begin` always gets past it.
    pub fn read_range_bounded(
        &self,
        partition_hash: &Hash,
        begin: Option<&[u8]>,
        filter: Option<&F::Filter>,
        limit: usize,
        max_bytes: usize,
        reverse: bool,
    ) -> Result<Vec<Vec<u8>>, TableError> {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        let start = tree_key(partition_hash, &[]);
        let end = match prefix_end(partition_hash) {
            Some(e) => Excluded(e),
            None => Unbounded,
        };
        let iter = match (reverse, begin) {
            (false, Some(b)) => self
                .store
                .range((Included(tree_key(partition_hash, b)), end))?,
            (false, None) => self.store.range((Included(start), end))?,
            (true, Some(b)) => self
                .store
                .range_rev((Included(start), Included(tree_key(partition_hash, b))))?,
            (true, None) => self.store.range_rev((Included(start), end))?,
        };
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for item in iter {
            let (_, v) = item?;
            let keep = match filter {
                None => true,
                Some(f) => {
                    let e = Self::decode(&v)?;
                    e.is_tombstone() || F::matches_filter(&e, f)
                }
            };
            if keep {
                bytes = bytes.saturating_add(v.len());
                out.push(v);
                if out.len() >= limit || (out.len() >= 2 && bytes >= max_bytes) {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Merge an encoded entry into local storage. Returns the stored entry if it changed.
    pub fn update_entry(&self, encoded: &[u8]) -> Result<Option<F::E>, TableError> {
        Ok(self.update_many(&[encoded])?.pop().flatten())
    }

    /// Merge several encoded entries in ONE transaction (one commit, one fsync): all or nothing.
    /// Returns, per entry, the stored entry if it changed.
    pub fn update_many(&self, encoded: &[&[u8]]) -> Result<Vec<Option<F::E>>, TableError> {
        let incoming: Vec<F::E> = encoded
            .iter()
            .map(|b| Self::decode(b))
            .collect::<Result<_, _>>()?;
        let res = self.db.transaction(|tx| {
            let mut out = Vec::with_capacity(incoming.len());
            for inc in &incoming {
                out.push(self.merge_in_tx(tx, inc)?);
            }
            Ok(out)
        });
        let changed = res.map_err(|e| match e {
            TxError::Abort(e) => e,
            TxError::Db(e) => TableError::Db(e),
        })?;
        let n = changed.iter().filter(|c| c.is_some()).count() as u64;
        self.writes.fetch_add(n, Ordering::Relaxed);
        Ok(changed)
    }

    fn merge_in_tx(
        &self,
        tx: &mut crate::db::Tx<'_>,
        incoming: &F::E,
    ) -> crate::db::TxResult<Option<F::E>, TableError> {
        let key = Self::key_of(incoming);
        let old = match tx.get(&self.store, &key)? {
            Some(b) => Some(Self::decode(&b).map_err(TxError::Abort)?),
            None => None,
        };
        let new = match &old {
            Some(o) => {
                let mut m = o.clone();
                m.merge(incoming);
                m
            }
            None => incoming.clone(),
        };
        if old.as_ref() == Some(&new) {
            return Ok(None);
        }
        let bytes = Self::encode(&new).map_err(TxError::Abort)?;
        let vhash = blake2sum(&bytes);
        tx.insert(&self.store, &key, &bytes)?;
        tx.insert(&self.merkle_todo, &key, vhash)?;
        if new.is_tombstone() {
            let mut gk = key.clone();
            gk.extend_from_slice(&vhash);
            tx.insert(
                &self.gc_todo,
                gk,
                crate::util::time::now_msec().to_be_bytes(),
            )?;
        }
        self.schema.updated(tx, old.as_ref(), Some(&new))?;
        Ok(Some(new))
    }

    /// Remove an entry if it still has exactly this encoding (used after a safe hand-off or GC).
    pub fn delete_if_equal(&self, key: &[u8], expected: &[u8]) -> Result<bool, TableError> {
        let res = self.db.transaction(|tx| match tx.get(&self.store, key)? {
            Some(v) if v == expected => {
                let old = Self::decode(&v).map_err(TxError::Abort)?;
                tx.remove(&self.store, key)?;
                tx.insert(&self.merkle_todo, key, [])?;
                self.schema.updated(tx, Some(&old), None)?;
                Ok(true)
            }
            _ => Ok(false),
        });
        res.map_err(|e| match e {
            TxError::Abort(e) => e,
            TxError::Db(e) => TableError::Db(e),
        })
    }

    pub fn len(&self) -> Result<usize, TableError> {
        Ok(self.store.len()?)
    }

    /// Every local entry (encoded), in key order. For small full-copy tables (keys, buckets).
    pub fn iter_local(&self) -> Result<Vec<EncodedPair>, TableError> {
        let mut out = vec![];
        for item in self.store.iter()? {
            out.push(item?);
        }
        Ok(out)
    }

    pub fn is_empty(&self) -> Result<bool, TableError> {
        Ok(self.store.is_empty()?)
    }
}

/// A stored (key, encoded entry) pair.
pub type EncodedPair = (Vec<u8>, Vec<u8>);

/// First key after every key of this partition key: the hash incremented as a 32-byte number
/// (None for the all-0xff hash, whose range is open-ended).
fn prefix_end(h: &Hash) -> Option<Vec<u8>> {
    let mut v = h.to_vec();
    for i in (0..32).rev() {
        if v[i] == 0xff {
            v[i] = 0;
        } else {
            v[i] += 1;
            return Some(v);
        }
    }
    None
}
