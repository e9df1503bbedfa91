//! Keeps this node's [`LayoutHistory`]: persists it (write-then-rename, fsync), applies local changes, and
//! gossips it. Every change is pushed to all connected peers; a peer whose status shows another digest is
//! asked for its history (see [`super::system`]), so a node that was down catches up from any peer.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::LayoutError;
use super::history::{LayoutHistory, Tracker};
use crate::net::{Endpoint, Message, NetApp, NodeId, Prio};
use crate::util::encode::Versioned;

const GOSSIP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Serialize, Deserialize)]
struct PushLayout(LayoutHistory);
impl Message for PushLayout {
    type Response = ();
}

#[derive(Serialize, Deserialize)]
struct PullLayout {}
impl Message for PullLayout {
    type Response = LayoutHistory;
}

pub struct LayoutManager {
    net: Arc<NetApp>,
    history: RwLock<Arc<LayoutHistory>>,
    path: PathBuf,
    fsync: bool,
    push: Endpoint<PushLayout>,
    pull: Endpoint<PullLayout>,
    changed: watch::Sender<u64>,
    /// Writes in progress, by the layout version they started under.
    inflight: Mutex<BTreeMap<u64, usize>>,
}

/// Held by a write for its duration, so this node acknowledges a new layout version only once every
/// write it started under an older one has finished.
pub struct WriteGuard {
    manager: Arc<LayoutManager>,
    version: u64,
}

impl Drop for WriteGuard {
    fn drop(&mut self) {
        let mut m = self
            .manager
            .inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.version) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.version);
            }
        }
    }
}

/// Runs a full anti-entropy pass of every table for a layout version; true when it completed.
pub type SyncPass = Arc<dyn Fn(u64) -> BoxFuture<'static, bool> + Send + Sync>;

