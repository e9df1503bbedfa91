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
