//! Keeps this node's [`LayoutHistory`]: persists it (write-then-rename, fsync), applies local changes, and
//! gossips it. Every change is pushed to all connected peers; a peer whose status shows another digest is
//! asked for its history (see [`super::system`]), so a node that was down catches up from any peer.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::LayoutError;
use super::history::LayoutHistory;
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
    history: RwLock<LayoutHistory>,
    path: PathBuf,
    fsync: bool,
    push: Endpoint<PushLayout>,
    pull: Endpoint<PullLayout>,
    changed: watch::Sender<u64>,
}

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
        let layout_rf = history.current.replication_factor;
        if layout_rf != replication_factor && history.current.version > 0 {
            return Err(LayoutError::Invalid(format!(
                "replication_factor is {replication_factor} in the configuration but the cluster layout uses \
                 {layout_rf}; it must be the same on every node"
            )));
        }
        let version = history.current.version;
        let m = Arc::new(LayoutManager {
            net: net.clone(),
            history: RwLock::new(history),
            path,
            fsync,
            push: Endpoint::new(net, "grenier/layout/push/v1"),
            pull: Endpoint::new(net, "grenier/layout/pull/v1"),
            changed: watch::channel(version).0,
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
            let h = weak.upgrade().map(|m| m.history());
            async move { h.ok_or(crate::net::NetError::Disconnected) }
        });
        Ok(m)
    }

    pub fn history(&self) -> LayoutHistory {
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
            .current
            .version
    }

    /// Notified with the current version each time the layout changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Apply a local change, persist it, and push it to every connected peer.
    pub fn update<R>(
        &self,
        f: impl FnOnce(&mut LayoutHistory) -> Result<R, LayoutError>,
    ) -> Result<R, LayoutError> {
        let (r, snapshot) = {
            let mut h = self.history.write().unwrap_or_else(|e| e.into_inner());
            let mut next = h.clone();
            let r = f(&mut next)?;
            self.persist(&next)?;
            *h = next;
            (r, h.clone())
        };
        self.changed.send_replace(snapshot.current.version);
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
            let mut next = h.clone();
            if !next.merge(other) {
                return;
            }
            if let Err(e) = self.persist(&next) {
                tracing::error!("cannot save the layout received from {}: {e}", from.short());
                return;
            }
            *h = next;
            h.clone()
        };
        tracing::info!(
            "layout updated from {} (version {})",
            from.short(),
            snapshot.current.version
        );
        self.changed.send_replace(snapshot.current.version);
        // Pass it on: merges are idempotent, so the flood stops once everyone has it.
        self.broadcast(snapshot, Some(from));
    }

    fn broadcast(&self, h: LayoutHistory, except: Option<NodeId>) {
        let msg = Arc::new(PushLayout(h));
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
