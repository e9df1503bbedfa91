//! The HTTP/1.1 front door shared by the S3 and admin servers: the accept loop, a cap on open
//! connections, and the timeouts that keep a client (authenticated or not) from pinning a connection,
//! its file descriptor and its buffers forever.
//!
//! Per listener ([`HttpLimits`], from the `[s3_api]` / `[admin]` / `[s3_web]` configuration keys):
//!
//! - **Connection cap** (`max_connections`): when that many connections are open, the loop stops
//!   accepting; new connections wait in the kernel's listen backlog (they cost no file descriptor of
//!   ours) and are accepted, in order, as open ones close. Stopping is better than accepting and
//!   closing at once: a legitimate client queued behind a flood of idle sockets is served as soon as the
//!   idle timeout frees a slot instead of being refused, and a flood costs no accept/close churn. A
//!   warning names the listener and the cap (at most once a minute, with how often it was hit since).
//! - **Idle timeout** (`idle_timeout_secs`): a connection with no request in progress and no byte of a
//!   new request received (freshly accepted, or between keep-alive requests) is closed after this long.
//! - **Header read timeout** (`header_read_timeout_secs`): once the first byte of a request head has
//!   arrived, the whole head must arrive within this time (slowloris: a byte every few seconds does not
//!   keep the connection). hyper runs with a timer and its own header timeout set to idle + header, a
//!   backstop that bounds the same wait from the moment it starts waiting for a head.
//! - **Body stall timeout** (`body_stall_timeout_secs`): while the handler waits for request body data,
//!   no data for this long fails the body read with [`BodyError::Stalled`] (the S3 layer answers
//!   `400 RequestTimeout`) and the response closes the connection. Time during which the handler does
//!   not read (its own backpressure) does not count.
//! - **Send stall timeout** (`send_stall_timeout_secs`): a write that the socket has not accepted for
//!   this long (the client stopped reading the response) fails and the connection is dropped.
//! - **Accept errors** (`EMFILE`, `ENFILE`, `ENOBUFS`, ...) are retried after a growing pause (10 ms
//!   doubling up to 1 s, reset by the next successful accept) instead of spinning a core, with a
//!   warning at most once a minute. Per-connection errors (`ECONNABORTED`, ...) are retried at once.
//!
//! - **Graceful shutdown** ([`Drain`], `shutdown_grace_secs`): on SIGTERM the listeners stop accepting,
//!   idle keep-alive connections close, and requests in progress run to their end (their connection
//!   closes after the response) while the rest of the node keeps working; after the grace period what
//!   is left is cut. A rolling restart thus fails no request already accepted.
//!
//! The timeouts are enforced by [`TimedIo`] (a wrapper around the TCP stream that knows, through a
//! per-connection state shared with the service, whether a request is in progress) and by
//! [`StallBody`] (a wrapper around the request body). Handlers receive a [`RequestBody`].

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::config::HttpListenerConfig;

/// Largest read from a connection's socket (hyper's read buffer): a request body arrives in chunks of
/// up to this size. Each connection's buffer grows towards it only while it reads that fast.
pub const BODY_READ_BUF: usize = 128 << 10;

/// Smallest default `max_connections` of a listener, whatever the open-file limit.
pub const MIN_DEFAULT_MAX_CONNECTIONS: usize = 16;
/// First pause after an accept error; doubled after each further error.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest pause between accept attempts after errors.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Shortest interval between two warnings of the same kind (cap reached, accept failing).
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The request body handlers receive.
pub type RequestBody = StallBody<Incoming>;

/// Limits of one HTTP listener. See the [module documentation](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Shown in log lines, e.g. `"S3 API"`.
    pub name: &'static str,
    /// The configuration section holding the keys, e.g. `"s3_api"` (named in the warnings).
    pub section: &'static str,
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_stall_timeout: Duration,
    pub send_stall_timeout: Duration,
}

impl HttpLimits {
    /// The limits configured in `[section]`, with `default_max_connections` when the file sets none.
    pub fn from_config(
        name: &'static str,
        section: &'static str,
        c: &HttpListenerConfig,
        default_max_connections: usize,
    ) -> HttpLimits {
        HttpLimits {
            name,
            section,
            max_connections: c.max_connections.unwrap_or(default_max_connections).max(1),
            header_read_timeout: Duration::from_secs(c.header_read_timeout_secs),
            idle_timeout: Duration::from_secs(c.idle_timeout_secs),
            body_stall_timeout: Duration::from_secs(c.body_stall_timeout_secs),
            send_stall_timeout: Duration::from_secs(c.send_stall_timeout_secs),
        }
    }
}

