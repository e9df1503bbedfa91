//! Anti-entropy: every replica of a partition compares its Merkle tree ([`super::merkle`]) with every
//! other replica's and pushes the entries the other one lacks or has in another version.
//!
//! # Protocol (endpoint `grenier/table/<table>/sync/v1`, message [`SyncRpc`])
//!
//! For one peer and the partitions both store:
//! 1. this node first applies its pending Merkle to-do, so that entries just written are compared too;
//! 2. [`SyncRpc::RootHashes`]: one call returns the peer's root hash of every listed partition (the peer
//!    applies a bounded amount of its own pending to-do first); equal roots are done;
//! 3. for each differing partition (at most [`PARTITIONS_IN_FLIGHT`] at once per table), the trees are
//!    walked level by level: [`SyncRpc::GetNodes`] fetches the peer's nodes at every prefix of the
//!    current frontier ([`NODES_PER_CALL`] per call), each is compared with ours, and only the children
//!    whose hashes differ go to the next level. A subtree the peer does not have at all (or where it
//!    has a single item) needs no more calls: its items are read from our tree;
//! 4. our version of every differing item is pushed with the table's ordinary
//!    `TableRpc::Update` (at most [`ITEMS_PER_PUSH`] entries or [`BYTES_PER_PUSH`] bytes per call), which
//!    the peer merges (CRDT). Items we have removed (garbage-collected) are never pushed.
//!
//! Only pushes: the peer runs the same comparison towards us, so both converge. Every call has a
//! timeout; a failure is logged and the work is done again at the next trigger. A pass that missed only
//! disconnected replicas ends with [`TableError::Unreachable`] (expected during an outage, logged at
//! debug level); any other failure (e.g. [`TableError::PeerSync`]) is logged at info level. The choice
//! is made on the variant, never on the message.
//!
//! # Triggers
//!
//! - a peer connects ([`NetEvent::Connected`]): sync the partitions shared with it right away (retried
//!   after 1, 2, 4, 8 and 16 s on failure, e.g. while the peer is still starting): a node back from an
//!   outage is filled by the others within seconds, without an operator. The other replicas start
//!   1 s apart, in an order derived from the peer's id, so the second one usually finds the first
//!   one's pushes already merged instead of sending everything again;
//! - the layout version changes, and a few seconds after start: full pass;
//! - every [`SYNC_INTERVAL`] (± 10 s of jitter): full pass;
//! - on demand: `Table::sync_now` (a full pass, awaited; for `grenier repair tables` and layout
//!   transitions).
//!
//! # Back of the envelope
//!
//! A partition with `M` items has `d ≈ ⌈log256 M⌉ + 1` levels; an intermediate node holds up to 256
//! children of 33 bytes (≈ 8.4 KiB). To converge `N` differing items out of `M` with one peer:
//! - one `RootHashes` round trip for all shared partitions (≤ 256 × 33 bytes ≈ 8.4 KiB);
//! - per differing partition, about `d` `GetNodes` round trips (one per level, more only if a level has
//!   more than 64 differing nodes); the walk fetches at most `min(N, 256^i)` nodes at level `i`, so
//!   about `N × d` nodes in all, ≤ 8.4 KiB each near the root and ~100 bytes (a leaf) at the bottom;
//! - `⌈N / 256⌉` `Update` calls carrying the `N` entries themselves.
//!
//! E.g. a node back after missing 1 000 writes to one partition holding 100 000 items: 1 + 3 round trips
//! of lookups (≈ 1 000 nodes, a few hundred KiB), then 4 pushes of 256 entries. Two identical replicas
//! cost one `RootHashes` call per peer and pass.
//!
//! Measured (debug build, loopback): 2 000 items, 133 differing over 15 partitions: 228 nodes fetched,
//! 133 entries pushed (exactly the differing ones), 0.56 s including applying 2 000 pending Merkle
//! to-do entries. Three processes, one restarted after missing 1 000 writes to one partition: the
//! first other replica compares (one `RootHashes`, one `GetNodes` call) and pushes the 1 000 entries in
//! 80 ms; the restarted node holds them all 0.22 s after its restart, and the second replica, starting
//! 1 s later, finds nothing left to push. (Before the receiver grouped commits, each pushed entry was
//! its own durable transaction: 1–4 s for the same run.)
//!
//! **Invariant:** `table` knows nothing about S3: this module moves opaque keys, hashes and encoded
//! entries between the replicas `TableReplication::sync_partitions` names.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use tokio::sync::{Notify, Semaphore};

use super::data::TableData;
use super::merkle::{MAX_PREFIX, MerkleNode, MerkleUpdater, UPDATE_BATCH};
use super::replication::TableReplication;
use super::schema::TableSchema;
use super::{TableError, TableRpc, TableRpcResponse};
use crate::layout::System;
use crate::net::{Endpoint, Message, NetError, NetEvent, NodeId, Prio};
use crate::util::hash::{Hash, blake2sum};

