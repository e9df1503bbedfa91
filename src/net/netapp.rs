//! `NetApp`: this node's side of the mesh. It listens, dials, runs the handshake, keeps exactly one
//! connection per peer, and routes requests to named endpoints (local calls skip the network).
//!
//! Handshake after TCP connect (TCP_NODELAY always set):
//! 1. TLS 1.3, both sides present a certificate for their ed25519 node key; the dialer checks the key is
//!    the node id it meant to reach (see [`super::tls`]).
//! 2. Cluster membership: each side sends `HMAC-SHA256(rpc_secret, label ‖ exporter)` where `exporter` is
//!    32 bytes of TLS keying material, so the proof is bound to this session and cannot be replayed.
//!    The acceptor verifies the dialer's proof before it sends or reads anything else: a peer without
//!    the secret is dropped before any message is read.
//! 3. Hello: protocol version and the advertised `rpc_public_addr`, so peers can be told about each other.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::broadcast;

use super::NetError;
use super::conn::{ByteStream, Conn, Dispatch, Reply};
use super::frame::Prio;
use super::identity::{NodeId, NodeKey};
use super::tls::{TlsIdentity, node_id_of_cert};
use crate::util::encode::{NoPrevious, Versioned};

/// Version of the node-to-node protocol; bumped on incompatible changes.
pub const PROTOCOL_VERSION: u32 = 1;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a call to a peer being redialed waits for the dial (see [`NetApp::expect`]).
pub const CONNECT_WAIT: Duration = Duration::from_secs(2);
const EXPORTER_LABEL: &[u8] = b"EXPORTER-grenier-cluster-auth";

pub(crate) type RawHandler =
    dyn Fn(NodeId, Bytes, Option<ByteStream>) -> BoxFuture<'static, Reply> + Send + Sync;

/// Connection events, for the peering manager and anyone else who cares.
#[derive(Clone, Debug)]
pub enum NetEvent {
    Connected {
        id: NodeId,
        public_addr: Option<String>,
        remote: SocketAddr,
        outgoing: bool,
    },
    Disconnected {
        id: NodeId,
    },
    /// A dial that calls were waiting for failed ([`NetApp::expect`]).
    DialFailed {
        id: NodeId,
    },
}

#[derive(Serialize, Deserialize, Debug)]
struct Hello {
    protocol: u32,
    public_addr: Option<String>,
}
impl Versioned for Hello {
    const MARKER: &'static [u8] = b"GRhello1";
    type Previous = NoPrevious;
}

pub struct NetApp {
    pub id: NodeId,
    secret: [u8; 32],
    tls: TlsIdentity,
    server_cfg: Arc<rustls::ServerConfig>,
    public_addr: Option<String>,
    bind_outgoing: Option<IpAddr>,
    handlers: RwLock<HashMap<String, Arc<RawHandler>>>,
    conns: RwLock<HashMap<NodeId, Arc<Conn>>>,
    /// Peers being dialed that calls wait for rather than fail at once.
    awaited_dials: Mutex<HashSet<NodeId>>,
    /// See [`NetApp::expect_back_after_disconnect`].
    expect_back: AtomicBool,
    events: broadcast::Sender<NetEvent>,
}

impl NetApp {
    pub fn new(
        key: &NodeKey,
        secret: [u8; 32],
        public_addr: Option<String>,
        bind_outgoing: Option<IpAddr>,
    ) -> Result<Arc<NetApp>, NetError> {
        let tls = TlsIdentity::new(key)?;
        let server_cfg = tls.server_config()?;
        Ok(Arc::new(NetApp {
            id: key.id(),
            secret,
            tls,
            server_cfg,
            public_addr,
            bind_outgoing,
            handlers: RwLock::new(HashMap::new()),
            conns: RwLock::new(HashMap::new()),
            awaited_dials: Mutex::new(HashSet::new()),
            expect_back: AtomicBool::new(false),
            events: broadcast::channel(1024).0,
        }))
    }

