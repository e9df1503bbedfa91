//! What a table stores: its keys, its entry type (a CRDT), and hooks.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::crdt::Crdt;
use crate::db;
use crate::util::encode::Versioned;
use crate::util::hash::{Hash, blake2sum};

/// The key that decides an entry's partition (e.g. a bucket id). Its hash's first byte is the partition.
pub trait PartitionKey: Clone + Send + Sync + 'static {
    fn hash(&self) -> Hash;
}

impl PartitionKey for String {
    fn hash(&self) -> Hash {
        blake2sum(self.as_bytes())
    }
}

impl PartitionKey for Hash {
    fn hash(&self) -> Hash {
        *self
    }
}

/// The key that orders entries within a partition key (e.g. an object key).
pub trait SortKey: Clone + Send + Sync + 'static {
    fn sort_key(&self) -> &[u8];
}

impl SortKey for String {
    fn sort_key(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl SortKey for Hash {
    fn sort_key(&self) -> &[u8] {
        &self[..]
    }
}

/// Tables whose partition key is the whole key use an empty sort key.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EmptyKey;

impl SortKey for EmptyKey {
    fn sort_key(&self) -> &[u8] {
        &[]
    }
}

/// An entry: a CRDT that knows its keys. Replicas merge entries, so any order of updates converges.
pub trait Entry<P: PartitionKey, S: SortKey>:
    Crdt + Versioned + Clone + PartialEq + Send + Sync + 'static
{
    fn partition_key(&self) -> &P;
    fn sort_key(&self) -> &S;
    /// A tombstone: the entry records a deletion. Tombstones are collected once every replica has them.
    fn is_tombstone(&self) -> bool {
        false
    }
}

/// A table's schema. One generic engine replicates every kind of metadata; a new kind of metadata is a
/// new schema, not new replication code.
pub trait TableSchema: Send + Sync + 'static {
    /// Unique, stable name: it names the database trees and the RPC endpoint.
    const TABLE_NAME: &'static str;
    type P: PartitionKey;
    type S: SortKey;
    type E: Entry<Self::P, Self::S>;
    /// Filter for range reads, sent to replicas.
    ///
    /// Replicas return entries that match the filter *or are tombstones*; the coordinator merges them,
    /// asks a replica that omitted a key another one returned for its version of that key (it may be a
    /// newer one that no longer matches: an object deleted since), and filters again after merging.
    type Filter: Clone + Serialize + DeserializeOwned + Send + Sync + 'static;

    fn matches_filter(entry: &Self::E, filter: &Self::Filter) -> bool;

    /// The newest timestamp an entry holds, for tables whose writers must stay above every timestamp
    /// a key has seen (objects): a replica that already had a newer one reports it back to the writer
    /// (see `Table::insert_checked`). None (the default) turns this off.
    fn newest_timestamp(_entry: &Self::E) -> Option<crate::crdt::Timestamp> {
        None
    }

    /// The timestamp a stored entry reports back to a writer whose entry's
    /// [`TableSchema::newest_timestamp`] is older: what the writer must land above (by default the
    /// same). Objects report the newest *settled* one (a complete version, or the size bound), not an
    /// upload under way, which a write may land below: it will supersede that write if it completes.
    fn newest_settled_timestamp(entry: &Self::E) -> Option<crate::crdt::Timestamp> {
        Self::newest_timestamp(entry)
    }

    /// Called in the same local transaction that changes an entry (old → new). Use it to keep derived
    /// data (counters, queues of cascading updates) exactly in step with the entries.
    fn updated(
        &self,
        _tx: &mut db::Tx<'_>,
        _old: Option<&Self::E>,
        _new: Option<&Self::E>,
    ) -> Result<(), db::Error> {
        Ok(())
    }
}
