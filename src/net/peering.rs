//! Full-mesh peering: every node keeps a connection to every other node it knows of.
//!
//! Known peers come from `bootstrap_peers`, from a persisted peer list (so a restarted node finds the
//! cluster alone), from incoming connections, and from peer exchange (each node periodically asks its peers
//! whom they know; at most [`MAX_KNOWN_PEERS`] are remembered that way). Disconnected peers are
//! redialed at once, then with exponential backoff (1 s → 10 s: a link back from a cut is used again
//! within 10 s); calls to a peer wait for that first redial (and, after this node starts, for the first
//! dial) instead of failing, see [`NetApp::expect`]. Every
//! [`PING_INTERVAL`] each connected peer is pinged; the round-trip time is smoothed (EWMA) and used by upper
//! layers to pick the nearest replica. [`PING_FAILURES`] missed pings in a row close the connection, so a
//! frozen (SIGSTOPped) peer is seen down within about `PING_FAILURES × PING_INTERVAL + PING_TIMEOUT`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::NetError;
use super::endpoint::{Endpoint, Message};
use super::frame::Prio;
use super::identity::NodeId;
use super::netapp::{NetApp, NetEvent};
use crate::util::encode::{NoPrevious, Versioned};
use crate::util::time::now_msec;

pub const PING_INTERVAL: Duration = Duration::from_secs(2);
pub const PING_TIMEOUT: Duration = Duration::from_secs(3);
pub const PING_FAILURES: u32 = 3;
const EXCHANGE_INTERVAL: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Peers learnt through exchange stop being added beyond this many known peers (a peer's answer must not
/// make a node remember and dial without bound).
pub const MAX_KNOWN_PEERS: usize = 1024;
/// Longest address accepted from a peer exchange (`host:port`).
pub const MAX_PEER_ADDR: usize = 256;

#[derive(Serialize, Deserialize)]
struct Ping {}
#[derive(Serialize, Deserialize)]
struct Pong {}
impl Message for Ping {
    type Response = Pong;
}

#[derive(Serialize, Deserialize)]
struct GetPeers {}
impl Message for GetPeers {
    type Response = Vec<(NodeId, String)>;
}

/// The persisted peer list (`<metadata_dir>/peer_list`).
#[derive(Serialize, Deserialize, Default)]
struct PeerList {
    peers: Vec<(NodeId, String)>,
}
impl Versioned for PeerList {
    const MARKER: &'static [u8] = b"GRpeers1";
    type Previous = NoPrevious;
}

/// What the rest of the node sees of a peer.
#[derive(Clone, Debug, Serialize)]
pub struct PeerInfo {
    pub id: NodeId,
    pub addr: Option<String>,
    pub up: bool,
    /// Last time the peer answered, milliseconds since the epoch.
    pub last_seen_msec: Option<u64>,
    pub rtt: Option<Duration>,
}

struct PeerState {
    addr: Option<String>,
    connected: bool,
    last_seen: Option<u64>,
    rtt: Option<Duration>,
    failed_pings: u32,
    next_try: Instant,
    backoff: Duration,
    trying: bool,
    /// The peer is expected back: no dial has failed since this node started or since the peer's
    /// connection closed. Calls to it wait for that dial ([`NetApp::expect`]).
    expected: bool,
}

impl PeerState {
    fn new(addr: Option<String>) -> PeerState {
        PeerState {
            addr,
            connected: false,
            last_seen: None,
            rtt: None,
            failed_pings: 0,
            next_try: Instant::now(),
            backoff: Duration::from_secs(1),
            trying: false,
            expected: true,
        }
    }
}

pub struct Peering {
    net: Arc<NetApp>,
    peers: Mutex<HashMap<NodeId, PeerState>>,
    peer_file: Option<PathBuf>,
    dirty: AtomicBool,
    ping: Endpoint<Ping>,
    get_peers: Endpoint<GetPeers>,
}

impl Peering {
    /// `peer_file`: where the peer list is persisted (None: not persisted, for tests).
    pub fn new(
        net: &Arc<NetApp>,
        bootstrap: Vec<(NodeId, String)>,
        peer_file: Option<PathBuf>,
    ) -> Arc<Peering> {
        let mut peers = HashMap::new();
        if let Some(f) = &peer_file
            && let Ok(bytes) = std::fs::read(f)
        {
            match PeerList::decode(&bytes) {
                Ok(list) => {
                    for (id, addr) in list.peers {
                        peers.insert(id, PeerState::new(Some(addr)));
                    }
                }
                Err(e) => tracing::warn!("ignoring unreadable peer list {}: {e}", f.display()),
            }
        }
        for (id, addr) in bootstrap {
            peers.entry(id).or_insert_with(|| PeerState::new(None)).addr = Some(addr);
        }
        peers.remove(&net.id);
        let p = Arc::new(Peering {
            net: net.clone(),
            peers: Mutex::new(peers),
            peer_file,
            dirty: AtomicBool::new(true),
            ping: Endpoint::new(net, "grenier/peering/ping/v1"),
            get_peers: Endpoint::new(net, "grenier/peering/peers/v1"),
        });
        p.ping
            .set_simple_handler(|_, _: Ping| async { Ok(Pong {}) });
        let weak = Arc::downgrade(&p);
        p.get_peers.set_simple_handler(move |_, _: GetPeers| {
            let list = weak.upgrade().map(|p| p.known_addrs()).unwrap_or_default();
            async move { Ok(list) }
        });
        p
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, PeerState>> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn known_addrs(&self) -> Vec<(NodeId, String)> {
        let mut v: Vec<_> = self
            .lock()
            .iter()
            .filter_map(|(id, p)| Some((*id, p.addr.clone()?)))
            .collect();
        if let Some(a) = self.net.public_addr() {
            v.push((self.net.id, a.to_string()));
        }
        v
    }

    /// Every known peer (not this node), sorted by id.
    pub fn peers(&self) -> Vec<PeerInfo> {
        let mut v: Vec<PeerInfo> = self
            .lock()
            .iter()
            .map(|(id, p)| PeerInfo {
                id: *id,
                addr: p.addr.clone(),
                up: p.connected && self.net.is_connected(id),
                last_seen_msec: p.last_seen,
                rtt: p.rtt,
            })
            .collect();
        v.sort_by_key(|p| p.id);
        v
    }

    pub fn is_up(&self, id: &NodeId) -> bool {
        *id == self.net.id
            || (self.net.is_connected(id) && self.lock().get(id).is_some_and(|p| p.connected))
    }

    /// Smoothed round-trip time to `id` (zero for this node).
    pub fn rtt(&self, id: &NodeId) -> Option<Duration> {
        if *id == self.net.id {
            return Some(Duration::ZERO);
        }
        self.lock().get(id).and_then(|p| p.rtt)
    }

    /// Connect to a new peer now (`grenier node connect`), remembering it.
    pub async fn connect_to(&self, id: NodeId, addr: &str) -> Result<(), NetError> {
        if id == self.net.id {
            return Ok(());
        }
        self.lock()
            .entry(id)
            .or_insert_with(|| PeerState::new(None))
            .addr = Some(addr.to_string());
        self.dirty.store(true, Ordering::Relaxed);
        self.net.connect(id, addr).await
    }

    /// Run the peering loops until the task is aborted.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        // From now on a peer whose connection closes is redialed at once, and calls wait for it; so
        // do calls to the peers known at start, until their first dial.
        self.net.expect_back_after_disconnect();
        for (id, p) in self.lock().iter() {
            if p.addr.is_some() && p.expected {
                self.net.expect(*id);
            }
        }
        let me = self.clone();
        tokio::spawn(async move {
            let mut events = me.net.subscribe();
            // Connections that came up before we subscribed.
            for id in me.net.connected_peers() {
                me.on_connected(id, None);
            }
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_ping = Instant::now() - PING_INTERVAL;
            let mut last_exchange = Instant::now() - EXCHANGE_INTERVAL;
            loop {
                tokio::select! {
                    ev = events.recv() => match ev {
                        Ok(NetEvent::Connected { id, public_addr, .. }) => {
                            me.on_connected(id, public_addr);
                            me.exchange_with(id);
                        }
                        Ok(NetEvent::Disconnected { id }) => {
                            me.on_disconnected(id);
                            // The first redial at once: calls wait for it.
                            me.dial_due();
                        }
                        Ok(NetEvent::DialFailed { .. }) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => me.resync(),
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    },
                    _ = tick.tick() => {
                        me.dial_due();
                        if last_ping.elapsed() >= PING_INTERVAL {
                            last_ping = Instant::now();
                            me.ping_all();
                        }
                        if last_exchange.elapsed() >= EXCHANGE_INTERVAL {
                            last_exchange = Instant::now();
                            me.exchange();
                        }
                        me.persist();
                    }
                }
            }
        })
    }

    fn on_connected(&self, id: NodeId, public_addr: Option<String>) {
        let mut peers = self.lock();
        let p = peers.entry(id).or_insert_with(|| PeerState::new(None));
        p.connected = true;
        p.failed_pings = 0;
        p.backoff = Duration::from_secs(1);
        p.last_seen = Some(now_msec());
        if public_addr.is_some() {
            p.addr = public_addr;
        }
        self.dirty.store(true, Ordering::Relaxed);
    }

    fn on_disconnected(&self, id: NodeId) {
        match self.lock().get_mut(&id) {
            Some(p) if p.addr.is_some() => {
                p.connected = false;
                p.rtt = None;
                p.next_try = Instant::now();
                p.expected = true;
            }
            Some(p) => {
                p.connected = false;
                p.rtt = None;
                // No address to dial: calls must not wait for a dial that will not come.
                self.net.not_expected(&id);
            }
            None => self.net.not_expected(&id),
        }
    }

    fn resync(&self) {
        let connected = self.net.connected_peers();
        for (id, p) in self.lock().iter_mut() {
            p.connected = connected.contains(id);
        }
    }

    fn dial_due(self: &Arc<Self>) {
        let now = Instant::now();
        let mut peers = self.lock();
        for (id, p) in peers.iter_mut() {
            if p.connected || p.trying || p.next_try > now || self.net.is_connected(id) {
                continue;
            }
            let Some(addr) = p.addr.clone() else { continue };
            p.trying = true;
            let (me, id, expected) = (self.clone(), *id, p.expected);
            tokio::spawn(async move {
                if expected {
                    me.net.expect(id);
                }
                let res = me.net.connect(id, &addr).await;
                let mut peers = me.lock();
                if let Some(p) = peers.get_mut(&id) {
                    p.trying = false;
                    p.expected = false;
                    match res {
                        Ok(()) => p.backoff = Duration::from_secs(1),
                        Err(e) => {
                            tracing::debug!("cannot reach {} at {addr}: {e}", id.short());
                            p.next_try = Instant::now() + p.backoff;
                            p.backoff = (p.backoff * 2).min(MAX_BACKOFF);
                        }
                    }
                }
            });
        }
    }

    fn ping_all(self: &Arc<Self>) {
        for id in self.net.connected_peers() {
            let me = self.clone();
            tokio::spawn(async move {
                let start = Instant::now();
                let res = me
                    .ping
                    .call(&id, &Ping {}, Prio::Control, PING_TIMEOUT)
                    .await;
                let mut peers = me.lock();
                let Some(p) = peers.get_mut(&id) else { return };
                match res {
                    Ok(Pong {}) => {
                        let rtt = start.elapsed();
                        p.rtt = Some(match p.rtt {
                            Some(old) => (old * 7 + rtt) / 8,
                            None => rtt,
                        });
                        p.failed_pings = 0;
                        p.last_seen = Some(now_msec());
                    }
                    Err(e) => {
                        p.failed_pings += 1;
                        tracing::debug!("ping to {} failed ({}x): {e}", id.short(), p.failed_pings);
                        if p.failed_pings >= PING_FAILURES {
                            tracing::warn!(
                                "{} missed {} pings, closing the connection",
                                id.short(),
                                p.failed_pings
                            );
                            p.failed_pings = 0;
                            drop(peers);
                            me.net.disconnect(&id);
                        }
                    }
                }
            });
        }
    }

    fn exchange(self: &Arc<Self>) {
        for id in self.net.connected_peers() {
            self.exchange_with(id);
        }
    }

    /// Ask `id` whom it knows, and remember the ones we did not know.
    fn exchange_with(self: &Arc<Self>, id: NodeId) {
        {
            let me = self.clone();
            tokio::spawn(async move {
                let Ok(list) = me
                    .get_peers
                    .call(&id, &GetPeers {}, Prio::Control, PING_TIMEOUT)
                    .await
                else {
                    return;
                };
                let mut peers = me.lock();
                for (pid, addr) in list {
                    if pid == me.net.id || addr.len() > MAX_PEER_ADDR {
                        continue;
                    }
                    if !peers.contains_key(&pid) && peers.len() >= MAX_KNOWN_PEERS {
                        tracing::warn!(
                            "peer exchange with {}: already {MAX_KNOWN_PEERS} known peers, ignoring the rest",
                            id.short()
                        );
                        break;
                    }
                    let p = peers.entry(pid).or_insert_with(|| PeerState::new(None));
                    if p.addr.is_none() {
                        p.addr = Some(addr);
                        me.dirty.store(true, Ordering::Relaxed);
                    }
                }
            });
        }
    }

    fn persist(&self) {
        let Some(file) = &self.peer_file else { return };
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return;
        }
        let list = PeerList {
            peers: self
                .lock()
                .iter()
                .filter_map(|(id, p)| Some((*id, p.addr.clone()?)))
                .collect(),
        };
        let res = list
            .encode()
            .map_err(std::io::Error::other)
            .and_then(|bytes| crate::util::fs::write_atomic(file, &bytes, false));
        if let Err(e) = res {
            tracing::warn!("cannot save peer list to {}: {e}", file.display());
            self.dirty.store(true, Ordering::Relaxed);
        }
    }
}
