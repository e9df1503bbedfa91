//! Node status gossip and cluster health.
//!
//! Every [`STATUS_INTERVAL`] each node sends its [`NodeStatus`] (hostname, release, disk space, layout
//! version and digest) to every connected peer and gets theirs back. A differing layout digest triggers a
//! layout pull, which is how a node that missed layout pushes catches up.
//!
//! Health, from the current layout and which nodes are up:
//! - `healthy`: every partition has all its replicas up;
//! - `degraded`: every partition still has a write quorum of replicas up;
//! - `unavailable`: some partition has no write quorum (or no layout has been applied yet).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::manager::LayoutManager;
use super::solver::NB_PARTITIONS;
use crate::net::peering::Peering;
use crate::net::{Endpoint, Message, NetApp, NodeId, Prio};
use crate::util::config::ConsistencyMode;

pub const STATUS_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSpace {
    pub avail: u64,
    pub total: u64,
}

impl DiskSpace {
    pub fn of(path: &std::path::Path) -> Option<DiskSpace> {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
        if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
            return None;
        }
        let frsize = st.f_frsize as u64;
        Some(DiskSpace {
            avail: st.f_bavail as u64 * frsize,
            total: st.f_blocks as u64 * frsize,
        })
    }
}

/// What each node tells the others about itself.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeStatus {
    pub hostname: String,
    pub release: String,
    pub layout_version: u64,
    pub layout_digest: [u8; 32],
    pub meta_disk: Option<DiskSpace>,
    pub data_disk: Option<DiskSpace>,
}

#[derive(Serialize, Deserialize)]
struct ExchangeStatus(NodeStatus);
impl Message for ExchangeStatus {
    type Response = NodeStatus;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Healthy,
    Degraded,
    Unavailable,
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Health::Healthy => "healthy",
            Health::Degraded => "degraded",
            Health::Unavailable => "unavailable",
        })
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct HealthReport {
    pub health: Health,
    pub partitions: usize,
    pub partitions_all_replicas_up: usize,
    pub partitions_quorum_up: usize,
    pub partitions_unavailable: usize,
    pub storage_nodes: usize,
    pub storage_nodes_up: usize,
}

/// One node as `status` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct NodeView {
    pub id: NodeId,
    pub hostname: Option<String>,
    pub addr: Option<String>,
    pub zone: Option<String>,
    pub capacity: Option<u64>,
    pub gateway: bool,
    pub up: bool,
    pub last_seen_msec: Option<u64>,
    pub rtt: Option<Duration>,
    pub release: Option<String>,
    pub layout_version: Option<u64>,
    pub data_disk: Option<DiskSpace>,
    pub meta_disk: Option<DiskSpace>,
}

pub struct System {
    pub net: Arc<NetApp>,
    pub peering: Arc<Peering>,
    pub layout: Arc<LayoutManager>,
    consistency: ConsistencyMode,
    metadata_dir: PathBuf,
    data_dir: Option<PathBuf>,
    hostname: String,
    statuses: RwLock<HashMap<NodeId, NodeStatus>>,
    exchange: Endpoint<ExchangeStatus>,
}

impl System {
    pub fn new(
        net: &Arc<NetApp>,
        peering: &Arc<Peering>,
        layout: &Arc<LayoutManager>,
        consistency: ConsistencyMode,
        metadata_dir: PathBuf,
        data_dir: Option<PathBuf>,
    ) -> Arc<System> {
        let hostname = gethostname::gethostname().to_string_lossy().into_owned();
        let s = Arc::new(System {
            net: net.clone(),
            peering: peering.clone(),
            layout: layout.clone(),
            consistency,
            metadata_dir,
            data_dir,
            hostname,
            statuses: RwLock::new(HashMap::new()),
            exchange: Endpoint::new(net, "grenier/system/status/v1"),
        });
        let weak = Arc::downgrade(&s);
        s.exchange
            .set_simple_handler(move |from, ExchangeStatus(theirs)| {
                let s = weak.upgrade();
                async move {
                    let s = s.ok_or(crate::net::NetError::Disconnected)?;
                    let mine = s.local_status();
                    s.record(from, theirs).await;
                    Ok(mine)
                }
            });
        s
    }

    pub fn id(&self) -> NodeId {
        self.net.id
    }

    pub fn local_status(&self) -> NodeStatus {
        let h = self.layout.history();
        NodeStatus {
            hostname: self.hostname.clone(),
            release: env!("CARGO_PKG_VERSION").to_string(),
            layout_version: h.current().version,
            layout_digest: h.digest(),
            meta_disk: DiskSpace::of(&self.metadata_dir),
            data_disk: self.data_dir.as_deref().and_then(DiskSpace::of),
        }
    }

    async fn record(&self, from: NodeId, st: NodeStatus) {
        let differs = st.layout_digest != self.layout.digest();
        self.statuses
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(from, st);
        if differs {
            self.layout.pull_from(from).await;
        }
    }

