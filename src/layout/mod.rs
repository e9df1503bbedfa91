//! Cluster layout: which node plays which role (zone, capacity, gateway, tags) and which nodes hold each
//! of the 256 partitions; plus the node status gossip and cluster health that depend on it.
//!
//! - [`history`]: the data ([`LayoutHistory`], [`LayoutVersion`], staged changes as a CRDT) and `apply`.
//! - [`solver`]: the assignment (zone spread, capacity-optimal, minimal moves).
//! - [`manager`]: persistence and gossip of the history between nodes.
//! - [`system`]: node status gossip (hostname, disk, layout digest) and health.
//!
//! **Invariant:** `layout` knows nothing about tables, blocks or S3; it answers "which nodes hold
//! partition p" and "is the cluster healthy".

pub mod history;
pub mod manager;
pub mod solver;
pub mod system;

/// Node ids as the layout names them (so that its users need not depend on `net`).
pub use crate::net::NodeId;
pub use history::{
    ApplyReport, LayoutHistory, LayoutParameters, LayoutVersion, NodeRole, Tracker, ZoneRedundancy,
};
pub use manager::LayoutManager;
pub use system::{Health, System};

/// Errors of layout operations; messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("layout version {given} is not the next one: the current version is {current}, so apply --version {}", current + 1)]
    WrongVersion { given: u64, current: u64 },
    #[error(
        "no staged changes: stage some with `grenier layout assign`, `remove` or `config` first"
    )]
    NothingStaged,
    #[error("cannot compute the layout: {0}")]
    Solver(#[from] solver::SolverError),
    #[error("no known node id starts with `{0}`; see `grenier status`")]
    UnknownNode(String),
    #[error("node id prefix `{0}` is ambiguous; give more digits")]
    AmbiguousNode(String),
    #[error("invalid parameter: {0}")]
    Invalid(String),
    #[error("layout storage: {0}")]
    Storage(String),
}
