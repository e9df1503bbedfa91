//! Multipart upload operations (see [`super::mpu`] for the data model).

use std::sync::Arc;

use md5::Digest;

use super::mpu::{MpuPart, MultipartUpload, UploadChecksum};
use super::object::{Object, ObjectData, ObjectMeta, ObjectVersion, VersionState};
use super::ops::{PutUpload, StoredBody};
use super::sse::Encryption;
use super::version::Version;
use super::{Model, ModelError, random_bytes};
use crate::table::schema::EmptyKey;
use crate::util::hash::Hash;

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
    #[error("parts must be listed in ascending order")]
    InvalidPartOrder,
    #[error("part {0} is smaller than the 5 MiB minimum of every part but the last")]
    EntityTooSmall(u32),
    #[error("the object would be larger than 5 TiB")]
    EntityTooLarge,
    #[error("{0}")]
    Model(#[from] ModelError),
}

/// Largest object (as S3).
pub const MAX_OBJECT_SIZE: u64 = 5 << 40;

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
        checksum: Option<UploadChecksum>,
    ) -> Result<Hash, ModelError> {
        let id = random_bytes::<32>();
        let v = ObjectVersion {
            uuid: id,
            timestamp: self.next_timestamp(),
            state: VersionState::Uploading {
                multipart: true,
                headers,
                encryption,
            },
        };
        let mut m = MultipartUpload::new(id, bucket, key.into());
        m.checksum = checksum;
        let o = Object::new(bucket, key.into(), vec![v]);
        let (a, b) = tokio::join!(self.objects.insert(&o), self.mpus.insert(&m));
        a?;
        b?;
        Ok(id)
    }

    /// The upload `id` of `key`, if it is still under way.
    pub async fn get_upload(
        &self,
        bucket: &Hash,
        key: &str,
        id: &Hash,
    ) -> Result<Option<Upload>, ModelError> {
        let key_s = key.to_string();
        let (o, m) = tokio::join!(
            self.objects.get(bucket, &key_s),
            self.mpus.get(id, &EmptyKey)
        );
        let (Some(o), Some(mpu)) = (o?, m?) else {
            return Ok(None);
        };
        if mpu.deleted.get() || mpu.bucket != *bucket || mpu.key != key {
            return Ok(None);
        }
        let Some(version) = o.versions.iter().find(|v| v.uuid == *id).cloned() else {
            return Ok(None);
        };
        let VersionState::Uploading {
            multipart: true,
            headers,
            encryption,
        } = &version.state
        else {
            return Ok(None);
        };
        let (headers, encryption) = (headers.clone(), encryption.clone());
        Ok(Some(Upload {
            version,
            mpu,
            headers,
            encryption,
        }))
    }

    /// Start one attempt at a part: recorded in the `mpu` entry before any block is listed under it,
    /// so it is released with the upload whatever happens.
    pub async fn start_part(
        self: &Arc<Self>,
        upload: &Upload,
        part_number: u32,
    ) -> Result<PutUpload, ModelError> {
        let p = PutUpload {
            model: self.clone(),
            bucket: upload.mpu.bucket,
            key: upload.mpu.key.clone(),
            uuid: random_bytes::<32>(),
            timestamp: self.next_timestamp(),
            headers: vec![],
            is_part: true,
            encryption: None,
        };
        let mut m = MultipartUpload::new(upload.mpu.upload_id, p.bucket, p.key.clone());
        m.parts.put(
            (part_number, p.timestamp),
            MpuPart {
                version: p.uuid,
                etag: None,
                size: None,
                checksum: None,
            },
        );
        self.mpus.insert(&m).await?;
        Ok(p)
    }

    /// Record a stored part attempt.
    pub async fn finish_part(
        &self,
        upload_id: Hash,
        part_number: u32,
        attempt: &PutUpload,
        body: &StoredBody,
        etag: String,
        checksum: Option<(String, String)>,
    ) -> Result<(), ModelError> {
        let mut m = MultipartUpload::new(upload_id, attempt.bucket, attempt.key.clone());
        m.parts.put(
            (part_number, attempt.timestamp),
            MpuPart {
                version: attempt.uuid,
                etag: Some(etag),
                size: Some(body.size()),
                checksum,
            },
        );
        self.mpus.insert(&m).await?;
        Ok(())
    }

    /// Complete an upload with the given (part number, ETag) list: the object gets a new version made of
    /// those parts' blocks. Returns it and its ETag (MD5 of the parts' MD5s, `-N`).
    pub async fn complete_multipart(
        &self,
        upload: &Upload,
        parts: &[(u32, String)],
        checksum: Option<(String, String)>,
    ) -> Result<ObjectVersion, CompleteError> {
        let finished = upload.mpu.finished_parts();
        let mut chosen = vec![];
        let mut prev = 0;
        for (n, etag) in parts {
            if *n <= prev {
                return Err(CompleteError::InvalidPartOrder);
            }
            prev = *n;
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
        // The parts' block lists, read in parallel.
        let lists = futures::future::join_all(
            chosen
                .iter()
                .map(|(_, _, p)| self.versions.get(&p.version, &EmptyKey)),
        )
        .await;
        let (bucket, key) = (upload.mpu.bucket, upload.mpu.key.clone());
        let final_id = random_bytes::<32>();
        let mut version = Version::new(final_id, bucket, key.clone());
        let mut md5s = md5::Md5::new();
        let mut size = 0;
        for ((n, _, p), list) in chosen.iter().zip(lists) {
            let list = list.map_err(ModelError::from)?;
            let blocks = list.map(|v| v.block_list()).unwrap_or_default();
            let part_size: u64 = blocks.iter().map(|(_, b)| b.size).sum();
            if Some(part_size) != p.size {
                return Err(CompleteError::InvalidPart(*n));
            }
            for ((_, offset), b) in blocks {
                version.blocks.put((*n, offset), b);
            }
            size += part_size;
            md5s.update(hex::decode(p.etag.as_deref().unwrap_or("")).unwrap_or_default());
        }
        let etag = format!("{}-{}", hex::encode(md5s.finalize()), chosen.len());
        let first_block = version.block_list().first().map(|(_, b)| b.hash);
        self.versions
            .insert(&version)
            .await
            .map_err(ModelError::from)?;
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
        let complete = ObjectVersion {
            uuid: final_id,
            timestamp: {
                self.observe_timestamp(upload.version.timestamp);
                self.next_timestamp()
            },
            state: VersionState::Complete(data),
        };
        let aborted = ObjectVersion {
            state: VersionState::Aborted,
            ..upload.version.clone()
        };
        let mut done = upload.mpu.clone();
        done.deleted.set();
        let (a, b) = tokio::join!(
            self.write_version(bucket, &key, complete, vec![aborted]),
            self.mpus.insert(&done)
        );
        b.map_err(ModelError::from)?;
        Ok(a?)
    }

    /// Abort an upload: the uploading version is aborted and the parts released.
    pub async fn abort_multipart(&self, upload: &Upload) -> Result<(), ModelError> {
        let aborted = ObjectVersion {
            state: VersionState::Aborted,
            ..upload.version.clone()
        };
        let mut done = upload.mpu.clone();
        done.deleted.set();
        let o = Object::new(upload.mpu.bucket, upload.mpu.key.clone(), vec![aborted]);
        let (a, b) = tokio::join!(self.objects.insert(&o), self.mpus.insert(&done));
        a?;
        b?;
        Ok(())
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
                Some(super::object::ObjectFilter::IsUploadingMultipart),
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
        let Some(v) = self.versions.get(&version.uuid, &EmptyKey).await? else {
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
        let Some(v) = self.versions.get(&version.uuid, &EmptyKey).await? else {
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
