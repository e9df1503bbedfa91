//! The block manager: writes blocks to their replicas, reads them from the nearest one, and answers the
//! other nodes' block requests.
//!
//! # Memory budget (`block_ram_buffer_max`)
//! Every block byte a node holds in memory for a request is accounted in one budget of
//! `block_ram_buffer_max` bytes, split into three pools so that no wait can close a cycle:
//!
//! | pool   | share | held by                                                                   |
//! |--------|-------|---------------------------------------------------------------------------|
//! | write  | 3/8   | a block being received from a client, hashed, compressed, sent to replicas |
//! | read   | 1/2   | a block being fetched for a GET or a copy, read ahead, waiting for the client |
//! | serve  | 1/8   | a block read from disk to answer another node's `Get`                     |
//!
//! (each pool at least [`MIN_POOL`]). A request that finds its pool empty waits: a PUT stops reading
//! its socket, a GET stops reading ahead and sends nothing more until its turn. Permits are taken one
//! block at a time, in order, and released as soon as the bytes leave memory (a GET's block when hyper
//! has written its last byte to the socket: the permit rides inside the [`Bytes`], see [`held`]).
//! Why three pools: a copy (UploadPartCopy) holds a write permit for the block it is filling while it
//! waits for a read permit, and a GET holds a read permit while it waits for another node's serve
//! permit; read permits never wait for write permits and serve permits never wait for anything, so no
//! set of requests can hold the whole of a pool while waiting for it (the semaphores are FIFO, so
//! every waiter is eventually served once the holders' clients read or their replicas answer).
//!
//! Back of the envelope, per node: RSS ≈ base (metadata db cache, runtime, ~30–60 MiB) +
//! `block_ram_buffer_max` (+ up to one more block per compression or decompression in progress,
//! at most one per blocking thread) + per HTTP connection up to ~640 KiB while it uploads (hyper's
//! 128 KiB read buffer, up to 4 such chunks in the body hashing queue) + per RPC connection its frame
//! buffers. A slow client cannot make the node buffer more: it
//! pins at most its pool share until the HTTP stall timeouts close it.
//!
//! # Write path (`put_block`)
//! The caller reserves the block in the write pool before it reads the block's bytes from the client,
//! and hashes the block (BLAKE2b) on its own thread. The manager compresses the block once (zstd,
//! kept only if it saves space), and sends the same bytes to every replica of the block's partition at
//! once, as an attached RPC stream at bulk priority (metadata traffic overtakes it frame by frame). It
//! returns after a write quorum; the other copies complete in the background and hold the block's
//! reservation until they do.
//!
//! A replica receiving a block (`BlockRpc::Put`) decompresses and hashes it before storing it: a block
//! that does not match its hash is answered with an error and never written. The writing node's own
//! copy, when it is one of the replicas, is written directly (no RPC to itself, no second hash: the
//! caller hashed these very bytes in this process).
//!
//! # Read path (`get_block`)
//! The caller reserves the block in the read pool first ([`BlockManager::reserve_read`]). Local copy
//! first (no network). Otherwise replicas nearest first (same zone, then by measured RTT):
//! the first is asked; if it fails, or has not started answering within a deadline of a few times its
//! RTT (bounded to [`HEDGE_MIN`]..[`HEDGE_MAX`]), the next one is asked too, and the first complete,
//! verified answer wins. A frozen replica therefore costs at most [`HEDGE_MAX`]; a replica that stops in
//! the middle of a transfer costs at most [`STALL_TIMEOUT`]. Every read is verified against the hash; a
//! corrupt local copy is moved aside and queued for refetch, and the read goes on with a replica.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::BlockError;
use super::data::DataBlock;
use super::rc::BlockRc;
use super::resync_queue::ResyncQueue;
use super::store::BlockStore;
use crate::layout::System;
use crate::net::{ByteStream, Endpoint, Message, NetError, NodeId, Prio};
use crate::table::quorum::write_quorum_with;
use crate::table::{ShardedReplication, TableReplication};
use crate::util::config::MAX_BLOCK_SIZE;
use crate::util::hash::Hash;
use crate::util::time::now_msec;

