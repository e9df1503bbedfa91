//! Object operations, designed for the round-trip budget of doc/guarantees.md (see `doc/s3.md`):
//!
//! - **small PUT** (body ≤ [`INLINE_MAX`]): one quorum write of the object entry with the data inline;
//! - **large PUT**: the object entry is written as "uploading" while the first blocks are received
//!   (no block is listed under the version before that write is acknowledged); each block is hashed,
//!   written to its replicas and added to the version's block list as the body arrives (up to
//!   [`PUT_BYTES_IN_FLIGHT`] of blocks in flight, so a 50 ms round trip still lets 320 MB/s through);
//!   after the last byte: the last block's quorum write, then one quorum write of the complete object
//!   entry (2 round trips);
//! - **GET/HEAD**: one quorum read of the object entry; for blocks, the version's block list is read in
//!   parallel with the first block, then blocks stream in order with read-ahead;
//!
//! Memory: every block this module holds is reserved in the block manager's budget
//! (`block_ram_buffer_max`, see [`crate::block::manager`]) *before* its bytes are read: a PUT reserves
//! a block of the write pool before reading that block from the client's body (at most
//! [`put_window`] blocks per upload, fewer when the pool is short, which stops reading the socket);
//! a read reserves each block of the read pool, in order, before fetching it (at most
//! [`GET_READ_AHEAD`] ahead of the client, fewer when the pool is short), and the reservation travels
//! with the bytes until the client has them. A copy reads with no read-ahead and copies the tail of a
//! source chunk out of its reservation before it waits for the write pool, so that it never holds a
//! read reservation while it waits for a write one (the tail, under one block, is the only block
//! memory outside the budget).
//! - **DELETE**: one quorum write (a delete marker), no read before.
//!
//! Interrupted uploads never become visible (the version stays "uploading" until committed) and are
//! aborted on error, which releases their blocks through the cascading queues. A PUT body is any
//! stream of `Result<Bytes, E>` with `E` an error type of the caller's: its error comes back unchanged
//! (boxed) in [`ModelError::Body`], so the s3 layer gets its own S3 error back without this module
//! knowing about S3.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::stream::{FuturesOrdered, StreamExt};
use futures::{FutureExt, Stream, TryStreamExt};
use serde_bytes::ByteBuf;

use super::object::{
    INLINE_MAX, Object, ObjectData, ObjectFilter, ObjectMeta, ObjectVersion, VersionAttrs,
    VersionKey, VersionState,
};
use super::sse::CustomerKey;
use super::version::{Version, VersionBlock};
use super::{Model, ModelError, random_bytes};
use crate::block::manager::{BufferPermit, held};
use crate::crdt::Timestamp;
use crate::table::schema::EmptyKey;
use crate::util::hash::{Hash, blake2sum};

/// Bytes of one upload's blocks in memory at once (received, hashed or being written, each block
/// holding its reservation in the write pool): the upload's window towards the other zones. A block's
/// reservation is returned once it is on a write quorum, so an upload streams at most this much per
/// inter-zone round trip: 16 MiB is 320 MB/s at a 50 ms RTT.
pub const PUT_BYTES_IN_FLIGHT: usize = 16 << 20;

/// Blocks of one upload in flight: [`PUT_BYTES_IN_FLIGHT`] worth of blocks of `block_size`, at least 4.
pub fn put_window(block_size: usize) -> usize {
    (PUT_BYTES_IN_FLIGHT / block_size.max(1)).max(4)
}
/// Blocks of one GET in memory at once (fetched ahead or waiting for the client); each holds its
/// reservation in the read pool.
pub const GET_READ_AHEAD: usize = 4;

/// A block fetched before its turn (the first one, in parallel with the block list), with its
/// reservation.
type Prefetched = (Result<Bytes, crate::block::BlockError>, BufferPermit);

/// A body as stored, before the object entry is committed.
pub enum StoredBody {
    Inline(Bytes),
    /// `first_block` is None only for an empty multipart part.
    Blocks {
        size: u64,
        first_block: Option<Hash>,
    },
}

impl StoredBody {
    pub fn size(&self) -> u64 {
        match self {
            StoredBody::Inline(b) => b.len() as u64,
            StoredBody::Blocks { size, .. } => *size,
        }
    }
}

