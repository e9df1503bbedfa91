//! Objects (`object` table, sharded by bucket id, sorted by key): each entry holds the versions of one
//! key that still matter, ordered by (timestamp, uuid).
//!
//! A version is `Uploading` (a PUT or multipart upload under way), `Complete` (a delete marker, data
//! inline in the entry for small objects, or a list of blocks in the `version` table), or `Aborted`.
//! Merging keeps every version and, for a version known on both sides, the furthest state
//! (Uploading → Complete → Aborted); then every version older than the newest complete one is dropped,
//! because nothing can read it any more. Dropped and aborted versions release their data: the `updated`
//! hook queues the deletion of their `version` entry (cascading to block references), in the same
//! transaction.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::version::{Version, VersionSchema};
use crate::crdt::{Crdt, Timestamp};
use crate::db;
use crate::table::queue::InsertQueue;
use crate::table::schema::{Entry, TableSchema};
use crate::util::encode::{NoPrevious, Versioned};
use crate::util::hash::Hash;

/// Objects whose body is at most this size are stored inline in the object entry (one quorum write).
pub const INLINE_MAX: usize = 3072;

/// What GET and HEAD return about a version.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectMeta {
    pub size: u64,
    /// As S3 shows it, without quotes: MD5 hex, or MD5-of-MD5s `-N` for multipart.
    pub etag: String,
    /// Stored response headers: content-type, cache-control, content-disposition, content-encoding,
    /// content-language, expires, and `x-amz-meta-*` user metadata, lowercase names.
    pub headers: Vec<(String, String)>,
    /// `x-amz-checksum-*` of the whole object, if the client sent one: (algorithm name, base64 value).
    pub checksum: Option<(String, String)>,
    /// Number of parts for multipart uploads (None for a simple PUT).
    pub parts: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ObjectData {
    DeleteMarker,
    Inline {
        meta: ObjectMeta,
        bytes: ByteBuf,
    },
    /// The block list is in the `version` table under the version's uuid; the first block is here so a
    /// GET can start fetching it without waiting for that second read.
    Blocks {
        meta: ObjectMeta,
        first_block: Hash,
    },
}

