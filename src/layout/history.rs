//! Layout data: roles, versions, the staged-changes CRDT, and `apply`.
//!
//! A [`LayoutHistory`] is what nodes gossip. It holds the current [`LayoutVersion`] (roles, replication
//! parameters and the partition → nodes assignment), summaries of earlier versions, and the
//! [`LayoutStaging`] CRDT of changes not applied yet. Merging two histories keeps the newer version (equal
//! versions computed differently by two concurrent `apply`s are broken by digest, so every node picks the
//! same) and merges the staging, so any order of gossip converges.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::LayoutError;
use super::solver::{self, NB_PARTITIONS, NodeSpec, SolverInput};
use crate::crdt::{Crdt, Lww, LwwMap};
use crate::net::NodeId;
use crate::util::encode::{NoPrevious, Versioned};
use crate::util::time::now_msec;

/// Earlier versions kept as summaries for `layout history`.
const HISTORY_KEPT: usize = 64;

/// The role of a node in the layout: its zone, and its capacity (None for a gateway that stores nothing).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeRole {
    pub zone: String,
    pub capacity: Option<u64>,
    pub tags: Vec<String>,
}

/// How many distinct zones each partition must span.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ZoneRedundancy {
    /// As many as possible: min(replication factor, number of zones).
    Max,
    AtLeast(usize),
}

impl std::fmt::Display for ZoneRedundancy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ZoneRedundancy::Max => f.write_str("max"),
            ZoneRedundancy::AtLeast(n) => write!(f, "{n}"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LayoutParameters {
    pub zone_redundancy: ZoneRedundancy,
}

impl Default for LayoutParameters {
    fn default() -> Self {
        LayoutParameters {
            zone_redundancy: ZoneRedundancy::Max,
        }
    }
}

/// One applied layout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayoutVersion {
    pub version: u64,
    pub replication_factor: usize,
    pub parameters: LayoutParameters,
    pub roles: BTreeMap<NodeId, NodeRole>,
    /// Nodes with a capacity, sorted by id; `ring` refers to them by index.
    pub storage_nodes: Vec<NodeId>,
    /// `NB_PARTITIONS × replication_factor` indices into `storage_nodes` (empty before the first apply).
    pub ring: Vec<u16>,
    pub partition_size: u64,
    pub applied_msec: u64,
    /// Replicas that moved compared with the previous version.
    pub moved: usize,
}

impl LayoutVersion {
    pub fn empty(replication_factor: usize) -> LayoutVersion {
        LayoutVersion {
            version: 0,
            replication_factor,
            parameters: LayoutParameters::default(),
            roles: BTreeMap::new(),
            storage_nodes: vec![],
            ring: vec![],
            partition_size: 0,
            applied_msec: 0,
            moved: 0,
        }
    }

    /// The partition a 32-byte hash falls in (its first byte: 256 partitions).
    pub fn partition_of(hash: &[u8; 32]) -> usize {
        hash[0] as usize
    }

    /// The partition of a hash (method form of [`LayoutVersion::partition_of`]).
    pub fn partition_of_hash(&self, hash: &[u8; 32]) -> usize {
        Self::partition_of(hash)
    }

    /// The nodes holding `partition` (empty before the first apply).
    pub fn nodes_of(&self, partition: usize) -> Vec<NodeId> {
        let rf = self.replication_factor;
        if self.ring.len() != NB_PARTITIONS * rf {
            return vec![];
        }
        self.ring[partition * rf..(partition + 1) * rf]
            .iter()
            .map(|&i| self.storage_nodes[i as usize])
            .collect()
    }

    pub fn zones(&self) -> BTreeSet<&str> {
        self.roles
            .values()
            .filter(|r| r.capacity.is_some())
            .map(|r| r.zone.as_str())
            .collect()
    }