/// An upload in progress (a simple PUT, or one attempt at a multipart part): write the body, then
/// commit or abort.
pub struct PutUpload {
    pub(super) model: Arc<Model>,
    pub bucket: Hash,
    pub key: String,
    pub uuid: Hash,
    pub timestamp: Timestamp,
    pub(super) headers: Vec<(String, String)>,
    /// For a part: never inline, and no object entry of its own (the `mpu` entry lists it).
    pub(super) is_part: bool,
    /// SSE-C: every block (or the inline body) is sealed with this key (see [`super::sse`]).
    pub(super) encryption: Option<CustomerKey>,
    /// Awaited before any block is listed under the version (`true`: go on): for a part attempt
    /// whose registration in its `mpu` entry runs while the body streams (see
    /// [`Model::part_attempt`]); the body is read and hashed meanwhile, within the write budget.
    /// (A simple PUT makes its own: the write of its "uploading" entry.)
    pub(super) gate: Option<Gate>,
    /// Awaited before any block is stored (`true`: go on): the checks that must pass before anything
    /// of the body reaches a disk (a part of an SSE-C upload must come with the upload's key).
    pub(super) store_gate: Option<Gate>,
    /// Set when a replica answered the "uploading" entry's write with a newer settled timestamp than
    /// this upload's (a complete version above it: a write that may have been acknowledged before this
    /// one began, this node's clock being behind): see [`PutUpload::commit`].
    pub(super) behind: Arc<std::sync::atomic::AtomicBool>,
}

/// See [`PutUpload::gated`].
pub type Gate = futures::future::Shared<futures::future::BoxFuture<'static, bool>>;

impl Model {
    /// Start a simple PUT of `key` in `bucket`, with the response headers to store.
    pub fn start_put(
        self: &Arc<Self>,
        bucket: Hash,
        key: String,
        headers: Vec<(String, String)>,
    ) -> PutUpload {
        PutUpload {
            model: self.clone(),
            bucket,
            key,
            uuid: random_bytes::<32>(),
            timestamp: self.next_timestamp(),
            headers,
            is_part: false,
            encryption: None,
            gate: None,
            store_gate: None,
            behind: Default::default(),
        }
    }

    /// The object entry of a key (None if absent).
    pub async fn get_object(&self, bucket: &Hash, key: &str) -> Result<Option<Object>, ModelError> {
        Ok(self.objects.get(bucket, &key.to_string()).await?)
    }

    /// Delete a key: a delete marker newer than every version (one quorum write, no read).
    pub async fn delete_object(&self, bucket: &Hash, key: &str) -> Result<(), ModelError> {
        let v = ObjectVersion::new(
            random_bytes::<32>(),
            self.next_timestamp(),
            VersionState::Complete(ObjectData::DeleteMarker),
        );
        self.write_version(*bucket, key, v).await?;
        Ok(())
    }

