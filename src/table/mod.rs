//! Replicated tables: one generic engine for every kind of metadata.
//!
//! A [`Table`] is a [`TableSchema`] (keys, a CRDT entry type, hooks) stored through [`TableData`] on each
//! replica and replicated by a [`TableReplication`] strategy (sharded over partitions, or a full copy on
//! every node). Writes go to every replica at once and return after a write quorum; reads ask the nearest
//! replicas, merge their answers, return after a read quorum and repair the stale replicas they noticed.
//!
//! **Invariant:** `table` knows nothing about S3, buckets or objects: schemas are defined by `model`.

pub mod data;
pub mod gc;
pub mod handoff;
pub mod kv;
pub mod merkle;
pub mod queue;
pub mod quorum;
pub mod replication;
pub mod schema;
pub mod sync;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use tokio::sync::{mpsc, oneshot};

use crate::crdt::Crdt;
use crate::db::Db;
use crate::layout::System;
use crate::net::{Endpoint, Message, NetError, NodeId, Prio};
use crate::util::hash::Hash;
pub use data::TableData;
pub use replication::{FullReplication, ShardedReplication, TableReplication};
pub use schema::{EmptyKey, Entry, PartitionKey, SortKey, TableSchema};

/// Entries committed together at most (one transaction, one fsync).
const GROUP_COMMIT_MAX: usize = 1024;

/// Updates waiting for the committer, with whom to tell.
struct Commit {
    entries: Vec<ByteBuf>,
    done: oneshot::Sender<Result<(), TableError>>,
}

/// Group commit: updates that arrive while a commit is in progress (each costs an fsync) are merged in
/// the next single transaction. Under load this turns N fsyncs into one; idle, it adds nothing.
fn spawn_committer<F: TableSchema>(data: Arc<TableData<F>>) -> mpsc::Sender<Commit> {
    let (tx, mut rx) = mpsc::channel::<Commit>(4096);
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut n = first.entries.len();
            let mut batch = vec![first];
            while n < GROUP_COMMIT_MAX {
                match rx.try_recv() {
                    Ok(c) => {
                        n += c.entries.len();
                        batch.push(c);
                    }
                    Err(_) => break,
                }
            }
            let d = data.clone();
            let res = tokio::task::spawn_blocking(move || {
                let all: Vec<&[u8]> = batch
                    .iter()
                    .flat_map(|c| c.entries.iter().map(|e| &e[..]))
                    .collect();
                match d.update_many(&all) {
                    Ok(_) => {
                        for c in batch {
                            let _ = c.done.send(Ok(()));
                        }
                    }
                    // One bad request must not fail the others: commit each on its own.
                    Err(_) => {
                        for c in batch {
                            let own: Vec<&[u8]> = c.entries.iter().map(|e| &e[..]).collect();
                            let _ = c.done.send(d.update_many(&own).map(|_| ()));
                        }
                    }
                }
            })
            .await;
            if let Err(e) = res {
                tracing::error!("table {}: commit task failed: {e}", F::TABLE_NAME);
            }
        }
    });
    tx
}

/// Entries as one replica returned them: sort key → encoded entry.
type EncodedEntries = BTreeMap<Vec<u8>, Vec<u8>>;

