//! The block-reference table: which users (object versions, multipart parts: opaque 32-byte ids) use
//! which block. Sharded by block hash, so a block's references live on the same nodes as the block, and
//! each node's local reference counts ([`super::rc`]) follow the entries in the same transaction.
//!
//! A reference is added live and later marked deleted (a tombstone, collected once every replica has
//! it); "deleted" wins in merges, so a deleted reference never comes back.

use serde::{Deserialize, Serialize};

use super::rc::BlockRc;
use crate::crdt::Crdt;
use crate::db;
use crate::table::schema::{Entry, TableSchema};
use crate::util::encode::{NoPrevious, Versioned};
use crate::util::hash::Hash;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRef {
    /// The block (partition key).
    pub block: Hash,
    /// Who uses it (sort key); opaque to the block layer.
    pub user: Hash,
    pub deleted: bool,
}

impl BlockRef {
    pub fn new(block: Hash, user: Hash) -> BlockRef {
        BlockRef {
            block,
            user,
            deleted: false,
        }
    }
    pub fn deleted(block: Hash, user: Hash) -> BlockRef {
        BlockRef {
            block,
            user,
            deleted: true,
        }
    }
    fn is_live(&self) -> bool {
        !self.deleted
    }
}

impl Crdt for BlockRef {
    fn merge(&mut self, other: &Self) {
        self.deleted |= other.deleted;
    }
}

impl Versioned for BlockRef {
    const MARKER: &'static [u8] = b"GRbref01";
    type Previous = NoPrevious;
}

impl Entry<Hash, Hash> for BlockRef {
    fn partition_key(&self) -> &Hash {
        &self.block
    }
    fn sort_key(&self) -> &Hash {
        &self.user
    }
    fn is_tombstone(&self) -> bool {
        self.deleted
    }
}

pub struct BlockRefSchema {
    pub rc: BlockRc,
}

impl TableSchema for BlockRefSchema {
    const TABLE_NAME: &'static str = "block_ref";
    type P = Hash;
    type S = Hash;
    type E = BlockRef;
    type Filter = ();

    fn matches_filter(_: &BlockRef, _: &()) -> bool {
        true
    }

    /// Keep the local reference count in step: +1 when a live reference appears here, -1 when one is
    /// deleted or leaves this node (hand-off after a layout change).
    fn updated(
        &self,
        tx: &mut db::Tx<'_>,
        old: Option<&BlockRef>,
        new: Option<&BlockRef>,
    ) -> Result<(), db::Error> {
        let was = old.is_some_and(BlockRef::is_live);
        let is = new.is_some_and(BlockRef::is_live);
        let block = new.or(old).map(|r| r.block);
        match (was, is, block) {
            (false, true, Some(b)) => self.rc.increment(tx, &b),
            (true, false, Some(b)) => self.rc.decrement(tx, &b),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::block::resync_queue::ResyncQueue;
    use crate::db::Db;
    use crate::table::TableData;
    use crate::util::time::now_msec;

    fn setup() -> (
        std::sync::Arc<TableData<BlockRefSchema>>,
        BlockRc,
        ResyncQueue,
    ) {
        let db = Db::open_mem();
        let q = ResyncQueue::open(&db).unwrap();
        let rc = BlockRc::open(&db, q.clone(), Duration::from_secs(600)).unwrap();
        let data = TableData::new(BlockRefSchema { rc: rc.clone() }, &db).unwrap();
        (data, rc, q)
    }

    fn apply(d: &TableData<BlockRefSchema>, r: &BlockRef) {
        d.update_entry(&TableData::<BlockRefSchema>::encode(r).unwrap())
            .unwrap();
    }

    #[test]
    fn counts_follow_live_references_in_the_same_transaction() {
        let (d, rc, q) = setup();
        let (b, u1, u2) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        apply(&d, &BlockRef::new(b, u1));
        apply(&d, &BlockRef::new(b, u1)); // the same reference again: merged, not counted twice
        apply(&d, &BlockRef::new(b, u2));
        assert_eq!(rc.get(&b).unwrap().unwrap().count, 2);
        assert!(rc.get(&b).unwrap().unwrap().is_needed());
        // First reference queued one check (a little later, to let the block arrive).
        assert_eq!(q.len().unwrap(), 1);

        apply(&d, &BlockRef::deleted(b, u1));
        apply(&d, &BlockRef::deleted(b, u1));
        assert_eq!(rc.get(&b).unwrap().unwrap().count, 1);
        // A deleted reference never comes back by merging an older live copy.
        apply(&d, &BlockRef::new(b, u1));
        assert_eq!(rc.get(&b).unwrap().unwrap().count, 1);

        apply(&d, &BlockRef::deleted(b, u2));
        let v = rc.get(&b).unwrap().unwrap();
        assert_eq!(v.count, 0);
        assert!(!v.is_deletable(now_msec()), "kept during the safety delay");
        assert!(v.is_deletable(now_msec() + 601_000));
        assert_eq!(
            q.len().unwrap(),
            2,
            "a check is queued for the deletion time"
        );
    }

    #[test]
    fn a_reference_leaving_the_node_decrements() {
        let (d, rc, _q) = setup();
        let r = BlockRef::new([7u8; 32], [8u8; 32]);
        apply(&d, &r);
        let key = TableData::<BlockRefSchema>::key_of(&r);
        let bytes = TableData::<BlockRefSchema>::encode(&r).unwrap();
        assert!(d.delete_if_equal(&key, &bytes).unwrap());
        assert_eq!(rc.get(&r.block).unwrap().unwrap().count, 0);
    }

    #[test]
    fn new_unreferenced_blocks_wait_for_the_delay() {
        let (_d, rc, q) = setup();
        let b = [9u8; 32];
        rc.record_written(&[b]).unwrap();
        let v = rc.get(&b).unwrap().unwrap();
        assert!(!v.is_needed() && !v.is_deletable(now_msec()));
        assert_eq!(q.len().unwrap(), 1);
        // Writing it again does not push the deadline.
        rc.record_written(&[b]).unwrap();
        assert_eq!(rc.get(&b).unwrap().unwrap(), v);
    }
}
