//! Objects (`object` table, sharded by bucket id, sorted by key): each entry holds the versions of one
//! key that still matter, ordered by (timestamp, uuid).
//!
//! A version is `Uploading` (a PUT or multipart upload under way), `Complete` (a delete marker, data
//! inline in the entry for small objects, or a list of blocks in the `version` table), or `Aborted`.
//! Merging keeps every version and, for a version known on both sides, the furthest state
//! (Uploading → Complete → Aborted). Two marks, each only ever raised, say which versions are dead:
//!
//! - the **floor**: the key of the newest version ever seen complete; every older version is dead,
//!   because nothing can read it any more (the floor version itself stays, even once aborted);
//! - **dropped_to**: the bound on the entry's size. When more than [`MAX_VERSIONS`] versions are
//!   alive above the floor (uploads started since the last complete write, most of them aborted or
//!   abandoned), every version up to and including the [`MAX_VERSIONS`]+1-th newest is dead, the floor
//!   version too if it is that old.
//!
//! **Multipart uploads** live apart from both marks: a PutObject of the key while a multipart upload
//! of it runs does not end that upload (as on S3): its parts and its Complete still work, and the
//! Complete makes a new version, newer than the PUT. An upload's version is only ever uploading; it
//! ends (aborted, or completed into another version) by the entry remembering its key in `ended`, so
//! that a stale replica's copy of it still uploading stays dead. Uploads under way and ended keys are
//! bounded together by [`MAX_UPLOADS`], with their own mark `ended_to`: beyond it, the oldest are
//! forgotten and an upload that old still under way is dead.
//!
//! An entry therefore holds at most [`MAX_VERSIONS`] versions plus [`MAX_UPLOADS`] uploads or ended
//! keys, and its size stays far below the RPC message limit (a version is about 100 bytes plus its
//! stored headers, at most a few KiB).
//!
//! Dead versions are dropped from the entry; a dead version arriving later is dropped again, so
//! nothing is lost by forgetting them, and merge stays commutative, associative and idempotent (the
//! size rule is a closure: it only depends on the merged information and only adds to it; see the
//! property tests). The bound is a constant, not a configuration key: every replica must apply the
//! same rule for the replicas to converge. The price of the bounds: a key whose current version is
//! followed by more than [`MAX_VERSIONS`] uploads that never completed loses that version (it reads
//! as absent until the next write), an upload that old still under way fails at its commit, and a
//! multipart upload followed by more than [`MAX_UPLOADS`] newer multipart uploads of its key fails
//! (NoSuchUpload).
//!
//! Dropped and aborted versions release their data: the `updated` hook queues the deletion of their
//! `version` entry (cascading to block references), in the same transaction.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::sse::Encryption;
use super::version::{Version, VersionSchema};
use crate::crdt::{Crdt, Lww, Timestamp};
use crate::db;
use crate::table::queue::InsertQueue;
use crate::table::schema::{Entry, TableSchema};
use crate::util::encode::Versioned;
use crate::util::hash::Hash;

/// Objects whose body is at most this size are stored inline in the object entry (one quorum write
/// of one entry, instead of an "uploading" entry, a block, its block list and the commit). One page:
/// small enough that inline data stays a small share of the metadata (which may sit on a small SSD)
/// and of listings (whose answers are bounded in bytes, see `table::RANGE_ANSWER_BYTES`).
pub const INLINE_MAX: usize = 4096;

/// Most versions an object entry keeps above its floor (see the module doc).
pub const MAX_VERSIONS: usize = 1000;

/// Most multipart uploads, under way or ended (remembered by their key), an object entry keeps (see
/// the module doc). A few KiB of keys at most.
pub const MAX_UPLOADS: usize = 32;

/// The order of versions: (timestamp, uuid).
pub type VersionKey = (Timestamp, Hash);

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
    /// How the data is encrypted (None: stored as sent). Absent in entries written before SSE-C.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
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
        /// For a multipart upload: the encryption every part must use (absent before SSE-C).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        encryption: Option<Encryption>,
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

/// The tags of a version: (key, value) pairs in the order given, keys unique (at most 10, as S3).
pub type Tags = Vec<(String, String)>;

/// Set a last-writer-wins register that may be absent to `value`, as `node`: above its current
/// timestamp if it has one.
pub fn set_register<T: Clone + Ord>(register: &mut Option<Lww<T>>, node: u64, value: T) {
    match register {
        Some(r) => r.update_by(node, value),
        None => *register = Some(Lww::new_by(node, value)),
    }
}

