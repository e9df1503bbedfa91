//! Versions (`version` table, sharded by version uuid): the list of blocks of one object version (or
//! multipart upload), keyed by (part number, offset in the part).
//!
//! Block references derive from this table: the `updated` hook queues, in the same transaction, a live
//! block reference for each block added to a live version and a deleted reference for each block of a
//! deleted version. A crash can therefore never leave a reference that no version accounts for, and
//! deleting a version releases exactly its blocks.

use serde::{Deserialize, Serialize};

use crate::block::refs::{BlockRef, BlockRefSchema};
use crate::crdt::{Crdt, GMap, MaxBool};
use crate::db;
use crate::table::queue::InsertQueue;
use crate::table::schema::{EmptyKey, Entry, TableSchema};
use crate::util::encode::{NoPrevious, Versioned};
use crate::util::hash::Hash;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionBlock {
    pub hash: Hash,
    pub size: u64,
}

impl Crdt for VersionBlock {
    /// A (part, offset) slot is written once; equal on every replica. Keep the larger to stay a CRDT.
    fn merge(&mut self, other: &Self) {
        if (other.hash, other.size) > (self.hash, self.size) {
            *self = *other;
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub uuid: Hash,
    pub deleted: MaxBool,
    /// (part number, offset) → block. A simple PUT is part 0.
    pub blocks: GMap<(u32, u64), VersionBlock>,
    /// The object it belongs to (for repair tools).
    pub bucket: Hash,
    pub key: String,
}

impl Version {
    pub fn new(uuid: Hash, bucket: Hash, key: String) -> Version {
        Version {
            uuid,
            deleted: MaxBool::new(false),
            blocks: GMap::new(),
            bucket,
            key,
        }
    }

    pub fn deleted(uuid: Hash, bucket: Hash, key: String) -> Version {
        let mut v = Version::new(uuid, bucket, key);
        v.deleted.set();
        v
    }

    /// Blocks in order.
    pub fn block_list(&self) -> Vec<((u32, u64), VersionBlock)> {
        self.blocks.iter().map(|(k, v)| (*k, *v)).collect()
    }
}

impl Crdt for Version {
    fn merge(&mut self, other: &Self) {
        self.deleted.merge(&other.deleted);
        self.blocks.merge(&other.blocks);
    }
}

impl Versioned for Version {
    const MARKER: &'static [u8] = b"GRversion01";
    type Previous = NoPrevious;
}

impl Entry<Hash, EmptyKey> for Version {
    fn partition_key(&self) -> &Hash {
        &self.uuid
    }
    fn sort_key(&self) -> &EmptyKey {
        &EmptyKey
    }
    fn is_tombstone(&self) -> bool {
        self.deleted.get()
    }
}

pub struct VersionSchema {
    pub block_ref_queue: InsertQueue<BlockRefSchema>,
}

impl TableSchema for VersionSchema {
    const TABLE_NAME: &'static str = "version";
    type P = Hash;
    type S = EmptyKey;
    type E = Version;
    type Filter = ();
    fn matches_filter(_: &Version, _: &()) -> bool {
        true
    }

    fn updated(
        &self,
        tx: &mut db::Tx<'_>,
        old: Option<&Version>,
        new: Option<&Version>,
    ) -> Result<(), db::Error> {
        let Some(new) = new else { return Ok(()) };
        let was_deleted = old.is_some_and(|o| o.deleted.get());
        for (slot, b) in new.blocks.iter() {
            let known = old.is_some_and(|o| o.blocks.contains_key(slot));
            let r = if new.deleted.get() {
                if was_deleted && known {
                    continue;
                }
                BlockRef::deleted(b.hash, new.uuid)
            } else if known {
                continue;
            } else {
                BlockRef::new(b.hash, new.uuid)
            };
            self.block_ref_queue.insert(tx, &r)?;
        }
        Ok(())
    }
}

/// Test support: the uuids of the versions whose deletion `queue` holds (each must be a deletion),
/// sorted. Used by the object and multipart hooks' tests.
#[cfg(test)]
pub(crate) fn queued_deletions(queue: &InsertQueue<VersionSchema>) -> Vec<Hash> {
    let mut out: Vec<Hash> = queue
        .tree()
        .iter()
        .unwrap()
        .map(|r| Version::decode(&r.unwrap().1).unwrap())
        .inspect(|v| assert!(v.deleted.get()))
        .map(|v| v.uuid)
        .collect();
    out.sort();
    out
}