    /// Objects with data, in key order from `start` (inclusive), at most `limit`.
    pub async fn list_objects(
        &self,
        bucket: &Hash,
        start: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Object>, ModelError> {
        let start = start.map(str::to_string);
        Ok(self
            .objects
            .get_range(
                bucket,
                start.as_ref(),
                Some(ObjectFilter::IsData),
                limit,
                false,
            )
            .await?)
    }

    /// Objects and bytes in a bucket, by reading its whole listing (one page of 1,000 per quorum read).
    pub async fn bucket_usage(&self, bucket: &Hash) -> Result<(u64, u64), ModelError> {
        let (mut objects, mut bytes) = (0u64, 0u64);
        let mut cursor: Option<String> = None;
        loop {
            let page = self.list_objects(bucket, cursor.as_deref(), 1000).await?;
            for o in &page {
                if let Some(m) = o.current().and_then(meta_of) {
                    objects += 1;
                    bytes += m.size;
                }
            }
            match page.last() {
                Some(last) if page.len() >= 1000 => cursor = Some(format!("{}\u{0}", last.key)),
                _ => return Ok((objects, bytes)),
            }
        }
    }

    /// The bytes `[begin, end)` of a complete version, as a stream of chunks, in order, holding at most
    /// `in_memory` blocks in memory (each reserved in the read pool until its chunk is dropped).
    /// An encrypted version (SSE-C) is decrypted with `key`, which must be the one it was stored with
    /// (the caller checks it against the recorded MD5 first, to answer with the right error).
    pub async fn read_object(
        self: &Arc<Self>,
        version: &ObjectVersion,
        begin: u64,
        end: u64,
        in_memory: usize,
        key: Option<&CustomerKey>,
    ) -> Result<impl Stream<Item = Result<Bytes, ModelError>> + Send + 'static, ModelError> {
        let data = version
            .data()
            .ok_or_else(|| ModelError::Invalid("version has no data".into()))?;
        let stored = data.meta().and_then(|m| m.encryption.as_ref());
        let key = match (stored, key) {
            (None, _) => None,
            (Some(e), Some(k)) if k.matches(e) => Some(k.clone()),
            (Some(_), _) => return Err(ModelError::Decrypt),
        };
        let (blocks, first) = match data {
            ObjectData::Inline { bytes, .. } => {
                // An empty multipart upload stores no bytes at all, encrypted or not.
                let all = match &key {
                    Some(k) if !bytes.is_empty() => k.open(&bytes[..])?,
                    _ => Bytes::copy_from_slice(bytes),
                };
                let range = begin as usize..(end as usize).min(all.len());
                if range.start > range.end {
                    return Err(ModelError::Invalid("range past the inline body".into()));
                }
                let b = all.slice(range);
                return Ok(futures::stream::once(async move { Ok(b) }).boxed());
            }
            ObjectData::Blocks { first_block, meta } => {
                // This node's replica of the block list, when it lists every block: no round trip.
                if let Some(list) = self.local_block_list(&version.uuid, meta.size) {
                    (list.block_list(), None)
                } else {
                    // Else the block list (a quorum read) and the first block in parallel: the
                    // first byte does not wait for the second read.
                    let prefetch = begin == 0;
                    let (list, first) =
                        tokio::join!(self.versions.get(&version.uuid, &EmptyKey), async {
                            if prefetch {
                                // Its size is not known before the list: reserve a whole block.
                                let permit = self.block.reserve_read(self.block_size).await;
                                Some((self.block.get_block(first_block).await, permit))
                            } else {
                                None
                            }
                        });
                    let list = list?
                        .filter(|v| !v.deleted.get())
                        .ok_or(ModelError::VersionGone)?;
                    (list.block_list(), first.map(|f| (*first_block, f)))
                }
            }
            ObjectData::DeleteMarker => unreachable!("data() excludes delete markers"),
        };
        Ok(self
            .stream_blocks(blocks, first, begin, end, blocks_in_memory(in_memory), key)
            .boxed())
    }

    /// This node's replica of the block list of version `uuid`, if it lists blocks of `size` bytes
    /// in all (the size of the version's data). A version's list only grows, block by block, until
    /// the version is committed and never changes after (but for its deletion), and every block
    /// holds at least one byte: a list that adds up to the version's size is the whole list.
    /// A node that is not a replica of the version, or that has not received every block of it
    /// yet, has no such list: the caller then reads with a quorum.
    pub(super) fn local_block_list(&self, uuid: &Hash, size: u64) -> Option<Version> {
        let list = match self.versions.get_local(uuid, &EmptyKey) {
            Ok(l) => l?,
            Err(e) => {
                tracing::warn!("reading a block list locally: {e}");
                return None;
            }
        };
        let listed: u64 = list.block_list().iter().map(|(_, b)| b.size).sum();
        (!list.deleted.get() && listed == size).then_some(list)
    }

    /// The block list of version `uuid` of `size` bytes: this node's replica when it is whole
    /// ([`Model::local_block_list`]), else a quorum read. None if no quorum knows it (or it is
    /// deleted).
    pub(super) async fn block_list(
        &self,
        uuid: &Hash,
        size: u64,
    ) -> Result<Option<Version>, ModelError> {
        if let Some(l) = self.local_block_list(uuid, size) {
            return Ok(Some(l));
        }
        Ok(self
            .versions
            .get(uuid, &EmptyKey)
            .await?
            .filter(|v| !v.deleted.get()))
    }

