//! Multipart uploads (`mpu` table, sharded by upload id).
//!
//! An upload is an object version in state `Uploading { multipart }` (its uuid is the upload id, so
//! ListMultipartUploads is a range read of the object table) plus an `mpu` entry listing the parts.
//! Every upload of a part (also a retried one) gets its own version uuid, so its blocks are never mixed
//! with another attempt's; the entry records `(part number, timestamp) → (version, etag, size)`.
//! Completing builds a new version whose block list is the chosen parts' blocks, makes it the object's
//! current version (with a new timestamp: the completion time orders it, as in S3), and deletes the
//! `mpu` entry, whose hook queues the deletion of every part version (their block references go; the
//! final version's references keep the blocks).

use serde::{Deserialize, Serialize};

use super::version::{Version, VersionSchema};
use crate::crdt::{Crdt, GMap, MaxBool, Timestamp};
use crate::db;
use crate::table::queue::InsertQueue;
use crate::table::schema::{EmptyKey, Entry, TableSchema};
use crate::util::encode::{NoPrevious, Versioned};
use crate::util::hash::Hash;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MpuPart {
    /// The version holding this attempt's blocks.
    pub version: Hash,
    /// Set once the part's body was stored: MD5 hex, size, and checksum (algorithm, base64).
    pub etag: Option<String>,
    pub size: Option<u64>,
    pub checksum: Option<(String, String)>,
}

impl Crdt for MpuPart {
    /// An attempt is written twice (started, then finished): finished wins.
    fn merge(&mut self, other: &Self) {
        let rank = |p: &MpuPart| (p.etag.clone(), p.size, p.checksum.clone(), p.version);
        if rank(other) > rank(self) {
            *self = other.clone();
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultipartUpload {
    pub upload_id: Hash,
    pub deleted: MaxBool,
    pub bucket: Hash,
    pub key: String,
    /// (part number, attempt timestamp) → attempt.
    pub parts: GMap<(u32, Timestamp), MpuPart>,
}

impl MultipartUpload {
    pub fn new(upload_id: Hash, bucket: Hash, key: String) -> MultipartUpload {
        MultipartUpload {
            upload_id,
            deleted: MaxBool::new(false),
            bucket,
            key,
            parts: GMap::new(),
        }
    }

    /// The latest finished attempt of each part number, in order.
    pub fn finished_parts(&self) -> Vec<(u32, Timestamp, MpuPart)> {
        let mut out: Vec<(u32, Timestamp, MpuPart)> = vec![];
        for ((n, ts), p) in self.parts.iter() {
            if p.etag.is_none() {
                continue;
            }
            match out.last_mut() {
                Some(last) if last.0 == *n => *last = (*n, *ts, p.clone()),
                _ => out.push((*n, *ts, p.clone())),
            }
        }
        out
    }
}

impl Crdt for MultipartUpload {
    fn merge(&mut self, other: &Self) {
        self.deleted.merge(&other.deleted);
        self.parts.merge(&other.parts);
    }
}

impl Versioned for MultipartUpload {
    const MARKER: &'static [u8] = b"GRmpu01";
    type Previous = NoPrevious;
}

impl Entry<Hash, EmptyKey> for MultipartUpload {
    fn partition_key(&self) -> &Hash {
        &self.upload_id
    }
    fn sort_key(&self) -> &EmptyKey {
        &EmptyKey
    }
    fn is_tombstone(&self) -> bool {
        self.deleted.get()
    }
}

pub struct MpuSchema {
    pub version_queue: InsertQueue<VersionSchema>,
}

impl TableSchema for MpuSchema {
    const TABLE_NAME: &'static str = "mpu";
    type P = Hash;
    type S = EmptyKey;
    type E = MultipartUpload;
    type Filter = ();
    fn matches_filter(_: &MultipartUpload, _: &()) -> bool {
        true
    }

    /// A deleted upload releases every part attempt (including parts that arrive after the deletion).
    fn updated(
        &self,
        tx: &mut db::Tx<'_>,
        old: Option<&MultipartUpload>,
        new: Option<&MultipartUpload>,
    ) -> Result<(), db::Error> {
        let Some(new) = new else { return Ok(()) };
        if !new.deleted.get() {
            return Ok(());
        }
        let was_deleted = old.is_some_and(|o| o.deleted.get());
        for (slot, part) in new.parts.iter() {
            if was_deleted && old.is_some_and(|o| o.parts.contains_key(slot)) {
                continue;
            }
            self.version_queue.insert(
                tx,
                &Version::deleted(part.version, new.bucket, new.key.clone()),
            )?;
        }
        Ok(())
    }
}
