//! The HTTP/1.1 accept loop shared by the S3 and admin servers.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use hyper::body::{Body, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// Accept connections on `listener` until the returned task is aborted; each connection gets its own
/// task, `TCP_NODELAY`, and a read buffer (which bounds the request head) of `max_buf` bytes. Every
/// request goes to `handle`, which always produces a response (errors are responses too).
pub fn serve_http1<S, H, F, B>(
    listener: tokio::net::TcpListener,
    max_buf: usize,
    state: Arc<S>,
    handle: H,
) -> tokio::task::JoinHandle<()>
where
    S: Send + Sync + 'static,
    H: Fn(Arc<S>, Request<Incoming>) -> F + Send + Sync + Copy + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let state = state.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let fut = handle(state.clone(), req);
                    async move { Ok::<_, Infallible>(fut.await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .max_buf_size(max_buf)
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    })
}