/// Time allowed to a peer to answer a tree lookup.
pub const SYNC_RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed to a peer to merge one pushed batch (each entry is a durable write there).
pub const PUSH_TIMEOUT: Duration = Duration::from_secs(30);
/// Entries per pushed batch.
pub const ITEMS_PER_PUSH: usize = 256;
/// Bytes of entries per pushed batch (a batch holds at least one entry).
pub const BYTES_PER_PUSH: usize = 4 << 20;
/// Partitions being compared at once, per table.
pub const PARTITIONS_IN_FLIGHT: usize = 4;
/// Nodes asked per `GetNodes` call (an answer is at most 64 × 8.4 KiB).
pub const NODES_PER_CALL: usize = 64;
/// Most partitions one `RootHashes` request may list (there are 256; each is a distinct `u8`).
pub const MAX_ROOT_HASHES: usize = 256;
/// Period of full passes.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(60);
/// Delay of the first full pass after start (connections form meanwhile).
const STARTUP_DELAY: Duration = Duration::from_secs(3);
/// When a peer connects, the other replicas it shares partitions with start pushing to it one after
/// the other, this much apart (in an order that depends on the peer), so that usually one of them sends
/// what it missed and the next ones find little left; at most [`MAX_STAGGER_RANK`] steps.
const CONNECT_STAGGER: Duration = Duration::from_secs(1);
const MAX_STAGGER_RANK: u32 = 2;
/// Delays before the attempts of a sync triggered by a connection (after the stagger).
const CONNECT_ATTEMPTS: [Duration; 6] = [
    Duration::ZERO,
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(16),
];
/// Whether a full pass that did not complete only missed replicas that are not connected (expected
/// during an outage: logged at debug level, they are synced when they connect). Decided on the error's
/// variant, never on its message.
fn only_unreachable(e: &TableError) -> bool {
    matches!(e, TableError::Unreachable(_))
}

/// Pending Merkle to-do entries a `RootHashes` handler applies before answering.
const HANDLER_DRAIN: usize = 16 * UPDATE_BATCH;

/// Requests of the anti-entropy protocol.
#[derive(Serialize, Deserialize)]
pub enum SyncRpc {
    /// Root hash of each of these partitions' trees.
    RootHashes { partitions: Vec<u8> },
    /// The nodes at these prefixes of one partition's tree (at most [`NODES_PER_CALL`]).
    GetNodes {
        partition: u8,
        prefixes: Vec<ByteBuf>,
    },
}

#[derive(Serialize, Deserialize)]
pub enum SyncRpcResponse {
    /// `(partition, root hash)`, in the order asked.
    RootHashes(#[serde(with = "super::merkle::pairs")] Vec<(u8, Hash)>),
    /// One node per prefix asked, in order ([`MerkleNode::Empty`] where there is none).
    Nodes(Vec<MerkleNode>),
}

impl Message for SyncRpc {
    type Response = SyncRpcResponse;
}

/// What one sync did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Partitions compared.
    pub partitions: usize,
    /// Partitions whose roots differed.
    pub differing: usize,
    /// Nodes fetched from peers.
    pub nodes: usize,
    /// Entries pushed.
    pub pushed: usize,
}

impl SyncStats {
    fn add(&mut self, o: SyncStats) {
        self.partitions += o.partitions;
        self.differing += o.differing;
        self.nodes += o.nodes;
        self.pushed += o.pushed;
    }
}

/// Runs anti-entropy for one table.
pub struct TableSyncer<F: TableSchema, R: TableReplication> {
    data: Arc<TableData<F>>,
    merkle: Arc<MerkleUpdater<F>>,
    replication: Arc<R>,
    system: Arc<System>,
    endpoint: Endpoint<SyncRpc>,
    table_endpoint: Endpoint<TableRpc>,
    in_flight: Semaphore,
    full: Notify,
    connecting: Mutex<HashSet<NodeId>>,
    /// One sync at a time with each peer (connection, full pass, layout transition): a second one then
    /// finds the first one's pushes merged instead of sending the same entries again.
    peer_locks: Mutex<HashMap<NodeId, Arc<tokio::sync::Mutex<()>>>>,
    /// Outcome of the last full pass, for metrics.
    last_full: Mutex<Option<LastFullSync>>,
}

/// How the last full anti-entropy pass went.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LastFullSync {
    /// When it ended, milliseconds since the epoch.
    pub at_msec: u64,
    /// Every other replica of every partition stored here was reached.
    pub complete: bool,
    /// Partitions whose Merkle roots differed from some replica's (and were repaired if reached).
    pub partitions_differing: usize,
    /// Entries pushed to other replicas.
    pub entries_pushed: usize,
}

impl<F: TableSchema, R: TableReplication> TableSyncer<F, R> {
    /// Create the syncer and install the handler of `grenier/table/<table>/sync/v1`. `table_endpoint`
    /// is the table's own endpoint, whose `Update` merges pushed entries.
    pub fn new(
        data: &Arc<TableData<F>>,
        merkle: &Arc<MerkleUpdater<F>>,
        replication: &Arc<R>,
        system: &Arc<System>,
        table_endpoint: Endpoint<TableRpc>,
    ) -> Arc<Self> {
        let endpoint = Endpoint::new(
            &system.net,
            &format!("grenier/table/{}/sync/v1", F::TABLE_NAME),
        );
        let m = merkle.clone();
        endpoint.set_simple_handler(move |_from, req: SyncRpc| {
            let m = m.clone();
            async move {
                tokio::task::spawn_blocking(move || Self::handle(&m, req))
                    .await
                    .map_err(|e| NetError::Remote(format!("sync task failed: {e}")))?
                    .map_err(|e| NetError::Remote(e.to_string()))
            }
        });
        Arc::new(TableSyncer {
            data: data.clone(),
            merkle: merkle.clone(),
            replication: replication.clone(),
            system: system.clone(),
            endpoint,
            table_endpoint,
            in_flight: Semaphore::new(PARTITIONS_IN_FLIGHT),
            full: Notify::new(),
            connecting: Mutex::new(HashSet::new()),
            peer_locks: Mutex::new(HashMap::new()),
            last_full: Mutex::new(None),
        })
    }

