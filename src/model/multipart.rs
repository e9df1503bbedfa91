//! Multipart upload operations (see [`super::mpu`] for the data model).

use std::sync::Arc;

use futures::StreamExt;
use md5::Digest;

use super::bucket::Bucket;
use super::mpu::{MpuPart, MultipartUpload, UploadChecksum};
use super::object::{
    Object, ObjectData, ObjectFilter, ObjectMeta, ObjectVersion, VersionAttrs, VersionState,
    is_multipart_upload,
};
use super::ops::{PutUpload, Restamp};
use super::sse::Encryption;
use super::version::Version;
use super::{Model, ModelError, random_bytes};
use crate::table::schema::EmptyKey;
use crate::util::hash::{Hash, blake2sum};

/// Smallest part except the last (as S3).
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// Highest part number (as S3).
pub const MAX_PART_NUMBER: u32 = 10_000;

/// Why a CompleteMultipartUpload was refused (the S3 layer maps these to S3 errors).
#[derive(Debug, thiserror::Error)]
pub enum CompleteError {
    #[error("no such upload")]
    NoSuchUpload,
    #[error("part {0} was not uploaded, or its ETag does not match")]
    InvalidPart(u32),
    #[error("the upload was completed with another list of parts")]
    CompletedWithOtherParts,
    #[error("parts must be listed in ascending order")]
    InvalidPartOrder,
    #[error("part {0} is smaller than the 5 MiB minimum of every part but the last")]
    EntityTooSmall(u32),
    #[error("the object would be larger than 5 TiB")]
    EntityTooLarge,
    /// The caller's check of the upload (its `checksum_of`) refused it: its own error, boxed, for it to
    /// take back (as [`ModelError::Body`]).
    #[error("{0}")]
    Refused(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    #[error("{0}")]
    Model(#[from] ModelError),
}

/// Attempts at closing a completed upload in the background (waiting 1, 2, 4, ... s in between).
const CLOSE_ATTEMPTS: u32 = 7;

/// What the caller computes from an upload under way before it is completed: the object's checksum
/// (the s3 layer checks the request's checksums against the parts' and combines them).
pub type ChecksumOf<'a> = Box<
    dyn Fn(&Upload) -> Result<Option<(String, String)>, Box<dyn std::error::Error + Send + Sync>>
        + Send
        + 'a,
>;

/// Test hook, honoured only with `test_hooks = true`: when this variable is set, parts uploaded
/// through the node are never confirmed (they stay pending, see the `mpu` module doc).
pub const SKIP_PART_CONFIRMATIONS_ENV: &str = "GRENIER_TEST_SKIP_PART_CONFIRMATIONS";

/// Part attempts (their version uuids) a node remembers as stored, for settling them without a round
/// trip: the ones it answered the UploadPart of, or settled, most recent first.
const STORED_PARTS_REMEMBERED: usize = 4096;

/// A bounded set of recently stored part attempts: the oldest is forgotten past
/// [`STORED_PARTS_REMEMBERED`] (settling it then asks the nodes).
#[derive(Default)]
pub struct StoredParts {
    set: std::collections::HashSet<Hash>,
    order: std::collections::VecDeque<Hash>,
}

impl StoredParts {
    fn insert(&mut self, version: Hash) {
        if self.set.insert(version) {
            self.order.push_back(version);
            if self.order.len() > STORED_PARTS_REMEMBERED
                && let Some(old) = self.order.pop_front()
            {
                self.set.remove(&old);
            }
        }
    }

    fn contains(&self, version: &Hash) -> bool {
        self.set.contains(version)
    }
}

/// Blocks whose storage is checked at once when a pending part is settled.
const SETTLE_CHECKS_IN_FLIGHT: usize = 32;

/// The `mpu` entry that confirms attempt `slot` (`part`) of upload `m`.
fn confirmed_part(
    m: &MultipartUpload,
    slot: (u32, crate::crdt::Timestamp),
    part: MpuPart,
) -> MultipartUpload {
    let mut c = MultipartUpload::new(m.upload_id, m.bucket, m.key.clone());
    c.parts.put(
        slot,
        MpuPart {
            pending: false,
            ..part
        },
    );
    c
}

/// Largest object (as S3).
pub const MAX_OBJECT_SIZE: u64 = 5 << 40;

/// Uploads aborted at a time when their bucket is deleted.
const ABORTS_IN_FLIGHT: usize = 32;
/// Uploading objects read per page when their bucket is deleted.
const ABORT_PAGE: usize = 1000;
/// Passes over a bucket's uploads when it is deleted (see `delete_bucket_and_uploads`).
const ABORT_PASSES: usize = 4;

/// The uuid of the object version that completing upload `id` with `parts` (part number, ETag) makes.
/// Every Complete of the same upload with the same parts names the same version: a retry, or two
/// Completes racing on two nodes, write one version (the newest copy of it supersedes the others), and
/// a retry finds it again by this uuid once the upload is gone.
pub fn completed_uuid(id: &Hash, parts: &[(u32, String)]) -> Hash {
    let mut buf = b"grenier mpu complete v1".to_vec();
    buf.extend_from_slice(id);
    for (n, etag) in parts {
        let etag = etag.trim_matches('"');
        buf.extend_from_slice(&n.to_be_bytes());
        buf.extend_from_slice(&(etag.len() as u64).to_be_bytes());
        buf.extend_from_slice(etag.as_bytes());
    }
    blake2sum(&buf)
}

/// Refuse a parts list that is not in ascending part-number order.
fn check_order(parts: &[(u32, String)]) -> Result<(), CompleteError> {
    if parts.windows(2).any(|w| w[1].0 <= w[0].0) {
        return Err(CompleteError::InvalidPartOrder);
    }
    Ok(())
}

/// What names a part attempt in its upload's `mpu` entry ([`PutUpload::attempt`]).
#[derive(Clone, Debug)]
pub struct PartAttempt {
    pub bucket: Hash,
    pub key: String,
    pub uuid: Hash,
    pub timestamp: crate::crdt::Timestamp,
}

impl PutUpload {
    pub fn attempt(&self) -> PartAttempt {
        PartAttempt {
            bucket: self.bucket,
            key: self.key.clone(),
            uuid: self.uuid,
            timestamp: self.timestamp,
        }
    }
}

/// A started multipart upload, as found by its id.
pub struct Upload {
    pub version: ObjectVersion,
    pub mpu: MultipartUpload,
    pub headers: Vec<(String, String)>,
    /// SSE-C: every part is encrypted with the key this records (given again with each part).
    pub encryption: Option<Encryption>,
}

impl Model {
    /// Start a multipart upload: an uploading object version (its uuid is the upload id) and an empty
    /// `mpu` entry, written in parallel.
    pub async fn create_multipart(
        &self,
        bucket: Hash,
        key: &str,
        headers: Vec<(String, String)>,
        encryption: Option<Encryption>,
        attrs: VersionAttrs,
        checksum: Option<UploadChecksum>,
    ) -> Result<Hash, ModelError> {
        let id = random_bytes::<32>();
        let v = ObjectVersion::new(
            id,
            self.next_timestamp(),
            VersionState::Uploading {
                multipart: true,
                headers,
                encryption,
            },
        )
        .with_attrs(attrs);
        let mut m = MultipartUpload::new(id, bucket, key.into());
        m.checksum = checksum;
        let o = Object::new(bucket, key.into(), vec![v]);
        let (a, b) = tokio::join!(self.objects.insert(&o), self.mpus.insert(&m));
        a?;
        b?;
        Ok(id)
    }

    /// The upload `id` of `key`, if it is still under way, its pending parts settled
    /// ([`Model::settle_parts`]).
    pub async fn get_upload(
        self: &Arc<Self>,
        bucket: &Hash,
        key: &str,
        id: &Hash,
    ) -> Result<Option<Upload>, ModelError> {
        let Some(mut up) = self.get_upload_unsettled(bucket, key, id).await? else {
            return Ok(None);
        };
        self.settle_parts(&mut up.mpu).await?;
        Ok(Some(up))
    }

    /// [`Model::get_upload`] with its pending parts left as they are (for what needs no parts).
    async fn get_upload_unsettled(
        &self,
        bucket: &Hash,
        key: &str,
        id: &Hash,
    ) -> Result<Option<Upload>, ModelError> {
        let (o, m) = self.read_upload(bucket, key, id).await?;
        Ok(under_way(o.as_ref(), m, id))
    }

    /// Settle the pending part attempts of `m` that could still be a part (see the `mpu` module
    /// doc), in this copy: one whose blocks are all stored on a quorum (checked with the nodes, one
    /// round trip; at once if this node answered its UploadPart) is finished, and its confirmation
    /// is written in the background; another one counts as an attempt under way.
    pub async fn settle_parts(self: &Arc<Self>, m: &mut MultipartUpload) -> Result<(), ModelError> {
        self.settle_known_parts(m);
        let todo = m.unsettled_parts();
        if todo.is_empty() {
            return Ok(());
        }
        let verdicts = futures::future::try_join_all(todo.iter().map(|(slot, p)| async move {
            Ok::<_, ModelError>((*slot, self.part_is_stored(p).await?))
        }))
        .await?;
        for ((slot, stored), (_, p)) in verdicts.into_iter().zip(todo) {
            m.settle(slot, stored);
            if stored {
                self.remember_stored(p.version);
                let confirm = confirmed_part(m, slot, p);
                let model = self.clone();
                tokio::spawn(async move {
                    if let Err(e) = model.mpus.insert(&confirm).await {
                        tracing::debug!("confirming a settled part: {e}");
                    }
                });
            }
        }
        Ok(())
    }

    /// Remember part attempt `version` as stored (see [`StoredParts`]).
    fn remember_stored(&self, version: Hash) {
        self.stored_parts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(version);
    }

    /// Settle, without asking anyone, the pending attempts this node knows stored (it answered
    /// their UploadPart, or settled them before).
    fn settle_known_parts(&self, m: &mut MultipartUpload) {
        let known: Vec<(u32, crate::crdt::Timestamp)> = {
            let stored = self.stored_parts.lock().unwrap_or_else(|e| e.into_inner());
            m.unsettled_parts()
                .into_iter()
                .filter(|(_, p)| stored.contains(&p.version))
                .map(|(slot, _)| slot)
                .collect()
        };
        for slot in known {
            m.settle(slot, true);
        }
    }

    /// Whether a part attempt's bytes are all stored: its block list adds up to its size and every
    /// block is on a write quorum of its nodes.
    async fn part_is_stored(&self, p: &MpuPart) -> Result<bool, ModelError> {
        let size = p.size.unwrap_or(0);
        if size == 0 {
            return Ok(true);
        }
        let Some(list) = self.block_list(&p.version, size).await? else {
            return Ok(false);
        };
        let blocks = list.block_list();
        if blocks.iter().map(|(_, b)| b.size).sum::<u64>() != size {
            return Ok(false);
        }
        let mut checks = futures::stream::iter(blocks)
            .map(|(_, b)| async move { self.block.stored_on_quorum(&b.hash).await })
            .buffer_unordered(SETTLE_CHECKS_IN_FLIGHT);
        while let Some(stored) = checks.next().await {
            if !stored? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// An UploadPart recorded its attempt as pending ([`Model::finish_part`]) and every block was
    /// stored: this node settles the part at once from now on, and the confirmation is written in
    /// the background (the answer does not wait for it; if it fails, readers check the blocks).
    #[allow(clippy::too_many_arguments)]
    pub fn part_stored(
        self: &Arc<Self>,
        upload_id: Hash,
        part_number: u32,
        attempt: PartAttempt,
        size: u64,
        etag: String,
        checksum: Option<(String, String)>,
    ) {
        self.remember_stored(attempt.uuid);
        if self.skip_part_confirmations {
            return;
        }
        let model = self.clone();
        tokio::spawn(async move {
            if let Err(e) = model
                .finish_part(
                    upload_id,
                    part_number,
                    &attempt,
                    size,
                    etag,
                    checksum,
                    false,
                )
                .await
            {
                tracing::debug!("confirming part {part_number}: {e}");
            }
        });
    }

    /// The upload `id` of `key` as this node's own replicas show it when they show it under way (no
    /// round trip: an upload's version, headers, encryption and checksum never change while it is
    /// under way), else as a quorum read shows it. A replica that missed the upload's end says "under
    /// way" a little longer: a part written then is released with the upload (the `mpu` hook
    /// releases attempts that arrive after the deletion), and the Complete, which reads with a
    /// quorum, answers NoSuchUpload.
    pub async fn get_upload_local_first(
        &self,
        bucket: &Hash,
        key: &str,
        id: &Hash,
    ) -> Result<Option<Upload>, ModelError> {
        let o = self.objects.get_local(bucket, &key.to_string())?;
        let m = self
            .mpus
            .get_local(id, &EmptyKey)?
            .filter(|m| m.bucket == *bucket && m.key == key);
        match under_way(o.as_ref(), m, id) {
            Some(up) => Ok(Some(up)),
            None => self.get_upload_unsettled(bucket, key, id).await,
        }
    }

    /// The object entry of `key` and the `mpu` entry of upload `id` (if it belongs to that key),
    /// read in parallel.
    async fn read_upload(
        &self,
        bucket: &Hash,
        key: &str,
        id: &Hash,
    ) -> Result<(Option<Object>, Option<MultipartUpload>), ModelError> {
        let key_s = key.to_string();
        let (o, m) = tokio::join!(
            self.objects.get(bucket, &key_s),
            self.mpus.get(id, &EmptyKey)
        );
        let m = m?.filter(|m| m.bucket == *bucket && m.key == key);
        Ok((o?, m))
    }

    /// Start one attempt at a part: recorded in the `mpu` entry before any block is listed under it,
    /// so it is released with the upload whatever happens.
    pub async fn start_part(
        self: &Arc<Self>,
        upload: &Upload,
        part_number: u32,
    ) -> Result<PutUpload, ModelError> {
        let p = self.part_attempt(upload.mpu.bucket, upload.mpu.key.clone());
        self.register_part(upload.mpu.upload_id, part_number, &p.attempt())
            .await?;
        Ok(p)
    }

    /// A new attempt at a part of an upload of `key`, not registered yet: register it
    /// ([`Model::register_part`]) before its blocks are listed, e.g. by gating it
    /// ([`PutUpload::gated`]) on the registration while the body streams.
    pub fn part_attempt(self: &Arc<Self>, bucket: Hash, key: String) -> PutUpload {
        PutUpload {
            model: self.clone(),
            bucket,
            key,
            uuid: random_bytes::<32>(),
            timestamp: self.next_timestamp(),
            headers: vec![],
            is_part: true,
            encryption: None,
            gate: None,
            store_gate: None,
            behind: Default::default(),
        }
    }

    /// Record a part attempt (unfinished) in the `mpu` entry of upload `upload_id`.
    pub async fn register_part(
        &self,
        upload_id: Hash,
        part_number: u32,
        attempt: &PartAttempt,
    ) -> Result<(), ModelError> {
        let mut m = MultipartUpload::new(upload_id, attempt.bucket, attempt.key.clone());
        m.parts.put(
            (part_number, attempt.timestamp),
            MpuPart {
                version: attempt.uuid,
                etag: None,
                size: None,
                checksum: None,
                pending: false,
            },
        );
        self.mpus.insert(&m).await?;
        Ok(())
    }

    /// Record a part attempt whose body of `size` bytes was received: `pending` while its last
    /// blocks may still be in flight (see the `mpu` module doc), then confirmed once all are stored.
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_part(
        &self,
        upload_id: Hash,
        part_number: u32,
        attempt: &PartAttempt,
        size: u64,
        etag: String,
        checksum: Option<(String, String)>,
        pending: bool,
    ) -> Result<(), ModelError> {
        let mut m = MultipartUpload::new(upload_id, attempt.bucket, attempt.key.clone());
        m.parts.put(
            (part_number, attempt.timestamp),
            MpuPart {
                version: attempt.uuid,
                etag: Some(etag),
                size: Some(size),
                checksum,
                pending,
            },
        );
        self.mpus.insert(&m).await?;
        Ok(())
    }

    /// CompleteMultipartUpload of upload `id` of `key` with the given (part number, ETag) list.
    ///
    /// If the upload is under way, the object gets a new version made of those parts' blocks (see
    /// [`Model::complete_multipart`]). If it is not, the request may be a retry of a Complete whose
    /// answer was lost (or the second of two racing ones): as in S3, it gets the same answer as long as
    /// the version it made is still the object's current one. A retry with another list of parts is
    /// refused (`CompletedWithOtherParts`) while the upload's completion is remembered (its `mpu`
    /// tombstone); an upload whose object was since overwritten or deleted is `NoSuchUpload`.
    pub async fn complete_upload(
        self: &Arc<Self>,
        bucket: &Hash,
        key: &str,
        id: &Hash,
        parts: &[(u32, String)],
        checksum_of: ChecksumOf<'_>,
    ) -> Result<ObjectVersion, CompleteError> {
        check_order(parts)?;
        let uuid = completed_uuid(id, parts);
        // When this node's replicas hold the upload and every chosen part's whole block list, the
        // new version's block list is written while the upload is read with a quorum, which then
        // confirms the choice: a Complete costs that round trip and the object entry's write. A
        // request the local view already refuses writes nothing early.
        let early = self
            .local_completed_list(bucket, key, id, parts, uuid)
            .filter(|(up, _)| checksum_of(up).is_ok())
            .map(|(_, list)| list);
        let (read, written) = tokio::join!(self.read_upload(bucket, key, id), async {
            match &early {
                Some(list) => self.versions.insert(list).await.is_ok(),
                None => false,
            }
        });
        // A list written early but not used (the quorum disagreed with this node's replicas, a
        // race with another Complete or an abort) is left as it is, holding its blocks: it is never
        // deleted, since the same uuid may be (or become) the object's current version.
        let early = early.filter(|_| written);
        self.complete_read(
            bucket,
            key,
            id,
            parts,
            checksum_of,
            uuid,
            read?,
            early.as_ref(),
        )
        .await
    }

    /// The rest of [`Model::complete_upload`], once the upload was read with a quorum (`read`) and
    /// maybe the version's block list written (`early`).
    #[allow(clippy::too_many_arguments)]
    async fn complete_read(
        self: &Arc<Self>,
        bucket: &Hash,
        key: &str,
        id: &Hash,
        parts: &[(u32, String)],
        checksum_of: ChecksumOf<'_>,
        uuid: Hash,
        (o, m): (Option<Object>, Option<MultipartUpload>),
        early: Option<&Version>,
    ) -> Result<ObjectVersion, CompleteError> {
        let mut m = m;
        if let Some(m) = m.as_mut().filter(|m| !m.deleted.get()) {
            self.settle_parts(m).await?;
        }
        if let Some(up) = under_way(o.as_ref(), m.clone(), id) {
            let checksum = checksum_of(&up).map_err(CompleteError::Refused)?;
            return match self
                .complete_multipart(&up, parts, checksum, uuid, early)
                .await
            {
                Err(CompleteError::InvalidPart(n)) => {
                    // A Complete racing with this one may have finished first and released the
                    // parts: then its version is this one.
                    let (o, _) = self.read_upload(bucket, key, id).await?;
                    current_with(o.as_ref(), &uuid).ok_or(CompleteError::InvalidPart(n))
                }
                r => r,
            };
        }
        // A Complete writes the object entry before it closes the upload: if this one was closed by
        // a Complete, a read started now sees its version (the first one ran in parallel with the
        // `mpu` read and may have missed it).
        let o = match &m {
            Some(m) if m.completed.is_some() && current_with(o.as_ref(), &uuid).is_none() => self
                .objects
                .get(bucket, &key.to_string())
                .await
                .map_err(ModelError::from)?,
            _ => o,
        };
        if let Some(v) = current_with(o.as_ref(), &uuid) {
            // The version is written but its Complete may have failed before the upload was closed:
            // close it (releasing the unused part attempts), as that Complete would have.
            if let Some(m) = m.filter(|m| !m.deleted.get()) {
                self.close_upload(m, Some(uuid)).await?;
            }
            return Ok(v);
        }
        let completed = m.and_then(|m| m.completed);
        match (o.as_ref().and_then(|o| o.current()), completed) {
            (Some(cur), Some(c)) if cur.uuid == c => Err(CompleteError::CompletedWithOtherParts),
            _ => Err(CompleteError::NoSuchUpload),
        }
    }

    /// The block list of the version that completing upload `id` with `parts` makes, built from this
    /// node's replicas alone: None unless they show the upload under way with every part finished
    /// with its ETag and its whole block list (see [`Model::local_block_list`]). Whichever finished
    /// attempt a quorum read then picks for a part has the same ETag (MD5) and size, hence the same
    /// bytes.
    fn local_completed_list(
        &self,
        bucket: &Hash,
        key: &str,
        id: &Hash,
        parts: &[(u32, String)],
        uuid: Hash,
    ) -> Option<(Upload, Version)> {
        let o = self.objects.get_local(bucket, &key.to_string()).ok()?;
        let mut m = self
            .mpus
            .get_local(id, &EmptyKey)
            .ok()?
            .filter(|m| m.bucket == *bucket && m.key == key);
        if let Some(m) = m.as_mut() {
            self.settle_known_parts(m);
        }
        let up = under_way(o.as_ref(), m, id)?;
        let chosen = choose_parts(&up.mpu, parts).ok()?;
        let mut version = Version::new(uuid, *bucket, key.to_string());
        for (n, _, p) in &chosen {
            if p.size? == 0 {
                continue;
            }
            let list = self.local_block_list(&p.version, p.size?)?;
            for ((_, offset), b) in list.block_list() {
                version.blocks.put((*n, offset), b);
            }
        }
        Some((up, version))
    }

    /// Complete an upload under way with the given (part number, ETag) list, in ascending order: the
    /// object gets a new version `uuid` made of those parts' blocks. Returns it and its ETag (MD5 of
    /// the parts' MD5s, `-N`). `early` is the version's block list if it was already written from
    /// this node's replicas ([`Model::local_completed_list`]).
    ///
    /// The object entry is written after the version's block list, and before the upload is closed
    /// (its `mpu` entry deleted, which releases the unused part attempts), which is done once the
    /// answer is known, in the background: a failure before it leaves the upload open, and a retry
    /// of the Complete finds the version and closes it.
    ///
    /// Known gap: a Complete that read the upload as under way, then stalls while a racing Complete
    /// of the same parts finishes, the key is overwritten and the version released, makes that
    /// version current again without its block list (reads of the key fail until the next write).
    /// It needs two Completes of one upload straddling an overwrite of the key.
    async fn complete_multipart(
        self: &Arc<Self>,
        upload: &Upload,
        parts: &[(u32, String)],
        checksum: Option<(String, String)>,
        uuid: Hash,
        early: Option<&Version>,
    ) -> Result<ObjectVersion, CompleteError> {
        let chosen = choose_parts(&upload.mpu, parts)?;
        let (bucket, key) = (upload.mpu.bucket, upload.mpu.key.clone());
        let sizes = |v: &Version| {
            let mut out: Vec<(u32, u64)> = vec![];
            for ((n, _), b) in v.block_list() {
                match out.last_mut() {
                    Some((last, size)) if *last == n => *size += b.size,
                    _ => out.push((n, b.size)),
                }
            }
            out
        };
        let wanted: Vec<(u32, u64)> = chosen
            .iter()
            .filter(|(_, _, p)| p.size != Some(0))
            .map(|(n, _, p)| (*n, p.size.unwrap_or(0)))
            .collect();
        let version = match early {
            // The quorum's choice has the same parts and sizes (and ETags, by construction).
            Some(v) if sizes(v) == wanted => v.clone(),
            // Never rewrite a list under the same uuid with other blocks (the two would merge).
            Some(_) => {
                return Err(CompleteError::InvalidPart(
                    wanted.first().map_or(0, |w| w.0),
                ));
            }
            None => {
                let version = self.parts_list(&chosen, uuid, bucket, &key).await?;
                self.versions
                    .insert(&version)
                    .await
                    .map_err(ModelError::from)?;
                version
            }
        };
        let mut md5s = md5::Md5::new();
        let mut size = 0;
        for (_, _, p) in &chosen {
            size += p.size.unwrap_or(0);
            md5s.update(hex::decode(p.etag.as_deref().unwrap_or("")).unwrap_or_default());
        }
        let etag = format!("{}-{}", hex::encode(md5s.finalize()), chosen.len());
        let first_block = version.block_list().first().map(|(_, b)| b.hash);
        let meta = ObjectMeta {
            size,
            etag,
            headers: upload.headers.clone(),
            checksum,
            parts: Some(chosen.len() as u32),
            encryption: upload.encryption.clone(),
        };
        let data = match first_block {
            Some(first_block) => ObjectData::Blocks { meta, first_block },
            None => ObjectData::Inline {
                meta,
                bytes: serde_bytes::ByteBuf::new(),
            },
        };
        self.observe_timestamp(upload.version.timestamp);
        // The tags and ACL given when the upload started carry into the completed version.
        let complete =
            ObjectVersion::new(uuid, self.next_timestamp(), VersionState::Complete(data))
                .with_attrs(upload.version.attrs());
        let v = self
            .write_version_as(
                bucket,
                &key,
                complete,
                Some(upload.version.key()),
                Restamp::SameUuid,
            )
            .await?;
        // The object is complete and visible: closing the upload only releases the attempts it does
        // not use, so the answer does not wait for it. A quorum lost right after the object entry
        // was written is retried for about a minute.
        let (model, m) = (self.clone(), upload.mpu.clone());
        tokio::spawn(async move {
            let mut wait = std::time::Duration::from_secs(1);
            for attempt in 1..=CLOSE_ATTEMPTS {
                match model.close_upload(m.clone(), Some(uuid)).await {
                    Ok(()) => return,
                    Err(e) if attempt == CLOSE_ATTEMPTS => tracing::warn!(
                        "closing a completed multipart upload failed {attempt} times, its unused \
                         part attempts stay stored until the same Complete is sent again: {e}"
                    ),
                    Err(_) => {
                        tokio::time::sleep(wait).await;
                        wait *= 2;
                    }
                }
            }
        });
        Ok(v)
    }

    /// The block list of version `uuid` made of the `chosen` part attempts' block lists (each read
    /// from this node's replica when it is whole, else with a quorum, all in parallel).
    async fn parts_list(
        &self,
        chosen: &[(u32, crate::crdt::Timestamp, MpuPart)],
        uuid: Hash,
        bucket: Hash,
        key: &str,
    ) -> Result<Version, CompleteError> {
        let lists = futures::future::join_all(
            chosen
                .iter()
                .map(|(_, _, p)| self.block_list(&p.version, p.size.unwrap_or(0))),
        )
        .await;
        let mut version = Version::new(uuid, bucket, key.to_string());
        for ((n, _, p), list) in chosen.iter().zip(lists) {
            let blocks = list?.map(|v| v.block_list()).unwrap_or_default();
            let part_size: u64 = blocks.iter().map(|(_, b)| b.size).sum();
            if Some(part_size) != p.size {
                return Err(CompleteError::InvalidPart(*n));
            }
            for ((_, offset), b) in blocks {
                version.blocks.put((*n, offset), b);
            }
        }
        Ok(version)
    }

    /// Delete an upload's `mpu` entry (its hook releases every part attempt), recording the version
    /// it was completed into, if any.
    async fn close_upload(
        &self,
        mut m: MultipartUpload,
        completed: Option<Hash>,
    ) -> Result<(), ModelError> {
        m.deleted.set();
        m.completed = m.completed.max(completed);
        self.mpus.insert(&m).await?;
        Ok(())
    }

    /// Abort an upload: the uploading version is aborted and the parts released.
    pub async fn abort_multipart(&self, upload: &Upload) -> Result<(), ModelError> {
        self.abort_upload(upload.mpu.clone(), &upload.version).await
    }

    /// Abort upload `version` of `m.key`, whose `mpu` entry is (or is merged into) `m`.
    pub(super) async fn abort_upload(
        &self,
        m: MultipartUpload,
        version: &ObjectVersion,
    ) -> Result<(), ModelError> {
        let o = Object::ending(m.bucket, m.key.clone(), version.key());
        let (a, b) = tokio::join!(self.objects.insert(&o), self.close_upload(m, None));
        a?;
        b
    }

    /// DeleteBucket: refused (`BucketNotEmpty`) while the bucket holds an object; otherwise every
    /// multipart upload under way in it is aborted (its parts released), as S3 does, and the bucket
    /// is deleted. An upload started meanwhile makes the deletion fail as not empty (retrying works).
    pub async fn delete_bucket_and_uploads(&self, b: &Bucket) -> Result<(), ModelError> {
        let any = self
            .objects
            .get_range(&b.id, None, Some(ObjectFilter::IsData), 1, false)
            .await?;
        if !any.is_empty() {
            let name = b.params().map(|p| p.name.get().clone()).unwrap_or_default();
            return Err(ModelError::BucketNotEmpty(name));
        }
        // Uploads started while the pass runs are missed by it: list again until a pass finds none,
        // at most a few times. The deletion below checks once more.
        for pass in 0..ABORT_PASSES {
            let aborted = self.abort_uploads_of(b).await?;
            tracing::debug!("deleting bucket: pass {pass} aborted {aborted} uploads");
            if aborted == 0 {
                break;
            }
        }
        self.delete_bucket(b).await
    }

    /// Abort every multipart upload under way in bucket `b`; how many were found.
    async fn abort_uploads_of(&self, b: &Bucket) -> Result<usize, ModelError> {
        let (mut start, mut count) = (String::new(), 0);
        loop {
            let page = self.list_uploading(&b.id, &start, ABORT_PAGE).await?;
            let uploads: Vec<(String, ObjectVersion)> = page
                .iter()
                .flat_map(|o| {
                    o.versions
                        .iter()
                        .filter(|v| is_multipart_upload(v))
                        .map(|v| (o.key.clone(), v.clone()))
                })
                .collect();
            count += uploads.len();
            for chunk in uploads.chunks(ABORTS_IN_FLIGHT) {
                let aborts: Vec<_> = chunk
                    .iter()
                    .map(|(key, v)| {
                        self.abort_upload(MultipartUpload::new(v.uuid, b.id, key.clone()), v)
                    })
                    .collect();
                futures::future::try_join_all(aborts).await?;
            }
            match page.last() {
                // The smallest key after the last one of the page.
                Some(last) if page.len() == ABORT_PAGE => start = format!("{}\0", last.key),
                _ => return Ok(count),
            }
        }
    }

    /// Objects with a multipart upload under way, in key order from `start`, at most `limit`.
    pub async fn list_uploading(
        &self,
        bucket: &Hash,
        start: &str,
        limit: usize,
    ) -> Result<Vec<Object>, ModelError> {
        Ok(self
            .objects
            .get_range(
                bucket,
                Some(&start.to_string()),
                Some(ObjectFilter::IsUploadingMultipart),
                limit,
                false,
            )
            .await?)
    }

    /// The byte range of part `n` of a multipart object version (needs its block list).
    pub async fn part_range(
        &self,
        version: &ObjectVersion,
        n: u32,
    ) -> Result<Option<(u64, u64)>, ModelError> {
        let size = super::ops::meta_of(version).map_or(0, |m| m.size);
        let Some(v) = self.block_list(&version.uuid, size).await? else {
            return Ok(None);
        };
        let (mut begin, mut end, mut found) = (0, 0, false);
        for ((part, _), b) in v.block_list() {
            if part < n {
                begin += b.size;
                end = begin;
            } else if part == n {
                end += b.size;
                found = true;
            }
        }
        Ok(found.then_some((begin, end)))
    }

    /// The (part number, size) of each part of a multipart object version, in order.
    pub async fn part_sizes(&self, version: &ObjectVersion) -> Result<Vec<(u32, u64)>, ModelError> {
        let size = super::ops::meta_of(version).map_or(0, |m| m.size);
        let Some(v) = self.block_list(&version.uuid, size).await? else {
            return Ok(vec![]);
        };
        let mut out: Vec<(u32, u64)> = vec![];
        for ((part, _), b) in v.block_list() {
            match out.last_mut() {
                Some((n, size)) if *n == part => *size += b.size,
                _ => out.push((part, b.size)),
            }
        }
        Ok(out)
    }
}

/// The finished attempt of each listed part (its newest one, whose ETag must match), checked against
/// S3's limits (total size, 5 MiB minimum for every part but the last).
fn choose_parts(
    mpu: &MultipartUpload,
    parts: &[(u32, String)],
) -> Result<Vec<(u32, crate::crdt::Timestamp, MpuPart)>, CompleteError> {
    let finished = mpu.finished_parts();
    let mut chosen = vec![];
    for (n, etag) in parts {
        let p = finished
            .iter()
            .find(|(pn, _, p)| pn == n && p.etag.as_deref() == Some(etag.trim_matches('"')))
            .ok_or(CompleteError::InvalidPart(*n))?;
        chosen.push(p.clone());
    }
    if chosen
        .iter()
        .map(|(_, _, p)| p.size.unwrap_or(0))
        .sum::<u64>()
        > MAX_OBJECT_SIZE
    {
        return Err(CompleteError::EntityTooLarge);
    }
    for (i, (n, _, p)) in chosen.iter().enumerate() {
        if i + 1 < chosen.len() && p.size.unwrap_or(0) < MIN_PART_SIZE {
            return Err(CompleteError::EntityTooSmall(*n));
        }
    }
    Ok(chosen)
}

/// Upload `id` as read from the object entry and its `mpu` entry, if it is still under way.
fn under_way(o: Option<&Object>, mpu: Option<MultipartUpload>, id: &Hash) -> Option<Upload> {
    let mpu = mpu.filter(|m| !m.deleted.get())?;
    let version = o?.versions.iter().find(|v| v.uuid == *id)?.clone();
    let VersionState::Uploading {
        multipart: true,
        headers,
        encryption,
    } = &version.state
    else {
        return None;
    };
    let (headers, encryption) = (headers.clone(), encryption.clone());
    Some(Upload {
        version,
        mpu,
        headers,
        encryption,
    })
}

/// The object's current version, if it is version `uuid`.
fn current_with(o: Option<&Object>, uuid: &Hash) -> Option<ObjectVersion> {
    o?.current().filter(|v| v.uuid == *uuid).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crdt::Timestamp;

    fn parts(list: &[(u32, &str)]) -> Vec<(u32, String)> {
        list.iter().map(|(n, e)| (*n, e.to_string())).collect()
    }

    #[test]
    fn a_completion_is_named_by_its_upload_and_parts() {
        let id = [1; 32];
        let a = completed_uuid(&id, &parts(&[(1, "aa"), (2, "bb")]));
        assert_eq!(
            a,
            completed_uuid(&id, &parts(&[(1, "\"aa\""), (2, "bb")])),
            "quoted or not, the same ETag"
        );
        for other in [
            completed_uuid(&[2; 32], &parts(&[(1, "aa"), (2, "bb")])),
            completed_uuid(&id, &parts(&[(1, "aa")])),
            completed_uuid(&id, &parts(&[(1, "aa"), (3, "bb")])),
            completed_uuid(&id, &parts(&[(1, "aab"), (2, "b")])),
        ] {
            assert_ne!(a, other);
        }
        assert!(check_order(&parts(&[(1, "a"), (3, "b")])).is_ok());
        for bad in [&[(2, "a"), (1, "b")][..], &[(1, "a"), (1, "a")]] {
            assert!(matches!(
                check_order(&parts(bad)),
                Err(CompleteError::InvalidPartOrder)
            ));
        }
    }

    /// What the `object` hook releases as replicas go from `old` to `old ⊔ write`.
    fn released(old: &Object, write: &[ObjectVersion]) -> Vec<Hash> {
        use crate::model::object::ObjectSchema;
        use crate::table::queue::InsertQueue;
        use crate::table::schema::TableSchema;
        let mut new = old.clone();
        crate::crdt::Crdt::merge(
            &mut new,
            &Object::new(old.bucket, old.key.clone(), write.to_vec()),
        );
        let db = crate::db::Db::open_mem();
        let schema = ObjectSchema {
            version_queue: InsertQueue::open(&db).unwrap(),
        };
        db.transaction(|tx| {
            schema
                .updated(tx, Some(old), Some(&new))
                .map_err(crate::db::TxError::Abort)
        })
        .unwrap();
        crate::model::version::queued_deletions(&schema.version_queue)
    }

    fn complete_blocks(uuid: Hash, ts: u64) -> ObjectVersion {
        ObjectVersion::new(
            uuid,
            Timestamp::new(ts, 0, 0),
            VersionState::Complete(ObjectData::Blocks {
                meta: ObjectMeta {
                    size: 1,
                    etag: "e-1".into(),
                    headers: vec![],
                    checksum: None,
                    parts: Some(1),
                    encryption: None,
                },
                first_block: [3; 32],
            }),
        )
    }

    #[test]
    fn a_completed_version_written_again_keeps_its_blocks() {
        // Two Completes (or a rewrite above a newer clock, `Restamp::SameUuid`) write version F at
        // two timestamps: the older copy goes under the floor without releasing F's block list.
        let f = [7; 32];
        let o = Object::new([0; 32], "k".into(), vec![complete_blocks(f, 1)]);
        assert_eq!(released(&o, &[complete_blocks(f, 2)]), Vec::<Hash>::new());
        let mut both = o.clone();
        crate::crdt::Crdt::merge(
            &mut both,
            &Object::new([0; 32], "k".into(), vec![complete_blocks(f, 2)]),
        );
        assert_eq!(both.versions.len(), 1);
        assert_eq!(both.current().unwrap().timestamp, Timestamp::new(2, 0, 0));
        // A late copy of the older one changes nothing; an overwrite releases F.
        assert_eq!(
            released(&both, &[complete_blocks(f, 1)]),
            Vec::<Hash>::new()
        );
        assert_eq!(released(&both, &[complete_blocks([8; 32], 3)]), vec![f]);
    }

    #[test]
    fn an_upload_is_under_way_until_closed_or_its_version_moves_on() {
        let (b, id) = ([0; 32], [5; 32]);
        let uploading = ObjectVersion::new(
            id,
            Timestamp::new(1, 0, 0),
            VersionState::Uploading {
                multipart: true,
                headers: vec![("content-type".into(), "a/b".into())],
                encryption: None,
            },
        );
        let o = Object::new(b, "k".into(), vec![uploading.clone()]);
        let m = MultipartUpload::new(id, b, "k".into());
        let up = under_way(Some(&o), Some(m.clone()), &id).expect("under way");
        assert_eq!(up.headers, vec![("content-type".into(), "a/b".into())]);
        assert!(under_way(Some(&o), None, &id).is_none());
        assert!(under_way(None, Some(m.clone()), &id).is_none());
        assert!(under_way(Some(&o), Some(m.clone()), &[6; 32]).is_none());
        let mut closed = m.clone();
        closed.deleted.set();
        assert!(under_way(Some(&o), Some(closed), &id).is_none());
        // Completed: the upload's version is aborted and the new one is current.
        let done = ObjectVersion::new(
            [9; 32],
            Timestamp::new(2, 0, 0),
            VersionState::Complete(ObjectData::Inline {
                meta: ObjectMeta {
                    size: 0,
                    etag: "e-1".into(),
                    headers: vec![],
                    checksum: None,
                    parts: Some(1),
                    encryption: None,
                },
                bytes: serde_bytes::ByteBuf::new(),
            }),
        );
        let mut o = Object::new(b, "k".into(), vec![done.clone()]);
        crate::crdt::Crdt::merge(&mut o, &Object::ending(b, "k".into(), uploading.key()));
        assert!(under_way(Some(&o), Some(m), &id).is_none());
        assert_eq!(current_with(Some(&o), &[9; 32]), Some(done));
        assert_eq!(current_with(Some(&o), &id), None);
        assert_eq!(current_with(None, &[9; 32]), None);
    }
}