    /// Stream the slices of `blocks` that intersect `[begin, end)`, fetching ahead.
    fn stream_blocks(
        self: &Arc<Self>,
        blocks: Vec<((u32, u64), VersionBlock)>,
        mut first: Option<(Hash, Prefetched)>,
        begin: u64,
        end: u64,
        in_memory: usize,
        key: Option<CustomerKey>,
    ) -> impl Stream<Item = Result<Bytes, ModelError>> + Send + 'static {
        let mut offset = 0u64;
        let mut wanted = vec![];
        for (_, b) in blocks {
            let (lo, hi) = (offset, offset + b.size);
            offset = hi;
            if hi <= begin || lo >= end {
                continue;
            }
            let from = begin.saturating_sub(lo) as usize;
            let to = (end.min(hi) - lo) as usize;
            let pre = match &first {
                Some((h, _)) if *h == b.hash && lo == 0 => first.take().map(|(_, r)| r),
                _ => None,
            };
            wanted.push((b.hash, b.size, from, to, pre));
        }
        let (model, reserving) = (self.clone(), self.clone());
        // An encrypted block is that much longer than the plaintext size its version lists.
        let overhead = if key.is_some() {
            super::sse::OVERHEAD
        } else {
            0
        };
        futures::stream::iter(wanted)
            // One block at a time, in order: a request never waits for a later block's reservation
            // while an earlier one is unreserved.
            .then(move |(hash, size, from, to, pre)| {
                let model = reserving.clone();
                async move {
                    match pre {
                        Some((r, permit)) => (hash, from, to, Some(r), permit),
                        None => {
                            let permit = model.block.reserve_read(size as usize + overhead).await;
                            (hash, from, to, None, permit)
                        }
                    }
                }
            })
            .map(move |(hash, from, to, pre, permit)| {
                let (model, key) = (model.clone(), key.clone());
                async move {
                    let mut data = match pre {
                        Some(r) => r?,
                        None => model.block.get_block(&hash).await?,
                    };
                    if let Some(k) = key {
                        data = tokio::task::spawn_blocking(move || k.open(data))
                            .await
                            .map_err(|e| ModelError::Task("decryption task", e))??;
                    }
                    if to > data.len() {
                        return Err(ModelError::Invalid(format!(
                            "block {} is shorter than its version says",
                            hex::encode(hash)
                        )));
                    }
                    Ok(held(data.slice(from..to), permit))
                }
            })
            .buffered(in_memory)
    }
}

impl PutUpload {
    /// Encrypt what this upload stores with a customer key (SSE-C).
    pub fn encrypted(mut self, key: Option<CustomerKey>) -> PutUpload {
        self.encryption = key;
        self
    }

    /// List no block under the version before `gate` answers `true` (a `false` fails the write
    /// with [`ModelError::NotRegistered`]).
    pub fn gated(mut self, gate: Gate) -> PutUpload {
        self.gate = Some(gate);
        self
    }

    /// Store no block before `gate` answers `true` (a `false` fails the write with
    /// [`ModelError::NotRegistered`]).
    pub fn store_gated(mut self, gate: Gate) -> PutUpload {
        self.store_gate = Some(gate);
        self
    }

    /// Store the body. Small bodies stay in memory (they go inline in the object entry); larger ones
    /// are cut into blocks written as they arrive. An error of the body stream ends the write with
    /// [`ModelError::Body`] holding that very error, for the caller to take back (by downcasting).
    pub async fn write<S, E>(&self, body: S) -> Result<StoredBody, ModelError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: std::error::Error + Send + Sync + 'static,
    {
        let mut body = body.map_err(|e| ModelError::Body(Box::new(e)));
        let bs = self.model.block_size;
        let mut buf = BytesMut::new();
        // Inline if the whole body fits.
        while !self.is_part && buf.len() <= INLINE_MAX {
            match body.next().await {
                Some(chunk) => buf.extend_from_slice(&chunk?),
                None => return Ok(StoredBody::Inline(buf.freeze())),
            }
        }
        // A simple PUT records its version as uploading while its first blocks are read and hashed;
        // no block is listed before that write is acknowledged (the gate).
        let (gate, marking) = match self.is_part {
            true => (self.gate.clone(), None),
            false => {
                let (gate, failure) = self.mark_uploading();
                (Some(gate), Some(failure))
            }
        };
        // The gate's own failure, rather than the `NotRegistered` it causes.
        let why = |e: ModelError| match (&e, &marking) {
            (ModelError::NotRegistered, Some(slot)) => slot
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .unwrap_or(e),
            _ => e,
        };
        let window = put_window(bs);
        let mut in_flight = FuturesOrdered::new();
        let (mut offset, mut first_block) = (0u64, None);
        // Bytes read but not yet in a block (the inline probe, or the tail of a chunk).
        let mut pending = buf.freeze();
        let mut ended = false;
        loop {
            // A tail left from the last chunk may hold a read reservation (a copy's source block):
            // detach it, so that no request ever waits for the write pool while holding the read pool.
            if !pending.is_empty() {
                pending = Bytes::copy_from_slice(&pending);
            }
            // Reserve the block's memory before reading it from the client: when the write pool is
            // short, the upload waits here and the client's socket fills up (backpressure).
            let permit = self.model.block.reserve_write(bs).await;
            let mut block = BytesMut::with_capacity(bs);
            loop {
                let n = (bs - block.len()).min(pending.len());
                block.extend_from_slice(&pending.split_to(n));
                if block.len() >= bs || ended {
                    break;
                }
                match body.next().await {
                    Some(chunk) => pending = chunk?,
                    None => ended = true,
                }
            }
            if block.is_empty() {
                break;
            }
            let block = block.freeze();
            let len = block.len() as u64;
            // A task per block, so hashing and writing go on while the body is being read.
            in_flight.push_back(tokio::spawn(self.store_block(
                offset,
                block,
                permit,
                gate.clone(),
            )));
            offset += len;
            if in_flight.len() >= window {
                let h = joined(in_flight.next().await.expect("non-empty")).map_err(why)?;
                first_block.get_or_insert(h);
            }
            if ended && pending.is_empty() {
                break;
            }
        }
        // The whole body was read: let it go (a caller that tees it, e.g. into digests, learns that
        // it ended while the last blocks are still being written).
        drop(body);
        while let Some(h) = in_flight.next().await {
            first_block.get_or_insert(joined(h).map_err(why)?);
        }
        Ok(StoredBody::Blocks {
            size: offset,
            first_block,
        })
    }