    fn handle(m: &MerkleUpdater<F>, req: SyncRpc) -> Result<SyncRpcResponse, TableError> {
        match req {
            SyncRpc::RootHashes { partitions } => {
                // A peer-supplied list: each entry costs a lookup and a line of the answer. There are
                // only 256 partitions; a longer list is not something a node sends.
                if partitions.len() > MAX_ROOT_HASHES {
                    return Err(TableError::Protocol(format!(
                        "RootHashes: at most {MAX_ROOT_HASHES} partitions"
                    )));
                }
                if let Err(e) = m.update_all(HANDLER_DRAIN) {
                    tracing::warn!("table {}: Merkle update failed: {e}", F::TABLE_NAME);
                }
                let roots = partitions
                    .into_iter()
                    .map(|p| Ok((p, m.root_hash(p)?)))
                    .collect::<Result<_, TableError>>()?;
                Ok(SyncRpcResponse::RootHashes(roots))
            }
            SyncRpc::GetNodes {
                partition,
                prefixes,
            } => {
                if prefixes.len() > NODES_PER_CALL || prefixes.iter().any(|p| p.len() > MAX_PREFIX)
                {
                    return Err(TableError::Protocol(format!(
                        "GetNodes: at most {NODES_PER_CALL} prefixes of at most {MAX_PREFIX} bytes"
                    )));
                }
                let nodes = prefixes
                    .iter()
                    .map(|p| m.get_node(partition, p))
                    .collect::<Result<_, _>>()?;
                Ok(SyncRpcResponse::Nodes(nodes))
            }
        }
    }