impl ObjectData {
    pub fn meta(&self) -> Option<&ObjectMeta> {
        match self {
            ObjectData::DeleteMarker => None,
            ObjectData::Inline { meta, .. } | ObjectData::Blocks { meta, .. } => Some(meta),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum VersionState {
    /// `multipart`: a multipart upload (its parts are in the `mpu` table); `headers` are the headers
    /// given when it started.
    Uploading {
        multipart: bool,
        headers: Vec<(String, String)>,
    },
    Complete(ObjectData),
    Aborted,
}

impl VersionState {
    fn rank(&self) -> u8 {
        match self {
            VersionState::Uploading { .. } => 0,
            VersionState::Complete(_) => 1,
            VersionState::Aborted => 2,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectVersion {
    pub uuid: Hash,
    pub timestamp: Timestamp,
    pub state: VersionState,
}

impl ObjectVersion {
    pub fn is_complete(&self) -> bool {
        matches!(self.state, VersionState::Complete(_))
    }
    /// Complete with data (not a delete marker).
    pub fn data(&self) -> Option<&ObjectData> {
        match &self.state {
            VersionState::Complete(d @ (ObjectData::Inline { .. } | ObjectData::Blocks { .. })) => {
                Some(d)
            }
            _ => None,
        }
    }
    /// Whether a `version` entry may hold blocks for this version.
    fn may_have_blocks(&self) -> bool {
        match &self.state {
            VersionState::Uploading { .. } | VersionState::Aborted => true,
            VersionState::Complete(d) => matches!(d, ObjectData::Blocks { .. }),
        }
    }
    fn key(&self) -> (Timestamp, Hash) {
        (self.timestamp, self.uuid)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Object {
    pub bucket: Hash,
    pub key: String,
    /// Sorted by (timestamp, uuid); no version older than the newest complete one.
    pub versions: Vec<ObjectVersion>,
}

impl Object {
    pub fn new(bucket: Hash, key: String, versions: Vec<ObjectVersion>) -> Object {
        let mut o = Object {
            bucket,
            key,
            versions: vec![],
        };
        for v in versions {
            o.add(v);
        }
        o.prune();
        o
    }

    /// The newest complete version, if it has data (not deleted).
    pub fn current(&self) -> Option<&ObjectVersion> {
        self.versions
            .iter()
            .rev()
            .find(|v| v.is_complete())
            .filter(|v| v.data().is_some())
    }

    /// The newest timestamp this key has seen.
    pub fn last_timestamp(&self) -> Option<Timestamp> {
        self.versions.last().map(|v| v.timestamp)
    }

    fn add(&mut self, v: ObjectVersion) {
        match self.versions.binary_search_by(|x| x.key().cmp(&v.key())) {
            Ok(i) => {
                let mine = &mut self.versions[i];
                if v.state.rank() > mine.state.rank()
                    || (v.state.rank() == mine.state.rank() && v.state > mine.state)
                {
                    mine.state = v.state;
                }
            }
            Err(i) => self.versions.insert(i, v),
        }
    }

    fn prune(&mut self) {
        if let Some(last_complete) = self.versions.iter().rposition(|v| v.is_complete()) {
            self.versions.drain(..last_complete);
        }
    }
}

impl Crdt for Object {
    fn merge(&mut self, other: &Self) {
        for v in &other.versions {
            self.add(v.clone());
        }
        self.prune();
    }
}

impl Versioned for Object {
    const MARKER: &'static [u8] = b"GRobject01";
    type Previous = NoPrevious;
}

impl Entry<Hash, String> for Object {
    fn partition_key(&self) -> &Hash {
        &self.bucket
    }
    fn sort_key(&self) -> &String {
        &self.key
    }
    /// Only a delete marker is left.
    fn is_tombstone(&self) -> bool {
        self.versions.len() == 1
            && matches!(
                self.versions[0].state,
                VersionState::Complete(ObjectData::DeleteMarker)
            )
    }
}

/// Range-read filters of the object table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ObjectFilter {
    /// Objects with a current (complete, not deleted) version.
    IsData,
    /// Objects with a multipart upload under way.
    IsUploadingMultipart,
}

pub struct ObjectSchema {
    pub version_queue: InsertQueue<VersionSchema>,
}

impl TableSchema for ObjectSchema {
    const TABLE_NAME: &'static str = "object";
    type P = Hash;
    type S = String;
    type E = Object;
    type Filter = ObjectFilter;

    fn newest_timestamp(e: &Object) -> Option<Timestamp> {
        e.last_timestamp()
    }

    fn matches_filter(e: &Object, f: &ObjectFilter) -> bool {
        match f {
            ObjectFilter::IsData => e.current().is_some(),
            ObjectFilter::IsUploadingMultipart => e.versions.iter().any(|v| {
                matches!(
                    v.state,
                    VersionState::Uploading {
                        multipart: true,
                        ..
                    }
                )
            }),
        }
    }

    /// Versions that disappeared or were aborted release their data: queue the deletion of their
    /// `version` entry (which releases the block references).
    fn updated(
        &self,
        tx: &mut db::Tx<'_>,
        old: Option<&Object>,
        new: Option<&Object>,
    ) -> Result<(), db::Error> {
        let Some(old) = old else { return Ok(()) };
        for v in &old.versions {
            if !v.may_have_blocks() {
                continue;
            }
            let now = new.and_then(|n| n.versions.iter().find(|x| x.uuid == v.uuid));
            let released = match now {
                None => true,
                Some(n) => {
                    matches!(n.state, VersionState::Aborted)
                        && !matches!(v.state, VersionState::Aborted)
                }
            };
            if released {
                self.version_queue
                    .insert(tx, &Version::deleted(v.uuid, old.bucket, old.key.clone()))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(ts: u64, id: u8, state: VersionState) -> ObjectVersion {
        ObjectVersion {
            uuid: [id; 32],
            timestamp: Timestamp::new(ts, 0, 0),
            state,
        }
    }

    fn inline(b: &[u8]) -> VersionState {
        VersionState::Complete(ObjectData::Inline {
            meta: ObjectMeta {
                size: b.len() as u64,
                etag: "e".into(),
                headers: vec![],
                checksum: None,
                parts: None,
            },
            bytes: ByteBuf::from(b.to_vec()),
        })
    }

    fn uploading() -> VersionState {
        VersionState::Uploading {
            multipart: false,
            headers: vec![],
        }
    }

    #[test]
    fn newest_complete_version_wins_and_older_ones_are_dropped() {
        let b = [0u8; 32];
        let mut a = Object::new(
            b,
            "k".into(),
            vec![v(1, 1, inline(b"one")), v(3, 3, uploading())],
        );
        let other = Object::new(b, "k".into(), vec![v(2, 2, inline(b"two"))]);
        a.merge(&other);
        assert_eq!(a.versions.len(), 2, "version 1 is superseded by 2");
        assert_eq!(a.current().unwrap().uuid, [2; 32]);
        // The upload completes on one replica and is aborted on another: aborted wins.
        let mut x = a.clone();
        x.merge(&Object::new(b, "k".into(), vec![v(3, 3, inline(b"three"))]));
        assert_eq!(x.current().unwrap().uuid, [3; 32]);
        let mut y = a.clone();
        y.merge(&Object::new(
            b,
            "k".into(),
            vec![v(3, 3, VersionState::Aborted)],
        ));
        y.merge(&x);
        assert_eq!(y.current().unwrap().uuid, [2; 32]);
        let mut z = x.clone();
        z.merge(&y);
        assert_eq!(z, y, "merge is commutative here");
    }

    #[test]
    fn a_delete_marker_alone_is_a_tombstone() {
        let b = [0u8; 32];
        let mut o = Object::new(b, "k".into(), vec![v(1, 1, inline(b"x"))]);
        o.merge(&Object::new(
            b,
            "k".into(),
            vec![v(2, 2, VersionState::Complete(ObjectData::DeleteMarker))],
        ));
        assert!(o.is_tombstone());
        assert!(o.current().is_none());
    }
}