/// Shortest wait for a replica before also asking the next one.
pub const HEDGE_MIN: Duration = Duration::from_millis(50);
/// Longest wait for a replica before also asking the next one.
pub const HEDGE_MAX: Duration = Duration::from_millis(1000);
/// A transfer that makes no progress for this long is abandoned for another replica.
pub const STALL_TIMEOUT: Duration = Duration::from_millis(2000);
/// Bound on one block write to a replica (a 64 MiB block over a slow link).
const PUT_TIMEOUT: Duration = Duration::from_secs(300);
/// Bound on the wait for a replica's first answer to a read, before hedging makes it moot.
const GET_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on small queries (does a node need a block?).
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);
/// Smallest size of each of the three memory pools.
pub const MIN_POOL: u64 = 1 << 20;

/// A reservation of block memory; released when dropped.
pub type BufferPermit = OwnedSemaphorePermit;

/// One pool of the memory budget, counted in KiB.
struct Pool {
    sem: Arc<Semaphore>,
    kib: u32,
}

impl Pool {
    fn new(bytes: u64) -> Pool {
        let kib = (bytes.max(MIN_POOL) / 1024).min(u32::MAX as u64 / 4) as u32;
        Pool {
            sem: Arc::new(Semaphore::new(kib as usize)),
            kib,
        }
    }

    /// Reserve `len` bytes (waits while the pool is full; FIFO). A block larger than the whole pool
    /// takes all of it.
    async fn reserve(&self, len: usize) -> BufferPermit {
        let kib = (len.div_ceil(1024).min(u32::MAX as usize) as u32).clamp(1, self.kib);
        self.sem
            .clone()
            .acquire_many_owned(kib)
            .await
            .expect("the block buffer semaphore is never closed")
    }

    fn used(&self) -> u64 {
        (self.kib as u64).saturating_sub(self.sem.available_permits() as u64) * 1024
    }
}