    /// Record the version as uploading before any block is listed under it, so an interrupted upload
    /// is always reachable (and collectable) from the object entry. The write starts now, in a task;
    /// the gate answers whether it succeeded, and the slot holds its error if it did not.
    fn mark_uploading(&self) -> (Gate, Arc<std::sync::Mutex<Option<ModelError>>>) {
        let v = ObjectVersion::new(
            self.uuid,
            self.timestamp,
            VersionState::Uploading {
                multipart: false,
                headers: self.headers.clone(),
                encryption: None,
            },
        );
        let entry = Object::new(self.bucket, self.key.clone(), vec![v]);
        let (model, failure) = (self.model.clone(), Arc::new(std::sync::Mutex::new(None)));
        let (slot, behind) = (failure.clone(), self.behind.clone());
        let gate = async move {
            match model.objects.insert_checked(&entry).await {
                Ok(None) => true,
                Ok(Some(newer)) => {
                    model.observe_timestamp(newer);
                    behind.store(true, std::sync::atomic::Ordering::SeqCst);
                    true
                }
                Err(e) => {
                    *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.into());
                    false
                }
            }
        }
        .boxed()
        .shared();
        // Driven from now on, whether or not a block waits for it yet.
        tokio::spawn(gate.clone());
        (gate, failure)
    }

    /// Hash a block off the async threads, then write it and list it in the version, in parallel.
    fn store_block(
        &self,
        offset: u64,
        block: Bytes,
        permit: BufferPermit,
        gate: Option<Gate>,
    ) -> impl std::future::Future<Output = Result<Hash, ModelError>> + Send + 'static {
        let model = self.model.clone();
        let (uuid, bucket, key) = (self.uuid, self.bucket, self.key.clone());
        let encryption = self.encryption.clone();
        let store_gate = self.store_gate.clone();
        async move {
            let size = block.len() as u64;
            // Sealing (SSE-C) happens here too: the block is stored, and addressed, encrypted.
            let (hash, block) = tokio::task::spawn_blocking(move || {
                let block = match encryption {
                    Some(k) => Bytes::from(k.seal(&block)),
                    None => block,
                };
                (blake2sum(&block), block)
            })
            .await
            .map_err(|e| ModelError::Task("hashing task", e))?;
            let mut v = Version::new(uuid, bucket, key);
            // The size listed is the plaintext's: offsets and ranges are in the object's bytes.
            v.blocks.put((0, offset), VersionBlock { hash, size });
            // Nothing is stored before the store gate opens: a refused part (e.g. one without the
            // SSE-C key of an encrypted upload) must not leave its plaintext on disk, even unlisted.
            // Nothing is listed before the gate opens (the version is reachable for release first).
            let (stored, listed) = tokio::join!(
                async {
                    passed(store_gate).await?;
                    Ok::<_, ModelError>(model.block.put_block_reserved(hash, block, permit).await?)
                },
                async {
                    passed(gate).await?;
                    Ok::<_, ModelError>(model.versions.insert(&v).await?)
                }
            );
            stored?;
            listed?;
            Ok(hash)
        }
    }

    /// Make the version visible, with its tags and ACL: one quorum write of the complete object entry.
    pub async fn commit(
        &self,
        body: StoredBody,
        mut meta: ObjectMeta,
        attrs: VersionAttrs,
    ) -> Result<ObjectVersion, ModelError> {
        meta.encryption = self.encryption.as_ref().map(CustomerKey::encryption);
        let data = match body {
            StoredBody::Inline(bytes) => ObjectData::Inline {
                meta,
                bytes: ByteBuf::from(match &self.encryption {
                    Some(k) => k.seal(&bytes),
                    None => bytes.to_vec(),
                }),
            },
            StoredBody::Blocks { first_block, .. } => ObjectData::Blocks {
                meta,
                first_block: first_block.ok_or_else(|| {
                    ModelError::Invalid("a body above the inline size has blocks".into())
                })?,
            },
        };
        let v = ObjectVersion::new(self.uuid, self.timestamp, VersionState::Complete(data))
            .with_attrs(attrs);
        match self
            .model
            .write_version(self.bucket, &self.key, v.clone())
            .await
        {
            // A replica had a newer version, and writing this one again above it found its block
            // list released: the version was listed as uploading in the entry, then a newer complete
            // one landed above it and made it dead. Unless this upload's timestamp was already behind
            // when its "uploading" entry was written (then that newer write may have been acknowledged
            // before this PUT began, and this one must land above it: an error, the client retries),
            // the newer write was not acknowledged before that entry reached a quorum, so it ran
            // concurrently with this PUT: both succeed, as on S3, this one taking effect just before
            // the newer one, which stays current.
            Err(ModelError::VersionGone)
                if !self.behind.load(std::sync::atomic::Ordering::SeqCst) =>
            {
                tracing::debug!(
                    "object {}: a concurrent newer write superseded this PUT",
                    self.key
                );
                Ok(v)
            }
            r => r,
        }
    }

    /// Give up: the version is marked aborted (its blocks are released). Nothing to do for a body that
    /// never left memory.
    pub async fn abort(&self, body: Option<&StoredBody>) -> Result<(), ModelError> {
        // A part attempt is released with its upload; a body that never left memory needs nothing.
        if self.is_part || matches!(body, Some(StoredBody::Inline(_))) {
            return Ok(());
        }
        let v = ObjectVersion::new(self.uuid, self.timestamp, VersionState::Aborted);
        self.model
            .objects
            .insert(&Object::new(self.bucket, self.key.clone(), vec![v]))
            .await?;
        Ok(())
    }
}