    pub fn public_addr(&self) -> Option<&str> {
        self.public_addr.as_deref()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<NetEvent> {
        self.events.subscribe()
    }

    pub(crate) fn add_handler(&self, path: &str, h: Arc<RawHandler>) {
        self.handlers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(path.to_string(), h);
    }

    fn conn(&self, id: &NodeId) -> Option<Arc<Conn>> {
        self.conns
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    pub fn is_connected(&self, id: &NodeId) -> bool {
        *id == self.id || self.conn(id).is_some_and(|c| !c.is_closed())
    }

    pub fn connected_peers(&self) -> Vec<NodeId> {
        self.conns
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect()
    }

    /// Close the connection to `id` (it will be re-established by whoever wants it).
    pub fn disconnect(&self, id: &NodeId) {
        if let Some(c) = self.conn(id) {
            c.close();
        }
    }

    /// Raw call: used by [`super::Endpoint`]; a call to this node itself runs the handler directly.
    pub(crate) async fn call_raw(
        self: &Arc<Self>,
        to: &NodeId,
        endpoint: &str,
        body: Bytes,
        stream: Option<ByteStream>,
        prio: Prio,
    ) -> Reply {
        if *to == self.id {
            return self.dispatch(self.id, endpoint, body, stream).await;
        }
        let conn = match self.live_conn(to) {
            Some(c) => c,
            None => self
                .await_dial(to)
                .await
                .ok_or_else(|| NetError::NotConnected(to.short()))?,
        };
        conn.call(endpoint, body, stream, prio).await
    }

    fn live_conn(&self, id: &NodeId) -> Option<Arc<Conn>> {
        self.conn(id).filter(|c| !c.is_closed())
    }

    fn awaited(&self) -> std::sync::MutexGuard<'_, HashSet<NodeId>> {
        self.awaited_dials.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The connection to `to` once it is back, if it is expected back ([`NetApp::expect`]); None if
    /// not expected, if the dial failed, or after [`CONNECT_WAIT`].
    async fn await_dial(&self, to: &NodeId) -> Option<Arc<Conn>> {
        // Subscribe before looking, so the dial's outcome cannot slip between the two.
        let mut events = self.events.subscribe();
        if let Some(c) = self.live_conn(to) {
            return Some(c);
        }
        // A connection that has just closed is one being replaced when peers are expected back.
        let closing = self.expect_back.load(Ordering::Relaxed)
            && self.conn(to).is_some_and(|c| c.is_closed());
        if !closing && !self.awaited().contains(to) {
            return None;
        }
        let wait = async {
            loop {
                match events.recv().await {
                    Ok(NetEvent::Connected { id, .. }) if id == *to => {
                        return self.live_conn(to);
                    }
                    Ok(NetEvent::DialFailed { id }) if id == *to => return None,
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        if let Some(c) = self.live_conn(to) {
                            return Some(c);
                        }
                        if !self.awaited().contains(to) {
                            return None;
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        };
        tokio::time::timeout(CONNECT_WAIT, wait)
            .await
            .ok()
            .flatten()
    }

    /// Listen for peers on `addr` until the returned task is aborted.
    pub async fn listen(
        self: &Arc<Self>,
        addr: SocketAddr,
    ) -> Result<tokio::task::JoinHandle<()>, NetError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| NetError::Bind(addr, e))?;
        let me = self.clone();
        Ok(tokio::spawn(async move {
            loop {
                let (tcp, remote) = match listener.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let me = me.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, me.accept_one(tcp, remote)).await
                    {
                        Ok(Ok(())) => (),
                        Ok(Err(e)) => {
                            tracing::info!("refused incoming connection from {remote}: {e}")
                        }
                        Err(_) => {
                            tracing::info!("incoming connection from {remote}: handshake timed out")
                        }
                    }
                });
            }
        }))
    }

    async fn accept_one(
        self: &Arc<Self>,
        tcp: TcpStream,
        remote: SocketAddr,
    ) -> Result<(), NetError> {
        tcp.set_nodelay(true)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(self.server_cfg.clone());
        let mut tls = acceptor
            .accept(tcp)
            .await
            .map_err(|e| NetError::Tls(e.to_string()))?;
        let (peer, ekm) = {
            let (_, c) = tls.get_ref();
            let cert = c
                .peer_certificates()
                .and_then(|v| v.first())
                .ok_or_else(|| NetError::Auth("no certificate".into()))?;
            let peer = node_id_of_cert(cert)
                .ok_or_else(|| NetError::Auth("not a node certificate".into()))?;
            let ekm = c
                .export_keying_material([0u8; 32], EXPORTER_LABEL, None)
                .map_err(|e| NetError::Tls(e.to_string()))?;
            (peer, ekm)
        };
        if peer == self.id {
            return Err(NetError::Auth("connection from myself".into()));
        }
        // Verify the dialer's proof first: nothing else is read from a peer without the secret.
        let theirs = read_exact::<32, _>(&mut tls).await?;
        self.check_proof(b"client", &ekm, &theirs)?;
        tls.write_all(&self.proof(b"server", &ekm)).await?;
        let hello = self.exchange_hello(&mut tls).await?;
        self.register(peer, remote, false, hello, tls);
        Ok(())
    }