    /// Start the triggers: connections, layout changes, the periodic pass (and the first one after
    /// start), and the task that runs full passes one at a time.
    pub fn spawn(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let runner = {
            let me = self.clone();
            tokio::spawn(async move {
                loop {
                    me.full.notified().await;
                    me.sync_now().await;
                }
            })
        };
        let triggers = {
            let me = self.clone();
            tokio::spawn(async move {
                let mut events = me.system.net.subscribe();
                let mut layout = me.system.layout.subscribe();
                let mut version = *layout.borrow_and_update();
                let (mut events_open, mut layout_open) = (true, true);
                let mut next = tokio::time::Instant::now() + STARTUP_DELAY;
                loop {
                    tokio::select! {
                        ev = events.recv(), if events_open => match ev {
                            Ok(NetEvent::Connected { id, .. }) => me.on_connected(id),
                            Ok(_) => (),
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                                me.full.notify_one();
                            }
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                                events_open = false;
                            }
                        },
                        r = layout.changed(), if layout_open => {
                            if r.is_err() {
                                layout_open = false;
                                continue;
                            }
                            let v = *layout.borrow_and_update();
                            if v != version {
                                version = v;
                                me.full.notify_one();
                            }
                        }
                        _ = tokio::time::sleep_until(next) => {
                            me.full.notify_one();
                            next = tokio::time::Instant::now() + jittered(SYNC_INTERVAL);
                        }
                    }
                }
            })
        };
        vec![runner, triggers]
    }

    /// Run a full pass now and log its outcome: true if every other replica of every partition stored
    /// here was synced.
    pub async fn sync_now(self: &Arc<Self>) -> bool {
        let t0 = Instant::now();
        match self.full_sync().await {
            Ok(s) => {
                tracing::debug!(
                    "table {}: full sync in {:?}: {s:?}",
                    F::TABLE_NAME,
                    t0.elapsed()
                );
                true
            }
            // Replicas down: expected during an outage; they are synced when they connect.
            Err(e) if only_unreachable(&e) => {
                tracing::debug!("table {}: full sync incomplete: {e}", F::TABLE_NAME);
                false
            }
            Err(e) => {
                tracing::info!(
                    "table {}: full sync incomplete (retried at the next trigger): {e}",
                    F::TABLE_NAME
                );
                false
            }
        }
    }

    /// Ask for a full pass soon (coalesced with any pending request).
    pub fn request_full_sync(&self) {
        self.full.notify_one();
    }

    /// A peer (re)connected: push it what it lacks in the partitions we share, now.
    fn on_connected(self: &Arc<Self>, peer: NodeId) {
        if peer == self.system.id() {
            return;
        }
        if !self
            .connecting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(peer)
        {
            return; // already syncing with it
        }
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(CONNECT_STAGGER * me.stagger_rank(&peer)).await;
            for (attempt, delay) in CONNECT_ATTEMPTS.iter().enumerate() {
                tokio::time::sleep(*delay).await;
                let parts = me.partitions_shared_with(&peer);
                if parts.is_empty() || !me.system.net.is_connected(&peer) {
                    break;
                }
                let t0 = Instant::now();
                match me.sync_with_peer(peer, parts).await {
                    Ok(s) => {
                        if s.pushed > 0 {
                            tracing::info!(
                                "table {}: {} connected, pushed {} entries in {:?} ({s:?})",
                                F::TABLE_NAME,
                                peer.short(),
                                s.pushed,
                                t0.elapsed()
                            );
                        }
                        break;
                    }
                    Err(e) if attempt + 1 < CONNECT_ATTEMPTS.len() => tracing::debug!(
                        "table {}: sync with {} failed, retrying: {e}",
                        F::TABLE_NAME,
                        peer.short()
                    ),
                    Err(e) => tracing::warn!(
                        "table {}: sync with {} failed (retried at the next pass): {e}",
                        F::TABLE_NAME,
                        peer.short()
                    ),
                }
            }
            me.connecting
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&peer);
        });
    }

    /// Our turn among the connected replicas that share partitions with `peer` to push to it (0: first),
    /// capped at [`MAX_STAGGER_RANK`]. Every node computes the same order: by `blake2(peer ‖ node)`.
    fn stagger_rank(&self, peer: &NodeId) -> u32 {
        let me = self.system.id();
        let key = |n: &NodeId| {
            let mut b = peer.0.to_vec();
            b.extend_from_slice(&n.0);
            blake2sum(&b)
        };
        let mine = key(&me);
        let mut others: HashSet<NodeId> = HashSet::new();
        for sp in self.replication.sync_partitions() {
            if sp.storage_nodes.contains(peer) {
                others.extend(sp.storage_nodes);
            }
        }
        let before = others
            .iter()
            .filter(|n| **n != me && *n != peer && self.system.net.is_connected(n))
            .filter(|n| key(n) < mine)
            .count();
        (before as u32).min(MAX_STAGGER_RANK)
    }

    fn partitions_shared_with(&self, peer: &NodeId) -> Vec<u8> {
        self.replication
            .sync_partitions()
            .into_iter()
            .filter(|sp| sp.storage_nodes.contains(peer))
            .map(|sp| sp.partition as u8)
            .collect()
    }

    /// Compare every partition this node stores with every other replica of it, and push the
    /// differences. Fails if some peer could not be synced (the others still were).
    pub async fn full_sync(self: &Arc<Self>) -> Result<SyncStats, TableError> {
        let (res, stats) = self.full_sync_inner().await;
        let last = LastFullSync {
            at_msec: crate::util::time::now_msec(),
            complete: res.is_ok(),
            partitions_differing: stats.differing,
            entries_pushed: stats.pushed,
        };
        *self.last_full.lock().unwrap_or_else(|e| e.into_inner()) = Some(last);
        res.map(|()| stats)
    }

    /// The last full pass, if any ran.
    pub fn last_full_sync(&self) -> Option<LastFullSync> {
        self.last_full
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn full_sync_inner(self: &Arc<Self>) -> (Result<(), TableError>, SyncStats) {
        let me = self.system.id();
        let mut by_peer: BTreeMap<NodeId, Vec<u8>> = BTreeMap::new();
        for sp in self.replication.sync_partitions() {
            for n in sp.storage_nodes {
                if n != me {
                    by_peer.entry(n).or_default().push(sp.partition as u8);
                }
            }
        }
        let (up, down): (Vec<_>, Vec<_>) = by_peer
            .into_iter()
            .partition(|(peer, _)| self.system.net.is_connected(peer));
        let results =
            futures::future::join_all(up.into_iter().map(|(peer, parts)| async move {
                (peer, self.sync_with_peer(peer, parts).await)
            }))
            .await;
        let mut stats = SyncStats::default();
        let mut errors = vec![];
        for (peer, r) in results {
            match r {
                Ok(s) => stats.add(s),
                Err(e) => errors.push(format!("{}: {e}", peer.short())),
            }
        }
        let res = if !errors.is_empty() {
            Err(TableError::PeerSync { errors })
        } else if !down.is_empty() {
            let ids: Vec<String> = down.iter().map(|(p, _)| p.short()).collect();
            Err(TableError::Unreachable(ids))
        } else {
            Ok(())
        };
        (res, stats)
    }

    /// Apply our pending Merkle to-do (all of it, unless writes keep coming faster).
    async fn drain_local(&self) -> Result<(), TableError> {
        let m = self.merkle.clone();
        let pending = m.todo_len()?;
        tokio::task::spawn_blocking(move || m.update_all(pending + UPDATE_BATCH))
            .await
            .map_err(|e| TableError::Task("Merkle update task failed", e))??;
        Ok(())
    }

    /// Sync `partitions` with `peer`: compare roots, walk the differing trees, push.
    pub async fn sync_with_peer(
        &self,
        peer: NodeId,
        partitions: Vec<u8>,
    ) -> Result<SyncStats, TableError> {
        let lock = self
            .peer_locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(peer)
            .or_default()
            .clone();
        let _turn = lock.lock().await;
        self.drain_local().await?;
        let n = partitions.len();
        let resp = self
            .endpoint
            .call(
                &peer,
                &SyncRpc::RootHashes { partitions },
                Prio::Normal,
                SYNC_RPC_TIMEOUT,
            )
            .await?;
        let SyncRpcResponse::RootHashes(theirs) = resp else {
            return Err(TableError::Protocol(
                "unexpected answer to RootHashes".into(),
            ));
        };
        let mut differing = vec![];
        for (p, h) in theirs {
            if self.merkle.root_hash(p)? != h {
                differing.push(p);
            }
        }
        let mut stats = SyncStats {
            partitions: n,
            differing: differing.len(),
            ..Default::default()
        };
        let results: Vec<Result<SyncStats, TableError>> = futures::stream::iter(differing)
            .map(|p| self.sync_partition(peer, p))
            .buffer_unordered(PARTITIONS_IN_FLIGHT)
            .collect()
            .await;
        let mut first_err = None;
        for r in results {
            match r {
                Ok(s) => stats.add(s),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(stats),
        }
    }

    /// Walk one partition's trees and push our items the peer lacks. Prefixes to look at wait on a
    /// stack and are fetched [`NODES_PER_CALL`] at a time: when few nodes differ this goes level by
    /// level (one round trip per level); when many do, the stack stays small (deepest first).
    async fn sync_partition(&self, peer: NodeId, partition: u8) -> Result<SyncStats, TableError> {
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| TableError::Stopped("syncer closed"))?;
        let mut stats = SyncStats::default();
        let mut pusher = Pusher::new(self, peer);
        let mut stack: Vec<(Vec<u8>, Option<MerkleNode>)> = vec![(vec![], None)];
        while !stack.is_empty() {
            let chunk = stack.split_off(stack.len().saturating_sub(NODES_PER_CALL));
            let msg = SyncRpc::GetNodes {
                partition,
                prefixes: chunk
                    .iter()
                    .map(|(p, _)| ByteBuf::from(p.clone()))
                    .collect(),
            };
            let resp = self
                .endpoint
                .call(&peer, &msg, Prio::Normal, SYNC_RPC_TIMEOUT)
                .await?;
            let SyncRpcResponse::Nodes(remote) = resp else {
                return Err(TableError::Protocol("unexpected answer to GetNodes".into()));
            };
            if remote.len() != chunk.len() {
                return Err(TableError::Protocol(
                    "GetNodes: wrong number of nodes".into(),
                ));
            }
            stats.nodes += remote.len();
            let mut work = vec![];
            for ((prefix, local), remote) in chunk.into_iter().zip(remote) {
                let local = match local {
                    Some(n) => n,
                    None => self.merkle.get_node(partition, &prefix)?,
                };
                compare(&prefix, &local, &remote, &mut stack, &mut work);
            }
            for w in work {
                match w {
                    Push::Key(k) => pusher.add(&k).await?,
                    Push::Subtree { prefix, except } => {
                        let mut cursor = None;
                        loop {
                            let (items, next) = self.merkle.subtree_page(
                                partition,
                                &prefix,
                                cursor.as_deref(),
                                ITEMS_PER_PUSH,
                            )?;
                            for (k, vh) in items {
                                if except.as_ref() != Some(&(k.clone(), vh)) {
                                    pusher.add(&k).await?;
                                }
                            }
                            match next {
                                Some(c) => cursor = Some(c),
                                None => break,
                            }
                        }
                    }
                }
            }
        }
        stats.pushed += pusher.finish().await?;
        Ok(stats)
    }
}