/// The default `max_connections` of a listener given the process's open-file limit: `nofile /
/// divisor`, at least [`MIN_DEFAULT_MAX_CONNECTIONS`] and at most `max`. The S3 listeners use divisor
/// 4 (at most 16384), the admin listener 16 (at most 1024), so that with every listener full at least
/// 7/16 of the descriptors remain for block files, RPC sockets and the database.
pub fn default_max_connections(nofile: u64, divisor: u64, max: usize) -> usize {
    let share = usize::try_from(nofile / divisor.max(1)).unwrap_or(usize::MAX);
    share.clamp(
        MIN_DEFAULT_MAX_CONNECTIONS,
        max.max(MIN_DEFAULT_MAX_CONNECTIONS),
    )
}

/// The graceful shutdown of a node's HTTP listeners: [`Drain::start`] makes every listener given this
/// handle stop accepting and every connection finish its request in progress and close;
/// [`Drain::wait_idle`] waits for them.
#[derive(Clone)]
pub struct Drain(Arc<DrainInner>);

struct DrainInner {
    started: tokio::sync::watch::Sender<bool>,
    open: AtomicUsize,
    idle: tokio::sync::Notify,
}

/// One open connection, counted by its [`Drain`] while it lives.
struct DrainGuard(Drain);

impl Drop for DrainGuard {
    fn drop(&mut self) {
        if self.0.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.0.idle.notify_waiters();
        }
    }
}

impl Default for Drain {
    fn default() -> Self {
        Drain::new()
    }
}

impl Drain {
    pub fn new() -> Drain {
        Drain(Arc::new(DrainInner {
            started: tokio::sync::watch::channel(false).0,
            open: AtomicUsize::new(0),
            idle: tokio::sync::Notify::new(),
        }))
    }

    /// Stop accepting, close idle connections, and close the others after their request in progress.
    pub fn start(&self) {
        self.0.started.send_replace(true);
    }

    /// Connections still open.
    pub fn open(&self) -> usize {
        self.0.open.load(Ordering::Acquire)
    }

    /// Wait until every connection has closed, at most `grace`; returns how many are still open.
    pub async fn wait_idle(&self, grace: Duration) -> usize {
        // A grace too long to add to the clock (a huge configured value) waits for the connections.
        let deadline = Instant::now().checked_add(grace);
        loop {
            let idle = self.0.idle.notified();
            let open = self.open();
            if open == 0 {
                return 0;
            }
            let Some(deadline) = deadline else {
                idle.await;
                continue;
            };
            tokio::select! {
                _ = idle => {}
                _ = tokio::time::sleep_until(deadline) => return self.open(),
            }
        }
    }

    fn enter(&self) -> DrainGuard {
        self.0.open.fetch_add(1, Ordering::AcqRel);
        DrainGuard(self.clone())
    }