    /// Calls to `id` wait (up to [`CONNECT_WAIT`]) for the next dial to it, or for it to connect,
    /// instead of failing with `NotConnected`: for a peer expected back (this node just started, or
    /// the peer's connection just closed and it is redialed at once). A request through a node that
    /// has just restarted or resumed from a freeze then waits a round trip or two for its peers
    /// rather than answering 503. The wait ends with the first dial's outcome (any dial), with a
    /// connection from the peer, or with [`NetApp::not_expected`].
    pub fn expect(&self, id: NodeId) {
        if id != self.id {
            self.awaited().insert(id);
        }
    }

    /// Calls to `id` stop waiting for it (no dial will follow).
    pub fn not_expected(&self, id: &NodeId) {
        if self.awaited().remove(id) {
            let _ = self.events.send(NetEvent::DialFailed { id: *id });
        }
    }

    /// Make every peer whose connection closes expected back (see [`NetApp::expect`]): for a caller
    /// that redials at once, as [`super::peering::Peering`] does.
    pub fn expect_back_after_disconnect(&self) {
        self.expect_back.store(true, Ordering::Relaxed);
    }

    /// Dial `addr` expecting node `id`; Ok once a connection to `id` exists (possibly one it dialed).
    /// Calls waiting for `id` ([`NetApp::expect`]) wait for this dial.
    pub async fn connect(self: &Arc<Self>, id: NodeId, addr: &str) -> Result<(), NetError> {
        if self.is_connected(&id) {
            self.awaited().remove(&id);
            return Ok(());
        }
        let res = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.dial(id, addr))
            .await
            .map_err(|_| NetError::Timeout)
            .and_then(|r| r);
        if res.is_err() {
            self.not_expected(&id);
        }
        res
    }

    async fn dial(self: &Arc<Self>, id: NodeId, addr: &str) -> Result<(), NetError> {
        let mut last_err = NetError::Resolve(addr.to_string());
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(addr)
            .await
            .map_err(|_| NetError::Resolve(addr.to_string()))?
            .collect();
        for sa in addrs {
            match self.dial_addr(id, sa).await {
                Ok(()) => return Ok(()),
                Err(e) => last_err = e,
            }
        }
        Err(last_err)
    }

    async fn dial_addr(self: &Arc<Self>, id: NodeId, sa: SocketAddr) -> Result<(), NetError> {
        let sock = if sa.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(ip) = self.bind_outgoing
            && ip.is_ipv4() == sa.is_ipv4()
        {
            sock.bind(SocketAddr::new(ip, 0))?;
        }
        sock.set_nodelay(true)?;
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, sock.connect(sa))
            .await
            .map_err(|_| NetError::Timeout)??;
        tcp.set_nodelay(true)?;
        let connector = tokio_rustls::TlsConnector::from(self.tls.client_config(id)?);
        let name =
            rustls::pki_types::ServerName::try_from("grenier").expect("static name is valid");
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| NetError::Tls(e.to_string()))?;
        let ekm = tls
            .get_ref()
            .1
            .export_keying_material([0u8; 32], EXPORTER_LABEL, None)
            .map_err(|e| NetError::Tls(e.to_string()))?;
        tls.write_all(&self.proof(b"client", &ekm)).await?;
        tls.flush().await?;
        let theirs = read_exact::<32, _>(&mut tls).await.map_err(|_| {
            NetError::Auth(
                "peer closed the connection during authentication (different rpc_secret?)".into(),
            )
        })?;
        self.check_proof(b"server", &ekm, &theirs)?;
        let hello = self.exchange_hello(&mut tls).await?;
        self.register(id, sa, true, hello, tls);
        Ok(())
    }

    fn proof(&self, role: &[u8], ekm: &[u8; 32]) -> [u8; 32] {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.secret).expect("any key length works");
        mac.update(b"grenier-v1 ");
        mac.update(role);
        mac.update(ekm);
        mac.finalize().into_bytes().into()
    }

    fn check_proof(&self, role: &[u8], ekm: &[u8; 32], theirs: &[u8; 32]) -> Result<(), NetError> {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.secret).expect("any key length works");
        mac.update(b"grenier-v1 ");
        mac.update(role);
        mac.update(ekm);
        mac.verify_slice(theirs).map_err(|_| {
            NetError::Auth("peer does not know the cluster secret (rpc_secret)".into())
        })
    }

    async fn exchange_hello<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        s: &mut S,
    ) -> Result<Hello, NetError> {
        let mine = Hello {
            protocol: PROTOCOL_VERSION,
            public_addr: self.public_addr.clone(),
        }
        .encode()
        .map_err(|e| NetError::Codec(e.to_string()))?;
        s.write_all(&(mine.len() as u32).to_be_bytes()).await?;
        s.write_all(&mine).await?;
        s.flush().await?;
        let len = u32::from_be_bytes(read_exact::<4, _>(s).await?) as usize;
        if len > 4096 {
            return Err(NetError::Protocol("hello too large".into()));
        }
        let mut buf = vec![0u8; len];
        s.read_exact(&mut buf).await?;
        let hello = Hello::decode(&buf).map_err(|e| NetError::Codec(e.to_string()))?;
        if hello.protocol != PROTOCOL_VERSION {
            return Err(NetError::Protocol(format!(
                "peer speaks protocol {} and this node {}; run the same Grenier release on every node",
                hello.protocol, PROTOCOL_VERSION
            )));
        }
        Ok(hello)
    }

    fn register<S>(
        self: &Arc<Self>,
        peer: NodeId,
        remote: SocketAddr,
        outgoing: bool,
        hello: Hello,
        stream: S,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (conn, queues) = Conn::new(peer, remote, outgoing);
        // Keep one connection per pair: the one dialed by the smaller node id, so both ends agree. The
        // other one is retired, not cut: it keeps serving what is in flight and closes once idle, so a
        // call that raced onto it (e.g. during simultaneous dials) still completes.
        let (kept, retired) = {
            let mut conns = self.conns.write().unwrap_or_else(|e| e.into_inner());
            match conns.get(&peer).cloned() {
                Some(old) if !old.is_closed() => {
                    let preferred = self.id.min(peer);
                    let dialer = if outgoing { self.id } else { peer };
                    if dialer == preferred {
                        conns.insert(peer, conn.clone());
                        (true, Some(old))
                    } else {
                        (false, Some(conn.clone()))
                    }
                }
                _ => {
                    conns.insert(peer, conn.clone());
                    (true, None)
                }
            }
        };
        if let Some(r) = retired {
            tokio::spawn(async move {
                // Grace period for calls the peer routed to it before it saw the switch, then wait idle.
                tokio::time::sleep(Duration::from_secs(1)).await;
                let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
                while r.in_flight() != (0, 0) && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                r.close();
            });
        }
        if kept {
            self.awaited().remove(&peer);
            tracing::info!(
                "connected to {} at {remote} ({})",
                peer.short(),
                if outgoing { "dialed" } else { "accepted" }
            );
            let _ = self.events.send(NetEvent::Connected {
                id: peer,
                public_addr: hello.public_addr,
                remote,
                outgoing,
            });
        }
        let me = self.clone();
        tokio::spawn(async move {
            let dispatch: Arc<dyn Dispatch> = me.clone();
            let why = conn.run(stream, queues, dispatch).await;
            if matches!(why, NetError::Protocol(_)) {
                // The peer broke the protocol or one of the caps of `conn`: worth an operator's look.
                tracing::warn!("connection to {} closed: {why}", peer.short());
            } else {
                tracing::info!("connection to {} closed: {why}", peer.short());
            }
            let removed = {
                let mut conns = me.conns.write().unwrap_or_else(|e| e.into_inner());
                match conns.get(&peer) {
                    Some(c) if Arc::ptr_eq(c, &conn) => {
                        if me.expect_back.load(Ordering::Relaxed) {
                            me.expect(peer);
                        }
                        conns.remove(&peer).is_some()
                    }
                    _ => false,
                }
            };
            if removed {
                let _ = me.events.send(NetEvent::Disconnected { id: peer });
            }
        });
    }
}

impl Dispatch for NetApp {
    fn dispatch(
        &self,
        from: NodeId,
        endpoint: &str,
        body: Bytes,
        stream: Option<ByteStream>,
    ) -> BoxFuture<'static, Reply> {
        let h = self
            .handlers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(endpoint)
            .cloned();
        match h {
            Some(h) => h(from, body, stream),
            None => {
                let e = NetError::NoHandler(endpoint.to_string());
                Box::pin(async move { Err(e) })
            }
        }
    }
}

async fn read_exact<const N: usize, S: AsyncRead + Unpin>(s: &mut S) -> Result<[u8; N], NetError> {
    let mut b = [0u8; N];
    s.read_exact(&mut b).await?;
    Ok(b)
}