    /// The zone redundancy in force: `max` resolved against the zones of storage nodes.
    pub fn effective_zone_redundancy(&self) -> usize {
        effective_zr(
            self.parameters.zone_redundancy,
            self.replication_factor,
            self.zones().len(),
        )
    }

    /// Partitions held by each storage node.
    pub fn partitions_per_node(&self) -> BTreeMap<NodeId, usize> {
        let mut m: BTreeMap<NodeId, usize> = self.storage_nodes.iter().map(|n| (*n, 0)).collect();
        for &i in &self.ring {
            *m.entry(self.storage_nodes[i as usize]).or_default() += 1;
        }
        m
    }

    pub fn usable_capacity(&self) -> u64 {
        self.partition_size * NB_PARTITIONS as u64
    }
}

fn effective_zr(zr: ZoneRedundancy, rf: usize, zones: usize) -> usize {
    match zr {
        ZoneRedundancy::Max => rf.min(zones).max(1),
        ZoneRedundancy::AtLeast(n) => n,
    }
}

/// Changes staged for the next version. A CRDT: per-node last-writer-wins roles (`None` = removal) and
/// parameters, within a generation `(version it applies on, number of reverts)`; a higher generation
/// replaces a lower one wholesale, which is how `apply` and `revert` clear it everywhere.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayoutStaging {
    pub generation: (u64, u64),
    pub roles: LwwMap<NodeId, Option<NodeRole>>,
    pub parameters: Option<Lww<LayoutParameters>>,
}

impl LayoutStaging {
    fn new(generation: (u64, u64)) -> LayoutStaging {
        LayoutStaging {
            generation,
            roles: LwwMap::new(),
            parameters: None,
        }
    }
}

impl Crdt for LayoutStaging {
    fn merge(&mut self, other: &Self) {
        if other.generation > self.generation {
            *self = other.clone();
        } else if other.generation == self.generation {
            self.roles.merge(&other.roles);
            self.parameters.merge(&other.parameters);
        }
    }
}

fn version_digest(v: &LayoutVersion) -> [u8; 32] {
    let bytes = rmp_serde::to_vec(v).unwrap_or_default();
    crate::util::hash::blake2sum(&bytes)
}

/// Summary of an applied version, for `layout history`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub version: u64,
    pub applied_msec: u64,
    pub storage_nodes: usize,
    pub gateways: usize,
    pub zones: usize,
    pub usable_capacity: u64,
    pub moved: usize,
}

impl HistoryEntry {
    /// The summary of version `v` (also how the admin API reports active versions).
    pub fn of(v: &LayoutVersion) -> HistoryEntry {
        HistoryEntry {
            version: v.version,
            applied_msec: v.applied_msec,
            storage_nodes: v.storage_nodes.len(),
            gateways: v.roles.len() - v.storage_nodes.len(),
            zones: v.zones().len(),
            usable_capacity: v.usable_capacity(),
            moved: v.moved,
        }
    }
}

/// Per-node progress through layout versions: each node raises its own entry, merges keep the maximum.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaxMap(pub BTreeMap<NodeId, u64>);

impl MaxMap {
    pub fn get(&self, n: &NodeId) -> u64 {
        self.0.get(n).copied().unwrap_or(0)
    }
    /// Raise `n`'s entry to `v`; true if it changed.
    pub fn set_max(&mut self, n: NodeId, v: u64) -> bool {
        let e = self.0.entry(n).or_insert(0);
        if v > *e {
            *e = v;
            true
        } else {
            false
        }
    }
}

impl Crdt for MaxMap {
    fn merge(&mut self, other: &Self) {
        for (n, v) in other.0.iter() {
            self.set_max(*n, *v);
        }
    }
}

/// How far each node got in adopting layout versions (see `doc/layout.md`, "Transitions"):
/// - `ack[n] = v`: node n knows version v and finished every write it started under older versions;
/// - `sync[n] = v`: node n pushed all it holds to the replicas of every active version, after all nodes
///   acknowledged v (so no write can be missed);
/// - `sync_ack[n] = v`: node n has seen that every node synced v, and reads from v.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateTrackers {
    pub ack: MaxMap,
    pub sync: MaxMap,
    pub sync_ack: MaxMap,
}