/// Items to push, found by [`compare`].
enum Push {
    Key(Vec<u8>),
    /// Every item of our subtree at `prefix`, except the peer's only item there if it equals ours.
    Subtree {
        prefix: Vec<u8>,
        except: Option<(Vec<u8>, Hash)>,
    },
}

/// Compare our subtree at `prefix` (its node, or the leaf above it that stands for it: `local`) with the
/// peer's node there: stack the prefixes to look at next (with our node when it is not the one stored
/// at that prefix), and list what to push.
fn compare(
    prefix: &[u8],
    local: &MerkleNode,
    remote: &MerkleNode,
    stack: &mut Vec<(Vec<u8>, Option<MerkleNode>)>,
    push: &mut Vec<Push>,
) {
    if local.hash() == remote.hash() {
        return;
    }
    let child = |b: u8| {
        let mut p = prefix.to_vec();
        p.push(b);
        p
    };
    match (local, remote) {
        (MerkleNode::Empty, _) => (),
        (MerkleNode::Leaf { key, .. }, MerkleNode::Intermediate(theirs)) => {
            // They have several items here, maybe ours among them: follow its branch.
            match blake2sum(key).get(prefix.len()).copied() {
                Some(b) if theirs.binary_search_by_key(&b, |c| c.0).is_ok() => {
                    stack.push((child(b), Some(local.clone())));
                }
                _ => push.push(Push::Key(key.to_vec())),
            }
        }
        // Equal leaves have equal hashes: this one differs.
        (MerkleNode::Leaf { key, .. }, _) => push.push(Push::Key(key.to_vec())),
        (MerkleNode::Intermediate(ours), MerkleNode::Intermediate(theirs)) => {
            for (b, h) in ours {
                match theirs.binary_search_by_key(b, |c| c.0) {
                    Ok(i) if theirs[i].1 == *h => (),
                    Ok(_) => stack.push((child(*b), None)),
                    Err(_) => push.push(Push::Subtree {
                        prefix: child(*b),
                        except: None,
                    }),
                }
            }
        }
        (MerkleNode::Intermediate(_), theirs) => {
            // They have at most one item here: send all of ours but that one.
            let except = match theirs {
                MerkleNode::Leaf { key, value_hash } => Some((key.to_vec(), *value_hash)),
                _ => None,
            };
            push.push(Push::Subtree {
                prefix: prefix.to_vec(),
                except,
            });
        }
    }
}

/// Sends our current version of entries to a peer in bounded batches (entries removed here meanwhile
/// are skipped).
struct Pusher<'a, F: TableSchema, R: TableReplication> {
    syncer: &'a TableSyncer<F, R>,
    peer: NodeId,
    batch: Vec<ByteBuf>,
    bytes: usize,
    sent: usize,
}

