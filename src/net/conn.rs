//! One multiplexed connection to a peer.
//!
//! A connection runs two tasks: a reader that reassembles frames into messages and dispatches requests, and
//! a writer that drains three queues in strict priority order (control > metadata > bulk) and batches
//! whatever is ready into one TLS write. Requests wait on a oneshot channel; dropping the caller's future
//! sends `Cancel`, which aborts the handler on the other side.
//!
//! **Flow control.** Each attached stream has a credit of [`STREAM_WINDOW`] bytes. The sender takes credit
//! before queueing a frame and the receiver returns it (`Window` frames) as its consumer reads, so a slow
//! consumer holds back only its own stream, never the connection, and buffered bytes per stream are bounded.
//! A peer that sends more than the credit it was given is a protocol violation.
//!
//! **Caps on what an (authenticated) peer can make us hold**, per connection; a peer exceeding one is a
//! protocol violation: the connection is closed and the reason logged. Incoming requests not yet complete
//! (multi-frame): at most [`MAX_PARTIAL_MESSAGES`] messages and [`MAX_PARTIAL_BYTES`] bytes. Incoming
//! request streams open at once: at most [`MAX_INCOMING_STREAMS`]. Our own sending side stays well below
//! them ([`SEND_PARTIAL_MESSAGES`], [`SEND_PARTIAL_BYTES`], [`SEND_STREAMS`]: callers wait instead), so a
//! conforming peer never trips them; the margin covers frames still queued when a sender moves on.
//! Values and rationale: `doc/rpc.md`.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::AbortHandle;

use super::NetError;
use super::frame::{Frame, HEADER_LEN, Kind, MAX_FRAME, Prio, flags, parse_header, split_message};
use super::identity::NodeId;

/// A stream of bytes attached to a request or a response.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, io::Error>> + Send>>;

/// Credit of one stream: bytes in flight between sender and consumer.
pub const STREAM_WINDOW: usize = 4 << 20;
/// Largest message (not stream) accepted; a peer sending more is dropped.
pub const MAX_MESSAGE: usize = 64 << 20;
/// Incoming requests still being received (multi-frame, last frame not yet in) a peer may have open on one
/// connection.
pub const MAX_PARTIAL_MESSAGES: usize = 256;
/// Bytes of incoming requests still being received that a peer may make us buffer on one connection.
pub const MAX_PARTIAL_BYTES: usize = 256 << 20;
/// Request streams (attached to a peer's requests) a peer may have open at once on one connection.
pub const MAX_INCOMING_STREAMS: usize = 256;
/// Our own multi-frame requests being sent at once on one connection (further senders wait).
pub const SEND_PARTIAL_MESSAGES: usize = 64;
/// Bytes of our own multi-frame requests being sent at once on one connection (further senders wait).
pub const SEND_PARTIAL_BYTES: usize = 128 << 20;
/// Our own requests with an attached stream in flight at once on one connection (further callers wait).
pub const SEND_STREAMS: usize = 128;
/// The receiving caps of one connection (the constants above; smaller in tests).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub partial_messages: usize,
    pub partial_bytes: usize,
    pub incoming_streams: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            partial_messages: MAX_PARTIAL_MESSAGES,
            partial_bytes: MAX_PARTIAL_BYTES,
            incoming_streams: MAX_INCOMING_STREAMS,
        }
    }
}

/// Frames that may wait in each bounded queue (metadata, bulk) before senders wait.
const QUEUE_FRAMES: usize = 32;
/// Bytes batched into one write.
const WRITE_BATCH: usize = 256 << 10;

pub(crate) type Reply = Result<(Bytes, Option<ByteStream>), NetError>;

/// Where incoming requests go (implemented by `NetApp`).
pub(crate) trait Dispatch: Send + Sync + 'static {
    fn dispatch(
        &self,
        from: NodeId,
        endpoint: &str,
        body: Bytes,
        stream: Option<ByteStream>,
    ) -> BoxFuture<'static, Reply>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Origin {
    Mine,
    Theirs,
}

impl Origin {
    fn flag(self) -> u8 {
        match self {
            Origin::Mine => flags::ORIGIN_SENDER,
            Origin::Theirs => 0,
        }
    }
}