/// The canned ACLs Grenier honours (`bucket-owner-*` are stored as `Private`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum CannedAcl {
    /// Only the keys allowed on the bucket.
    #[default]
    Private,
    /// Also anyone, without a signature, may read (GET/HEAD).
    PublicRead,
}

impl CannedAcl {
    /// The canned ACL's name, as S3's `x-amz-acl` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            CannedAcl::Private => "private",
            CannedAcl::PublicRead => "public-read",
        }
    }
}

/// The mutable attributes of a version, set at its creation (x-amz-tagging, x-amz-acl) and changed
/// later without touching its data; each a last-writer-wins register, merged independently.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VersionAttrs {
    pub tags: Option<Lww<Tags>>,
    pub acl: Option<Lww<CannedAcl>>,
}

impl VersionAttrs {
    /// The attributes given when a version is created, written by `node` (none given, or the
    /// defaults: none stored, so the entry encodes as before tags and ACLs existed).
    pub fn new(node: u64, tags: Tags, acl: CannedAcl) -> VersionAttrs {
        VersionAttrs {
            tags: (!tags.is_empty()).then(|| Lww::new_by(node, tags)),
            acl: (acl != CannedAcl::Private).then(|| Lww::new_by(node, acl)),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectVersion {
    pub uuid: Hash,
    pub timestamp: Timestamp,
    pub state: VersionState,
    /// Tags (PutObjectTagging, x-amz-tagging): absent in entries written before tags existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Lww<Tags>>,
    /// Canned ACL (PutObjectAcl, x-amz-acl): absent = private.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl: Option<Lww<CannedAcl>>,
}

impl ObjectVersion {
    /// A version without tags or ACL (private).
    pub fn new(uuid: Hash, timestamp: Timestamp, state: VersionState) -> ObjectVersion {
        ObjectVersion {
            uuid,
            timestamp,
            state,
            tags: None,
            acl: None,
        }
    }
    /// The version with these attributes.
    pub fn with_attrs(mut self, a: VersionAttrs) -> ObjectVersion {
        self.tags = a.tags;
        self.acl = a.acl;
        self
    }
    /// Its attributes (to carry them to a version that replaces it).
    pub fn attrs(&self) -> VersionAttrs {
        VersionAttrs {
            tags: self.tags.clone(),
            acl: self.acl.clone(),
        }
    }
    /// The tags (empty when none were set).
    pub fn tag_set(&self) -> &[(String, String)] {
        self.tags.as_ref().map_or(&[], |t| t.get().as_slice())
    }
    /// The canned ACL (private when none was set).
    pub fn canned_acl(&self) -> CannedAcl {
        self.acl.as_ref().map_or(CannedAcl::Private, |a| *a.get())
    }
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
    pub fn key(&self) -> VersionKey {
        (self.timestamp, self.uuid)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Object {
    pub bucket: Hash,
    pub key: String,
    /// Sorted by (timestamp, uuid); only live versions (none below `floor`, none up to `dropped_to`).
    pub versions: Vec<ObjectVersion>,
    /// The newest version ever seen complete: every older one is dead.
    pub floor: Option<VersionKey>,
    /// Every version up to this one (included) is dead: the entry had too many versions.
    pub dropped_to: Option<VersionKey>,
    /// The keys of multipart uploads that ended (sorted, all above `ended_to`). Absent in entries
    /// written before multipart uploads outlived the floor, as the next field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ended: Vec<VersionKey>,
    /// Every multipart upload up to this one (included) is dead: the entry had too many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_to: Option<VersionKey>,
}

impl Object {
    pub fn new(bucket: Hash, key: String, versions: Vec<ObjectVersion>) -> Object {
        let mut o = Object {
            bucket,
            key,
            versions: vec![],
            floor: None,
            dropped_to: None,
            ended: vec![],
            ended_to: None,
        };
        for v in versions {
            o.add(v);
        }
        o.prune(MAX_VERSIONS, MAX_UPLOADS);
        o
    }

    /// The entry that ends multipart upload `upload` (a version key) of `key`.
    pub fn ending(bucket: Hash, key: String, upload: VersionKey) -> Object {
        let mut o = Object::new(bucket, key, vec![]);
        o.ended.push(upload);
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

    /// The newest timestamp this key has seen (dead versions included, so that a write always lands
    /// above them).
    pub fn last_timestamp(&self) -> Option<Timestamp> {
        let last = self.versions.last().map(|v| v.timestamp);
        let marks = self.floor.max(self.dropped_to).map(|k| k.0);
        let ended = self.ended.last().copied().max(self.ended_to).map(|k| k.0);
        last.max(marks).max(ended)
    }

    /// The newest timestamp a write must land above to be current: the newest version ever seen
    /// complete (a version of it below that is dead) or the size bound, whichever is newer. Uploads
    /// under way above it do not count: a write that lands below one is superseded only if it
    /// completes, which is then the newer write.
    pub fn settled_timestamp(&self) -> Option<Timestamp> {
        self.floor.max(self.dropped_to).map(|k| k.0)
    }

    fn add(&mut self, v: ObjectVersion) {
        if v.is_complete() {
            self.floor = self.floor.max(Some(v.key()));
        }
        match self.versions.binary_search_by(|x| x.key().cmp(&v.key())) {
            Ok(i) => {
                let mine = &mut self.versions[i];
                if is_multipart_upload(mine) != is_multipart_upload(&v) {
                    // A multipart upload's version in another state (written by a release before
                    // `ended`): it ended.
                    self.remember_end(v.key());
                    self.versions.remove(i);
                    return;
                }
                if v.state.rank() > mine.state.rank()
                    || (v.state.rank() == mine.state.rank() && v.state > mine.state)
                {
                    mine.state = v.state;
                }
                mine.tags.merge(&v.tags);
                mine.acl.merge(&v.acl);
            }
            Err(i) => self.versions.insert(i, v),
        }
    }

    fn is_dead(&self, v: &ObjectVersion) -> bool {
        let k = v.key();
        if is_multipart_upload(v) {
            self.ended_to.is_some_and(|d| k <= d) || self.ended.binary_search(&k).is_ok()
        } else {
            self.floor.is_some_and(|f| k < f) || self.dropped_to.is_some_and(|d| k <= d)
        }
    }

    /// Keep only the mark that matters, so that equal information has one representation: a
    /// `dropped_to` below the floor says nothing more, nor does a floor up to `dropped_to` (neither
    /// mark touches multipart uploads), nor an ended key up to `ended_to`.
    fn canonical_marks(&mut self) {
        match (self.floor, self.dropped_to) {
            (Some(f), Some(d)) if d < f => self.dropped_to = None,
            (Some(_), Some(_)) => self.floor = None,
            _ => (),
        }
        if let Some(d) = self.ended_to {
            self.ended.retain(|k| *k > d);
        }
    }

    /// Record that multipart upload `k` ended (`ended` stays sorted).
    fn remember_end(&mut self, k: VersionKey) {
        if let Err(i) = self.ended.binary_search(&k) {
            self.ended.insert(i, k);
        }
    }

    fn drop_dead(&mut self) {
        let dead: Vec<bool> = self.versions.iter().map(|v| self.is_dead(v)).collect();
        let mut dead = dead.into_iter();
        self.versions.retain(|_| !dead.next().unwrap_or(false));
    }

    /// Drop the dead versions, then bound the entry (see the module doc).
    fn prune(&mut self, max_versions: usize, max_uploads: usize) {
        self.canonical_marks();
        self.drop_dead();
        // Versions, multipart uploads apart.
        let others: Vec<VersionKey> = self
            .versions
            .iter()
            .filter(|v| !is_multipart_upload(v))
            .map(|v| v.key())
            .collect();
        if others.len() > max_versions.max(1) {
            let d = others[others.len() - max_versions.max(1) - 1];
            self.dropped_to = self.dropped_to.max(Some(d));
        }
        // Multipart uploads, under way or ended.
        let mut uploads: Vec<VersionKey> = self
            .versions
            .iter()
            .filter(|v| is_multipart_upload(v))
            .map(|v| v.key())
            .chain(self.ended.iter().copied())
            .collect();
        if uploads.len() > max_uploads.max(1) {
            uploads.sort();
            let d = uploads[uploads.len() - max_uploads.max(1) - 1];
            self.ended_to = self.ended_to.max(Some(d));
        }
        self.canonical_marks();
        self.drop_dead();
        debug_assert!(self.versions.iter().all(|v| !self.is_dead(v)));
        debug_assert!(self.ended.windows(2).all(|w| w[0] < w[1]));
    }
}

/// A multipart upload under way (an upload's version is never anything else: it ends by its key in
/// `ended`, and its Complete makes another version).
pub fn is_multipart_upload(v: &ObjectVersion) -> bool {
    matches!(
        v.state,
        VersionState::Uploading {
            multipart: true,
            ..
        }
    )
}

impl Object {
    /// [`Crdt::merge`] with another bound (the property tests use a small one).
    fn merge_bounded(&mut self, other: &Self, max_versions: usize, max_uploads: usize) {
        self.floor = self.floor.max(other.floor);
        self.dropped_to = self.dropped_to.max(other.dropped_to);
        self.ended_to = self.ended_to.max(other.ended_to);
        for k in &other.ended {
            self.remember_end(*k);
        }
        for v in &other.versions {
            self.add(v.clone());
        }
        self.prune(max_versions, max_uploads);
    }
}

impl Crdt for Object {
    fn merge(&mut self, other: &Self) {
        self.merge_bounded(other, MAX_VERSIONS, MAX_UPLOADS);
    }
}

impl Versioned for Object {
    const MARKER: &'static [u8] = b"GRobject02";
    type Previous = v1::Object;
    fn migrate(prev: v1::Object) -> Object {
        Object::new(prev.bucket, prev.key, prev.versions)
    }
}

mod v1 {
    //! The entry before the floor and the size bound (the floor was implicit: the newest complete
    //! version in the list).
    use serde::{Deserialize, Serialize};

    use super::ObjectVersion;
    use crate::util::encode::{NoPrevious, Versioned};
    use crate::util::hash::Hash;

    #[derive(Serialize, Deserialize)]
    pub struct Object {
        pub bucket: Hash,
        pub key: String,
        pub versions: Vec<ObjectVersion>,
    }

    impl Versioned for Object {
        const MARKER: &'static [u8] = b"GRobject01";
        type Previous = NoPrevious;
    }
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

    fn newest_settled_timestamp(e: &Object) -> Option<Timestamp> {
        e.settled_timestamp()
    }

    fn matches_filter(e: &Object, f: &ObjectFilter) -> bool {
        match f {
            ObjectFilter::IsData => e.current().is_some(),
            ObjectFilter::IsUploadingMultipart => e.versions.iter().any(is_multipart_upload),
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
        // `new = None` is a local removal, not a change of the entry: a hand-off of a partition this
        // node no longer holds (the entry lives on at its new replicas) or the collection of a
        // tombstone (whose versions were released when it became one). Releasing the versions
        // then would delete, cluster-wide, the block lists of objects that still exist.
        let (Some(old), Some(new)) = (old, new) else {
            return Ok(());
        };
        for v in &old.versions {
            if !v.may_have_blocks() {
                continue;
            }
            let now = new.versions.iter().find(|x| x.uuid == v.uuid);
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
    use crate::crdt::laws::{self, merged};
    use proptest::prelude::*;

    fn v(ts: u64, id: u8, state: VersionState) -> ObjectVersion {
        ObjectVersion::new([id; 32], Timestamp::new(ts, 0, 0), state)
    }

    fn inline(b: &[u8]) -> VersionState {
        VersionState::Complete(ObjectData::Inline {
            meta: ObjectMeta {
                size: b.len() as u64,
                etag: "e".into(),
                headers: vec![],
                checksum: None,
                parts: None,
                encryption: None,
            },
            bytes: ByteBuf::from(b.to_vec()),
        })
    }

    fn uploading() -> VersionState {
        VersionState::Uploading {
            multipart: false,
            headers: vec![],
            encryption: None,
        }
    }

    fn multipart() -> VersionState {
        VersionState::Uploading {
            multipart: true,
            headers: vec![],
            encryption: None,
        }
    }

    #[test]
    fn a_multipart_upload_outlives_a_newer_complete_version_until_it_ends() {
        let b = [0u8; 32];
        let upload = v(1, 1, multipart());
        let mut o = Object::new(b, "k".into(), vec![upload.clone()]);
        // A PUT of the key completes while the upload runs: it is current, the upload lives on.
        o.merge(&Object::new(b, "k".into(), vec![v(2, 2, inline(b"put"))]));
        assert_eq!(o.current().unwrap().uuid, [2; 32]);
        assert!(
            o.versions
                .iter()
                .any(|x| x.uuid == [1; 32] && is_multipart_upload(x))
        );
        assert!(ObjectSchema::matches_filter(
            &o,
            &ObjectFilter::IsUploadingMultipart
        ));
        // The upload completes into a newer version and ends: a stale replica's copy of it still
        // uploading stays dead.
        o.merge(&Object::new(b, "k".into(), vec![v(3, 3, inline(b"mpu"))]));
        o.merge(&Object::ending(b, "k".into(), upload.key()));
        assert_eq!(o.current().unwrap().uuid, [3; 32]);
        assert_eq!(o.versions.len(), 1);
        assert_eq!(o.ended, vec![upload.key()]);
        assert!(!ObjectSchema::matches_filter(
            &o,
            &ObjectFilter::IsUploadingMultipart
        ));
        let before = o.clone();
        o.merge(&Object::new(b, "k".into(), vec![upload.clone()]));
        assert_eq!(o, before);
        // The same from the other side: the stale replica learns the end.
        let mut stale = Object::new(b, "k".into(), vec![upload.clone(), v(2, 2, inline(b"put"))]);
        stale.merge(&before);
        assert_eq!(stale, before);
        // A version of the upload aborted by an older release ends it too.
        let mut old = Object::new(b, "k".into(), vec![upload.clone()]);
        old.merge(&Object::new(b, "k".into(), vec![v(1, 1, aborted())]));
        assert_eq!(
            (old.versions.len(), old.ended.clone()),
            (0, vec![upload.key()])
        );
        // A simple PUT still uploading below the floor is dead as before.
        o.merge(&Object::new(b, "k".into(), vec![v(0, 9, uploading())]));
        assert_eq!(o, before);
        // Its upload dropping out releases nothing but the upload's own (empty) version.
        assert_eq!(released(&stale_with(&upload), &before), vec![upload.uuid],);
    }

    fn stale_with(x: &ObjectVersion) -> Object {
        Object::new(
            [0; 32],
            "k".into(),
            vec![x.clone(), v(2, 2, inline(b"put"))],
        )
    }

    #[test]
    fn multipart_uploads_are_bounded_apart_from_versions() {
        let b = [0u8; 32];
        let mut o = Object::new(b, "k".into(), vec![]);
        let n = MAX_UPLOADS as u64 + 5;
        for i in 0..n {
            o.merge(&Object::new(
                b,
                "k".into(),
                vec![v(i, i as u8, multipart())],
            ));
        }
        // A complete version above them all, then every upload but the newest one ends.
        o.merge(&Object::new(
            b,
            "k".into(),
            vec![v(1000, 255, inline(b"x"))],
        ));
        for i in 0..n - 1 {
            o.merge(&Object::ending(
                b,
                "k".into(),
                v(i, i as u8, multipart()).key(),
            ));
        }
        assert_eq!(o.current().unwrap().uuid, [255; 32]);
        assert_eq!(o.ended.len() + o.versions.len() - 1, MAX_UPLOADS);
        assert!(
            o.versions.iter().any(|x| x.uuid == [n as u8 - 1; 32]),
            "the newest upload is still under way"
        );
        assert!(o.encode().unwrap().len() < 8 << 10);
        // An upload that old coming back from a stale replica stays dead.
        let before = o.clone();
        o.merge(&Object::new(b, "k".into(), vec![v(0, 0, multipart())]));
        assert_eq!(o, before);
        // Uploads do not count against the versions' bound, nor versions against theirs.
        assert_eq!(o.dropped_to, None);
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
        // The upload completes on one replica and is aborted on another: aborted wins, and the
        // version it superseded stays superseded (the writers never do this: see `write_version`).
        let mut x = a.clone();
        x.merge(&Object::new(b, "k".into(), vec![v(3, 3, inline(b"three"))]));
        assert_eq!(x.current().unwrap().uuid, [3; 32]);
        let mut y = a.clone();
        y.merge(&Object::new(
            b,
            "k".into(),
            vec![v(3, 3, VersionState::Aborted)],
        ));
        assert_eq!(
            y.current().unwrap().uuid,
            [2; 32],
            "aborted before it completed"
        );
        y.merge(&x);
        assert!(y.current().is_none());
        let mut z = x.clone();
        z.merge(&y);
        assert_eq!(z, y, "merge is commutative here");
    }

    fn aborted() -> VersionState {
        VersionState::Aborted
    }

    #[test]
    fn an_aborted_complete_version_stays_the_floor() {
        // Complete then aborted on one replica, complete on another: an older complete version
        // never comes back, whatever the order of the merges.
        let b = [0u8; 32];
        let x = Object::new(b, "k".into(), vec![v(1, 1, inline(b"one"))]);
        let y = Object::new(b, "k".into(), vec![v(2, 2, inline(b"two"))]);
        let z = Object::new(b, "k".into(), vec![v(2, 2, aborted())]);
        let left = merged(&merged(&x, &y), &z);
        let right = merged(&x, &merged(&y, &z));
        assert_eq!(left, right);
        assert!(left.current().is_none());
        assert_eq!(left.versions.len(), 1);
    }

    #[test]
    fn versions_beyond_the_bound_are_dropped_for_good() {
        let b = [0u8; 32];
        let mut o = Object::new(b, "k".into(), vec![v(1, 1, inline(b"one"))]);
        // Failed uploads since the last complete write: the entry keeps the floor and the rest.
        for i in 0..(MAX_VERSIONS as u64 - 1) {
            o.merge(&Object::new(
                b,
                "k".into(),
                vec![v(10 + i, (i % 200) as u8, aborted())],
            ));
        }
        assert_eq!(o.versions.len(), MAX_VERSIONS);
        assert_eq!(o.current().unwrap().uuid, [1; 32], "still readable");
        assert_eq!(o.dropped_to, None);
        // More: the oldest go, the current version with them.
        for i in 0..500u64 {
            o.merge(&Object::new(
                b,
                "k".into(),
                vec![v(5000 + i, 7, uploading())],
            ));
        }
        assert_eq!(o.versions.len(), MAX_VERSIONS);
        assert!(o.current().is_none());
        let d = o.dropped_to.expect("a bound was applied");
        assert_eq!(o.versions[0].timestamp, Timestamp::new(509, 0, 0));
        assert!(d < o.versions[0].key());
        // A dropped version coming back from a stale replica (here still uploading) stays dropped,
        // and a write lands above everything the key has seen.
        let before = o.clone();
        o.merge(&Object::new(b, "k".into(), vec![v(20, 10, uploading())]));
        assert_eq!(o, before);
        assert_eq!(o.last_timestamp(), Some(Timestamp::new(5499, 0, 0)));
        // The encoded entry stays small even when every kept version and upload carries headers.
        let mut big = Object::new(b, "k".into(), vec![]);
        for i in 0..(MAX_VERSIONS as u64 + 10) {
            let mut uuid = [0u8; 32];
            uuid[..8].copy_from_slice(&i.to_be_bytes());
            for multipart in [false, true] {
                uuid[8] = multipart as u8;
                big.merge(&Object::new(
                    b,
                    "k".into(),
                    vec![ObjectVersion::new(
                        uuid,
                        Timestamp::new(i, 0, 0),
                        VersionState::Uploading {
                            multipart,
                            headers: vec![("x-amz-meta-a".into(), "v".repeat(2048))],
                            encryption: None,
                        },
                    )],
                ));
            }
        }
        assert_eq!(big.versions.len(), MAX_VERSIONS + MAX_UPLOADS);
        let len = big.encode().unwrap().len();
        assert!(len < 4 << 20, "{len} bytes");
    }

    /// The versions whose deletion the `updated` hook queues for `old` → `new`.
    fn released(old: &Object, new: &Object) -> Vec<Hash> {
        released_by(old, Some(new))
    }

    /// The same, `new = None` being the local removal of the entry.
    fn released_by(old: &Object, new: Option<&Object>) -> Vec<Hash> {
        let db = crate::db::Db::open_mem();
        let schema = ObjectSchema {
            version_queue: InsertQueue::open(&db).unwrap(),
        };
        db.transaction(|tx| {
            schema
                .updated(tx, Some(old), new)
                .map_err(crate::db::TxError::Abort)
        })
        .unwrap();
        crate::model::version::queued_deletions(&schema.version_queue)
    }

    #[test]
    fn versions_dropped_by_the_bound_release_their_blocks() {
        let b = [0u8; 32];
        let mut versions = vec![v(1, 1, inline(b"one"))];
        for i in 0..(MAX_VERSIONS as u64 - 1) {
            let mut uuid = [0u8; 32];
            uuid[..8].copy_from_slice(&(100 + i).to_be_bytes());
            versions.push(ObjectVersion::new(
                uuid,
                Timestamp::new(10 + i, 0, 0),
                aborted(),
            ));
        }
        let old = Object::new(b, "k".into(), versions);
        assert_eq!(old.versions.len(), MAX_VERSIONS);
        // Two more uploads start: the two oldest go. The inline version has no blocks; the first
        // aborted one was released when it was aborted, and its release is queued again (harmless:
        // deleting a version is idempotent).
        let mut new = old.clone();
        new.merge(&Object::new(
            b,
            "k".into(),
            vec![v(5000, 2, uploading()), v(5001, 3, uploading())],
        ));
        assert_eq!(new.versions.len(), MAX_VERSIONS);
        let mut first_aborted = [0u8; 32];
        first_aborted[..8].copy_from_slice(&100u64.to_be_bytes());
        assert_eq!(released(&old, &new), vec![first_aborted]);
        // An uploading version dropped by the bound is released.
        let mut newer = new.clone();
        for i in 0..(MAX_VERSIONS as u64) {
            let mut uuid = [9u8; 32];
            uuid[..8].copy_from_slice(&i.to_be_bytes());
            newer.merge(&Object::new(
                b,
                "k".into(),
                vec![ObjectVersion::new(
                    uuid,
                    Timestamp::new(6000 + i, 0, 0),
                    aborted(),
                )],
            ));
        }
        let r = released(&new, &newer);
        assert!(
            r.contains(&[2; 32]) && r.contains(&[3; 32]),
            "the uploads are released"
        );
        assert!(
            newer.versions.iter().all(|x| !r.contains(&x.uuid)),
            "no kept version is released"
        );
    }

    /// Regression: a hand-off (or a GC) removes the entry locally and must not release its versions
    /// (that deleted the block lists of every multi-block object of a partition whose node was
    /// retired from the layout, on every node).
    #[test]
    fn a_local_removal_releases_nothing() {
        let b = [0u8; 32];
        let old = Object::new(
            b,
            "k".into(),
            vec![v(1, 1, uploading()), v(2, 2, aborted())],
        );
        assert!(old.versions.iter().any(|x| x.may_have_blocks()));
        assert_eq!(released_by(&old, None), Vec::<Hash>::new());
        // Aborting a version of a present entry still releases it.
        let mut aborted_one = old.clone();
        aborted_one.merge(&Object::new(b, "k".into(), vec![v(1, 1, aborted())]));
        assert_eq!(released(&old, &aborted_one), vec![[1; 32]]);
    }

    #[test]
    fn old_entries_decode_with_their_floor() {
        let b = [0u8; 32];
        let old = v1::Object {
            bucket: b,
            key: "k".into(),
            versions: vec![v(1, 1, inline(b"one")), v(2, 2, aborted())],
        };
        let bytes = old.encode().unwrap();
        let o = Object::decode(&bytes).unwrap();
        assert_eq!(o.floor, Some((Timestamp::new(1, 0, 0), [1; 32])));
        assert_eq!(o.current().unwrap().uuid, [1; 32]);
        assert_eq!(o.versions.len(), 2);
    }

    #[test]
    fn encryption_is_recorded_and_absent_for_plain_data() {
        let mut st = inline(b"x");
        let plain = Object::new([0; 32], "k".into(), vec![v(1, 1, st.clone())]);
        if let VersionState::Complete(ObjectData::Inline { meta, .. }) = &mut st {
            meta.encryption = Some(Encryption::SseC { key_md5: [3; 16] });
        }
        let enc = Object::new([0; 32], "k".into(), vec![v(1, 1, st)]);
        let (p, e) = (plain.encode().unwrap(), enc.encode().unwrap());
        assert!(
            !p.windows(10).any(|w| w == b"encryption"),
            "a plain entry encodes as before SSE-C, so older releases' entries and these decode alike"
        );
        assert_eq!(Object::decode(&p).unwrap(), plain);
        assert_eq!(Object::decode(&e).unwrap(), enc);
    }

    /// An object entry merged with a small bound, so that the property tests reach it.
    #[derive(Clone, Debug, PartialEq)]
    struct Small(Object);

    impl Crdt for Small {
        fn merge(&mut self, other: &Self) {
            self.0.merge_bounded(&other.0, 3, 2);
        }
    }

    /// A version of a small universe: a uuid always has the same timestamp, its state varies.
    /// Its tags and ACL vary too (registers with small timestamps, so that they often collide).
    /// Uuids 0 to 5 are simple writes (uploading, complete or aborted), 6 to 9 multipart uploads,
    /// under way or ended (as [`written`] writes them: aborted stands for ended).
    fn version() -> impl Strategy<Value = ObjectVersion> {
        (0u8..10, 0u8..5, 0u8..4, 0u8..4, 0u64..3, 0u64..3).prop_map(
            |(id, st, tags, acl, tags_ts, acl_ts)| {
                let state = match (id >= 6, st) {
                    (false, 0) => uploading(),
                    (false, 1) => inline(b"a"),
                    (false, 2) => inline(b"b"),
                    (false, 3) => VersionState::Complete(ObjectData::DeleteMarker),
                    (true, 0..=2) => multipart(),
                    _ => aborted(),
                };
                let mut x = v((id as u64 * 7) % 10, id, state);
                x.tags = (tags > 0)
                    .then(|| Lww::raw(tags_ts, vec![("k".to_string(), tags.to_string())]));
                x.acl = match acl {
                    0 => None,
                    1 => Some(Lww::raw(acl_ts, CannedAcl::Private)),
                    _ => Some(Lww::raw(acl_ts, CannedAcl::PublicRead)),
                };
                x
            },
        )
    }

    /// The entry a writer writes for `x`: a multipart upload (uuids 6 to 9) ends by its key.
    fn written(x: ObjectVersion) -> Object {
        if x.uuid[0] >= 6 && x.state == aborted() {
            Object::ending([0; 32], "k".into(), x.key())
        } else {
            Object::new([0; 32], "k".into(), vec![x])
        }
    }

    /// An entry as replicas build it: a few writes merged in some order.
    fn small() -> impl Strategy<Value = Small> {
        proptest::collection::vec(proptest::collection::vec(version(), 0..4), 0..4).prop_map(
            |writes| {
                let mut o = Small(Object::new([0; 32], "k".into(), vec![]));
                for w in writes {
                    let mut e = Object::new([0; 32], "k".into(), vec![]);
                    for x in w {
                        e.merge_bounded(&written(x), 3, 2);
                    }
                    o.merge(&Small(e));
                }
                o
            },
        )
    }

    proptest! {
        #[test]
        fn object_laws(a in small(), b in small(), c in small()) {
            laws::check(&a, &b, &c);
        }

        #[test]
        fn object_laws_with_the_real_bound(
            a in proptest::collection::vec(version(), 0..8),
            b in proptest::collection::vec(version(), 0..8),
            c in proptest::collection::vec(version(), 0..8),
        ) {
            let o = |x: Vec<ObjectVersion>| {
                let mut e = Object::new([0; 32], "k".into(), vec![]);
                for v in x {
                    e.merge(&written(v));
                }
                e
            };
            laws::check(&o(a), &o(b), &o(c));
        }

        /// The bound holds, and no live version is below a mark.
        #[test]
        fn object_stays_bounded(a in small(), b in small()) {
            let m = merged(&a, &b).0;
            prop_assert!(m.versions.iter().all(|x| !m.is_dead(x)));
            let uploads = m.versions.iter().filter(|x| is_multipart_upload(x)).count();
            prop_assert!(m.versions.len() - uploads <= 3);
            prop_assert!(uploads + m.ended.len() <= 2);
            prop_assert!(m.versions.windows(2).all(|w| w[0].key() < w[1].key()));
        }
    }

    #[test]
    fn tags_and_acl_merge_independently_of_each_other_and_of_the_state() {
        let b = [0u8; 32];
        let base = v(1, 1, inline(b"x"));
        let mut tagged = base.clone();
        tagged.tags = Some(Lww::raw(5, vec![("a".into(), "1".into())]));
        let mut public = base.clone();
        public.acl = Some(Lww::raw(6, CannedAcl::PublicRead));
        let mut older_tags = base.clone();
        older_tags.tags = Some(Lww::raw(4, vec![("old".into(), "0".into())]));
        let mut o = Object::new(b, "k".into(), vec![tagged]);
        o.merge(&Object::new(b, "k".into(), vec![public]));
        o.merge(&Object::new(b, "k".into(), vec![older_tags]));
        let cur = o.current().unwrap();
        assert_eq!(cur.tag_set(), &[("a".to_string(), "1".to_string())]);
        assert_eq!(cur.canned_acl(), CannedAcl::PublicRead);
        assert_eq!(cur.data(), base.data(), "the data is untouched");
    }

    #[test]
    fn entries_written_before_tags_and_acls_decode_as_private_and_untagged() {
        /// `ObjectVersion` and `Object` as `GRobject02` was written before tags and ACLs.
        #[derive(Serialize)]
        struct OldVersion {
            uuid: Hash,
            timestamp: Timestamp,
            state: VersionState,
        }
        #[derive(Serialize)]
        struct OldObject {
            bucket: Hash,
            key: String,
            versions: Vec<OldVersion>,
            floor: Option<VersionKey>,
            dropped_to: Option<VersionKey>,
        }
        let old = OldObject {
            bucket: [3; 32],
            key: "k".into(),
            versions: vec![OldVersion {
                uuid: [1; 32],
                timestamp: Timestamp::new(1, 0, 0),
                state: inline(b"one"),
            }],
            floor: Some((Timestamp::new(1, 0, 0), [1; 32])),
            dropped_to: None,
        };
        let mut bytes = b"GRobject02".to_vec();
        rmp_serde::encode::write_named(&mut bytes, &old).unwrap();
        let o = Object::decode(&bytes).unwrap();
        let cur = o.current().unwrap();
        assert_eq!((cur.tags.clone(), cur.acl.clone()), (None, None));
        assert_eq!(cur.canned_acl(), CannedAcl::Private);
        assert!(cur.tag_set().is_empty());
        // And an entry without attributes encodes as before (the fields are skipped).
        let again = Object::new([3; 32], "k".into(), vec![v(1, 1, inline(b"one"))]);
        assert_eq!(again.encode().unwrap(), bytes);
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