    /// Resolves once the drain has started.
    async fn started(&self) {
        let mut rx = self.0.started.subscribe();
        // The sender lives in `self`: the wait cannot fail.
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// Accept connections on `listener` until the returned task is aborted or `drain` starts, at most
/// `limits.max_connections` open at once; each connection gets its own task, `TCP_NODELAY`, the
/// timeouts of `limits`, a request head of at most `max_buf` bytes, and reads of up to
/// [`BODY_READ_BUF`] bytes. Every
/// request goes to `handle`, which always produces a response (errors are responses too).
pub fn serve_http1<S, H, F, B>(
    listener: tokio::net::TcpListener,
    limits: HttpLimits,
    max_buf: usize,
    state: Arc<S>,
    handle: H,
    drain: Drain,
) -> tokio::task::JoinHandle<()>
where
    S: Send + Sync + 'static,
    H: Fn(Arc<S>, Request<RequestBody>) -> F + Send + Sync + Copy + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let local = listener
        .local_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    tracing::info!(
        "{} on {local}: at most {} connections; timeouts: header {:?}, idle {:?}, body stall {:?}, \
         send stall {:?}",
        limits.name,
        limits.max_connections,
        limits.header_read_timeout,
        limits.idle_timeout,
        limits.body_stall_timeout,
        limits.send_stall_timeout,
    );
    tokio::spawn(async move {
        let stop = drain.clone();
        // Dropping the loop drops the listener: new connections are refused.
        let accept = async move {
            let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
            let mut full_warning = RateLimit::new(WARN_EVERY);
            let mut error_warning = RateLimit::new(WARN_EVERY);
            let mut backoff = Backoff::default();
            loop {
                let permit = match slots.clone().try_acquire_owned() {
                    Ok(p) => p,
                    Err(_) => {
                        if let Some(more) = full_warning.check(Instant::now()) {
                            tracing::warn!(
                                "connection limit {} reached on {} {local}: new connections wait in the \
                                 listen backlog until open ones close (idle ones within {} s); if this is \
                                 legitimate load, raise [{}] max_connections{}",
                                limits.max_connections,
                                limits.name,
                                limits.idle_timeout.as_secs(),
                                limits.section,
                                repeated(more),
                            );
                        }
                        match slots.clone().acquire_owned().await {
                            Ok(p) => p,
                            Err(_) => return, // the semaphore is never closed
                        }
                    }
                };
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => {
                        backoff.reset();
                        c
                    }
                    Err(e) if is_connection_error(&e) => continue,
                    Err(e) => {
                        let pause = backoff.next_pause();
                        if let Some(more) = error_warning.check(Instant::now()) {
                            tracing::warn!(
                                "accepting a connection on {} {local} failed: {e}; retrying in {} ms \
                                 (for \"Too many open files\", raise the open-file limit or lower \
                                 [{}] max_connections){}",
                                limits.name,
                                pause.as_millis(),
                                limits.section,
                                repeated(more),
                            );
                        }
                        tokio::time::sleep(pause).await;
                        continue;
                    }
                };
                let (state, drain) = (state.clone(), drain.clone());
                tokio::spawn(async move {
                    let _slot = permit;
                    let _open = drain.enter();
                    if let Err(e) =
                        serve_connection(tcp, limits, max_buf, state, handle, &drain).await
                    {
                        tracing::debug!("{} connection from {peer} ended: {e}", limits.name);
                    }
                });
            }
        };
        tokio::select! {
            _ = stop.started() => tracing::info!("{}: shutting down, no new connections", limits.name),
            _ = accept => {}
        }
    })
}

fn repeated(more: u64) -> String {
    if more == 0 {
        String::new()
    } else {
        format!(" ({more} more times since the last warning)")
    }
}

/// Errors of one incoming connection (not of the listener): the next accept may well succeed.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

async fn serve_connection<S, H, F, B>(
    tcp: tokio::net::TcpStream,
    limits: HttpLimits,
    max_buf: usize,
    state: Arc<S>,
    handle: H,
    drain: &Drain,
) -> Result<(), hyper::Error>
where
    S: Send + Sync + 'static,
    H: Fn(Arc<S>, Request<RequestBody>) -> F + Send + Sync + Copy + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let _ = tcp.set_nodelay(true);
    let conn = ConnState::new(&limits);
    let io = TimedIo::new(tcp, conn.clone());
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let in_flight = InFlight::start(conn.clone());
        let req = req.map(|b| StallBody::new(b, limits.body_stall_timeout, conn.clone()));
        let fut = handle(state.clone(), req);
        let conn = conn.clone();
        async move {
            let mut resp = fut.await.map(|body| GuardedBody {
                inner: body,
                _in_flight: in_flight,
            });
            if conn.must_close() {
                resp.headers_mut().insert(
                    hyper::header::CONNECTION,
                    hyper::header::HeaderValue::from_static("close"),
                );
            }
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout + limits.header_read_timeout)
        // The request head stays bounded by `max_buf` (a larger one gets a 431); the connection's
        // read buffer may grow past it for the body, so that a large upload is read from the socket
        // in large reads (a 16 KiB buffer meant one read per 16 KiB, each handed on as its own chunk).
        .max_header_size(max_buf)
        .max_buf_size(max_buf.max(BODY_READ_BUF))
        .serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => return r,
        _ = drain.started() => {}
    }
    // The request in progress (if any) runs to its end, then the connection closes.
    conn.as_mut().graceful_shutdown();
    conn.await
}

// ---------------------------------------------------------------------------------------------
// Per-connection state
// ---------------------------------------------------------------------------------------------

/// What one connection's IO wrapper, service and bodies share.
struct ConnState {
    header_read_timeout: Duration,
    idle_timeout: Duration,
    send_stall_timeout: Duration,
    inner: Mutex<ConnInner>,
}