impl Crdt for UpdateTrackers {
    fn merge(&mut self, other: &Self) {
        self.ack.merge(&other.ack);
        self.sync.merge(&other.sync);
        self.sync_ack.merge(&other.sync_ack);
    }
}

/// The three trackers of [`UpdateTrackers`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tracker {
    Ack,
    Sync,
    SyncAck,
}

/// What gossip carries and disk keeps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayoutHistory {
    /// Active versions, oldest first; the last one is the current version. Never empty. Writes go to
    /// every active version; reads to the newest one every node has synced.
    pub versions: Vec<LayoutVersion>,
    /// Summaries of retired versions.
    pub previous: Vec<HistoryEntry>,
    pub trackers: UpdateTrackers,
    pub staging: LayoutStaging,
}

impl Versioned for LayoutHistory {
    const MARKER: &'static [u8] = b"GRlayout02";
    type Previous = v1::LayoutHistory;
    fn migrate(old: v1::LayoutHistory) -> Self {
        let mut h = LayoutHistory {
            versions: vec![old.current],
            previous: old.previous,
            trackers: UpdateTrackers::default(),
            staging: old.staging,
        };
        h.normalize();
        h
    }
}

/// The first on-disk format: a single current version.
pub mod v1 {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct LayoutHistory {
        pub current: LayoutVersion,
        pub previous: Vec<HistoryEntry>,
        pub staging: LayoutStaging,
    }

    impl Versioned for LayoutHistory {
        const MARKER: &'static [u8] = b"GRlayout01";
        type Previous = NoPrevious;
    }
}

/// What `apply` did, for the CLI to print.
#[derive(Clone, Debug, Serialize)]
pub struct ApplyReport {
    pub version: u64,
    pub moved: usize,
    pub partition_size: u64,
    pub usable_capacity: u64,
    pub zone_redundancy: usize,
    /// (node, zone, partitions before, partitions after)
    pub nodes: Vec<(NodeId, String, usize, usize)>,
}

impl LayoutHistory {
    pub fn new(replication_factor: usize) -> LayoutHistory {
        LayoutHistory {
            versions: vec![LayoutVersion::empty(replication_factor)],
            previous: vec![],
            trackers: UpdateTrackers::default(),
            staging: LayoutStaging::new((0, 0)),
        }
    }

    /// The current (newest) version.
    pub fn current(&self) -> &LayoutVersion {
        self.versions
            .last()
            .expect("a layout history always has a version")
    }

    /// Every node with a role in an active version: the nodes whose progress transitions wait for.
    pub fn all_nodes(&self) -> BTreeSet<NodeId> {
        self.versions
            .iter()
            .flat_map(|v| v.roles.keys().copied())
            .collect()
    }

    /// The lowest entry of a tracker over all nodes (the current version if there are no nodes).
    pub fn tracker_min(&self, map: &MaxMap) -> u64 {
        self.all_nodes()
            .iter()
            .map(|n| map.get(n))
            .min()
            .unwrap_or(self.current().version)
    }

    /// The version reads use: the newest active version every node has synced (the oldest active one
    /// while none is).
    pub fn read_version(&self) -> &LayoutVersion {
        let synced = self.tracker_min(&self.trackers.sync);
        self.versions
            .iter()
            .rev()
            .find(|v| v.version <= synced)
            .unwrap_or(&self.versions[0])
    }

    /// Record that `node` reached `v` in tracker `which`; true if anything changed (then persist/gossip).
    pub fn advance(&mut self, which: Tracker, node: NodeId, v: u64) -> bool {
        let map = match which {
            Tracker::Ack => &mut self.trackers.ack,
            Tracker::Sync => &mut self.trackers.sync,
            Tracker::SyncAck => &mut self.trackers.sync_ack,
        };
        let changed = map.set_max(node, v);
        if changed {
            self.normalize();
        }
        changed
    }