/// Block bytes that hold their memory reservation: the permit is released when the last clone or
/// slice of the returned [`Bytes`] is dropped (e.g. once hyper has written them to the socket).
pub fn held(bytes: Bytes, permit: BufferPermit) -> Bytes {
    struct Held(Bytes, #[allow(dead_code)] BufferPermit);
    impl AsRef<[u8]> for Held {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }
    Bytes::from_owner(Held(bytes, permit))
}

/// Block RPC (`grenier/block/v1`). Block bytes travel in the attached stream.
#[derive(Debug, Serialize, Deserialize)]
pub enum BlockRpc {
    /// Store this block; the stream carries `len` payload bytes of the given kind.
    Put { hash: Hash, kind: u8, len: u64 },
    /// Send this block if stored here.
    Get { hash: Hash },
    /// Does the node hold the block, and does it need it?
    Need { hash: Hash },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum BlockRpcResponse {
    Ok,
    /// The block follows in the stream.
    Block {
        kind: u8,
        len: u64,
    },
    Need {
        have: bool,
        needed: bool,
    },
}

impl Message for BlockRpc {
    type Response = BlockRpcResponse;
}

/// Counters for `grenier stats`.
#[derive(Default)]
pub struct BlockMetrics {
    pub blocks_written: AtomicU64,
    pub bytes_written: AtomicU64,
    pub blocks_read_local: AtomicU64,
    pub blocks_read_remote: AtomicU64,
    pub blocks_served: AtomicU64,
    pub corrupted_found: AtomicU64,
    pub hedged_reads: AtomicU64,
}

pub struct BlockManager {
    pub system: Arc<System>,
    pub store: Arc<BlockStore>,
    pub rc: BlockRc,
    pub resync: ResyncQueue,
    pub replication: Arc<ShardedReplication>,
    pub metrics: Arc<BlockMetrics>,
    endpoint: Endpoint<BlockRpc>,
    compression: Option<i32>,
    write_pool: Pool,
    read_pool: Pool,
    serve_pool: Pool,
}

impl BlockManager {
    pub fn new(
        system: &Arc<System>,
        store: Arc<BlockStore>,
        rc: BlockRc,
        resync: ResyncQueue,
        replication: Arc<ShardedReplication>,
        compression: Option<i32>,
        buffer_max: u64,
    ) -> Arc<BlockManager> {
        let m = Arc::new(BlockManager {
            system: system.clone(),
            store,
            rc,
            resync,
            replication,
            metrics: Arc::default(),
            endpoint: Endpoint::new(&system.net, "grenier/block/v1"),
            compression,
            write_pool: Pool::new(buffer_max / 8 * 3),
            read_pool: Pool::new(buffer_max / 2),
            serve_pool: Pool::new(buffer_max / 8),
        });
        let weak = Arc::downgrade(&m);
        m.endpoint.set_handler(move |from, msg, stream| {
            let m = weak.upgrade();
            async move {
                let m = m.ok_or(NetError::Disconnected)?;
                m.handle(from, msg, stream)
                    .await
                    .map_err(|e| NetError::Remote(e.to_string()))
            }
        });
        m
    }

    /// Nodes that must store the block: its partition's nodes in every active layout version.
    pub fn storage_nodes(&self, hash: &Hash) -> Vec<NodeId> {
        self.replication.storage_nodes(hash)
    }

    /// Bytes currently reserved in the memory budget (all pools).
    pub fn buffer_used(&self) -> u64 {
        self.write_pool.used() + self.read_pool.used() + self.serve_pool.used()
    }

    /// Reserve `len` bytes of the write pool, before reading a block's bytes from a client.
    pub async fn reserve_write(&self, len: usize) -> BufferPermit {
        self.write_pool.reserve(len).await
    }

    /// Reserve `len` bytes of the read pool, before fetching a block for a client.
    pub async fn reserve_read(&self, len: usize) -> BufferPermit {
        self.read_pool.reserve(len).await
    }

    // ---- write ----------------------------------------------------------------------------------

    /// Store a block (plain bytes, `hash` = BLAKE2b of them) on its replicas; returns after a write quorum.
    pub async fn put_block(&self, hash: Hash, plain: Bytes) -> Result<(), BlockError> {
        let permit = self.reserve_write(plain.len()).await;
        self.put_block_reserved(hash, plain, permit).await
    }

    /// [`Self::put_block`] with the block's write reservation already taken (kept until every replica
    /// has answered).
    pub async fn put_block_reserved(
        &self,
        hash: Hash,
        plain: Bytes,
        permit: BufferPermit,
    ) -> Result<(), BlockError> {
        let permit = Arc::new(permit);
        let level = self.compression;
        let block = tokio::task::spawn_blocking(move || DataBlock::from_plain(plain, level))
            .await
            .map_err(|e| BlockError::Task("compression task", e))?;
        let _guard = self.system.layout.write_guard();
        let sets = self.replication.write_sets(&hash);
        let quorum = self.replication.write_quorum();
        let me = self.system.id();
        let res = write_quorum_with(&sets, quorum, |node| {
            let (ep, block, permit) = (self.endpoint.clone(), block.clone(), permit.clone());
            // This node's own copy is written directly: no RPC to itself, so no copy of the payload
            // into a receive buffer and no second BLAKE2b (the receiving side verifies what came over
            // the network; this block was hashed by the caller, in this process).
            let local =
                (node == me).then(|| (self.store.clone(), self.rc.clone(), self.metrics.clone()));
            async move {
                let r = match local {
                    Some((store, rc, metrics)) => {
                        write_local_with(&store, &rc, &metrics, hash, block)
                            .await
                            .map_err(|e| NetError::Remote(e.to_string()))
                    }
                    None => send_block(&ep, &node, hash, &block).await,
                };
                drop(permit);
                r
            }
        })
        .await;
        res.map_err(|e| quorum_error(&hash, e))?;
        self.metrics.blocks_written.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Send a stored block to one node (resync offload).
    pub async fn put_to(
        &self,
        node: &NodeId,
        hash: Hash,
        block: &DataBlock,
    ) -> Result<(), NetError> {
        let _permit = self.reserve_write(block.stored_len()).await;
        send_block(&self.endpoint, node, hash, block).await
    }

    /// Ask a node whether it holds and needs a block: `(have, needed)`.
    pub async fn need_query(&self, node: &NodeId, hash: Hash) -> Result<(bool, bool), NetError> {
        match self
            .endpoint
            .call(node, &BlockRpc::Need { hash }, Prio::Normal, QUERY_TIMEOUT)
            .await?
        {
            BlockRpcResponse::Need { have, needed } => Ok((have, needed)),
            r => Err(NetError::Protocol(format!("unexpected answer {r:?}"))),
        }
    }

    /// Whether block `hash` is stored on a write quorum of its nodes (in every layout version of a
    /// transition), as a successful [`Self::put_block`] leaves it: Ok(false) when enough of them
    /// answered that they do not have it, an error when too many could not be asked.
    pub async fn stored_on_quorum(&self, hash: &Hash) -> Result<bool, BlockError> {
        let sets = self.replication.write_sets(hash);
        let quorum = self.replication.write_quorum();
        let me = self.system.id();
        let unreachable = Arc::new(AtomicU64::new(0));
        let res = write_quorum_with(&sets, quorum, |node| {
            let (unreachable, ep) = (unreachable.clone(), self.endpoint.clone());
            let have = (node == me).then(|| self.store.contains(hash));
            let hash = *hash;
            async move {
                let asked = match have {
                    Some(h) => Ok(h),
                    None => match ep
                        .call(&node, &BlockRpc::Need { hash }, Prio::Normal, QUERY_TIMEOUT)
                        .await
                    {
                        Ok(BlockRpcResponse::Need { have, .. }) => Ok(have),
                        Ok(r) => Err(NetError::Protocol(format!("unexpected answer {r:?}"))),
                        Err(e) => Err(e),
                    },
                };
                let have = asked.inspect_err(|_| {
                    unreachable.fetch_add(1, Ordering::Relaxed);
                })?;
                match have {
                    true => Ok(()),
                    false => Err(NetError::Remote("block not stored".into())),
                }
            }
        })
        .await;
        match res {
            Ok(()) => Ok(true),
            Err(_) if unreachable.load(Ordering::Relaxed) == 0 => Ok(false),
            Err(e) => Err(quorum_error(hash, e)),
        }
    }

    // ---- read -----------------------------------------------------------------------------------

    /// Read a block (plain bytes, verified).
    pub async fn get_block(&self, hash: &Hash) -> Result<Bytes, BlockError> {
        Ok(self.get_block_traced(hash).await?.0)
    }

    /// Read a block and say which node served it.
    pub async fn get_block_traced(&self, hash: &Hash) -> Result<(Bytes, NodeId), BlockError> {
        let (store, h) = (self.store.clone(), *hash);
        let local = tokio::task::spawn_blocking(move || store.read_with_crc(&h))
            .await
            .map_err(|e| BlockError::Task("read task", e))??;
        if let Some((block, crc)) = local {
            let verified = tokio::task::spawn_blocking(move || block.verify_stored(&h, crc))
                .await
                .map_err(|e| BlockError::Task("verify task", e))?;
            match verified {
                Ok(plain) => {
                    self.metrics
                        .blocks_read_local
                        .fetch_add(1, Ordering::Relaxed);
                    return Ok((plain, self.system.id()));
                }
                Err(e) => self.on_corrupt(hash, &e).await,
            }
        }
        let (_block, plain, node) = self.fetch_remote(hash).await?;
        self.metrics
            .blocks_read_remote
            .fetch_add(1, Ordering::Relaxed);
        Ok((plain, node))
    }

    /// The local copy, unverified (None if absent).
    pub async fn read_local(&self, hash: &Hash) -> Result<Option<DataBlock>, BlockError> {
        let (store, h) = (self.store.clone(), *hash);
        tokio::task::spawn_blocking(move || store.read(&h))
            .await
            .map_err(|e| BlockError::Task("read task", e))?
    }

    /// A local copy failed verification: move it aside and fetch it again from a replica.
    pub async fn on_corrupt(&self, hash: &Hash, e: &BlockError) {
        tracing::error!("{e}; moving it aside and refetching it from a replica");
        self.metrics.corrupted_found.fetch_add(1, Ordering::Relaxed);
        let (store, h) = (self.store.clone(), *hash);
        match tokio::task::spawn_blocking(move || store.quarantine(&h)).await {
            Ok(Ok(_)) => (),
            Ok(Err(e)) => tracing::error!("moving a corrupted block aside: {e}"),
            Err(e) => tracing::error!("moving a corrupted block aside: {e}"),
        }
        if let Err(e) = self.resync.enqueue(hash, now_msec()) {
            tracing::error!("queueing a corrupted block for refetch: {e}");
        }
    }

    /// Fetch a block from the other replicas, nearest first, hedging to the next one when a replica fails
    /// or is slow to start answering. Returns the stored form and the plain bytes (verified), and who
    /// served it.
    pub async fn fetch_remote(
        &self,
        hash: &Hash,
    ) -> Result<(DataBlock, Bytes, NodeId), BlockError> {
        let me = self.system.id();
        let mut nodes = self.storage_nodes(hash);
        nodes.retain(|n| *n != me);
        self.system.sort_by_proximity(&mut nodes);
        if nodes.is_empty() {
            return Err(BlockError::NotFound(hex::encode(hash)));
        }
        let answering = Arc::new(AtomicBool::new(false));
        let attempt = |node: NodeId| {
            let (ep, answering, h) = (self.endpoint.clone(), answering.clone(), *hash);
            async move {
                let r = fetch_from(&ep, &node, h, &answering).await;
                (node, r)
            }
        };
        let mut futs = FuturesUnordered::new();
        let mut next = 0;
        let mut errors = vec![];
        futs.push(attempt(nodes[next]));
        next += 1;
        loop {
            let deadline = self.hedge_deadline(&nodes[next - 1]);
            tokio::select! {
                r = futs.next() => match r {
                    Some((node, Ok((block, plain)))) => return Ok((block, plain, node)),
                    Some((node, Err(e))) => {
                        errors.push(format!("{}: {e}", node.short()));
                        if next < nodes.len() {
                            futs.push(attempt(nodes[next]));
                            next += 1;
                        } else if futs.is_empty() {
                            return Err(BlockError::NotFound(format!(
                                "{} on any replica ({})", hex::encode(hash), errors.join("; "))));
                        }
                    }
                    None => unreachable!("an attempt is always running here"),
                },
                _ = tokio::time::sleep(deadline), if next < nodes.len() => {
                    if !answering.load(Ordering::Relaxed) {
                        self.metrics.hedged_reads.fetch_add(1, Ordering::Relaxed);
                        futs.push(attempt(nodes[next]));
                        next += 1;
                    }
                }
            }
        }
    }

    /// How long to wait for `node` to start answering before also asking the next replica.
    fn hedge_deadline(&self, node: &NodeId) -> Duration {
        match self.system.peering.rtt(node) {
            Some(rtt) => (rtt * 4 + HEDGE_MIN).clamp(HEDGE_MIN, HEDGE_MAX),
            None => HEDGE_MAX / 2,
        }
    }

    // ---- serving other nodes ---------------------------------------------------------------------

    async fn handle(
        &self,
        _from: NodeId,
        msg: BlockRpc,
        stream: Option<ByteStream>,
    ) -> Result<(BlockRpcResponse, Option<ByteStream>), BlockError> {
        match msg {
            BlockRpc::Put { hash, kind, len } => {
                let stream =
                    stream.ok_or_else(|| BlockError::Protocol("block put without data".into()))?;
                let payload = collect(stream, len).await?;
                let block = DataBlock::from_parts(kind, payload)?;
                // Verified before it is stored: a block that does not match its hash is refused (the
                // sender gets the error) and nothing is written; the scrub is not the first to notice.
                let check = block.clone();
                tokio::task::spawn_blocking(move || check.verify(&hash))
                    .await
                    .map_err(|e| BlockError::Task("verify task", e))??;
                self.write_local(hash, block).await?;
                Ok((BlockRpcResponse::Ok, None))
            }
            BlockRpc::Get { hash } => {
                // Reserve before reading (the file's size), in the serve pool: answering a peer
                // never waits for this node's own requests.
                let store = self.store.clone();
                let size = tokio::task::spawn_blocking(move || {
                    store
                        .find(&hash)
                        .and_then(|p| std::fs::metadata(p).ok())
                        .map(|m| m.len())
                })
                .await
                .map_err(|e| BlockError::Task("stat task", e))?
                .ok_or_else(|| BlockError::NotFound(hex::encode(hash)))?;
                let permit = self
                    .serve_pool
                    .reserve(usize::try_from(size).unwrap_or(usize::MAX))
                    .await;
                let block = self
                    .read_local(&hash)
                    .await?
                    .ok_or_else(|| BlockError::NotFound(hex::encode(hash)))?;
                self.metrics.blocks_served.fetch_add(1, Ordering::Relaxed);
                let resp = BlockRpcResponse::Block {
                    kind: block.kind_byte(),
                    len: block.payload().len() as u64,
                };
                Ok((
                    resp,
                    Some(stream_with_permit(block.payload().clone(), permit)),
                ))
            }
            BlockRpc::Need { hash } => {
                let have = self.store.contains(&hash);
                let needed = !have && self.rc.get(&hash)?.is_some_and(|v| v.is_needed());
                Ok((BlockRpcResponse::Need { have, needed }, None))
            }
        }
    }

    /// Write a block into the local store (atomically); a new, unreferenced block becomes deletable after
    /// the safety delay unless a reference claims it.
    pub async fn write_local(&self, hash: Hash, block: DataBlock) -> Result<(), BlockError> {
        write_local_with(&self.store, &self.rc, &self.metrics, hash, block).await
    }
}

/// [`BlockManager::write_local`] with its parts, for a future that must not borrow the manager.
async fn write_local_with(
    store: &Arc<BlockStore>,
    rc: &BlockRc,
    metrics: &BlockMetrics,
    hash: Hash,
    block: DataBlock,
) -> Result<(), BlockError> {
    let len = block.stored_len() as u64;
    let store = store.clone();
    let written = tokio::task::spawn_blocking(move || store.write(&hash, &block))
        .await
        .map_err(|e| BlockError::Task("write task", e))??;
    if written {
        metrics.bytes_written.fetch_add(len, Ordering::Relaxed);
        rc.on_block_written(&hash);
    }
    Ok(())
}

/// Send one block to one node as an attached stream at bulk priority.
async fn send_block(
    ep: &Endpoint<BlockRpc>,
    node: &NodeId,
    hash: Hash,
    block: &DataBlock,
) -> Result<(), NetError> {
    let (msg, stream) = put_message(hash, block);
    match ep
        .call_streaming(node, &msg, Some(stream), Prio::Bulk, PUT_TIMEOUT)
        .await?
        .0
    {
        BlockRpcResponse::Ok => Ok(()),
        r => Err(NetError::Protocol(format!("unexpected answer {r:?}"))),
    }
}

/// The `Put` message of a block and the stream that carries its stored bytes.
fn put_message(hash: Hash, block: &DataBlock) -> (BlockRpc, ByteStream) {
    let payload = block.payload().clone();
    let msg = BlockRpc::Put {
        hash,
        kind: block.kind_byte(),
        len: payload.len() as u64,
    };
    (
        msg,
        Box::pin(futures::stream::once(async move { Ok(payload) })),
    )
}

/// Ask one node for a block; mark `answering` once it started sending; verify before returning.
async fn fetch_from(
    ep: &Endpoint<BlockRpc>,
    node: &NodeId,
    hash: Hash,
    answering: &AtomicBool,
) -> Result<(DataBlock, Bytes), BlockError> {
    let (resp, stream) = ep
        .call_streaming(
            node,
            &BlockRpc::Get { hash },
            None,
            Prio::Bulk,
            GET_HEADER_TIMEOUT,
        )
        .await?;
    let (kind, len) = match resp {
        BlockRpcResponse::Block { kind, len } => (kind, len),
        r => return Err(BlockError::Protocol(format!("unexpected answer {r:?}"))),
    };
    answering.store(true, Ordering::Relaxed);
    let stream = stream.ok_or_else(|| BlockError::Protocol("block answer without data".into()))?;
    let payload = collect(stream, len).await;
    answering.store(false, Ordering::Relaxed);
    let block = DataBlock::from_parts(kind, payload?)?;
    let check = block.clone();
    let plain = tokio::task::spawn_blocking(move || check.verify(&hash))
        .await
        .map_err(|e| BlockError::Task("verify task", e))??;
    Ok((block, plain))
}

/// Read exactly `len` bytes from a stream, giving up when it stalls for [`STALL_TIMEOUT`]. A stream that
/// ends early (the sender died) is an error: a truncated block is never stored.
async fn collect(mut stream: ByteStream, len: u64) -> Result<Bytes, BlockError> {
    let max = MAX_BLOCK_SIZE + MAX_BLOCK_SIZE / 16 + 1024;
    if len > max {
        return Err(BlockError::Protocol(format!(
            "block of {len} bytes exceeds {max}"
        )));
    }
    let mut buf = BytesMut::with_capacity(len as usize);
    loop {
        match tokio::time::timeout(STALL_TIMEOUT, stream.next()).await {
            Err(_) => return Err(BlockError::Protocol("block transfer stalled".into())),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(BlockError::Transfer(e)),
            Ok(Some(Ok(chunk))) => {
                if buf.len() + chunk.len() > len as usize {
                    return Err(BlockError::Protocol("block longer than announced".into()));
                }
                buf.extend_from_slice(&chunk);
            }
        }
    }
    if buf.len() as u64 != len {
        return Err(BlockError::Protocol(format!(
            "block transfer ended after {} of {len} bytes",
            buf.len()
        )));
    }
    Ok(buf.freeze())
}

/// A one-chunk stream that holds a send-buffer reservation until it is consumed or dropped.
fn stream_with_permit(payload: Bytes, permit: OwnedSemaphorePermit) -> ByteStream {
    Box::pin(futures::stream::once(async move {
        let _permit = permit;
        Ok(payload)
    }))
}

fn quorum_error(hash: &Hash, e: crate::table::TableError) -> BlockError {
    match e {
        crate::table::TableError::Quorum {
            needed,
            got,
            errors,
        } => BlockError::Quorum {
            hash: hex::encode(hash),
            needed,
            got,
            errors,
        },
        crate::table::TableError::NoLayout => BlockError::NoLayout,
        e => BlockError::Table(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::config::{ConsistencyMode, DataDir};
    use crate::util::hash::blake2sum;

    async fn manager(root: &std::path::Path) -> Arc<BlockManager> {
        let net =
            crate::net::NetApp::new(&crate::net::NodeKey::generate(), [3; 32], None, None).unwrap();
        let peering = crate::net::peering::Peering::new(&net, vec![], None);
        let layout = crate::layout::LayoutManager::new(&net, root, 1, false).unwrap();
        let system = System::new(
            &net,
            &peering,
            &layout,
            ConsistencyMode::Consistent,
            root.to_path_buf(),
            None,
        );
        let db = crate::db::Db::open_mem();
        let resync = ResyncQueue::open(&db).unwrap();
        let rc = BlockRc::open(&db, resync.clone(), Duration::from_secs(600)).unwrap();
        let store = BlockStore::open(
            &[DataDir {
                path: root.join("data"),
                capacity: None,
                read_only: false,
            }],
            false,
        )
        .unwrap();
        let replication = Arc::new(ShardedReplication {
            system: system.clone(),
            consistency: ConsistencyMode::Consistent,
        });
        BlockManager::new(
            &system,
            Arc::new(store),
            rc,
            resync,
            replication,
            Some(1),
            64 << 20,
        )
    }

    fn put(hash: Hash, block: &DataBlock) -> (BlockRpc, Option<ByteStream>) {
        let (msg, stream) = put_message(hash, block);
        (msg, Some(stream))
    }

    /// A block whose content does not match the hash it is sent under is refused and not stored; the
    /// same block under its true hash is stored.
    #[tokio::test]
    async fn received_block_with_wrong_hash_is_refused_and_not_stored() {
        let root = tempfile::tempdir().unwrap();
        let m = manager(root.path()).await;
        let from = m.system.net.id;
        for level in [None, Some(1)] {
            let plain = Bytes::from(vec![7u8; 100_000]);
            let good = blake2sum(&plain);
            let mut wrong = good;
            wrong[0] ^= 1;
            let block = DataBlock::from_plain(plain, level);
            let (msg, stream) = put(wrong, &block);
            let Err(e) = m.handle(from, msg, stream).await else {
                panic!("a block with a wrong hash was accepted");
            };
            assert!(matches!(e, BlockError::Corrupted(..)), "{e}");
            assert!(
                !m.store.contains(&wrong),
                "nothing stored under the wrong hash"
            );
            assert!(!m.store.contains(&good));
            assert_eq!(m.metrics.bytes_written.load(Ordering::Relaxed), 0);

            let (msg, stream) = put(good, &block);
            m.handle(from, msg, stream).await.unwrap();
            assert!(m.store.contains(&good));
            m.store.delete(&good).unwrap();
            m.metrics.bytes_written.store(0, Ordering::Relaxed);
        }
    }
}
