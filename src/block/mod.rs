//! Object data: content-addressed blocks, replicated across zones.
//!
//! Key types: [`data::DataBlock`] (a block as stored and sent: plain or zstd-compressed, verified against
//! its BLAKE2b hash on every read), [`store::BlockStore`] (block files in one or several data directories,
//! spread in proportion to their capacities), [`BlockManager`] (replicated writes, nearest-first hedged
//! reads, the block RPC), [`refs::BlockRefSchema`] (the block-reference table) and [`rc::BlockRc`] (local
//! reference counts), [`resync::Resync`] (make each node hold exactly its blocks) and [`scrub::Scrub`]
//! (find and repair bit rot). The data path with its costs per MiB is in `doc/blocks.md`.
//!
//! **Invariant:** `block` never reads object metadata; a block is bytes and a hash, and its users are
//! opaque ids in the block-reference table.

pub mod data;
pub mod manager;
pub mod rc;
pub mod refs;
pub mod resync;
pub mod resync_queue;
pub mod scrub;
pub mod start;
pub mod store;

pub use manager::BlockManager;

/// Errors of the block layer.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("block {0} not found")]
    NotFound(String),
    #[error("block {0} is corrupted: {1}")]
    Corrupted(String, String),
    #[error("data directory {0}: {1}")]
    Io(String, std::io::Error),
    #[error("no data directory accepts new blocks (all read-only?)")]
    NoWritableDir,
    #[error("{0}")]
    Net(String),
    #[error("{0}")]
    Db(#[from] crate::db::Error),
    #[error("{0}")]
    Table(#[from] crate::table::TableError),
    #[error("block {hash}: {got} of {needed} replicas acknowledged ({errors:?})")]
    Quorum {
        hash: String,
        needed: usize,
        got: usize,
        errors: Vec<String>,
    },
    #[error("no layout: the cluster has no storage nodes yet")]
    NoLayout,
}