    /// Let a transition that waits for nodes that will never come back complete (`layout
    /// skip-dead-nodes`): each of `dead` (nodes with a role in an active version, seen down by the
    /// caller) is recorded as having acknowledged the current version and seen it synced, and as having
    /// synced it itself, which only a node holding no data of the current version can be: a node that
    /// still has a role in the current version must be removed from the layout first, unless
    /// `allow_missing_data` (then its partitions count as synced without it).
    ///
    /// Safety check (skipped with `allow_missing_data`): in every partition of every older active
    /// version, fewer than `write_quorum` replicas are dead, so at least one live replica holds every
    /// write that was acknowledged (it reached `write_quorum` of them), and the new replicas' sync
    /// can fetch it from there. Returns the nodes skipped (none if they all had already reached the
    /// current version).
    pub fn skip_dead(
        &mut self,
        dead: &BTreeSet<NodeId>,
        write_quorum: usize,
        allow_missing_data: bool,
    ) -> Result<Vec<NodeId>, LayoutError> {
        if !self.in_transition() {
            return Err(LayoutError::Invalid(
                "no layout transition in progress: there is nothing to skip".into(),
            ));
        }
        let v = self.current().version;
        let dead: BTreeSet<NodeId> = self.all_nodes().intersection(dead).copied().collect();
        if dead.is_empty() {
            return Err(LayoutError::Invalid(
                "every node with a role in an active layout version is up: the transition will \
                 complete by itself"
                    .into(),
            ));
        }
        if !allow_missing_data {
            if let Some(n) = dead.iter().find(|n| self.current().roles.contains_key(n)) {
                return Err(LayoutError::Invalid(format!(
                    "node {} is down but still has a role in the current layout (version {v}): \
                     remove it (`grenier layout remove`, `grenier layout apply`) and run this again, \
                     or pass --allow-missing-data to count its partitions as synced without it",
                    n.short()
                )));
            }
            for old in &self.versions[..self.versions.len() - 1] {
                for p in 0..NB_PARTITIONS {
                    let down = old.nodes_of(p).iter().filter(|n| dead.contains(n)).count();
                    if down >= write_quorum.max(1) {
                        return Err(LayoutError::Invalid(format!(
                            "{down} of the nodes down hold partition {p} in layout version {}: some \
                             acknowledged writes may exist only on them. Bring one back, or pass \
                             --allow-missing-data to accept losing them",
                            old.version
                        )));
                    }
                }
            }
        }
        let mut skipped = vec![];
        for n in dead {
            let mut changed = false;
            changed |= self.trackers.ack.set_max(n, v);
            changed |= self.trackers.sync.set_max(n, v);
            changed |= self.trackers.sync_ack.set_max(n, v);
            if changed {
                skipped.push(n);
            }
        }
        self.normalize();
        Ok(skipped)
    }

    /// Whether `n`, with no role in the current version, has synced it: it has pushed its data to the
    /// current replicas (or, dead, an admin declared that the live replicas hold every acknowledged
    /// write: [`LayoutHistory::skip_dead`]), so anti-entropy has nothing left to get from it and
    /// must not wait to reach it.
    pub fn leaving_and_synced(&self, n: &NodeId) -> bool {
        let current = self.current();
        !current.roles.contains_key(n) && self.trackers.sync.get(n) >= current.version
    }

    /// True while more than one version is active.
    pub fn in_transition(&self) -> bool {
        self.versions.len() > 1
    }