type Key = (Origin, u32);

struct Pending {
    tx: oneshot::Sender<Reply>,
    buf: BytesMut,
}

struct Incoming {
    buf: BytesMut,
    task: Option<AbortHandle>,
    /// Some frames received, not the last one yet (counted in `State::partial`).
    partial: bool,
}

/// The receiving end of an attached stream, as the reader sees it.
struct InStream {
    tx: mpsc::UnboundedSender<Result<Bytes, io::Error>>,
    /// Bytes received and not yet credited back to the sender: never above [`STREAM_WINDOW`] for a
    /// peer that respects flow control.
    outstanding: Arc<AtomicUsize>,
}

#[derive(Default)]
struct State {
    pending: HashMap<u32, Pending>,
    incoming: HashMap<u32, Incoming>,
    /// Incoming requests with `partial` set, and the bytes they buffer.
    partial: usize,
    partial_bytes: usize,
    in_streams: HashMap<Key, InStream>,
    out_credit: HashMap<Key, Arc<Semaphore>>,
    closed: bool,
}

pub(crate) struct Queues {
    control: mpsc::UnboundedReceiver<Frame>,
    normal: mpsc::Receiver<Frame>,
    bulk: mpsc::Receiver<Frame>,
}

pub struct Conn {
    pub peer: NodeId,
    pub remote: SocketAddr,
    /// True if this node dialed the connection.
    pub outgoing: bool,
    next_id: AtomicU32,
    state: Mutex<State>,
    control: mpsc::UnboundedSender<Frame>,
    normal: mpsc::Sender<Frame>,
    bulk: mpsc::Sender<Frame>,
    close: Notify,
    /// Our multi-frame requests being sent: one permit each ([`SEND_PARTIAL_MESSAGES`]).
    send_partial: Arc<Semaphore>,
    /// Frames of our multi-frame requests being sent ([`SEND_PARTIAL_BYTES`] / [`MAX_FRAME`] permits).
    send_partial_frames: Arc<Semaphore>,
    /// Our requests with an attached stream in flight ([`SEND_STREAMS`]).
    send_streams: Arc<Semaphore>,
    limits: Limits,
}

impl Conn {
    pub(crate) fn new(peer: NodeId, remote: SocketAddr, outgoing: bool) -> (Arc<Conn>, Queues) {
        Self::with_limits(peer, remote, outgoing, Limits::default())
    }