struct ConnInner {
    /// Requests whose response body hyper still holds.
    in_flight: usize,
    /// When the connection last became idle (accepted, or the last response done).
    idle_since: Instant,
    /// When the first byte of the next request head arrived, while idle.
    head_started: Option<Instant>,
    /// Set when a request body stalled: the response must close the connection.
    close: bool,
}

/// Why a read was given up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReadTimeout {
    Idle,
    Header,
}

impl ConnState {
    fn new(limits: &HttpLimits) -> Arc<ConnState> {
        Arc::new(ConnState {
            header_read_timeout: limits.header_read_timeout,
            idle_timeout: limits.idle_timeout,
            send_stall_timeout: limits.send_stall_timeout,
            inner: Mutex::new(ConnInner {
                in_flight: 0,
                idle_since: Instant::now(),
                head_started: None,
                close: false,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ConnInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes came in: while idle, they start a request head.
    fn on_bytes_read(&self) {
        let mut s = self.lock();
        if s.in_flight == 0 && s.head_started.is_none() {
            s.head_started = Some(Instant::now());
        }
    }

    /// When a pending read must give up, if it must: never while a request is in progress (its body
    /// has its own stall timeout, and the handler may take its time).
    fn read_deadline(&self) -> Option<(Instant, ReadTimeout)> {
        let s = self.lock();
        if s.in_flight > 0 {
            return None;
        }
        Some(match s.head_started {
            Some(t) => (t + self.header_read_timeout, ReadTimeout::Header),
            None => (s.idle_since + self.idle_timeout, ReadTimeout::Idle),
        })
    }

    fn request_started(&self) {
        let mut s = self.lock();
        s.in_flight += 1;
        s.head_started = None;
    }

    fn request_finished(&self) {
        let mut s = self.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0 {
            s.idle_since = Instant::now();
            s.head_started = None;
        }
    }

    fn close_after_response(&self) {
        self.lock().close = true;
    }

    fn must_close(&self) -> bool {
        self.lock().close
    }
}

/// Marks a request in progress from the moment hyper hands it to the service until hyper drops the
/// response body (it has been written out) or the request is abandoned.
struct InFlight(Arc<ConnState>);

impl InFlight {
    fn start(conn: Arc<ConnState>) -> InFlight {
        conn.request_started();
        InFlight(conn)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// A response body that keeps its request marked in progress while hyper holds it.
struct GuardedBody<B> {
    inner: B,
    _in_flight: InFlight,
}

impl<B: Body + Unpin> Body for GuardedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

// ---------------------------------------------------------------------------------------------
// A re-armable deadline
// ---------------------------------------------------------------------------------------------

/// A timer polled from `poll_*` methods, allocated once and re-armed in place.
#[derive(Default)]
struct Timer {
    sleep: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl Timer {
    /// Expire at `at` (re-armed if it was set for another instant).
    fn arm_at(&mut self, at: Instant) {
        match &mut self.sleep {
            Some(s) => {
                if !self.armed || s.deadline() != at {
                    s.as_mut().reset(at);
                }
            }
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(at))),
        }
        self.armed = true;
    }

    /// Expire `after` from now, unless already armed (then the earlier start counts).
    fn arm_once(&mut self, after: Duration) {
        if !self.armed {
            self.arm_at(Instant::now() + after);
        }
    }

    fn disarm(&mut self) {
        self.armed = false;
    }

    /// Whether the armed deadline has passed; otherwise the task is woken when it does.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        match &mut self.sleep {
            Some(s) if self.armed => {
                let expired = s.as_mut().poll(cx).is_ready();
                if expired {
                    self.armed = false;
                }
                expired
            }
            _ => false,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The stream wrapper
// ---------------------------------------------------------------------------------------------

/// A connection's socket with the idle, header and send-stall timeouts: a pending read fails once
/// the connection has been idle (or reading one request head) too long, a pending write fails once
/// the socket has accepted nothing for the send stall timeout.
pub struct TimedIo<T> {
    inner: T,
    conn: Arc<ConnState>,
    read_timer: Timer,
    write_timer: Timer,
}

impl<T> TimedIo<T> {
    fn new(inner: T, conn: Arc<ConnState>) -> TimedIo<T> {
        TimedIo {
            inner,
            conn,
            read_timer: Timer::default(),
            write_timer: Timer::default(),
        }
    }

    /// A write-side poll result with the send stall timeout applied.
    fn write_progress<R>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        if r.is_ready() {
            self.write_timer.disarm();
            return r;
        }
        let stall = self.conn.send_stall_timeout;
        self.write_timer.arm_once(stall);
        if self.write_timer.poll_expired(cx) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client read nothing of the response for {stall:?}"),
            )));
        }
        Poll::Pending
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TimedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if r.is_ok() && buf.filled().len() > before {
                    this.conn.on_bytes_read();
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                let Some((deadline, why)) = this.conn.read_deadline() else {
                    this.read_timer.disarm();
                    return Poll::Pending;
                };
                this.read_timer.arm_at(deadline);
                if !this.read_timer.poll_expired(cx) {
                    return Poll::Pending;
                }
                let msg = match why {
                    ReadTimeout::Idle => {
                        format!("idle for {:?} without a request", this.conn.idle_timeout)
                    }
                    ReadTimeout::Header => format!(
                        "request head not complete {:?} after its first byte",
                        this.conn.header_read_timeout
                    ),
                };
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, msg)))
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TimedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.write_progress(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.write_progress(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        this.write_progress(cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.write_progress(cx, r)
    }
}

// ---------------------------------------------------------------------------------------------
// The request body wrapper
// ---------------------------------------------------------------------------------------------

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The client sent no body data for the body stall timeout while it was awaited.
    #[error("the client sent no request body data for {0:?}")]
    Stalled(Duration),
    /// The connection failed or the body was malformed.
    #[error("{0}")]
    Http(Box<dyn std::error::Error + Send + Sync>),
}

impl BodyError {
    pub fn is_stall(&self) -> bool {
        matches!(self, BodyError::Stalled(_))
    }
}

/// A request body that fails with [`BodyError::Stalled`] when it is awaited for the stall timeout
/// without a frame arriving; the connection is then closed after the response.
pub struct StallBody<B> {
    inner: B,
    stall: Duration,
    timer: Timer,
    conn: Arc<ConnState>,
    stalled: bool,
}

impl<B> StallBody<B> {
    fn new(inner: B, stall: Duration, conn: Arc<ConnState>) -> StallBody<B> {
        StallBody {
            inner,
            stall,
            timer: Timer::default(),
            conn,
            stalled: false,
        }
    }
}

impl<B> Body for StallBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if this.stalled {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(f) => {
                this.timer.disarm();
                Poll::Ready(f.map(|r| r.map_err(|e| BodyError::Http(e.into()))))
            }
            Poll::Pending => {
                this.timer.arm_once(this.stall);
                if !this.timer.poll_expired(cx) {
                    return Poll::Pending;
                }
                this.stalled = true;
                this.conn.close_after_response();
                Poll::Ready(Some(Err(BodyError::Stalled(this.stall))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.stalled || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

// ---------------------------------------------------------------------------------------------
// Accept loop helpers
// ---------------------------------------------------------------------------------------------

/// Pauses between failed accepts: [`ACCEPT_BACKOFF_MIN`] doubling up to [`ACCEPT_BACKOFF_MAX`].
#[derive(Debug, Default)]
struct Backoff {
    last: Option<Duration>,
}

impl Backoff {
    fn next_pause(&mut self) -> Duration {
        let next = match self.last {
            None => ACCEPT_BACKOFF_MIN,
            Some(d) => (d * 2).min(ACCEPT_BACKOFF_MAX),
        };
        self.last = Some(next);
        next
    }

    fn reset(&mut self) {
        self.last = None;
    }
}

/// Lets a message through at most once per interval, counting the ones held back.
#[derive(Debug)]
struct RateLimit {
    every: Duration,
    last: Option<Instant>,
    held: u64,
}

impl RateLimit {
    fn new(every: Duration) -> RateLimit {
        RateLimit {
            every,
            last: None,
            held: 0,
        }
    }

    /// `Some(n)` when the message may be logged now, `n` being how many were held back since.
    fn check(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.saturating_duration_since(t) < self.every => {
                self.held += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Real time with short timeouts (tokio's paused clock needs its `test-util` feature, which would
    //! rebuild the whole dependency tree for tests); lower bounds are exact, upper bounds generous.

    use super::*;
    use futures::SinkExt;
    use http_body_util::BodyExt;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const MS: Duration = Duration::from_millis(1);
    /// How late a timer may fire on a loaded machine.
    const LATE: Duration = Duration::from_millis(1500);

    fn limits() -> HttpLimits {
        HttpLimits {
            name: "test",
            section: "test",
            max_connections: 4,
            header_read_timeout: 400 * MS,
            idle_timeout: 600 * MS,
            body_stall_timeout: 1000 * MS,
            send_stall_timeout: 1000 * MS,
        }
    }

    /// The server side of an in-memory connection, wrapped, and the client side.
    fn pair(
        buf: usize,
    ) -> (
        TimedIo<tokio::io::DuplexStream>,
        tokio::io::DuplexStream,
        Arc<ConnState>,
    ) {
        let (server, client) = tokio::io::duplex(buf);
        let conn = ConnState::new(&limits());
        (TimedIo::new(server, conn.clone()), client, conn)
    }

    fn is_timeout<T: std::fmt::Debug>(r: &io::Result<T>) -> bool {
        matches!(r, Err(e) if e.kind() == io::ErrorKind::TimedOut)
    }

    fn assert_between(elapsed: Duration, min: Duration) {
        assert!(
            elapsed >= min && elapsed <= min + LATE,
            "{elapsed:?}, expected {min:?}"
        );
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed_after_the_idle_timeout() {
        let (mut io, _client, _) = pair(1024);
        let t0 = Instant::now();
        let r = io.read(&mut [0; 16]).await;
        assert!(is_timeout(&r), "{r:?}");
        assert_between(t0.elapsed(), 600 * MS);
    }

    #[tokio::test]
    async fn a_slow_request_head_is_cut_at_the_header_timeout_from_its_first_byte() {
        let (mut io, mut client, _) = pair(1024);
        // Idle 300 ms (under the 600 ms idle timeout), then one byte every 100 ms: each byte is
        // progress, but the head is never complete.
        let t0 = Instant::now();
        let writer = tokio::spawn(async move {
            tokio::time::sleep(300 * MS).await;
            for _ in 0..100 {
                if client.write_all(b"G").await.is_err() {
                    return;
                }
                tokio::time::sleep(100 * MS).await;
            }
        });
        let mut got = 0;
        let r = loop {
            match io.read(&mut [0; 16]).await {
                Ok(n) if n > 0 => got += n,
                r => break r,
            }
        };
        assert!(is_timeout(&r), "{r:?}");
        // First byte at 300 ms, cut 400 ms later.
        assert_between(t0.elapsed(), 700 * MS);
        assert!(got >= 2, "{got}");
        writer.abort();
    }

    #[tokio::test]
    async fn no_read_timeout_while_a_request_is_in_progress() {
        let (mut io, _client, conn) = pair(1024);
        let guard = InFlight::start(conn.clone());
        // A handler may take long (and hyper may read to notice a closed connection meanwhile).
        let r = tokio::time::timeout(1500 * MS, io.read(&mut [0; 16])).await;
        assert!(r.is_err(), "the read ended: {r:?}");
        // Once the response is done, the idle timeout counts from then.
        drop(guard);
        let t0 = Instant::now();
        let r = io.read(&mut [0; 16]).await;
        assert!(is_timeout(&r), "{r:?}");
        assert_between(t0.elapsed(), 600 * MS);
        // Bytes of a next request while one is in progress (pipelining) start no head timer.
        let (_io, _client, conn) = pair(1024);
        let _g = InFlight::start(conn.clone());
        conn.on_bytes_read();
        assert_eq!(conn.read_deadline(), None);
    }

    #[tokio::test]
    async fn a_client_that_reads_nothing_fails_the_write_after_the_send_stall_timeout() {
        let (mut io, _client, _) = pair(64);
        assert_eq!(io.write(&[0; 64]).await.unwrap(), 64);
        let t0 = Instant::now();
        let r = io.write(&[0; 64]).await;
        assert!(is_timeout(&r), "{r:?}");
        assert_between(t0.elapsed(), 1000 * MS);
    }

    #[tokio::test]
    async fn a_slow_but_steady_reader_is_not_cut() {
        let (mut io, mut client, _) = pair(64);
        // 64 bytes every 200 ms: each pause is well under the 1 s send stall timeout.
        let reader = tokio::spawn(async move {
            let mut total = 0;
            let mut buf = [0; 64];
            loop {
                tokio::time::sleep(200 * MS).await;
                match client.read(&mut buf).await {
                    Ok(0) | Err(_) => return total,
                    Ok(n) => total += n,
                }
            }
        });
        io.write_all(&[1; 640]).await.unwrap();
        io.shutdown().await.unwrap();
        drop(io);
        assert_eq!(reader.await.unwrap(), 640);
    }

    type Chan = futures::channel::mpsc::Sender<Result<Frame<Bytes>, Infallible>>;
    type ChanBody = http_body_util::StreamBody<
        futures::channel::mpsc::Receiver<Result<Frame<Bytes>, Infallible>>,
    >;

    fn channel_body() -> (Chan, StallBody<ChanBody>, Arc<ConnState>) {
        let (tx, rx) = futures::channel::mpsc::channel(4);
        let conn = ConnState::new(&limits());
        let body = StallBody::new(
            http_body_util::StreamBody::new(rx),
            limits().body_stall_timeout,
            conn.clone(),
        );
        (tx, body, conn)
    }

    #[tokio::test]
    async fn a_stalled_body_fails_after_the_stall_timeout_and_closes_the_connection() {
        let (mut tx, mut body, conn) = channel_body();
        let t0 = Instant::now();
        let feeder = tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(200 * MS).await;
                tx.send(Ok(Frame::data(Bytes::from_static(b"abc"))))
                    .await
                    .unwrap();
            }
            // Then nothing, the connection kept open.
            std::future::pending::<()>().await;
        });
        let mut got = Vec::new();
        let e = loop {
            match body.frame().await {
                Some(Ok(f)) => got.extend_from_slice(&f.into_data().unwrap()),
                Some(Err(e)) => break e,
                None => panic!("the body ended"),
            }
        };
        assert!(e.is_stall(), "{e}");
        assert_eq!(e.to_string(), "the client sent no request body data for 1s");
        // Frames every 200 ms (under 1 s) kept it going; the last at 600 ms, the error 1 s later.
        assert_eq!(got, b"abcabcabc");
        assert_between(t0.elapsed(), 1600 * MS);
        assert!(conn.must_close());
        assert!(body.frame().await.is_none());
        assert!(body.is_end_stream());
        feeder.abort();
    }

    #[tokio::test]
    async fn a_body_not_awaited_does_not_stall() {
        let (mut tx, mut body, conn) = channel_body();
        tx.send(Ok(Frame::data(Bytes::from_static(b"a"))))
            .await
            .unwrap();
        // The handler is busy (its own backpressure) for longer than the stall timeout.
        tokio::time::sleep(1500 * MS).await;
        assert!(body.frame().await.unwrap().is_ok());
        tx.send(Ok(Frame::data(Bytes::from_static(b"b"))))
            .await
            .unwrap();
        drop(tx);
        assert!(body.frame().await.unwrap().is_ok());
        assert!(body.frame().await.is_none());
        assert!(!conn.must_close());
    }

    #[test]
    fn accept_backoff_grows_to_a_cap_and_resets() {
        let mut b = Backoff::default();
        let ms: Vec<u128> = (0..10).map(|_| b.next_pause().as_millis()).collect();
        assert_eq!(ms, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_pause(), 10 * MS);
    }

    #[test]
    fn warnings_are_rate_limited() {
        let mut r = RateLimit::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        assert_eq!(r.check(t0), Some(0));
        assert_eq!(r.check(at(1)), None);
        assert_eq!(r.check(at(59)), None);
        assert_eq!(r.check(at(60)), Some(2));
        assert_eq!(r.check(at(61)), None);
        assert_eq!(r.check(at(200)), Some(1));
    }

    #[test]
    fn default_connection_caps() {
        assert_eq!(default_max_connections(1024, 4, 16384), 256);
        assert_eq!(default_max_connections(1024, 16, 1024), 64);
        assert_eq!(default_max_connections(1 << 20, 4, 16384), 16384);
        assert_eq!(default_max_connections(1 << 20, 16, 1024), 1024);
        assert_eq!(
            default_max_connections(20, 4, 16384),
            MIN_DEFAULT_MAX_CONNECTIONS
        );
        assert_eq!(default_max_connections(u64::MAX, 4, 16384), 16384);
    }

    #[test]
    fn limits_from_the_configuration() {
        let c = HttpListenerConfig {
            max_connections: None,
            header_read_timeout_secs: 1,
            idle_timeout_secs: 2,
            body_stall_timeout_secs: 3,
            send_stall_timeout_secs: 4,
        };
        let l = HttpLimits::from_config("S3 API", "s3_api", &c, 99);
        assert_eq!(l.max_connections, 99);
        assert_eq!(l.header_read_timeout, Duration::from_secs(1));
        assert_eq!(l.idle_timeout, Duration::from_secs(2));
        assert_eq!(l.body_stall_timeout, Duration::from_secs(3));
        assert_eq!(l.send_stall_timeout, Duration::from_secs(4));
        let c = HttpListenerConfig {
            max_connections: Some(7),
            ..c
        };
        assert_eq!(
            HttpLimits::from_config("S3 API", "s3_api", &c, 99).max_connections,
            7
        );
    }

    async fn hello(_: Arc<()>, req: Request<RequestBody>) -> Response<http_body_util::Full<Bytes>> {
        // Echo the body's length, or the error reading it.
        let text = match req.into_body().collect().await {
            Ok(b) => format!("got {}", b.to_bytes().len()),
            Err(e) => format!("error: {e}"),
        };
        Response::new(http_body_util::Full::new(Bytes::from(text)))
    }

    async fn server(limits: HttpLimits) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        (
            addr,
            serve_http1(l, limits, 8192, Arc::new(()), hello, Drain::new()),
        )
    }

    async fn read_all(s: &mut tokio::net::TcpStream) -> String {
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    /// SIGTERM's drain: a request in progress (its body half sent) still gets its answer, an idle
    /// keep-alive connection is closed, new connections are refused, and `wait_idle` returns once the
    /// last connection is gone.
    #[tokio::test]
    async fn a_drain_finishes_requests_in_progress_and_takes_no_new_connection() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let drain = Drain::new();
        let task = serve_http1(l, limits(), 8192, Arc::new(()), hello, drain.clone());
        let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut busy = tokio::net::TcpStream::connect(addr).await.unwrap();
        busy.write_all(b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabc")
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while drain.open() < 2 {
            assert!(Instant::now() < deadline, "connections never counted");
            tokio::time::sleep(10 * MS).await;
        }
        tokio::time::sleep(50 * MS).await;
        drain.start();
        // The idle connection is closed (EOF, no response).
        assert_eq!(read_all(&mut idle).await, "");
        // No new connection: the listener is gone.
        let deadline = Instant::now() + Duration::from_secs(5);
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            assert!(Instant::now() < deadline, "still accepting");
            tokio::time::sleep(10 * MS).await;
        }
        // The request in progress completes, and its connection closes after the response.
        busy.write_all(b"def").await.unwrap();
        let resp = read_all(&mut busy).await;
        assert!(
            resp.starts_with("HTTP/1.1 200") && resp.ends_with("got 6"),
            "{resp}"
        );
        assert_eq!(drain.wait_idle(Duration::from_secs(5)).await, 0);
        // A grace too long for the clock does not panic.
        assert_eq!(drain.wait_idle(Duration::from_secs(u64::MAX)).await, 0);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn at_the_cap_new_connections_wait_until_one_closes() {
        let limits = HttpLimits {
            max_connections: 1,
            ..limits()
        };
        let (addr, task) = server(limits).await;
        let t0 = Instant::now();
        let _idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        // Give the loop the idle connection first (the kernel queues in order).
        tokio::time::sleep(50 * MS).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let resp = read_all(&mut s).await;
        assert!(
            resp.starts_with("HTTP/1.1 200") && resp.ends_with("got 0"),
            "{resp}"
        );
        // Served once the idle connection was closed by its timeout, not before.
        assert_between(t0.elapsed(), 600 * MS);
        task.abort();
    }

    #[tokio::test]
    async fn keep_alive_then_idle_close_and_a_stalled_body_closes_the_connection() {
        let (addr, task) = server(limits()).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
            .await
            .unwrap();
        let mut buf = vec![0; 4096];
        let n = s.read(&mut buf).await.unwrap();
        let first = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(
            first.starts_with("HTTP/1.1 200") && first.ends_with("got 3"),
            "{first}"
        );
        // The connection stays open between requests, then is closed after the idle timeout.
        let t0 = Instant::now();
        assert!(read_all(&mut s).await.is_empty());
        assert_between(t0.elapsed(), 600 * MS);

        // A body that stops: the handler sees the stall, and its response closes the connection.
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
            .await
            .unwrap();
        let t0 = Instant::now();
        let resp = read_all(&mut s).await;
        assert!(
            resp.ends_with("error: the client sent no request body data for 1s"),
            "{resp}"
        );
        assert!(
            resp.to_ascii_lowercase().contains("connection: close"),
            "{resp}"
        );
        assert_between(t0.elapsed(), 1000 * MS);
        task.abort();
    }
}