impl LayoutManager {
    /// Load the layout persisted in `metadata_dir`, or start an empty one with `replication_factor`.
    pub fn new(
        net: &Arc<NetApp>,
        metadata_dir: &std::path::Path,
        replication_factor: usize,
        fsync: bool,
    ) -> Result<Arc<LayoutManager>, LayoutError> {
        let path = metadata_dir.join("cluster_layout");
        let history = match std::fs::read(&path) {
            Ok(bytes) => LayoutHistory::decode(&bytes)
                .map_err(|e| LayoutError::Storage(format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                LayoutHistory::new(replication_factor)
            }
            Err(e) => return Err(LayoutError::Storage(format!("{}: {e}", path.display()))),
        };
        let layout_rf = history.current().replication_factor;
        if layout_rf != replication_factor && history.current().version > 0 {
            return Err(LayoutError::Invalid(format!(
                "replication_factor is {replication_factor} in the configuration but the cluster layout uses \
                 {layout_rf}; it must be the same on every node"
            )));
        }
        let version = history.current().version;
        let m = Arc::new(LayoutManager {
            net: net.clone(),
            history: RwLock::new(Arc::new(history)),
            path,
            fsync,
            push: Endpoint::new(net, "grenier/layout/push/v1"),
            pull: Endpoint::new(net, "grenier/layout/pull/v1"),
            changed: watch::channel(version).0,
            inflight: Mutex::new(BTreeMap::new()),
        });
        let weak = Arc::downgrade(&m);
        m.push.set_simple_handler(move |from, PushLayout(h)| {
            let m = weak.upgrade();
            async move {
                if let Some(m) = m {
                    m.merge_remote(from, &h);
                }
                Ok(())
            }
        });
        let weak = Arc::downgrade(&m);
        m.pull.set_simple_handler(move |_, PullLayout {}| {
            let h = weak.upgrade().map(|m| LayoutHistory::clone(&m.history()));
            async move { h.ok_or(crate::net::NetError::Disconnected) }
        });
        Ok(m)
    }

    /// The current history (a cheap shared snapshot).
    pub fn history(&self) -> Arc<LayoutHistory> {
        self.history
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn digest(&self) -> [u8; 32] {
        self.history
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .digest()
    }

    pub fn version(&self) -> u64 {
        self.history
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .current()
            .version
    }

    /// Notified with the current version each time the layout changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Take before computing a write's replica sets; drop when the write is acknowledged.
    pub fn write_guard(self: &Arc<Self>) -> WriteGuard {
        let version = self.version();
        *self
            .inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(version)
            .or_insert(0) += 1;
        WriteGuard {
            manager: self.clone(),
            version,
        }
    }

    fn writes_older_than(&self, v: u64) -> usize {
        self.inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .range(..v)
            .map(|(_, n)| n)
            .sum()
    }

    /// Drive this node through layout transitions: acknowledge new versions once older writes are done,
    /// run `sync` (a full anti-entropy pass) once every node acknowledged, then record that it saw every
    /// node synced. Each step is a tracker update gossiped like any layout change (see `doc/layout.md`).
    pub fn spawn_transitions(self: &Arc<Self>, sync: SyncPass) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut changes = me.subscribe();
            loop {
                me.transition_step(&sync).await;
                tokio::select! {
                    _ = changes.changed() => (),
                    _ = tokio::time::sleep(Duration::from_millis(500)) => (),
                }
            }
        })
    }

    async fn transition_step(&self, sync: &SyncPass) {
        let id = self.net.id;
        let h = self.history();
        let v = h.current().version;
        if v == 0 || !h.all_nodes().contains(&id) {
            return;
        }
        let t = &h.trackers;
        let advance = |which| {
            if let Err(e) = self.update(|h| Ok(h.advance(which, id, v))) {
                tracing::error!("cannot record layout progress: {e}");
            }
        };
        if t.ack.get(&id) < v && self.writes_older_than(v) == 0 {
            advance(Tracker::Ack);
        } else if h.tracker_min(&t.ack) >= v && t.sync.get(&id) < v {
            if sync(v).await {
                tracing::info!("synced all tables for layout version {v}");
                advance(Tracker::Sync);
            }
        } else if h.tracker_min(&t.sync) >= v && t.sync_ack.get(&id) < v {
            advance(Tracker::SyncAck);
        }
    }

    /// Apply a local change, persist it, and push it to every connected peer.
    pub fn update<R>(
        &self,
        f: impl FnOnce(&mut LayoutHistory) -> Result<R, LayoutError>,
    ) -> Result<R, LayoutError> {
        let (r, snapshot) = {
            let mut h = self.history.write().unwrap_or_else(|e| e.into_inner());
            let mut next = LayoutHistory::clone(&h);
            let r = f(&mut next)?;
            self.persist(&next)?;
            *h = Arc::new(next);
            (r, h.clone())
        };
        self.changed.send_replace(snapshot.current().version);
        self.broadcast(snapshot, None);
        Ok(r)
    }

    fn persist(&self, h: &LayoutHistory) -> Result<(), LayoutError> {
        let bytes = h
            .encode()
            .map_err(|e| LayoutError::Storage(e.to_string()))?;
        crate::util::fs::write_atomic(&self.path, &bytes, self.fsync)
            .map_err(|e| LayoutError::Storage(format!("{}: {e}", self.path.display())))
    }

    fn merge_remote(&self, from: NodeId, other: &LayoutHistory) {
        let snapshot = {
            let mut h = self.history.write().unwrap_or_else(|e| e.into_inner());
            let mut next = LayoutHistory::clone(&h);
            if !next.merge(other) {
                return;
            }
            if let Err(e) = self.persist(&next) {
                tracing::error!("cannot save the layout received from {}: {e}", from.short());
                return;
            }
            *h = Arc::new(next);
            h.clone()
        };
        tracing::info!(
            "layout updated from {} (version {})",
            from.short(),
            snapshot.current().version
        );
        self.changed.send_replace(snapshot.current().version);
        // Pass it on: merges are idempotent, so the flood stops once everyone has it.
        self.broadcast(snapshot, Some(from));
    }

    fn broadcast(&self, h: Arc<LayoutHistory>, except: Option<NodeId>) {
        let msg = Arc::new(PushLayout(LayoutHistory::clone(&h)));
        for peer in self.net.connected_peers() {
            if Some(peer) == except {
                continue;
            }
            let (msg, push) = (msg.clone(), self.push.clone());
            tokio::spawn(async move {
                if let Err(e) = push.call(&peer, &*msg, Prio::Normal, GOSSIP_TIMEOUT).await {
                    tracing::debug!("layout push to {} failed: {e}", peer.short());
                }
            });
        }
    }

    /// Fetch `peer`'s history and merge it (called when its digest differs from ours).
    pub async fn pull_from(&self, peer: NodeId) {
        match self
            .pull
            .call(&peer, &PullLayout {}, Prio::Normal, GOSSIP_TIMEOUT)
            .await
        {
            Ok(h) => self.merge_remote(peer, &h),
            Err(e) => tracing::debug!("layout pull from {} failed: {e}", peer.short()),
        }
    }
}
