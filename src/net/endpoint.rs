//! Typed endpoints: a message type, its response type, and a path such as `grenier/peering/ping/v1`.
//! The version suffix of the path is the wire contract of the message: a changed message gets a new path.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::NetError;
use super::conn::ByteStream;
use super::frame::Prio;
use super::identity::NodeId;
use super::netapp::NetApp;

/// A request message and the type of its answer, both MessagePack-encoded with named fields.
pub trait Message: Serialize + DeserializeOwned + Send + Sync + 'static {
    type Response: Serialize + DeserializeOwned + Send + Sync + 'static;
}

pub struct Endpoint<M: Message> {
    net: Arc<NetApp>,
    path: Arc<str>,
    _m: PhantomData<fn(M) -> M>,
}

impl<M: Message> Clone for Endpoint<M> {
    fn clone(&self) -> Self {
        Endpoint {
            net: self.net.clone(),
            path: self.path.clone(),
            _m: PhantomData,
        }
    }
}

impl<M: Message> Endpoint<M> {
    pub fn new(net: &Arc<NetApp>, path: &str) -> Endpoint<M> {
        Endpoint {
            net: net.clone(),
            path: path.into(),
            _m: PhantomData,
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// Install the handler for this endpoint (replacing any previous one).
    pub fn set_handler<F, Fut>(&self, f: F)
    where
        F: Fn(NodeId, M, Option<ByteStream>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(M::Response, Option<ByteStream>), NetError>> + Send + 'static,
    {
        let f = Arc::new(f);
        self.net.add_handler(
            &self.path,
            Arc::new(move |from, body: Bytes, stream| {
                let f = f.clone();
                Box::pin(async move {
                    let msg: M =
                        rmp_serde::from_slice(&body).map_err(|e| NetError::Codec(e.to_string()))?;
                    let (resp, s) = f(from, msg, stream).await?;
                    let bytes = rmp_serde::to_vec_named(&resp)
                        .map_err(|e| NetError::Codec(e.to_string()))?;
                    Ok((Bytes::from(bytes), s))
                })
            }),
        );
    }

    /// Install a handler without streams.
    pub fn set_simple_handler<F, Fut>(&self, f: F)
    where
        F: Fn(NodeId, M) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<M::Response, NetError>> + Send + 'static,
    {
        self.set_handler(move |from, msg, _stream| {
            let fut = f(from, msg);
            async move { Ok((fut.await?, None)) }
        });
    }

    pub async fn call(
        &self,
        to: &NodeId,
        msg: &M,
        prio: Prio,
        timeout: Duration,
    ) -> Result<M::Response, NetError> {
        Ok(self.call_streaming(to, msg, None, prio, timeout).await?.0)
    }

    /// Call with an optional attached stream; `timeout` bounds the wait for the response header, not the
    /// consumption of the response stream.
    pub async fn call_streaming(
        &self,
        to: &NodeId,
        msg: &M,
        stream: Option<ByteStream>,
        prio: Prio,
        timeout: Duration,
    ) -> Result<(M::Response, Option<ByteStream>), NetError> {
        let body = rmp_serde::to_vec_named(msg).map_err(|e| NetError::Codec(e.to_string()))?;
        let fut = self
            .net
            .call_raw(to, &self.path, Bytes::from(body), stream, prio);
        let (resp, s) = tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| NetError::Timeout)??;
        let resp = rmp_serde::from_slice(&resp).map_err(|e| NetError::Codec(e.to_string()))?;
        Ok((resp, s))
    }
}