impl<'a, F: TableSchema, R: TableReplication> Pusher<'a, F, R> {
    fn new(syncer: &'a TableSyncer<F, R>, peer: NodeId) -> Self {
        Pusher {
            syncer,
            peer,
            batch: vec![],
            bytes: 0,
            sent: 0,
        }
    }

    async fn add(&mut self, key: &[u8]) -> Result<(), TableError> {
        let Some(v) = self.syncer.data.read_entry(key)? else {
            return Ok(());
        };
        if !self.batch.is_empty()
            && (self.batch.len() >= ITEMS_PER_PUSH || self.bytes + v.len() > BYTES_PER_PUSH)
        {
            self.flush().await?;
        }
        self.bytes += v.len();
        self.batch.push(ByteBuf::from(v));
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), TableError> {
        let batch = std::mem::take(&mut self.batch);
        self.bytes = 0;
        let n = batch.len();
        if n == 0 {
            return Ok(());
        }
        match self
            .syncer
            .table_endpoint
            .call(
                &self.peer,
                &TableRpc::Update(batch),
                Prio::Normal,
                PUSH_TIMEOUT,
            )
            .await?
        {
            TableRpcResponse::Ok | TableRpcResponse::Newer(_) => {
                self.sent += n;
                Ok(())
            }
            _ => Err(TableError::Protocol("unexpected answer to Update".into())),
        }
    }

    async fn finish(mut self) -> Result<usize, TableError> {
        self.flush().await?;
        Ok(self.sent)
    }
}