    /// Retire versions that every node stopped reading from, keep summaries, and clear obsolete staging.
    fn normalize(&mut self) {
        // A version without an assignment (the empty version 0) is never needed once another exists.
        if self.versions.len() > 1 {
            self.versions.retain(|v| !v.ring.is_empty());
        }
        let done = self.tracker_min(&self.trackers.sync_ack);
        if let Some(keep_from) = self.versions.iter().rposition(|v| v.version <= done) {
            for v in self.versions.drain(..keep_from) {
                if v.version > 0 && !self.previous.iter().any(|e| e.version == v.version) {
                    self.previous.push(HistoryEntry::of(&v));
                }
            }
        }
        self.previous.sort_by_key(|e| e.version);
        while self.previous.len() > HISTORY_KEPT {
            self.previous.remove(0);
        }
        self.normalize_staging();
    }

    /// A digest of the whole state: equal digests mean equal histories.
    pub fn digest(&self) -> [u8; 32] {
        let bytes = self.encode().unwrap_or_default();
        crate::util::hash::blake2sum(&bytes)
    }

    /// Merge another node's history; true if ours changed.
    pub fn merge(&mut self, other: &LayoutHistory) -> bool {
        let before = self.clone();
        // Union of versions; two different versions with the same number (concurrent applies on two
        // nodes) are decided by digest, so every node keeps the same one.
        let mut all: BTreeMap<u64, LayoutVersion> = BTreeMap::new();
        for v in self.versions.iter().chain(other.versions.iter()) {
            match all.get(&v.version) {
                Some(old) if old == v || version_digest(old) >= version_digest(v) => (),
                _ => {
                    all.insert(v.version, v.clone());
                }
            }
        }
        // Versions the other side already retired stay retired here.
        let retired = |n: u64| {
            self.previous
                .iter()
                .chain(other.previous.iter())
                .any(|e| e.version == n)
        };
        let newest = all.keys().next_back().copied().unwrap_or(0);
        self.versions = all
            .into_values()
            .filter(|v| v.version == newest || !retired(v.version))
            .collect();
        for e in &other.previous {
            if !self.previous.iter().any(|m| m.version == e.version) {
                self.previous.push(e.clone());
            }
        }
        self.trackers.merge(&other.trackers);
        self.staging.merge(&other.staging);
        self.normalize();
        *self != before
    }

    /// Staging from before the current version is obsolete.
    fn normalize_staging(&mut self) {
        let cur = self.current().version;
        if self.staging.generation.0 < cur {
            self.staging = LayoutStaging::new((cur, 0));
        }
    }

    pub fn stage_role(&mut self, node: NodeId, role: Option<NodeRole>) {
        self.staging.roles.update(node, role);
    }

    pub fn stage_parameters(&mut self, p: LayoutParameters) {
        match &mut self.staging.parameters {
            Some(l) => l.update(p),
            None => self.staging.parameters = Some(Lww::new(p)),
        }
    }

    pub fn revert(&mut self) {
        let (v, n) = self.staging.generation;
        self.staging = LayoutStaging::new((v.max(self.current().version), n + 1));
    }

    /// Staged role changes that differ from the current layout.
    pub fn staged_roles(&self) -> Vec<(NodeId, Option<NodeRole>)> {
        self.staging
            .roles
            .iter()
            .filter(|(id, r)| self.current().roles.get(id) != r.as_ref())
            .map(|(id, r)| (*id, r.clone()))
            .collect()
    }

    /// Staged parameters, if they differ from the current ones.
    pub fn staged_parameters(&self) -> Option<LayoutParameters> {
        self.staging
            .parameters
            .as_ref()
            .map(|l| *l.get())
            .filter(|p| *p != self.current().parameters)
    }