/// How [`Model::write_version_as`] names a version it writes again above a newer one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Restamp {
    /// A new uuid (and a copy of the block list): the first uuid may still be aborted by its writer
    /// (a PUT that fails after its commit was tried), which must not release the copy's blocks.
    NewUuid,
    /// The same uuid, whose block list it shares: for a version that is never aborted and whose uuid
    /// must not change (a completed multipart upload, found again by its uuid when the Complete is
    /// retried). Once the newer copy is in an entry, the older one is under the floor and dropped
    /// without releasing anything: the `object` hook sees the uuid still there.
    SameUuid,
}

/// Wait for a gate, if any: `NotRegistered` if it closed.
async fn passed(gate: Option<Gate>) -> Result<(), ModelError> {
    match gate {
        Some(g) => match g.await {
            true => Ok(()),
            false => Err(ModelError::NotRegistered),
        },
        None => Ok(()),
    }
}

/// How many blocks a read keeps in memory: `GET_READ_AHEAD` for a client, 1 for a copy (see the
/// module doc), never 0.
fn blocks_in_memory(asked: usize) -> usize {
    asked.clamp(1, GET_READ_AHEAD)
}

fn joined<T>(r: Result<Result<T, ModelError>, tokio::task::JoinError>) -> Result<T, ModelError> {
    r.map_err(|e| ModelError::Task("block task", e))?
}

/// The response headers of a version (content-type etc. and user metadata).
pub fn meta_of(v: &ObjectVersion) -> Option<&ObjectMeta> {
    v.data().and_then(ObjectData::meta)
}

