//! The RPC mesh: authenticated, encrypted, multiplexed connections between every pair of nodes.
//!
//! Key types: [`NodeKey`]/[`NodeId`] (identity), [`NetApp`] (connections and request routing),
//! [`Endpoint`] (typed request/response with optional attached byte streams), [`peering::Peering`]
//! (who to connect to, pings, RTTs, peer exchange). Why our own layer and not netapp: see `doc/rpc.md`.
//!
//! **Invariant:** `net` knows nothing about layouts, tables, blocks or S3; it moves messages between
//! node ids.

pub mod conn;
pub mod endpoint;
pub mod frame;
pub mod identity;
pub mod netapp;
pub mod peering;
pub mod tls;

use std::net::SocketAddr;

pub use conn::ByteStream;
pub use endpoint::{Endpoint, Message};
pub use frame::Prio;
pub use identity::{NodeId, NodeKey};
pub use netapp::{NetApp, NetEvent};

/// Errors of the RPC layer.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("node {0} is not connected")]
    NotConnected(String),
    #[error("connection to peer closed")]
    Disconnected,
    #[error("request timed out")]
    Timeout,
    #[error("no handler for endpoint {0} on the peer (different Grenier release?)")]
    NoHandler(String),
    #[error("{0}")]
    Remote(String),
    #[error("message encoding: {0}")]
    Codec(String),
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("node identity: {0}")]
    Identity(String),
    #[error("cannot resolve address {0}")]
    Resolve(String),
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

#[cfg(test)]
mod tests;