    /// Compute the next version from the staged changes. `expected` must be current+1 when given.
    pub fn apply(&mut self, expected: Option<u64>) -> Result<ApplyReport, LayoutError> {
        let cur = self.current();
        let next = cur.version + 1;
        if let Some(e) = expected
            && e != next
        {
            return Err(LayoutError::WrongVersion {
                given: e,
                current: cur.version,
            });
        }
        let staged = self.staged_roles();
        let params = self.staged_parameters();
        if staged.is_empty() && params.is_none() {
            return Err(LayoutError::NothingStaged);
        }
        let mut roles = cur.roles.clone();
        for (id, r) in staged {
            match r {
                Some(r) => roles.insert(id, r),
                None => roles.remove(&id),
            };
        }
        let parameters = params.unwrap_or(cur.parameters);
        let rf = cur.replication_factor;
        let storage_nodes: Vec<NodeId> = roles
            .iter()
            .filter(|(_, r)| r.capacity.is_some())
            .map(|(id, _)| *id)
            .collect();
        let specs: Vec<NodeSpec> = storage_nodes
            .iter()
            .map(|id| {
                let r = &roles[id];
                NodeSpec {
                    zone: r.zone.clone(),
                    capacity: r.capacity.unwrap_or(0),
                }
            })
            .collect();
        let zones: BTreeSet<&str> = specs.iter().map(|s| s.zone.as_str()).collect();
        let zr = effective_zr(parameters.zone_redundancy, rf, zones.len());
        let previous: Option<Vec<Vec<usize>>> = (!cur.ring.is_empty()).then(|| {
            (0..NB_PARTITIONS)
                .map(|p| {
                    cur.nodes_of(p)
                        .iter()
                        .filter_map(|id| storage_nodes.iter().position(|n| n == id))
                        .collect()
                })
                .collect()
        });
        let assignment = solver::solve(&SolverInput {
            nodes: &specs,
            replication_factor: rf,
            zone_redundancy: zr,
            previous: previous.as_deref(),
        })?;
        let before = cur.partitions_per_node();
        let new = LayoutVersion {
            version: next,
            replication_factor: rf,
            parameters,
            roles,
            storage_nodes: storage_nodes.clone(),
            ring: assignment
                .partitions
                .iter()
                .flat_map(|p| p.iter().map(|&i| i as u16))
                .collect(),
            partition_size: assignment.partition_size,
            applied_msec: now_msec(),
            moved: assignment.moved,
        };
        let after = new.partitions_per_node();
        let mut nodes: BTreeSet<NodeId> = before.keys().copied().collect();
        nodes.extend(after.keys().copied());
        let report = ApplyReport {
            version: next,
            moved: assignment.moved,
            partition_size: assignment.partition_size,
            usable_capacity: assignment.usable_capacity,
            zone_redundancy: zr,
            nodes: nodes
                .into_iter()
                .map(|id| {
                    let zone = new
                        .roles
                        .get(&id)
                        .or(self.current().roles.get(&id))
                        .map(|r| r.zone.clone())
                        .unwrap_or_default();
                    (
                        id,
                        zone,
                        before.get(&id).copied().unwrap_or(0),
                        after.get(&id).copied().unwrap_or(0),
                    )
                })
                .collect(),
        };
        self.versions.push(new);
        self.normalize();
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crdt::laws;
    use crate::net::NodeKey;
    use proptest::prelude::*;

    fn role(zone: &str, gb: u64) -> Option<NodeRole> {
        Some(NodeRole {
            zone: zone.into(),
            capacity: Some(gb * 1_000_000_000),
            tags: vec![],
        })
    }

    #[test]
    fn apply_assigns_three_zones_and_refuses_wrong_version() {
        let ids: Vec<NodeId> = (0..6).map(|_| NodeKey::generate().id()).collect();
        let mut h = LayoutHistory::new(3);
        assert!(matches!(h.apply(None), Err(LayoutError::NothingStaged)));
        for (i, id) in ids.iter().enumerate() {
            h.stage_role(*id, role(["a", "b", "c"][i % 3], 100));
        }
        assert!(matches!(
            h.apply(Some(5)),
            Err(LayoutError::WrongVersion {
                given: 5,
                current: 0
            })
        ));
        let r = h.apply(Some(1)).unwrap();
        assert_eq!(r.version, 1);
        assert_eq!(h.current().version, 1);
        assert!(h.staged_roles().is_empty());
        for p in 0..NB_PARTITIONS {
            let nodes = h.current().nodes_of(p);
            let zones: BTreeSet<_> = nodes
                .iter()
                .map(|n| h.current().roles[n].zone.clone())
                .collect();
            assert_eq!(zones.len(), 3, "partition {p} not spread over 3 zones");
        }
        // Remove one node: only its replicas move. Until every node has synced, both versions are
        // active: writes go to both, reads to the old one.
        let before = h.current().partitions_per_node()[&ids[0]];
        h.stage_role(ids[0], None);
        let r = h.apply(None).unwrap();
        assert_eq!(r.moved, before);
        assert!(!h.current().roles.contains_key(&ids[0]));
        assert_eq!(
            h.versions.iter().map(|v| v.version).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(h.read_version().version, 1);
        // The transition: every node of both versions acknowledges, syncs, then sees everyone synced.
        for id in &ids {
            h.advance(Tracker::Ack, *id, 2);
        }
        assert_eq!(h.tracker_min(&h.trackers.ack), 2);
        for id in &ids[..5] {
            h.advance(Tracker::Sync, *id, 2);
        }
        assert_eq!(h.read_version().version, 1, "one node has not synced yet");
        h.advance(Tracker::Sync, ids[5], 2);
        assert_eq!(h.read_version().version, 2);
        assert!(
            h.in_transition(),
            "old version kept until every node reads from the new one"
        );
        for id in &ids {
            h.advance(Tracker::SyncAck, *id, 2);
        }
        assert!(!h.in_transition());
        assert_eq!(h.current().version, 2);
        assert_eq!(
            h.previous.iter().map(|e| e.version).collect::<Vec<_>>(),
            vec![1]
        );
    }

    #[test]
    fn dead_nodes_are_skipped_only_when_no_acknowledged_write_can_be_lost() {
        let ids: Vec<NodeId> = (0..4).map(|_| NodeKey::generate().id()).collect();
        let all = [Tracker::Ack, Tracker::Sync, Tracker::SyncAck];
        let mut h = LayoutHistory::new(3);
        for (i, id) in ids.iter().take(3).enumerate() {
            h.stage_role(*id, role(["a", "b", "c"][i], 100));
        }
        h.apply(None).unwrap();
        let set = |v: &[NodeId]| v.iter().copied().collect::<BTreeSet<_>>();
        assert!(
            h.skip_dead(&set(&[ids[2]]), 2, false).is_err(),
            "no transition"
        );
        // Node 3 replaces node 2 (dead) in zone c; the live nodes do their part.
        let mut replaced = h.clone();
        replaced.stage_role(ids[3], role("c", 100));
        replaced.stage_role(ids[2], None);
        replaced.apply(None).unwrap();
        for id in [ids[0], ids[1], ids[3]] {
            for t in all {
                replaced.advance(t, id, 2);
            }
        }
        assert!(replaced.in_transition(), "waits for the dead node");
        // Two dead replicas of the same partitions: a write acknowledged by both may be lost.
        let e = replaced
            .clone()
            .skip_dead(&set(&[ids[1], ids[2]]), 2, false)
            .unwrap_err();
        assert!(e.to_string().contains("role in the current layout"), "{e}");
        // Nobody dead among the transition's nodes.
        assert!(replaced.clone().skip_dead(&set(&[]), 2, false).is_err());
        let skipped = replaced.skip_dead(&set(&[ids[2]]), 2, false).unwrap();
        assert_eq!(skipped, vec![ids[2]]);
        assert!(!replaced.in_transition());
        assert_eq!(replaced.read_version().version, 2);

        // A dead node that keeps its role: refused unless the admin accepts missing data.
        let mut kept = h.clone();
        kept.stage_role(ids[3], role("c", 100));
        kept.apply(None).unwrap();
        for id in [ids[0], ids[2], ids[3]] {
            for t in all {
                kept.advance(t, id, 2);
            }
        }
        let e = kept.skip_dead(&set(&[ids[1]]), 2, false).unwrap_err();
        assert!(e.to_string().contains("remove it"), "{e}");
        assert!(kept.in_transition());
        assert_eq!(
            kept.skip_dead(&set(&[ids[1]]), 2, true).unwrap(),
            vec![ids[1]]
        );
        assert!(!kept.in_transition());

        // Two of a partition's three replicas retired at once, both dead: a write they both
        // acknowledged may be nowhere else.
        let five: Vec<NodeId> = (0..2).map(|_| NodeKey::generate().id()).collect();
        let mut two = h.clone();
        two.stage_role(ids[1], None);
        two.stage_role(ids[2], None);
        two.stage_role(five[0], role("b", 100));
        two.stage_role(five[1], role("c", 100));
        two.apply(None).unwrap();
        let e = two
            .clone()
            .skip_dead(&set(&[ids[1], ids[2]]), 2, false)
            .unwrap_err();
        assert!(e.to_string().contains("hold partition"), "{e}");
        assert!(two.skip_dead(&set(&[ids[1], ids[2]]), 2, true).is_ok());
    }

    #[test]
    fn v1_layouts_are_migrated() {
        let ids: Vec<NodeId> = (0..3).map(|_| NodeKey::generate().id()).collect();
        let mut h = LayoutHistory::new(3);
        for (i, id) in ids.iter().enumerate() {
            h.stage_role(*id, role(["a", "b", "c"][i], 10));
        }
        h.apply(None).unwrap();
        let old = v1::LayoutHistory {
            current: h.current().clone(),
            previous: vec![],
            staging: h.staging.clone(),
        };
        let bytes = old.encode().unwrap();
        assert!(bytes.starts_with(b"GRlayout01"));
        let migrated = LayoutHistory::decode(&bytes).unwrap();
        assert_eq!(migrated.current(), h.current());
        assert!(!migrated.in_transition());
    }

    #[test]
    fn merge_takes_newer_version_and_clears_old_staging() {
        let ids: Vec<NodeId> = (0..3).map(|_| NodeKey::generate().id()).collect();
        let mut a = LayoutHistory::new(3);
        for (i, id) in ids.iter().enumerate() {
            a.stage_role(*id, role(["a", "b", "c"][i], 10));
        }
        let mut b = LayoutHistory::new(3);
        assert!(b.merge(&a));
        assert_eq!(b.staged_roles().len(), 3);
        a.apply(None).unwrap();
        assert!(b.merge(&a));
        assert_eq!(b, a);
        assert!(b.staged_roles().is_empty());
        assert!(!b.merge(&a));
        // Revert clears staged changes on every node.
        a.stage_role(ids[0], None);
        b.merge(&a);
        assert_eq!(b.staged_roles().len(), 1);
        b.revert();
        a.merge(&b);
        assert!(a.staged_roles().is_empty());
        assert_eq!(a.digest(), b.digest());
    }

    fn staging() -> impl Strategy<Value = LayoutStaging> {
        let ids: Vec<NodeId> = (0..3).map(|i| NodeId([i; 32])).collect();
        (
            0u64..2,
            0u64..2,
            proptest::collection::vec((0usize..3, 0u64..4, proptest::option::of(0u64..3)), 0..4),
        )
            .prop_map(move |(v, n, entries)| {
                let mut s = LayoutStaging::new((v, n));
                for (i, ts, cap) in entries {
                    let r = cap.map(|c| NodeRole {
                        zone: "z".into(),
                        capacity: Some(c),
                        tags: vec![],
                    });
                    s.roles.insert_raw(ids[i], Lww::raw(ts, r));
                }
                s
            })
    }

    proptest! {
        #[test]
        fn staging_is_a_crdt(a in staging(), b in staging(), c in staging()) {
            laws::check(&a, &b, &c);
        }
    }
}