/// Time allowed to a replica for one table request.
const TABLE_RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// Rounds of a range read that keeps asking when filtered results run short (rounds cut short by
/// [`RANGE_ANSWER_BYTES`] are not counted).
pub(crate) const MAX_RANGE_ROUNDS: usize = 16;
/// Most entries one `ReadRange` RPC returns, whatever `limit` the requester sent (a peer-supplied
/// number must not size a scan or an answer); [`Table::get_range`] asks for at most this many per round
/// and continues after the last entry returned, so a longer listing takes more rounds.
pub const MAX_RANGE_LIMIT: usize = 4096;
/// Bytes of entries a `ReadRange` answer holds at most (beyond the first two entries, whatever
/// their size), as [`Table::get_range`] asks. Object entries carry inline data, so a count alone
/// does not bound an answer.
pub const RANGE_ANSWER_BYTES: usize = 4 << 20;
/// The most a requester may ask of a replica per `ReadRange` answer.
const MAX_RANGE_ANSWER_BYTES: usize = 16 << 20;
/// Point reads in flight when a range read confirms keys a replica omitted.
const CONFIRM_IN_FLIGHT: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("metadata database: {0}")]
    Db(#[from] crate::db::Error),
    #[error("table {0}: cannot decode an entry: {1}")]
    Decode(&'static str, String),
    #[error("no layout applied yet, or not enough nodes in it for this operation")]
    NoLayout,
    #[error("could not reach a quorum of replicas ({got} of {needed} answered): {}", errors.join("; "))]
    Quorum {
        needed: usize,
        got: usize,
        errors: Vec<String>,
    },
    /// An RPC to a replica failed; the network layer's error is kept as the source.
    #[error("RPC: {0}")]
    Net(#[from] crate::net::NetError),
    /// A peer's request or answer broke the protocol (unexpected answer kind, a list over its limit).
    #[error("RPC: {0}")]
    Protocol(String),
    /// Replicas that a sync pass needed were not connected: expected during an outage, they are synced
    /// when they connect.
    #[error("RPC: replicas not connected: {} (synced when they connect)", .0.join(", "))]
    Unreachable(Vec<String>),
    /// Syncing with some connected peers failed (one line per peer in `errors`).
    #[error("RPC: sync with {} peer(s) failed: {}", errors.len(), errors.join("; "))]
    PeerSync { errors: Vec<String> },
    /// A background or blocking task of the table died (panicked or was cancelled).
    #[error("RPC: {0}: {1}")]
    Task(&'static str, #[source] tokio::task::JoinError),
    /// An internal task of the table (committer, syncer) has stopped: the node is shutting down.
    #[error("RPC: {0}")]
    Stopped(&'static str),
    /// A call did not finish within its time limit.
    #[error("RPC: {what} timed out after {after:?}")]
    Timeout {
        what: &'static str,
        after: std::time::Duration,
    },
}

impl TableError {
    /// Not enough replicas reachable, or this node's database unavailable for now (a full disk):
    /// the client may retry, as opposed to a bug or bad data.
    pub fn is_unavailable(&self) -> bool {
        match self {
            TableError::Quorum { .. } | TableError::NoLayout => true,
            TableError::Db(e) => e.is_unavailable(),
            _ => false,
        }
    }
}

/// Requests between replicas of a table. Keys and entries travel as bytes (entries in their versioned
/// encoding), so this message is the same for every table; the endpoint path names the table.
#[derive(Clone, Serialize, Deserialize)]
pub enum TableRpc {
    ReadEntry {
        key: ByteBuf,
    },
    ReadRange {
        partition_hash: Hash,
        begin: Option<ByteBuf>,
        filter: Option<ByteBuf>,
        limit: usize,
        reverse: bool,
        /// Stop once the entries returned reach this many bytes (after the first two). Absent from
        /// older requesters (no bound but `limit`), ignored by older replicas: a requester counts an
        /// answer of this size or more as a full page, so either way it only costs another round.
        #[serde(default)]
        max_bytes: Option<u64>,
    },
    Update(Vec<ByteBuf>),
}

#[derive(Serialize, Deserialize)]
pub enum TableRpcResponse {
    Entry(Option<ByteBuf>),
    Entries(Vec<ByteBuf>),
    Ok,
    /// Written; and for some entries, the replica already had a newer timestamp than the entry's
    /// newest (see `TableSchema::newest_timestamp`).
    Newer(Vec<Option<crate::crdt::Timestamp>>),
}

impl Message for TableRpc {
    type Response = TableRpcResponse;
}

pub struct Table<F: TableSchema, R: TableReplication> {
    pub data: Arc<TableData<F>>,
    pub replication: Arc<R>,
    pub system: Arc<System>,
    endpoint: Endpoint<TableRpc>,
    /// Merkle trees of this node's entries (anti-entropy).
    pub merkle: Arc<merkle::MerkleUpdater<F>>,
    /// Compares the Merkle trees with the other replicas and pushes differences.
    pub syncer: Arc<sync::TableSyncer<F, R>>,
}

impl<F: TableSchema, R: TableReplication> Table<F, R> {
    pub fn new(
        schema: F,
        replication: R,
        system: &Arc<System>,
        db: &Db,
    ) -> Result<Arc<Self>, TableError> {
        let data = TableData::new(schema, db)?;
        let endpoint = Endpoint::new(&system.net, &format!("grenier/table/{}/v1", F::TABLE_NAME));
        let replication = Arc::new(replication);
        let merkle = merkle::MerkleUpdater::new(&data)?;
        let syncer = sync::TableSyncer::new(&data, &merkle, &replication, system, endpoint.clone());
        let t = Arc::new(Table {
            data,
            replication,
            system: system.clone(),
            endpoint,
            merkle,
            syncer,
        });
        let d = t.data.clone();
        let committer = spawn_committer(t.data.clone());
        t.endpoint.set_simple_handler(move |_from, req: TableRpc| {
            let (d, committer) = (d.clone(), committer.clone());
            async move {
                Self::handle(d, &committer, req)
                    .await
                    .map_err(|e| NetError::Remote(e.to_string()))
            }
        });
        Ok(t)
    }

    /// Start the table's background workers: the Merkle updater and anti-entropy (see [`sync`]).
    pub fn spawn_workers(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = vec![self.merkle.spawn()];
        tasks.extend(self.syncer.spawn());
        tasks
    }

    /// Run a full anti-entropy pass now and wait for it: true if every other replica of every partition
    /// stored here was synced.
    pub async fn sync_now(&self) -> bool {
        self.syncer.sync_now().await
    }

    async fn handle(
        d: Arc<TableData<F>>,
        committer: &mpsc::Sender<Commit>,
        req: TableRpc,
    ) -> Result<TableRpcResponse, TableError> {
        match req {
            TableRpc::ReadEntry { key } => Ok(TableRpcResponse::Entry(
                d.read_entry(&key)?.map(ByteBuf::from),
            )),
            TableRpc::ReadRange {
                partition_hash,
                begin,
                filter,
                limit,
                reverse,
                max_bytes,
            } => {
                let filter: Option<F::Filter> = match filter {
                    Some(f) => Some(
                        rmp_serde::from_slice(&f)
                            .map_err(|e| TableError::Decode(F::TABLE_NAME, e.to_string()))?,
                    ),
                    None => None,
                };
                let max_bytes = max_bytes.map_or(usize::MAX, |b| {
                    usize::try_from(b)
                        .unwrap_or(usize::MAX)
                        .min(MAX_RANGE_ANSWER_BYTES)
                });
                let v = d.read_range_bounded(
                    &partition_hash,
                    begin.as_deref().map(|b| &b[..]),
                    filter.as_ref(),
                    limit.min(MAX_RANGE_LIMIT),
                    max_bytes,
                    reverse,
                )?;
                Ok(TableRpcResponse::Entries(
                    v.into_iter().map(ByteBuf::from).collect(),
                ))
            }
            TableRpc::Update(entries) => {
                let newer = Self::newer_here(&d, &entries)?;
                let (done, result) = oneshot::channel();
                committer
                    .send(Commit { entries, done })
                    .await
                    .map_err(|_| TableError::Stopped("the table's committer stopped"))?;
                result
                    .await
                    .map_err(|_| TableError::Stopped("the table's committer stopped"))??;
                Ok(match newer {
                    Some(n) => TableRpcResponse::Newer(n),
                    None => TableRpcResponse::Ok,
                })
            }
        }
    }

    /// For schemas that track timestamps: per incoming entry, the newer timestamp this replica already
    /// holds for its key, if any (None when no entry has one).
    fn newer_here(
        d: &TableData<F>,
        entries: &[ByteBuf],
    ) -> Result<Option<Vec<Option<crate::crdt::Timestamp>>>, TableError> {
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let incoming = TableData::<F>::decode(e)?;
            let Some(mine) = F::newest_timestamp(&incoming) else {
                return Ok(None);
            };
            let old = d
                .read_entry(&TableData::<F>::key_of(&incoming))?
                .map(|b| TableData::<F>::decode(&b))
                .transpose()?;
            out.push(
                old.as_ref()
                    .and_then(F::newest_settled_timestamp)
                    .filter(|t| *t > mine),
            );
        }
        Ok(out.iter().any(Option::is_some).then_some(out))
    }

    /// Ask a read quorum of `nodes` (nearest first), hedging to the next ones when a replica is slow.
    async fn read_from(
        &self,
        nodes: &[NodeId],
        msg: TableRpc,
    ) -> Result<Vec<(NodeId, TableRpcResponse)>, TableError> {
        let q = self.replication.read_quorum();
        let hedge = self.hedge(nodes, q);
        quorum::read_quorum(
            &self.endpoint,
            nodes,
            q,
            Arc::new(msg),
            TABLE_RPC_TIMEOUT,
            hedge,
        )
        .await
    }

    fn hedge(&self, nodes: &[NodeId], quorum: usize) -> Duration {
        quorum::hedge_delay(
            nodes
                .iter()
                .take(quorum)
                .map(|n| self.system.peering.rtt(n)),
        )
    }

    /// Write an entry: merged into every replica; returns once a write quorum has it.
    pub async fn insert(&self, entry: &F::E) -> Result<(), TableError> {
        // Held until the write is acknowledged: this node acknowledges a new layout version only after
        // writes started under older ones are done.
        let _guard = self.system.layout.write_guard();
        let hash = entry.partition_key().hash();
        let bytes = TableData::<F>::encode(entry)?;
        if self.replication.write_local_first() {
            let (d, b) = (self.data.clone(), bytes.clone());
            tokio::task::spawn_blocking(move || d.update_entry(&b))
                .await
                .map_err(|e| TableError::Task("local write task", e))??;
        }
        let sets = self.replication.write_sets(&hash);
        let msg = Arc::new(TableRpc::Update(vec![ByteBuf::from(bytes)]));
        quorum::write_quorum(
            &self.endpoint,
            &sets,
            self.replication.write_quorum(),
            msg,
            TABLE_RPC_TIMEOUT,
        )
        .await
    }

    /// [`Table::insert`], and report the newest timestamp a replica of the write quorum already had for
    /// the key if it is newer than the entry's (see [`TableSchema::newest_timestamp`]): the writer then
    /// knows its write is not the key's latest and can write again above it.
    pub async fn insert_checked(
        &self,
        entry: &F::E,
    ) -> Result<Option<crate::crdt::Timestamp>, TableError> {
        let _guard = self.system.layout.write_guard();
        let hash = entry.partition_key().hash();
        let bytes = TableData::<F>::encode(entry)?;
        let sets = self.replication.write_sets(&hash);
        let msg = Arc::new(TableRpc::Update(vec![ByteBuf::from(bytes)]));
        let newest = Arc::new(std::sync::Mutex::new(None));
        quorum::write_quorum_with(&sets, self.replication.write_quorum(), |node| {
            let (ep, msg, newest) = (self.endpoint.clone(), msg.clone(), newest.clone());
            async move {
                let r = ep
                    .call(&node, &msg, crate::net::Prio::Normal, TABLE_RPC_TIMEOUT)
                    .await?;
                if let TableRpcResponse::Newer(list) = r {
                    let mut n = newest.lock().unwrap_or_else(|e| e.into_inner());
                    *n = (*n).max(list.into_iter().flatten().max());
                }
                Ok(())
            }
        })
        .await?;
        let n = *newest.lock().unwrap_or_else(|e| e.into_inner());
        Ok(n)
    }

    /// This node's own copy of one entry, without any network call (for a full-copy table, every
    /// entry this node has learned of). May be a moment behind a write made through another node.
    pub fn get_local(&self, p: &F::P, s: &F::S) -> Result<Option<F::E>, TableError> {
        let key = data::tree_key(&p.hash(), s.sort_key());
        self.data
            .read_entry(&key)?
            .map(|b| TableData::<F>::decode(&b))
            .transpose()
    }

    /// Read one entry: merge of a read quorum of replicas; stale replicas are repaired in the background.
    pub async fn get(&self, p: &F::P, s: &F::S) -> Result<Option<F::E>, TableError> {
        self.get_inner(p, s, false).await
    }

    /// Like [`Table::get`], but for a full-copy table always ask a majority (not only on a miss): for
    /// when a local copy may be a moment behind a write made through another node (a permission just
    /// granted). Same as `get` for sharded tables.
    pub async fn get_fresh(&self, p: &F::P, s: &F::S) -> Result<Option<F::E>, TableError> {
        self.get_inner(p, s, true).await
    }

    async fn get_inner(&self, p: &F::P, s: &F::S, fresh: bool) -> Result<Option<F::E>, TableError> {
        let hash = p.hash();
        let key = data::tree_key(&hash, s.sort_key());
        let nodes = self.replication.read_nodes(&hash);
        let msg = TableRpc::ReadEntry {
            key: ByteBuf::from(key),
        };
        let on_miss = self.replication.read_quorum_on_miss();
        let mut answers = match on_miss.filter(|_| fresh) {
            Some(q) => {
                let hedge = self.hedge(&nodes, q);
                quorum::read_quorum(
                    &self.endpoint,
                    &nodes,
                    q,
                    Arc::new(msg.clone()),
                    TABLE_RPC_TIMEOUT,
                    hedge,
                )
                .await?
            }
            None => self.read_from(&nodes, msg.clone()).await?,
        };
        if !fresh
            && answers
                .iter()
                .all(|(_, r)| matches!(r, TableRpcResponse::Entry(None)))
            && let Some(q) = on_miss
        {
            let hedge = self.hedge(&nodes, q);
            answers = quorum::read_quorum(
                &self.endpoint,
                &nodes,
                q,
                Arc::new(msg),
                TABLE_RPC_TIMEOUT,
                hedge,
            )
            .await?;
        }
        let mut merged: Option<F::E> = None;
        let mut got: Vec<(NodeId, Option<ByteBuf>)> = vec![];
        for (node, resp) in answers {
            let TableRpcResponse::Entry(v) = resp else {
                return Err(TableError::Protocol("unexpected answer".into()));
            };
            if let Some(b) = &v {
                let e = TableData::<F>::decode(b)?;
                match &mut merged {
                    Some(m) => m.merge(&e),
                    None => merged = Some(e),
                }
            }
            got.push((node, v));
        }
        if let Some(m) = &merged {
            let enc = TableData::<F>::encode(m)?;
            let stale: Vec<NodeId> = got
                .iter()
                .filter(|(_, v)| v.as_deref().map(|b| &b[..]) != Some(&enc[..]))
                .map(|(n, _)| *n)
                .collect();
            self.repair(stale, vec![enc]);
        }
        Ok(merged)
    }

    /// Entries of partition key `p` from `begin` (inclusive), in sort-key order (or reverse), that match
    /// `filter`, at most `limit`; with the same quorum semantics as [`Table::get`].
    pub async fn get_range(
        &self,
        p: &F::P,
        begin: Option<&F::S>,
        filter: Option<F::Filter>,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<F::E>, TableError> {
        let hash = p.hash();
        let nodes = self.replication.read_nodes(&hash);
        let filter_bytes = match &filter {
            Some(f) => {
                Some(ByteBuf::from(rmp_serde::to_vec_named(f).map_err(|e| {
                    TableError::Decode(F::TABLE_NAME, e.to_string())
                })?))
            }
            None => None,
        };
        let mut out: Vec<F::E> = vec![];
        let mut cursor: Option<Vec<u8>> = begin.map(|s| s.sort_key().to_vec());
        let mut skip_cursor = false;
        // Rounds cut short by a count: bounded, for a range where the filter leaves little. A round
        // cut short by the byte budget is not counted: it returns at least one new entry, and a page
        // of large entries must not end early (a short page reads as the end of a listing).
        let mut counted_rounds = 0;
        while counted_rounds < MAX_RANGE_ROUNDS {
            let mut byte_bounded = false;
            let ask =
                (limit.saturating_sub(out.len()) + usize::from(skip_cursor)).min(MAX_RANGE_LIMIT);
            let msg = TableRpc::ReadRange {
                partition_hash: hash,
                begin: cursor.clone().map(ByteBuf::from),
                filter: filter_bytes.clone(),
                limit: ask,
                reverse,
                max_bytes: Some(RANGE_ANSWER_BYTES as u64),
            };
            let answers = self.read_from(&nodes, msg).await?;
            // Merge by key; a replica that returned a full page only vouches for keys up to its last one.
            let mut merged: BTreeMap<Vec<u8>, F::E> = BTreeMap::new();
            let mut per_node: Vec<(NodeId, EncodedEntries)> = vec![];
            let mut cutoff: Option<Vec<u8>> = None;
            for (node, resp) in answers {
                let TableRpcResponse::Entries(list) = resp else {
                    return Err(TableError::Protocol("unexpected answer".into()));
                };
                // Full: the replica stopped at `ask` entries or at the byte budget, and may have
                // more after its last entry. A replica cut by bytes returns two entries at least, so
                // a single entry is the end of the range, however large (and taking it for a full
                // page would ask again from the same key, forever).
                let by_bytes = list.len() >= 2
                    && list.iter().map(|b| b.len()).sum::<usize>() >= RANGE_ANSWER_BYTES;
                let full = list.len() >= ask || by_bytes;
                byte_bounded |= by_bytes && list.len() < ask;
                let mut mine = BTreeMap::new();
                for b in list {
                    let e = TableData::<F>::decode(&b)?;
                    let k = e.sort_key().sort_key().to_vec();
                    match merged.get_mut(&k) {
                        Some(m) => m.merge(&e),
                        None => {
                            merged.insert(k.clone(), e);
                        }
                    }
                    mine.insert(k, b.into_vec());
                }
                if full
                    && let Some(last) = if reverse {
                        mine.keys().next()
                    } else {
                        mine.keys().next_back()
                    }
                {
                    let tighter = match &cutoff {
                        None => true,
                        Some(c) => {
                            if reverse {
                                last > c
                            } else {
                                last < c
                            }
                        }
                    };
                    if tighter {
                        cutoff = Some(last.clone());
                    }
                }
                per_node.push((node, mine));
            }
            let in_range = |k: &Vec<u8>| match &cutoff {
                None => true,
                Some(c) => {
                    if reverse {
                        k >= c
                    } else {
                        k <= c
                    }
                }
            };
            let mut repairs: BTreeMap<NodeId, Vec<Vec<u8>>> = BTreeMap::new();
            let mut keys: Vec<Vec<u8>> = merged.keys().filter(|k| in_range(k)).cloned().collect();
            if reverse {
                keys.reverse();
            }
            let confirmed = match filter {
                Some(_) => {
                    self.confirm_omitted(&hash, &keys, &mut merged, &per_node, &filter)
                        .await
                }
                None => Default::default(),
            };
            for k in &keys {
                let e = &merged[k];
                let visible =
                    !e.is_tombstone() && filter.as_ref().is_none_or(|f| F::matches_filter(e, f));
                if visible || e.is_tombstone() || confirmed.contains(k) {
                    // Every replica asked should have returned this entry: repair those that did not.
                    let enc = TableData::<F>::encode(e)?;
                    for (node, mine) in &per_node {
                        if mine.get(k) != Some(&enc) {
                            repairs.entry(*node).or_default().push(enc.clone());
                        }
                    }
                }
                if skip_cursor && Some(k) == cursor.as_ref() {
                    continue;
                }
                if visible && out.len() < limit {
                    out.push(e.clone());
                }
            }
            for (node, entries) in repairs {
                self.repair(vec![node], entries);
            }
            match cutoff {
                // Some replica may have more: continue after the cutoff if the page is not full yet.
                Some(c) if out.len() < limit => {
                    cursor = Some(c);
                    skip_cursor = true;
                }
                _ => break,
            }
            if !byte_bounded {
                counted_rounds += 1;
            }
        }
        Ok(out)
    }

    /// A replica filters a range read by its own version of each entry (see
    /// [`TableSchema::Filter`]): one that omitted a key another replica returned as matching may hold a
    /// newer version that no longer matches (an object deleted since), which the merge must see, or
    /// none at all. Ask each such replica for its version of those keys (one round, in parallel) and
    /// merge it in. A replica that does not answer leaves the merged entry as it was. Returns the
    /// keys asked about (their replicas may differ: the caller repairs them).
    async fn confirm_omitted(
        &self,
        hash: &Hash,
        keys: &[Vec<u8>],
        merged: &mut BTreeMap<Vec<u8>, F::E>,
        per_node: &[(NodeId, EncodedEntries)],
        filter: &Option<F::Filter>,
    ) -> std::collections::BTreeSet<Vec<u8>> {
        let mut asks = vec![];
        for k in keys {
            let e = &merged[k];
            if e.is_tombstone() || !filter.as_ref().is_none_or(|f| F::matches_filter(e, f)) {
                continue;
            }
            for (node, mine) in per_node {
                if !mine.contains_key(k) {
                    asks.push((*node, k.clone()));
                }
            }
        }
        let asked = asks.iter().map(|(_, k)| k.clone()).collect();
        if asks.is_empty() {
            return asked;
        }
        let answers = futures::stream::iter(asks)
            .map(|(node, k)| {
                let msg = TableRpc::ReadEntry {
                    key: ByteBuf::from(data::tree_key(hash, &k)),
                };
                async move {
                    let r = self
                        .endpoint
                        .call(&node, &msg, Prio::Normal, TABLE_RPC_TIMEOUT)
                        .await;
                    (k, r)
                }
            })
            .buffer_unordered(CONFIRM_IN_FLIGHT)
            .collect::<Vec<_>>()
            .await;
        for (k, r) in answers {
            match r {
                Ok(TableRpcResponse::Entry(Some(b))) => match TableData::<F>::decode(&b) {
                    Ok(e) => {
                        if let Some(m) = merged.get_mut(&k) {
                            m.merge(&e);
                        }
                    }
                    Err(e) => tracing::warn!("{}: confirming a range read: {e}", F::TABLE_NAME),
                },
                Ok(TableRpcResponse::Entry(None)) => {}
                Ok(_) => tracing::warn!("{}: unexpected answer to ReadEntry", F::TABLE_NAME),
                Err(e) => tracing::debug!("{}: confirming a range read: {e}", F::TABLE_NAME),
            }
        }
        asked
    }

    /// Send entries to nodes that showed a stale version (read repair), in the background.
    fn repair(&self, nodes: Vec<NodeId>, entries: Vec<Vec<u8>>) {
        if nodes.is_empty() || entries.is_empty() {
            return;
        }
        let msg = Arc::new(TableRpc::Update(
            entries.into_iter().map(ByteBuf::from).collect(),
        ));
        for node in nodes {
            let (ep, msg) = (self.endpoint.clone(), msg.clone());
            tokio::spawn(async move {
                if let Err(e) = ep
                    .call(&node, &msg, crate::net::Prio::Normal, TABLE_RPC_TIMEOUT)
                    .await
                {
                    tracing::debug!("read repair of {} failed: {e}", node.short());
                }
            });
        }
    }

    /// Entries stored on this node, and pending Merkle and GC work.
    pub fn metrics(&self) -> Result<TableMetrics, TableError> {
        Ok(TableMetrics {
            table: F::TABLE_NAME,
            entries: self.data.len()?,
            merkle_todo: self.data.merkle_todo.len()?,
            gc_todo: self.data.gc_todo.len()?,
            local_writes: self.data.writes.load(std::sync::atomic::Ordering::Relaxed),
            last_full_sync: self.syncer.last_full_sync(),
        })
    }
}

/// Table-independent view of a table, for metrics and whole-node operations.
pub trait TableInfo: Send + Sync {
    fn metrics(&self) -> Result<TableMetrics, TableError>;
    /// A full anti-entropy pass; true if every replica of every partition stored here was synced.
    fn sync_now(&self) -> futures::future::BoxFuture<'_, bool>;
}

impl<F: TableSchema, R: TableReplication> TableInfo for Table<F, R> {
    fn metrics(&self) -> Result<TableMetrics, TableError> {
        Table::metrics(self)
    }
    fn sync_now(&self) -> futures::future::BoxFuture<'_, bool> {
        Box::pin(Table::sync_now(self))
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct TableMetrics {
    pub table: &'static str,
    pub entries: usize,
    pub merkle_todo: usize,
    pub gc_todo: usize,
    pub local_writes: u64,
    /// How the last full anti-entropy pass went (None before the first one).
    pub last_full_sync: Option<sync::LastFullSync>,
}

/// The tables' background work (Merkle updates, anti-entropy, tombstone GC) as rows of
/// `grenier worker list`.
pub struct TableWorkers(pub Vec<Arc<dyn TableInfo>>);

impl crate::util::background::Worker for TableWorkers {
    fn status(&self) -> Vec<crate::util::background::WorkerStatus> {
        use crate::util::background::{WorkerState, WorkerStatus};
        self.0
            .iter()
            .filter_map(|t| t.metrics().ok())
            .map(|m| {
                let sync = match &m.last_full_sync {
                    None => "no full anti-entropy pass yet".to_string(),
                    Some(s) => format!(
                        "last full anti-entropy pass {} s ago{}",
                        crate::util::time::now_msec().saturating_sub(s.at_msec) / 1000,
                        if s.complete {
                            ""
                        } else {
                            " (some replicas unreachable)"
                        }
                    ),
                };
                WorkerStatus {
                    name: format!("table {}", m.table),
                    state: if m.merkle_todo > 0 {
                        WorkerState::Busy
                    } else {
                        WorkerState::Idle
                    },
                    progress: Some(format!(
                        "{} entries, {} tombstones awaiting GC; {sync}",
                        m.entries, m.gc_todo
                    )),
                    queue_length: Some(m.merkle_todo as u64),
                    done: m.local_writes,
                    errors: 0,
                    last_error: None,
                }
            })
            .collect()
    }
}

impl<F: TableSchema, R: TableReplication> Table<F, R> {
    /// Start everything a table runs in the background: Merkle updates and anti-entropy, hand-off of
    /// partitions after layout changes, and tombstone GC.
    pub fn spawn_all(self: &Arc<Self>, gc: gc::GcConfig) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = self.spawn_workers();
        tasks.push(self.spawn_handoff());
        let collector = gc::TableGc::new(
            self.data.clone(),
            self.replication.clone(),
            self.system.clone(),
            gc,
        );
        tasks.push(collector.spawn());
        tasks
    }
}

#[cfg(test)]
mod range_limit_tests {
    use super::*;
    use crate::table::kv::{KvEntry, KvSchema};

    /// `n` entries `k000`, `k001`… of partition `p`, each with a value of `size` bytes.
    fn fill(d: &TableData<KvSchema>, p: &str, n: usize, size: usize) {
        for i in 0..n {
            let e = KvEntry::new(p, &format!("k{i:06}"), Some(vec![7; size]));
            d.update_entry(&TableData::<KvSchema>::encode(&e).unwrap())
                .unwrap();
        }
    }

    /// A replica's answer to `msg`: its entries.
    async fn entries(
        d: &Arc<TableData<KvSchema>>,
        committer: &mpsc::Sender<Commit>,
        msg: TableRpc,
    ) -> Vec<ByteBuf> {
        let r =
            Table::<KvSchema, replication::ShardedReplication>::handle(d.clone(), committer, msg)
                .await
                .unwrap();
        let TableRpcResponse::Entries(list) = r else {
            panic!("unexpected answer");
        };
        list
    }

    /// A peer asking for `usize::MAX` entries gets at most [`MAX_RANGE_LIMIT`].
    #[tokio::test]
    async fn read_range_limit_from_a_peer_is_clamped() {
        let db = Db::open_mem();
        let d = TableData::new(KvSchema, &db).unwrap();
        fill(&d, "p", MAX_RANGE_LIMIT + 10, 1);
        let committer = spawn_committer(d.clone());
        let ask = |limit| TableRpc::ReadRange {
            partition_hash: "p".to_string().hash(),
            begin: None,
            filter: None,
            limit,
            reverse: false,
            max_bytes: None,
        };
        for (limit, expected) in [(usize::MAX, MAX_RANGE_LIMIT), (10, 10)] {
            let list = entries(&d, &committer, ask(limit)).await;
            assert_eq!(list.len(), expected, "limit {limit}");
        }
    }

    /// An answer stops at the byte budget asked (the entry that crosses it included), never before
    /// two entries, and a peer cannot ask for more than [`MAX_RANGE_ANSWER_BYTES`].
    #[tokio::test]
    async fn read_range_answers_are_bounded_in_bytes() {
        let db = Db::open_mem();
        let d = TableData::new(KvSchema, &db).unwrap();
        fill(&d, "p", 40, 1000);
        let committer = spawn_committer(d.clone());
        let ask = |max_bytes| TableRpc::ReadRange {
            partition_hash: "p".to_string().hash(),
            begin: None,
            filter: None,
            limit: 100,
            reverse: false,
            max_bytes,
        };
        for (max_bytes, expect) in [
            (Some(5_000), 5),
            (Some(1), 2),
            (Some(u64::MAX), 40),
            (None, 40),
        ] {
            let list = entries(&d, &committer, ask(max_bytes)).await;
            assert_eq!(list.len(), expect, "max_bytes {max_bytes:?}");
            if let Some(m) = max_bytes.filter(|&m| m < 40_000) {
                let total: usize = list.iter().map(|b| b.len()).sum();
                let before_last = total - list.last().unwrap().len();
                assert!(total as u64 >= m && (before_last as u64) < m.max(1_100));
            }
        }
        // A peer's budget is clamped: 20 entries of 1 MiB, asked with no practical bound.
        fill(&d, "q", 20, 1 << 20);
        let list = entries(
            &d,
            &committer,
            TableRpc::ReadRange {
                partition_hash: "q".to_string().hash(),
                begin: None,
                filter: None,
                limit: 100,
                reverse: false,
                max_bytes: Some(u64::MAX),
            },
        )
        .await;
        assert_eq!(
            list.len(),
            MAX_RANGE_ANSWER_BYTES >> 20,
            "clamped to 16 MiB"
        );
    }
}