    pub(crate) fn with_limits(
        peer: NodeId,
        remote: SocketAddr,
        outgoing: bool,
        limits: Limits,
    ) -> (Arc<Conn>, Queues) {
        let (control, crx) = mpsc::unbounded_channel();
        let (normal, nrx) = mpsc::channel(QUEUE_FRAMES);
        let (bulk, brx) = mpsc::channel(QUEUE_FRAMES);
        let conn = Conn {
            peer,
            remote,
            outgoing,
            next_id: AtomicU32::new(1),
            state: Mutex::new(State::default()),
            control,
            normal,
            bulk,
            close: Notify::new(),
            send_partial: Arc::new(Semaphore::new(SEND_PARTIAL_MESSAGES)),
            send_partial_frames: Arc::new(Semaphore::new(SEND_PARTIAL_BYTES / MAX_FRAME)),
            send_streams: Arc::new(Semaphore::new(SEND_STREAMS)),
            limits,
        };
        (
            Arc::new(conn),
            Queues {
                control: crx,
                normal: nrx,
                bulk: brx,
            },
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock would be a bug in this file; keep serving rather than poisoning.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Shut the connection down: it takes no new call from now on, and in-flight calls fail with
    /// `Disconnected` once it has stopped.
    pub fn close(&self) {
        self.lock().closed = true;
        self.close.notify_one();
    }

    /// Number of requests this node is waiting on, and serving, on this connection.
    pub fn in_flight(&self) -> (usize, usize) {
        let st = self.lock();
        (st.pending.len(), st.incoming.len())
    }

    /// Run the connection until it fails or is closed; returns why it ended.
    pub(crate) async fn run<S>(
        self: &Arc<Self>,
        stream: S,
        queues: Queues,
        dispatch: Arc<dyn Dispatch>,
    ) -> NetError
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (r, w) = tokio::io::split(stream);
        let err = tokio::select! {
            e = self.write_loop(w, queues) => e,
            e = self.read_loop(r, dispatch) => e,
            _ = self.close.notified() => NetError::Disconnected,
        };
        self.teardown();
        err
    }

    fn teardown(&self) {
        let mut st = self.lock();
        st.closed = true;
        for (_, p) in st.pending.drain() {
            let _ = p.tx.send(Err(NetError::Disconnected));
        }
        for (_, inc) in st.incoming.drain() {
            if let Some(t) = inc.task {
                t.abort();
            }
        }
        for (_, s) in st.in_streams.drain() {
            let _ = s.tx.send(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "connection to peer closed",
            )));
        }
        for (_, s) in st.out_credit.drain() {
            s.close();
        }
    }

    async fn write_loop<W: AsyncWrite + Unpin>(&self, mut w: W, mut q: Queues) -> NetError {
        // Frames ready at the same time go out in one vectored write: rustls copies each payload once
        // into its records, with no intermediate batch buffer.
        let mut batch = FrameBatch::default();
        loop {
            let first = tokio::select! {
                biased;
                f = q.control.recv() => f,
                f = q.normal.recv() => f,
                f = q.bulk.recv() => f,
            };
            let Some(first) = first else {
                return NetError::Disconnected;
            };
            batch.push(first);
            while batch.remaining() < WRITE_BATCH {
                let next = q
                    .control
                    .try_recv()
                    .or_else(|_| q.normal.try_recv())
                    .or_else(|_| q.bulk.try_recv());
                match next {
                    Ok(f) => batch.push(f),
                    Err(_) => break,
                }
            }
            if let Err(e) = w.write_all_buf(&mut batch).await {
                return e.into();
            }
            if let Err(e) = w.flush().await {
                return e.into();
            }
        }
    }

    async fn read_loop<R: AsyncRead + Unpin>(
        self: &Arc<Self>,
        r: R,
        dispatch: Arc<dyn Dispatch>,
    ) -> NetError {
        // No BufReader: rustls already buffers decrypted bytes, so reading straight from it saves a copy.
        let mut r = r;
        let mut hdr = [0u8; HEADER_LEN];
        loop {
            if let Err(e) = r.read_exact(&mut hdr).await {
                return e.into();
            }
            let (len, id, kind, fl) = match parse_header(&hdr) {
                Ok(h) => h,
                Err(e) => return NetError::Protocol(e),
            };
            let mut payload = BytesMut::with_capacity(len);
            while payload.len() < len {
                let want = len - payload.len();
                match r.read_buf(&mut (&mut payload).limit(want)).await {
                    Ok(0) => return NetError::Disconnected,
                    Ok(_) => (),
                    Err(e) => return e.into(),
                }
            }
            if let Err(e) = self.handle_frame(id, kind, fl, payload.freeze(), &dispatch) {
                return e;
            }
        }
    }

    fn handle_frame(
        self: &Arc<Self>,
        id: u32,
        kind: Kind,
        fl: u8,
        payload: Bytes,
        dispatch: &Arc<dyn Dispatch>,
    ) -> Result<(), NetError> {
        let origin = if fl & flags::ORIGIN_SENDER != 0 {
            Origin::Theirs
        } else {
            Origin::Mine
        };
        let last = fl & flags::LAST != 0;
        match kind {
            Kind::Request => {
                let mut guard = self.lock();
                let st = &mut *guard;
                let inc = st.incoming.entry(id).or_insert_with(|| Incoming {
                    buf: BytesMut::new(),
                    task: None,
                    partial: false,
                });
                if inc.task.is_some() {
                    return Err(NetError::Protocol(format!(
                        "request id {id} reused while in flight"
                    )));
                }
                if inc.buf.len() + payload.len() > MAX_MESSAGE {
                    return Err(NetError::Protocol(format!(
                        "request larger than {MAX_MESSAGE} bytes"
                    )));
                }
                let lim = self.limits;
                if !last && !inc.partial {
                    if st.partial >= lim.partial_messages {
                        return Err(NetError::Protocol(format!(
                            "more than {} incomplete requests at once",
                            lim.partial_messages
                        )));
                    }
                    inc.partial = true;
                    st.partial += 1;
                }
                if inc.partial {
                    if st.partial_bytes + payload.len() > lim.partial_bytes {
                        return Err(NetError::Protocol(format!(
                            "more than {} bytes of incomplete requests at once",
                            lim.partial_bytes
                        )));
                    }
                    st.partial_bytes += payload.len();
                }
                inc.buf.extend_from_slice(&payload);
                if !last {
                    return Ok(());
                }
                if inc.partial {
                    inc.partial = false;
                    st.partial -= 1;
                    st.partial_bytes -= inc.buf.len();
                }
                let msg = std::mem::take(&mut inc.buf).freeze();
                let stream = if fl & flags::HAS_STREAM != 0 {
                    let open = st
                        .in_streams
                        .keys()
                        .filter(|(o, _)| *o == Origin::Theirs)
                        .count();
                    if open >= lim.incoming_streams {
                        return Err(NetError::Protocol(format!(
                            "more than {} request streams open at once",
                            lim.incoming_streams
                        )));
                    }
                    Some(self.open_in_stream(st, (Origin::Theirs, id)))
                } else {
                    None
                };
                drop(guard);
                let prio = Prio::from_flags(fl);
                let (endpoint, body) = decode_request(msg)?;
                let fut = dispatch.dispatch(self.peer, &endpoint, body, stream);
                let conn = self.clone();
                let task = tokio::spawn(async move {
                    let reply = fut.await;
                    conn.send_reply(id, prio, reply).await;
                    conn.lock().incoming.remove(&id);
                });
                if let Some(inc) = self.lock().incoming.get_mut(&id) {
                    inc.task = Some(task.abort_handle());
                }
            }
            Kind::Response => {
                let mut st = self.lock();
                let Some(p) = st.pending.get_mut(&id) else {
                    // The caller gave up; refuse any stream that follows.
                    if last && fl & flags::HAS_STREAM != 0 {
                        let _ = self.control.send(Frame {
                            id,
                            kind: Kind::StreamCancel,
                            flags: 0,
                            payload: Bytes::new(),
                        });
                    }
                    return Ok(());
                };
                if p.buf.len() + payload.len() > MAX_MESSAGE {
                    return Err(NetError::Protocol(format!(
                        "response larger than {MAX_MESSAGE} bytes"
                    )));
                }
                p.buf.extend_from_slice(&payload);
                if !last {
                    return Ok(());
                }
                let p = st.pending.remove(&id).expect("pending entry checked above");
                let reply = decode_reply(p.buf.freeze()).map(|body| {
                    let stream = (fl & flags::HAS_STREAM != 0)
                        .then(|| self.open_in_stream(&mut st, (Origin::Mine, id)));
                    (body, stream)
                });
                drop(st);
                let _ = p.tx.send(reply);
            }
            Kind::RequestStream | Kind::ResponseStream => {
                let key = (origin, id);
                let mut st = self.lock();
                if let Some(s) = st.in_streams.get(&key) {
                    if fl & flags::ERROR != 0 {
                        let msg = String::from_utf8_lossy(&payload).into_owned();
                        let _ = s.tx.send(Err(io::Error::other(msg)));
                    } else if !payload.is_empty() {
                        let n = payload.len();
                        if s.outstanding.fetch_add(n, Ordering::AcqRel) + n > STREAM_WINDOW {
                            return Err(NetError::Protocol(format!(
                                "stream data beyond the {STREAM_WINDOW}-byte flow-control window"
                            )));
                        }
                        let _ = s.tx.send(Ok(payload));
                    }
                    if last || fl & flags::ERROR != 0 {
                        st.in_streams.remove(&key);
                    }
                }
            }
            Kind::Window => {
                let n = payload
                    .as_ref()
                    .try_into()
                    .map(u32::from_be_bytes)
                    .map_err(|_| NetError::Protocol("bad window frame".into()))?;
                if let Some(s) = self.lock().out_credit.get(&(origin, id)) {
                    s.add_permits(n as usize);
                }
            }
            Kind::StreamCancel => {
                if let Some(s) = self.lock().out_credit.remove(&(origin, id)) {
                    s.close();
                }
            }
            Kind::Cancel => {
                let mut st = self.lock();
                if let Some(inc) = st.incoming.remove(&id) {
                    if inc.partial {
                        st.partial -= 1;
                        st.partial_bytes -= inc.buf.len();
                    }
                    if let Some(t) = inc.task {
                        t.abort();
                    }
                }
                st.in_streams.remove(&(Origin::Theirs, id));
                if let Some(s) = st.out_credit.remove(&(Origin::Theirs, id)) {
                    s.close();
                }
            }
        }
        Ok(())
    }

    fn open_in_stream(self: &Arc<Self>, st: &mut State, key: Key) -> ByteStream {
        let (tx, rx) = mpsc::unbounded_channel();
        let outstanding = Arc::new(AtomicUsize::new(0));
        st.in_streams.insert(
            key,
            InStream {
                tx,
                outstanding: outstanding.clone(),
            },
        );
        Box::pin(RecvStream {
            rx,
            conn: Arc::downgrade(self),
            key,
            unacked: 0,
            outstanding,
            finished: false,
        })
    }

    async fn send_frame(&self, prio: Prio, f: Frame) -> Result<(), NetError> {
        let r = match prio {
            Prio::Control => self.control.send(f).map_err(|_| ()),
            Prio::Normal => self.normal.send(f).await.map_err(|_| ()),
            Prio::Bulk => self.bulk.send(f).await.map_err(|_| ()),
        };
        r.map_err(|_| NetError::Disconnected)
    }

    async fn send_message(
        &self,
        kind: Kind,
        id: u32,
        fl: u8,
        prio: Prio,
        msg: Bytes,
    ) -> Result<(), NetError> {
        let parts = split_message(msg);
        let n = parts.len();
        for (i, payload) in parts.into_iter().enumerate() {
            let last = if i + 1 == n { flags::LAST } else { 0 };
            let f = if i + 1 == n {
                fl
            } else {
                fl & !flags::HAS_STREAM
            };
            self.send_frame(
                prio,
                Frame {
                    id,
                    kind,
                    flags: f | last,
                    payload,
                },
            )
            .await?;
        }
        Ok(())
    }

    async fn send_stream(
        &self,
        kind: Kind,
        key: Key,
        prio: Prio,
        credit: Arc<Semaphore>,
        mut stream: ByteStream,
    ) {
        let fl = key.0.flag() | prio.flags();
        let id = key.1;
        while let Some(item) = stream.next().await {
            match item {
                Ok(mut bytes) => {
                    while !bytes.is_empty() {
                        let chunk = bytes.split_to(bytes.len().min(MAX_FRAME));
                        match credit.acquire_many(chunk.len() as u32).await {
                            Ok(p) => p.forget(),
                            Err(_) => return, // receiver went away or connection closed
                        }
                        if self
                            .send_frame(
                                prio,
                                Frame {
                                    id,
                                    kind,
                                    flags: fl,
                                    payload: chunk,
                                },
                            )
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
                Err(e) => {
                    let payload = Bytes::from(e.to_string());
                    let f = Frame {
                        id,
                        kind,
                        flags: fl | flags::ERROR | flags::LAST,
                        payload,
                    };
                    let _ = self.send_frame(prio, f).await;
                    self.lock().out_credit.remove(&key);
                    return;
                }
            }
        }
        let _ = self
            .send_frame(
                prio,
                Frame {
                    id,
                    kind,
                    flags: fl | flags::LAST,
                    payload: Bytes::new(),
                },
            )
            .await;
        self.lock().out_credit.remove(&key);
    }

    async fn send_reply(&self, id: u32, prio: Prio, reply: Reply) {
        let (msg, stream) = match reply {
            Ok((body, stream)) => {
                let mut m = BytesMut::with_capacity(body.len() + 1);
                m.extend_from_slice(&[0]);
                m.extend_from_slice(&body);
                (m.freeze(), stream)
            }
            Err(e) => {
                let mut m = BytesMut::new();
                m.extend_from_slice(&[1]);
                m.extend_from_slice(e.to_string().as_bytes());
                (m.freeze(), None)
            }
        };
        let key = (Origin::Theirs, id);
        let credit = stream.as_ref().map(|_| {
            let s = Arc::new(Semaphore::new(STREAM_WINDOW));
            self.lock().out_credit.insert(key, s.clone());
            s
        });
        let fl = prio.flags()
            | if stream.is_some() {
                flags::HAS_STREAM
            } else {
                0
            };
        if self
            .send_message(Kind::Response, id, fl, prio, msg)
            .await
            .is_err()
        {
            return;
        }
        if let (Some(stream), Some(credit)) = (stream, credit) {
            self.send_stream(Kind::ResponseStream, key, prio, credit, stream)
                .await;
        }
    }

    /// For a request of `len` bytes that takes several frames: permits that keep our incomplete requests
    /// within [`SEND_PARTIAL_MESSAGES`] and [`SEND_PARTIAL_BYTES`] until its last frame is queued.
    async fn partial_send_permits(
        &self,
        len: usize,
    ) -> Result<Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)>, NetError> {
        if len <= MAX_FRAME {
            return Ok(None);
        }
        let frames = len.div_ceil(MAX_FRAME).min(SEND_PARTIAL_BYTES / MAX_FRAME) as u32;
        let one = self
            .send_partial
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| NetError::Disconnected)?;
        let bytes = self
            .send_partial_frames
            .clone()
            .acquire_many_owned(frames)
            .await
            .map_err(|_| NetError::Disconnected)?;
        Ok(Some((one, bytes)))
    }

    /// Send a request and wait for its reply. Dropping the returned future cancels the request remotely.
    pub(crate) async fn call(
        self: &Arc<Self>,
        endpoint: &str,
        body: Bytes,
        stream: Option<ByteStream>,
        prio: Prio,
    ) -> Reply {
        // Stay below the peer's caps: wait for our own permits instead of tripping them.
        let stream_permit = match &stream {
            Some(_) => Some(
                self.send_streams
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| NetError::Disconnected)?,
            ),
            None => None,
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let key = (Origin::Mine, id);
        let credit = {
            let mut st = self.lock();
            if st.closed {
                return Err(NetError::Disconnected);
            }
            st.pending.insert(
                id,
                Pending {
                    tx,
                    buf: BytesMut::new(),
                },
            );
            stream.as_ref().map(|_| {
                let s = Arc::new(Semaphore::new(STREAM_WINDOW));
                st.out_credit.insert(key, s.clone());
                s
            })
        };
        let mut guard = CallGuard {
            conn: self.clone(),
            id,
            stream_task: None,
            done: false,
        };
        let fl = key.0.flag()
            | prio.flags()
            | if stream.is_some() {
                flags::HAS_STREAM
            } else {
                0
            };
        let msg = encode_request(endpoint, &body);
        {
            let _partial = self.partial_send_permits(msg.len()).await?;
            self.send_message(Kind::Request, id, fl, prio, msg).await?;
        }
        if let (Some(stream), Some(credit)) = (stream, credit) {
            let conn = self.clone();
            let t = tokio::spawn(async move {
                conn.send_stream(Kind::RequestStream, key, prio, credit, stream)
                    .await;
                drop(stream_permit);
            });
            guard.stream_task = Some(t.abort_handle());
        }
        let reply = rx.await.unwrap_or(Err(NetError::Disconnected));
        guard.done = true;
        reply
    }
}