    /// Run the status exchange until the task is aborted.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(STATUS_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut events = me.net.subscribe();
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        for peer in me.net.connected_peers() {
                            me.clone().exchange_with(peer);
                        }
                    }
                    ev = events.recv() => {
                        if let Ok(crate::net::NetEvent::Connected { id, .. }) = ev {
                            me.clone().exchange_with(id);
                        }
                    }
                }
            }
        })
    }

    fn exchange_with(self: Arc<Self>, peer: NodeId) {
        tokio::spawn(async move {
            let mine = ExchangeStatus(self.local_status());
            match self
                .exchange
                .call(&peer, &mine, Prio::Control, STATUS_INTERVAL * 3)
                .await
            {
                Ok(theirs) => self.record(peer, theirs).await,
                Err(e) => tracing::debug!("status exchange with {} failed: {e}", peer.short()),
            }
        });
    }

    pub fn is_up(&self, id: &NodeId) -> bool {
        self.peering.is_up(id)
    }

    /// Order `nodes` nearest first: this node, then nodes up in the same zone, then other nodes up by
    /// measured round-trip time, then nodes down. Reads ask the first ones first.
    pub fn sort_by_proximity(&self, nodes: &mut [NodeId]) {
        let h = self.layout.history();
        let my_zone = h.current().roles.get(&self.id()).map(|r| r.zone.clone());
        let me = self.id();
        nodes.sort_by_cached_key(|n| {
            let up = self.is_up(n);
            let same_zone =
                my_zone.is_some() && h.current().roles.get(n).map(|r| &r.zone) == my_zone.as_ref();
            let rtt = self.peering.rtt(n).unwrap_or(Duration::from_secs(3600));
            (*n != me, !up, !same_zone, rtt, *n)
        });
    }

    /// Replicas that must acknowledge a write for it to succeed, for replication factor `rf`.
    pub fn write_quorum(&self, rf: usize) -> usize {
        match self.consistency {
            ConsistencyMode::Dangerous => 1,
            _ => rf - rf.div_ceil(2) + 1,
        }
    }

    pub fn health(&self) -> HealthReport {
        let h = self.layout.history();
        let v = h.current();
        let rf = v.replication_factor;
        let quorum = self.write_quorum(rf);
        let up: HashMap<NodeId, bool> = v
            .storage_nodes
            .iter()
            .map(|n| (*n, self.is_up(n)))
            .collect();
        let (mut all, mut q, mut none) = (0, 0, 0);
        let partitions = if v.ring.is_empty() { 0 } else { NB_PARTITIONS };
        for p in 0..partitions {
            let n_up = v.nodes_of(p).iter().filter(|n| up[n]).count();
            if n_up == rf {
                all += 1;
            } else if n_up >= quorum {
                q += 1;
            } else {
                none += 1;
            }
        }
        let health = if partitions == 0 || none > 0 {
            Health::Unavailable
        } else if q > 0 {
            Health::Degraded
        } else {
            Health::Healthy
        };
        HealthReport {
            health,
            partitions,
            partitions_all_replicas_up: all,
            partitions_quorum_up: q,
            partitions_unavailable: none,
            storage_nodes: up.len(),
            storage_nodes_up: up.values().filter(|u| **u).count(),
        }
    }

    /// This node, every known peer, and every node of the layout.
    pub fn nodes(&self) -> Vec<NodeView> {
        let h = self.layout.history();
        let statuses = self
            .statuses
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut out: HashMap<NodeId, NodeView> = HashMap::new();
        let blank = |id: NodeId| NodeView {
            id,
            hostname: None,
            addr: None,
            zone: None,
            capacity: None,
            gateway: false,
            up: false,
            last_seen_msec: None,
            rtt: None,
            release: None,
            layout_version: None,
            data_disk: None,
            meta_disk: None,
        };
        let me = self.local_status();
        let mut v = blank(self.id());
        v.up = true;
        v.addr = self.net.public_addr().map(str::to_string);
        v.last_seen_msec = Some(crate::util::time::now_msec());
        v.rtt = Some(Duration::ZERO);
        out.insert(self.id(), v);
        statuses_into(&mut out, self.id(), &me);
        for p in self.peering.peers() {
            let v = out.entry(p.id).or_insert_with(|| blank(p.id));
            v.addr = p.addr;
            v.up = p.up;
            v.last_seen_msec = p.last_seen_msec;
            v.rtt = p.rtt;
        }
        for (id, st) in statuses.iter() {
            if out.contains_key(id) {
                statuses_into(&mut out, *id, st);
            }
        }
        for (id, role) in h.current().roles.iter() {
            let v = out.entry(*id).or_insert_with(|| blank(*id));
            v.zone = Some(role.zone.clone());
            v.capacity = role.capacity;
            v.gateway = role.capacity.is_none();
        }
        let mut nodes: Vec<NodeView> = out.into_values().collect();
        nodes.sort_by(|a, b| (&a.zone, a.id).cmp(&(&b.zone, b.id)));
        nodes
    }
}

fn statuses_into(out: &mut HashMap<NodeId, NodeView>, id: NodeId, st: &NodeStatus) {
    if let Some(v) = out.get_mut(&id) {
        v.hostname = Some(st.hostname.clone());
        v.release = Some(st.release.clone());
        v.layout_version = Some(st.layout_version);
        v.data_disk = st.data_disk;
        v.meta_disk = st.meta_disk;
    }
}
