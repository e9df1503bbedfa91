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
    /// An RPC to another node failed; the network layer's error is kept as the source.
    #[error("{0}")]
    Net(#[from] crate::net::NetError),
    /// An RPC to a named node failed while `doing` something (resync: "asking", "sending to").
    #[error("{doing} {node}: {source}")]
    Peer {
        doing: &'static str,
        node: String,
        #[source]
        source: crate::net::NetError,
    },
    /// A peer's answer or block transfer broke the protocol (wrong answer, wrong length, stalled).
    #[error("{0}")]
    Protocol(String),
    /// A block's byte stream failed in the middle of a transfer.
    #[error("block transfer: {0}")]
    Transfer(#[source] std::io::Error),
    /// A blocking task (hashing, compression, file I/O) died (panicked or was cancelled).
    #[error("{0}: {1}")]
    Task(&'static str, #[source] tokio::task::JoinError),
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

impl BlockError {
    /// Not enough replicas reachable, or this node's database unavailable for now: the client may
    /// retry, as opposed to a bug or bad data.
    pub fn is_unavailable(&self) -> bool {
        match self {
            BlockError::Quorum { .. } | BlockError::NoLayout => true,
            BlockError::Db(e) => e.is_unavailable(),
            BlockError::Table(e) => e.is_unavailable(),
            _ => false,
        }
    }

    /// For `map_err`: an RPC to `node` failed while `doing` something ("asking", "sending to").
    pub fn peer(
        doing: &'static str,
        node: &crate::net::NodeId,
    ) -> impl FnOnce(crate::net::NetError) -> BlockError {
        let node = node.short();
        move |source| BlockError::Peer {
            doing,
            node,
            source,
        }
    }
}