/// `d` ± 10 s (never less than half of `d`).
fn jittered(d: Duration) -> Duration {
    use rand::Rng;
    let j = rand::thread_rng().gen_range(0..=20_000u64);
    (d + Duration::from_millis(j))
        .saturating_sub(Duration::from_secs(10))
        .max(d / 2)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::db::Db;
    use crate::layout::{LayoutManager, NodeRole};
    use crate::net::peering::Peering;
    use crate::net::{NetApp, NodeKey};
    use crate::table::kv::{KvEntry, KvSchema};
    use crate::table::{MAX_RANGE_ROUNDS, RANGE_ANSWER_BYTES, ShardedReplication, Table};
    use crate::test_support::wait_until;
    use crate::util::config::ConsistencyMode;

    type KvTable = Table<KvSchema, ShardedReplication>;

    /// A peer listing more partitions than exist is refused before any lookup.
    #[test]
    fn root_hashes_request_is_bounded() {
        let db = Db::open_mem();
        let data = TableData::new(KvSchema, &db).unwrap();
        let m = MerkleUpdater::new(&data).unwrap();
        let ok = TableSyncer::<KvSchema, ShardedReplication>::handle(
            &m,
            SyncRpc::RootHashes {
                partitions: (0..=255).collect(),
            },
        );
        assert!(matches!(ok, Ok(SyncRpcResponse::RootHashes(r)) if r.len() == 256));
        let too_many = TableSyncer::<KvSchema, ShardedReplication>::handle(
            &m,
            SyncRpc::RootHashes {
                partitions: vec![0; 1 << 20],
            },
        );
        assert!(matches!(too_many, Err(TableError::Protocol(e)) if e.contains("at most 256")));
    }

    #[test]
    fn outage_is_decided_on_the_variant() {
        assert!(only_unreachable(&TableError::Unreachable(vec![
            "a1b2".into()
        ])));
        // Same text, other variants: not an outage (the old prefix match took these for one).
        for e in [
            TableError::Protocol("replicas not connected: a1b2".into()),
            TableError::PeerSync {
                errors: vec!["replicas not connected".into()],
            },
            TableError::Net(NetError::Remote("replicas not connected: a1b2".into())),
        ] {
            assert!(!only_unreachable(&e), "{e}");
        }
    }

    struct Node {
        net: Arc<NetApp>,
        addr: SocketAddr,
        table: Arc<KvTable>,
        tasks: Vec<tokio::task::JoinHandle<()>>,
        _dir: tempfile::TempDir,
    }

    impl Drop for Node {
        fn drop(&mut self) {
            for t in &self.tasks {
                t.abort();
            }
        }
    }

    async fn node(rf: usize) -> Node {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let net = NetApp::new(&NodeKey::generate(), [3; 32], Some(addr.to_string()), None).unwrap();
        let tasks = vec![net.listen(addr).await.unwrap()];
        let dir = tempfile::tempdir().unwrap();
        let peering = Peering::new(&net, vec![], None);
        let layout = LayoutManager::new(&net, dir.path(), rf, false).unwrap();
        let system = System::new(
            &net,
            &peering,
            &layout,
            ConsistencyMode::Consistent,
            dir.path().to_path_buf(),
            None,
        );
        let replication = ShardedReplication {
            system: system.clone(),
            consistency: ConsistencyMode::Consistent,
        };
        let table = Table::new(KvSchema, replication, &system, &Db::open_mem()).unwrap();
        Node {
            net,
            addr,
            table,
            tasks,
            _dir: dir,
        }
    }

    /// `n` connected nodes in `n` zones, with a layout applied everywhere.
    async fn cluster(n: usize, rf: usize) -> Vec<Node> {
        let mut nodes = vec![];
        for _ in 0..n {
            nodes.push(node(rf).await);
        }
        for i in 0..n {
            for j in i + 1..n {
                let (id, addr) = (nodes[j].net.id, nodes[j].addr.to_string());
                nodes[i].net.connect(id, &addr).await.unwrap();
            }
        }
        let ids: Vec<NodeId> = nodes.iter().map(|n| n.net.id).collect();
        nodes[0]
            .table
            .system
            .layout
            .update(|h| {
                for (i, id) in ids.iter().enumerate() {
                    h.stage_role(
                        *id,
                        Some(NodeRole {
                            zone: format!("z{i}"),
                            capacity: Some(10_000_000_000),
                            tags: vec![],
                        }),
                    );
                }
                h.apply(None).map(|_| ())
            })
            .unwrap();
        wait_until("layout everywhere", Duration::from_secs(10), || {
            nodes.iter().all(|n| n.table.system.layout.version() == 1)
        })
        .await;
        nodes
    }

    fn roots(t: &KvTable) -> Vec<Hash> {
        assert!(t.merkle.update_all(usize::MAX).unwrap());
        (0..=255u8)
            .map(|p| t.merkle.root_hash(p).unwrap())
            .collect()
    }

    fn contents(t: &KvTable) -> BTreeMap<Vec<u8>, Vec<u8>> {
        t.data.store.iter().unwrap().map(|r| r.unwrap()).collect()
    }

    fn put_local(t: &KvTable, partition: &str, key: &str, value: Option<&str>) {
        let e = KvEntry::new(partition, key, value.map(|v| v.as_bytes().to_vec()));
        t.data
            .update_entry(&TableData::<KvSchema>::encode(&e).unwrap())
            .unwrap();
    }

    /// A filtered range read judges the filter on the merged entry: a replica that omits a key because
    /// its newer version no longer matches (an object deleted since) outweighs a stale replica that
    /// returns the older, matching one, whichever node coordinates; the stale replica is repaired.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn filtered_range_read_does_not_list_a_key_changed_since_on_a_quorum() {
        let nodes = cluster(3, 3).await;
        let (a, b, c) = (&nodes[0].table, &nodes[1].table, &nodes[2].table);
        for t in [a, b, c] {
            put_local(t, "bucket", "k1", Some("yes-1"));
            put_local(t, "bucket", "k3", Some("yes-3"));
        }
        let at = |ms, v: &[u8]| KvEntry {
            partition: "bucket".into(),
            key: "k2".into(),
            value: crate::crdt::Lww::raw(ms, Some(serde_bytes::ByteBuf::from(v.to_vec()))),
        };
        let older = TableData::<KvSchema>::encode(&at(1_000, b"yes-2")).unwrap();
        for t in [a, b, c] {
            t.data.update_entry(&older).unwrap();
        }
        // An acknowledged write of k2 (on a quorum: a and b) that no longer matches; c missed it.
        let newer = at(2_000, b"no");
        let enc = TableData::<KvSchema>::encode(&newer).unwrap();
        a.data.update_entry(&enc).unwrap();
        b.data.update_entry(&enc).unwrap();
        let filter = Some(serde_bytes::ByteBuf::from(b"yes".to_vec()));
        for (i, t) in [c, a, b, c].iter().enumerate() {
            let got: Vec<String> = t
                .get_range(&"bucket".to_string(), None, Some(filter.clone()), 10, false)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.key)
                .collect();
            assert_eq!(got, ["k1", "k3"], "read {i}");
        }
        wait_until("c repaired", Duration::from_secs(10), || {
            c.data
                .read_entry(&TableData::<KvSchema>::key_of(&newer))
                .unwrap()
                .is_some_and(|b| TableData::<KvSchema>::decode(&b).unwrap().value() == Some(b"no"))
        })
        .await;
    }

    /// The keys of partition `bucket` a range read through `t` returns.
    async fn keys_in(t: &KvTable, limit: usize, reverse: bool) -> Vec<String> {
        let got = t
            .get_range(&"bucket".to_string(), None, None, limit, reverse)
            .await
            .unwrap();
        got.into_iter().map(|e| e.key).collect()
    }

    /// A range read whose entries are larger than one answer's byte budget
    /// ([`RANGE_ANSWER_BYTES`]) takes more rounds and returns every entry, in order,
    /// forwards and backwards, even with replicas that differ; a short page is never returned early
    /// (a listing would read it as the end).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn range_reads_of_large_entries_return_every_entry() {
        let nodes = cluster(3, 3).await;
        let (a, b, c) = (&nodes[0].table, &nodes[1].table, &nodes[2].table);
        // Two entries fill an answer: every round after the first brings one new key.
        let big = "v".repeat(RANGE_ANSWER_BYTES / 2 + 1024);
        let keys: Vec<String> = (0..MAX_RANGE_ROUNDS + 4)
            .map(|i| format!("k{i:02}"))
            .collect();
        for (i, k) in keys.iter().enumerate() {
            for (j, t) in [a, b, c].into_iter().enumerate() {
                // Each replica misses every third key, a different third each.
                if i % 3 != j {
                    put_local(t, "bucket", k, Some(&big));
                }
            }
        }
        for t in [a, b, c] {
            for reverse in [false, true] {
                let got = keys_in(t, 1000, reverse).await;
                let mut want = keys.clone();
                if reverse {
                    want.reverse();
                }
                assert_eq!(got, want, "reverse {reverse}");
            }
            // A page limit in the middle.
            assert_eq!(keys_in(t, 10, false).await, keys[..10]);
        }
        // Entries each above the budget: every answer is a single entry or a cut pair, and the
        // read ends at the last one (one large entry alone is the end of the range, not a page).
        let huge = "h".repeat(RANGE_ANSWER_BYTES + 1024);
        for t in [a, b, c] {
            for k in ["h0", "h1", "h2"] {
                put_local(t, "huge", k, Some(&huge));
            }
        }
        for reverse in [false, true] {
            let got = tokio::time::timeout(
                Duration::from_secs(30),
                a.get_range(&"huge".to_string(), None, None, 1000, reverse),
            )
            .await
            .expect("the read ends")
            .unwrap();
            assert_eq!(got.len(), 3, "reverse {reverse}");
        }
    }

    /// A full pass pushes exactly the entries the peer lacks or has in another version, with few
    /// lookups; once both sides ran it, both hold the same entries and the same trees.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn full_sync_pushes_only_differences_and_converges() {
        let nodes = cluster(2, 2).await;
        let (a, b) = (&nodes[0].table, &nodes[1].table);
        for i in 0..2000 {
            // Many items in one partition (one partition key), like a big bucket; some elsewhere.
            let p = if i % 10 == 0 {
                format!("p{i}")
            } else {
                "bucket".into()
            };
            let v = format!("v{i}");
            put_local(a, &p, &format!("k{i}"), Some(&v));
            if i % 100 != 7 {
                // b misses 20 entries...
                if i % 100 == 3 {
                    put_local(b, &p, &format!("k{i}"), Some("older")); // ...has 20 others differently,
                } else {
                    put_local(b, &p, &format!("k{i}"), Some(&v));
                }
            }
        }
        // ...and has 5 entries a does not.
        for i in 0..5 {
            put_local(b, "bucket", &format!("extra{i}"), None);
        }
        // Same value written separately: equal encodings only if the timestamps agree, so count what
        // really differs.
        let (ca, cb) = (contents(a), contents(b));
        let differ_a = ca.iter().filter(|(k, v)| cb.get(*k) != Some(v)).count();
        let differ_b = cb.iter().filter(|(k, v)| ca.get(*k) != Some(v)).count();
        assert!(differ_a >= 40 && differ_b >= 25);

        let t0 = Instant::now();
        let sa = a.syncer.full_sync().await.unwrap();
        let ta = t0.elapsed();
        assert_eq!(sa.pushed, differ_a, "{sa:?}");
        let t0 = Instant::now();
        let sb = b.syncer.full_sync().await.unwrap();
        let tb = t0.elapsed();
        eprintln!(
            "a→b: {differ_a} differing of {} in {ta:?}: {sa:?}; b→a: {tb:?}: {sb:?}",
            ca.len()
        );
        assert_eq!(sa.partitions, 256);
        // The walk only looks at differing branches: a few nodes per differing item.
        assert!(sa.nodes <= 4 * differ_a + 256, "{sa:?}");
        assert_eq!(contents(a), contents(b));
        assert_eq!(roots(a), roots(b));
        // Nothing left to do: a pass costs one RootHashes call and pushes nothing.
        let again = a.syncer.full_sync().await.unwrap();
        assert_eq!((again.differing, again.nodes, again.pushed), (0, 0, 0));
    }

    /// The lead's scenario in process: a replica is cut off while 1000 entries are written (and some
    /// deleted); once it reconnects, the others push it everything within seconds, by themselves.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn reconnected_replica_converges_without_operator() {
        let mut nodes = cluster(3, 3).await;
        for n in nodes.iter_mut() {
            let t = n.table.spawn_workers();
            n.tasks.extend(t);
        }
        let c_id = nodes[2].net.id;
        for i in 0..2 {
            nodes[2].net.disconnect(&nodes[i].net.id);
        }
        wait_until("c disconnected", Duration::from_secs(10), || {
            !nodes[0].net.is_connected(&c_id) && !nodes[1].net.is_connected(&c_id)
        })
        .await;
        for i in 0..1000 {
            let e = KvEntry::new("bucket", &format!("k{i:04}"), Some(vec![i as u8; 20]));
            nodes[i % 2].table.insert(&e).await.unwrap();
        }
        for i in 0..50 {
            let e = KvEntry::new("bucket", &format!("k{i:04}"), None);
            nodes[0].table.insert(&e).await.unwrap();
        }
        assert_eq!(nodes[2].table.data.len().unwrap(), 0);
        // A pass on the cut-off replica reports exactly its two unreachable peers, as a variant.
        match nodes[2].table.syncer.full_sync().await {
            Err(TableError::Unreachable(ids)) => {
                let mut want = vec![nodes[0].net.id.short(), nodes[1].net.id.short()];
                let mut ids = ids;
                ids.sort();
                want.sort();
                assert_eq!(ids, want);
            }
            r => panic!("expected Unreachable, got {r:?}"),
        }
        let target = nodes[0].table.data.len().unwrap();
        assert_eq!(target, 1000);

        let t0 = Instant::now();
        for i in 0..2 {
            let (id, addr) = (nodes[i].net.id, nodes[i].addr.to_string());
            nodes[2].net.connect(id, &addr).await.unwrap();
        }
        let c = nodes[2].table.clone();
        wait_until("c converges", Duration::from_secs(20), || {
            c.data.len().unwrap() == target
        })
        .await;
        eprintln!("revived replica got {target} entries in {:?}", t0.elapsed());
        assert_eq!(contents(&nodes[0].table), contents(&nodes[2].table));
        let r = roots(&nodes[0].table);
        assert_eq!(r, roots(&nodes[1].table));
        assert_eq!(r, roots(&nodes[2].table));
        // sync_now finds nothing left to do.
        assert!(nodes[2].table.sync_now().await);
    }
}
