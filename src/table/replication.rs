//! Where a table's entries live and how many replicas must answer.
//!
//! - [`ShardedReplication`]: entries live on the replication-factor nodes of their partition; reads and
//!   writes use quorums from `consistency_mode` (consistent: R = ⌈rf/2⌉, W = rf + 1 − R, so R + W > rf and
//!   every read meets the latest acknowledged write; degraded: R = 1; dangerous: R = W = 1).
//! - [`FullReplication`]: small global tables (buckets, keys) on every node of the layout, read locally
//!   with no network hop, written to all with a majority quorum (a read right after a write on another
//!   node may miss it until the write reaches it, usually milliseconds; anti-entropy guarantees it does).

use std::sync::Arc;

use crate::layout::solver::NB_PARTITIONS;
use crate::layout::{LayoutVersion, System};
use crate::net::NodeId;
use crate::util::config::ConsistencyMode;
use crate::util::hash::Hash;

/// A partition this node stores, for anti-entropy.
#[derive(Clone, Debug)]
pub struct SyncPartition {
    pub partition: usize,
    /// Keys of this partition are `[first_hash, next partition's first_hash)`.
    pub first_hash: Hash,
    pub storage_nodes: Vec<NodeId>,
}

pub trait TableReplication: Send + Sync + 'static {
    /// Nodes that must store entries with this partition hash.
    fn storage_nodes(&self, hash: &Hash) -> Vec<NodeId>;
    /// Nodes to read from, nearest first.
    fn read_nodes(&self, hash: &Hash) -> Vec<NodeId>;
    fn read_quorum(&self) -> usize;
    /// A larger read quorum to retry with when a read found nothing (None: do not retry). Full-copy
    /// tables read one local copy, which may not have an entry written a moment ago through another
    /// node; asking a majority then meets the majority that acknowledged the write.
    fn read_quorum_on_miss(&self) -> Option<usize> {
        None
    }
    /// Apply a write to this node's own copy before the quorum write (full-copy tables, read locally:
    /// a read through the node that wrote then always sees the write).
    fn write_local_first(&self) -> bool {
        false
    }
    /// Sets of nodes a write must reach; it succeeds once each set has `write_quorum` acknowledgements.
    fn write_sets(&self, hash: &Hash) -> Vec<Vec<NodeId>>;
    fn write_quorum(&self) -> usize;
    /// Partitions this node stores (for anti-entropy).
    fn sync_partitions(&self) -> Vec<SyncPartition>;
}

pub struct ShardedReplication {
    pub system: Arc<System>,
    pub consistency: ConsistencyMode,
}

impl ShardedReplication {
    fn rf(&self) -> usize {
        self.system.layout.history().current().replication_factor
    }
}

fn partition_first_hash(p: usize) -> Hash {
    let mut h = [0u8; 32];
    h[0] = p as u8;
    h
}

/// Union of a partition's nodes over every active layout version, in first-seen order.
fn union_nodes<'a>(sets: impl Iterator<Item = Vec<NodeId>> + 'a) -> Vec<NodeId> {
    let mut out: Vec<NodeId> = vec![];
    for s in sets {
        for n in s {
            if !out.contains(&n) {
                out.push(n);
            }
        }
    }
    out
}

impl TableReplication for ShardedReplication {
    /// During a layout transition: the nodes of every active version.
    fn storage_nodes(&self, hash: &Hash) -> Vec<NodeId> {
        let h = self.system.layout.history();
        let p = LayoutVersion::partition_of(hash);
        union_nodes(h.versions.iter().map(|v| v.nodes_of(p)))
    }
    /// The replicas of the newest version every node has synced, nearest first.
    fn read_nodes(&self, hash: &Hash) -> Vec<NodeId> {
        let h = self.system.layout.history();
        let mut n = h.read_version().nodes_of(LayoutVersion::partition_of(hash));
        self.system.sort_by_proximity(&mut n);
        n
    }
    fn read_quorum(&self) -> usize {
        match self.consistency {
            ConsistencyMode::Consistent => self.rf().div_ceil(2),
            ConsistencyMode::Degraded | ConsistencyMode::Dangerous => 1,
        }
    }
    /// One set per active version: a write needs a quorum in each, so whichever version reads use
    /// (before, during or after a transition) holds every acknowledged write.
    fn write_sets(&self, hash: &Hash) -> Vec<Vec<NodeId>> {
        let h = self.system.layout.history();
        let p = LayoutVersion::partition_of(hash);
        h.versions
            .iter()
            .filter(|v| !v.ring.is_empty())
            .map(|v| v.nodes_of(p))
            .collect()
    }
    fn write_quorum(&self) -> usize {
        self.system.write_quorum(self.rf())
    }
    fn sync_partitions(&self) -> Vec<SyncPartition> {
        let h = self.system.layout.history();
        let me = self.system.id();
        (0..NB_PARTITIONS)
            .filter_map(|p| {
                let mut nodes = union_nodes(h.versions.iter().map(|v| v.nodes_of(p)));
                // Nothing left to get from a node leaving the layout once it synced (or was skipped).
                nodes.retain(|n| *n == me || !h.leaving_and_synced(n));
                nodes.contains(&me).then(|| SyncPartition {
                    partition: p,
                    first_hash: partition_first_hash(p),
                    storage_nodes: nodes,
                })
            })
            .collect()
    }
}

pub struct FullReplication {
    pub system: Arc<System>,
}

impl FullReplication {
    /// Every node with a role in an active layout version.
    fn all(&self) -> Vec<NodeId> {
        self.system
            .layout
            .history()
            .all_nodes()
            .into_iter()
            .collect()
    }
}

impl TableReplication for FullReplication {
    fn storage_nodes(&self, _hash: &Hash) -> Vec<NodeId> {
        self.all()
    }
    fn read_nodes(&self, _hash: &Hash) -> Vec<NodeId> {
        let mut n = self.all();
        if !n.contains(&self.system.id()) {
            n.push(self.system.id());
        }
        self.system.sort_by_proximity(&mut n);
        n
    }
    fn read_quorum(&self) -> usize {
        1
    }
    fn write_local_first(&self) -> bool {
        self.all().contains(&self.system.id())
    }
    fn read_quorum_on_miss(&self) -> Option<usize> {
        let n = self.all().len();
        (n > 1).then_some(n / 2 + 1)
    }
    fn write_sets(&self, _hash: &Hash) -> Vec<Vec<NodeId>> {
        vec![self.all()]
    }
    fn write_quorum(&self) -> usize {
        self.all().len() / 2 + 1
    }
    fn sync_partitions(&self) -> Vec<SyncPartition> {
        let mut all = self.all();
        let me = self.system.id();
        if !all.contains(&me) {
            return vec![];
        }
        // As for sharded tables: nothing left to get from a node leaving once it synced.
        let h = self.system.layout.history();
        all.retain(|n| *n == me || !h.leaving_and_synced(n));
        (0..NB_PARTITIONS)
            .map(|p| SyncPartition {
                partition: p,
                first_hash: partition_first_hash(p),
                storage_nodes: all.clone(),
            })
            .collect()
    }
}