struct CallGuard {
    conn: Arc<Conn>,
    id: u32,
    stream_task: Option<AbortHandle>,
    done: bool,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Some(t) = &self.stream_task {
            t.abort();
        }
        let mut st = self.conn.lock();
        st.pending.remove(&self.id);
        if let Some(s) = st.out_credit.remove(&(Origin::Mine, self.id)) {
            s.close();
        }
        if !st.closed {
            let f = Frame {
                id: self.id,
                kind: Kind::Cancel,
                flags: flags::ORIGIN_SENDER,
                payload: Bytes::new(),
            };
            let _ = self.conn.control.send(f);
        }
    }
}

/// Receiving side of an attached stream; returns credit to the sender as it is consumed.
struct RecvStream {
    rx: mpsc::UnboundedReceiver<Result<Bytes, io::Error>>,
    conn: Weak<Conn>,
    key: Key,
    unacked: usize,
    /// Shared with the reader's [`InStream`]: credited back before each `Window` frame is sent.
    outstanding: Arc<AtomicUsize>,
    finished: bool,
}

impl Stream for RecvStream {
    type Item = Result<Bytes, io::Error>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(b))) => {
                self.unacked += b.len();
                if self.unacked >= STREAM_WINDOW / 4 {
                    // Before the credit leaves, so the reader never counts more than the sender may send.
                    self.outstanding.fetch_sub(self.unacked, Ordering::AcqRel);
                    if let Some(c) = self.conn.upgrade() {
                        let payload = Bytes::copy_from_slice(&(self.unacked as u32).to_be_bytes());
                        let f = Frame {
                            id: self.key.1,
                            kind: Kind::Window,
                            flags: self.key.0.flag(),
                            payload,
                        };
                        let _ = c.control.send(f);
                    }
                    self.unacked = 0;
                }
                Poll::Ready(Some(Ok(b)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.finished = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                self.finished = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for RecvStream {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Some(c) = self.conn.upgrade() {
            let mut st = c.lock();
            st.in_streams.remove(&self.key);
            if !st.closed {
                let f = Frame {
                    id: self.key.1,
                    kind: Kind::StreamCancel,
                    flags: self.key.0.flag(),
                    payload: Bytes::new(),
                };
                let _ = c.control.send(f);
            }
        }
    }
}

/// Frames queued for one vectored write: headers and payloads as `Bytes`, consumed as a `Buf`.
#[derive(Default)]
struct FrameBatch {
    parts: std::collections::VecDeque<Bytes>,
    len: usize,
}

impl FrameBatch {
    fn push(&mut self, f: Frame) {
        let mut h = BytesMut::with_capacity(HEADER_LEN);
        f.write_header(&mut h);
        self.len += HEADER_LEN + f.payload.len();
        self.parts.push_back(h.freeze());
        if !f.payload.is_empty() {
            self.parts.push_back(f.payload);
        }
    }
}

impl bytes::Buf for FrameBatch {
    fn remaining(&self) -> usize {
        self.len
    }
    fn chunk(&self) -> &[u8] {
        self.parts.front().map(|b| b.as_ref()).unwrap_or(&[])
    }
    fn chunks_vectored<'a>(&'a self, dst: &mut [io::IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, part) in dst.iter_mut().zip(self.parts.iter()) {
            *slot = io::IoSlice::new(part);
            n += 1;
        }
        n
    }
    fn advance(&mut self, mut cnt: usize) {
        self.len -= cnt;
        while cnt > 0 {
            let front = self.parts.front_mut().expect("advance within remaining");
            if cnt >= front.len() {
                cnt -= front.len();
                self.parts.pop_front();
            } else {
                front.advance(cnt);
                cnt = 0;
            }
        }
    }
}

fn encode_request(endpoint: &str, body: &[u8]) -> Bytes {
    let mut m = BytesMut::with_capacity(2 + endpoint.len() + body.len());
    m.extend_from_slice(&(endpoint.len() as u16).to_be_bytes());
    m.extend_from_slice(endpoint.as_bytes());
    m.extend_from_slice(body);
    m.freeze()
}

fn decode_request(mut msg: Bytes) -> Result<(String, Bytes), NetError> {
    let bad = || NetError::Protocol("malformed request header".into());
    if msg.len() < 2 {
        return Err(bad());
    }
    let n = u16::from_be_bytes([msg[0], msg[1]]) as usize;
    if msg.len() < 2 + n {
        return Err(bad());
    }
    let _ = msg.split_to(2);
    let name = msg.split_to(n);
    let name = String::from_utf8(name.to_vec()).map_err(|_| bad())?;
    Ok((name, msg))
}

fn decode_reply(mut msg: Bytes) -> Result<Bytes, NetError> {
    match msg.first() {
        Some(0) => Ok(msg.split_off(1)),
        Some(1) => Err(NetError::Remote(
            String::from_utf8_lossy(&msg[1..]).into_owned(),
        )),
        _ => Err(NetError::Protocol("malformed reply".into())),
    }
}