impl Model {
    /// A new version of `dst_key` with the content of `src` (a complete version with data) and the given
    /// metadata, tags and ACL. Content-addressed blocks are shared, not copied: the new version lists
    /// the same blocks (one write of its block list, then one of the object entry).
    pub async fn copy_object(
        &self,
        src: &ObjectVersion,
        dst_bucket: Hash,
        dst_key: &str,
        meta: ObjectMeta,
        attrs: VersionAttrs,
    ) -> Result<ObjectVersion, ModelError> {
        let uuid = random_bytes::<32>();
        let data = match src.data() {
            Some(ObjectData::Inline { bytes, .. }) => ObjectData::Inline {
                meta,
                bytes: bytes.clone(),
            },
            Some(ObjectData::Blocks { first_block, .. }) => {
                self.copy_block_list(&src.uuid, meta.size, uuid, dst_bucket, dst_key)
                    .await?;
                ObjectData::Blocks {
                    meta,
                    first_block: *first_block,
                }
            }
            _ => return Err(ModelError::Invalid("the source has no data".into())),
        };
        let v = ObjectVersion::new(uuid, self.next_timestamp(), VersionState::Complete(data))
            .with_attrs(attrs);
        self.write_version(dst_bucket, dst_key, v).await
    }

    /// Write a complete version in one quorum write. If a
    /// replica already had a newer timestamp for the key (this node's clock is behind), the version is
    /// written again as a new version above it (which supersedes the first), so that a write always lands
    /// above every version the key has seen: at most one more round trip, only when clocks disagree.
    pub async fn write_version(
        &self,
        bucket: Hash,
        key: &str,
        v: ObjectVersion,
    ) -> Result<ObjectVersion, ModelError> {
        self.write_version_as(bucket, key, v, None, Restamp::NewUuid)
            .await
    }

    /// [`Model::write_version`], saying how a version written again above a newer one is named, and
    /// ending multipart upload `ends` (its version's key) in the same write.
    pub(super) async fn write_version_as(
        &self,
        bucket: Hash,
        key: &str,
        mut v: ObjectVersion,
        ends: Option<VersionKey>,
        restamp: Restamp,
    ) -> Result<ObjectVersion, ModelError> {
        for _ in 0..4 {
            let mut entry = Object::new(bucket, key.to_string(), vec![v.clone()]);
            if let Some(upload) = ends {
                crate::crdt::Crdt::merge(
                    &mut entry,
                    &Object::ending(bucket, key.to_string(), upload),
                );
            }
            let Some(newer) = self.objects.insert_checked(&entry).await? else {
                return Ok(v);
            };
            tracing::debug!("object {key}: a replica had a newer version; writing above it");
            self.observe_timestamp(newer);
            // The first version is not aborted: the new one above it supersedes it (its blocks are
            // released then), and a version never goes from complete to aborted, which would leave
            // the key without a current version.
            v = match restamp {
                Restamp::NewUuid => self.restamped(&v, bucket, key).await?,
                Restamp::SameUuid => ObjectVersion {
                    timestamp: self.next_timestamp(),
                    ..v
                },
            };
        }
        Ok(v)
    }

    /// List the blocks of version `from` under the new version `to` (the blocks are shared, not copied;
    /// the new version's hook adds their references).
    async fn copy_block_list(
        &self,
        from: &Hash,
        size: u64,
        to: Hash,
        bucket: Hash,
        key: &str,
    ) -> Result<(), ModelError> {
        let list = self
            .block_list(from, size)
            .await?
            .ok_or(ModelError::VersionGone)?;
        let mut copy = Version::new(to, bucket, key.to_string());
        for (slot, b) in list.block_list() {
            copy.blocks.put(slot, b);
        }
        self.versions.insert(&copy).await?;
        Ok(())
    }

    /// The same content as `v` under a new uuid and a new timestamp (its block list copied).
    async fn restamped(
        &self,
        v: &ObjectVersion,
        bucket: Hash,
        key: &str,
    ) -> Result<ObjectVersion, ModelError> {
        let uuid = random_bytes::<32>();
        if let VersionState::Complete(ObjectData::Blocks { meta, .. }) = &v.state {
            self.copy_block_list(&v.uuid, meta.size, uuid, bucket, key)
                .await?;
        }
        Ok(ObjectVersion::new(uuid, self.next_timestamp(), v.state.clone()).with_attrs(v.attrs()))
    }
}
