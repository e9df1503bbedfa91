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
//!
//! Superseded attempts are dropped as entries merge: for each part number the entry keeps the newest
//! finished attempt and at most [`MAX_PART_ATTEMPTS`] newer ones (still under way, or failed); older
//! attempts can never be chosen again (a part's newest finished attempt is the one that counts), and
//! the hook releases their blocks. Like the object entry's bound, this is a closure (it only depends
//! on the merged information), so merge stays commutative, associative and idempotent, and a dropped
//! attempt that comes back from a stale replica is dropped again. An entry thus holds at most
//! 10,000 × (1 + [`MAX_PART_ATTEMPTS`]) attempts of about 150 bytes: under 8 MiB, far below the RPC
//! message limit. A constant, not a configuration key: every replica must apply the same rule.
//!
//! An attempt is written up to three times: started (no ETag), then **pending** (ETag, size and
//! checksum known, written as soon as the body has ended, in parallel with the writes of its last
//! blocks), then confirmed (once every block was acknowledged, after the client got its answer). A
//! pending attempt may be one whose last blocks failed: it supersedes nothing, and whoever reads it
//! (CompleteMultipartUpload, ListParts) first checks its blocks (`Model::settle_parts`): stored on a
//! quorum, it counts as finished; not, as an attempt under way. So an UploadPart costs one round trip
//! after its last byte (the last block's write and the pending entry's, together), not two.

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
    /// Written with the ETag while the last blocks may still be in flight: not known to be stored
    /// until confirmed (or checked, see the module doc). Absent (false) in entries written before it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub pending: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl MpuPart {
    /// Finished, and known to be stored: it supersedes the older attempts of its part number.
    pub fn is_finished(&self) -> bool {
        self.etag.is_some() && !self.pending
    }
}

impl Crdt for MpuPart {
    /// An attempt is written up to three times (started, pending, confirmed): the later state wins.
    fn merge(&mut self, other: &Self) {
        let rank = |p: &MpuPart| {
            (
                p.etag.clone(),
                p.size,
                p.checksum.clone(),
                p.version,
                !p.pending,
            )
        };
        if rank(other) > rank(self) {
            *self = other.clone();
        }
    }
}

/// Attempts newer than a part number's newest finished one that an entry keeps (see the module doc).
pub const MAX_PART_ATTEMPTS: usize = 4;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultipartUpload {
    pub upload_id: Hash,
    pub deleted: MaxBool,
    pub bucket: Hash,
    pub key: String,
    /// (part number, attempt timestamp) → attempt.
    pub parts: GMap<(u32, Timestamp), MpuPart>,
    /// Set with `deleted` by a CompleteMultipartUpload: the uuid of the object version it made
    /// (`completed_uuid` in `multipart.rs`), so that a retry with another list of parts is told
    /// apart from one after the object was overwritten. Absent from entries written before it existed.
    #[serde(default)]
    pub completed: Option<Hash>,
    /// The checksum declared at CreateMultipartUpload (written once; absent in older entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<UploadChecksum>,
}

/// An upload's `x-amz-checksum-algorithm` (its name, e.g. `CRC32`) and `x-amz-checksum-type`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct UploadChecksum {
    pub algorithm: String,
    /// `FULL_OBJECT` (CRC of the whole object) rather than `COMPOSITE` (checksum of the parts').
    pub full_object: bool,
}

impl MultipartUpload {
    pub fn new(upload_id: Hash, bucket: Hash, key: String) -> MultipartUpload {
        MultipartUpload {
            upload_id,
            deleted: MaxBool::new(false),
            bucket,
            key,
            parts: GMap::new(),
            completed: None,
            checksum: None,
        }
    }

    /// The latest finished attempt of each part number, in order. Pending attempts do not count:
    /// settle them first (`Model::settle_parts`).
    pub fn finished_parts(&self) -> Vec<(u32, Timestamp, MpuPart)> {
        let mut out: Vec<(u32, Timestamp, MpuPart)> = vec![];
        for ((n, ts), p) in self.parts.iter() {
            if !p.is_finished() {
                continue;
            }
            match out.last_mut() {
                Some(last) if last.0 == *n => *last = (*n, *ts, p.clone()),
                _ => out.push((*n, *ts, p.clone())),
            }
        }
        out
    }

    /// The pending attempts newer than their part number's latest finished one: those that could
    /// still be the part (older ones are superseded whatever their blocks).
    pub fn unsettled_parts(&self) -> Vec<((u32, Timestamp), MpuPart)> {
        let finished = self.finished_parts();
        self.parts
            .iter()
            .filter(|((n, ts), p)| {
                p.pending
                    && p.etag.is_some()
                    && !finished.iter().any(|(fn_, fts, _)| fn_ == n && fts > ts)
            })
            .map(|(slot, p)| (*slot, p.clone()))
            .collect()
    }

    /// Apply the verdict on a pending attempt to this copy (not written): stored, it is finished;
    /// not, it counts as an attempt under way (its ETag forgotten here).
    pub fn settle(&mut self, slot: (u32, Timestamp), stored: bool) {
        self.parts = self
            .parts
            .iter()
            .map(|(k, p)| {
                let mut p = p.clone();
                if *k == slot && p.pending {
                    if stored {
                        p.pending = false;
                    } else {
                        (p.etag, p.size, p.checksum, p.pending) = (None, None, None, false);
                    }
                }
                (*k, p)
            })
            .collect();
        self.prune();
    }
}

impl MultipartUpload {
    /// Record an attempt (`self ⊔ {slot: part}`, then the superseded attempts are dropped).
    pub fn put_part(&mut self, n: u32, ts: Timestamp, part: MpuPart) {
        self.parts.put((n, ts), part);
        self.prune();
    }

    /// Drop the attempts that are superseded (older than their part number's newest finished
    /// attempt) or in excess (more than [`MAX_PART_ATTEMPTS`] newer than it).
    fn prune(&mut self) {
        let mut keep: Vec<(u32, Timestamp)> = vec![];
        let all: Vec<(&(u32, Timestamp), &MpuPart)> = self.parts.iter().collect();
        // Walk each part number's attempts from the newest.
        let mut i = all.len();
        while i > 0 {
            let n = all[i - 1].0.0;
            let mut newer = 0;
            while i > 0 && all[i - 1].0.0 == n {
                let (slot, part) = all[i - 1];
                i -= 1;
                if part.is_finished() {
                    keep.push(*slot);
                    // Everything older of this part number is superseded.
                    while i > 0 && all[i - 1].0.0 == n {
                        i -= 1;
                    }
                    break;
                }
                if newer < MAX_PART_ATTEMPTS {
                    keep.push(*slot);
                    newer += 1;
                }
            }
        }
        if keep.len() < all.len() {
            keep.sort();
            self.parts = keep
                .iter()
                .filter_map(|k| self.parts.get(k).map(|p| (*k, p.clone())))
                .collect();
        }
    }
}

impl Crdt for MultipartUpload {
    fn merge(&mut self, other: &Self) {
        self.deleted.merge(&other.deleted);
        self.parts.merge(&other.parts);
        // Racing Completes of one upload with the same parts agree; with other parts, the highest
        // uuid wins on every replica alike.
        self.completed = self.completed.max(other.completed);
        // Set once at creation (and only there): the larger value keeps merge a join.
        if other.checksum > self.checksum {
            self.checksum = other.checksum.clone();
        }
        self.prune();
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
            // Attempts dropped as superseded release their blocks.
            for (slot, part) in old.iter().flat_map(|o| o.parts.iter()) {
                if !new.parts.contains_key(slot) {
                    self.version_queue.insert(
                        tx,
                        &Version::deleted(part.version, new.bucket, new.key.clone()),
                    )?;
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crdt::laws::{self, merged};
    use proptest::prelude::*;

    fn attempt(n: u32, ts: u64, finished: bool) -> MultipartUpload {
        attempt_in(n, ts, if finished { 2 } else { 0 })
    }

    /// An attempt in state 0 (started), 1 (pending) or 2 (finished and confirmed).
    fn attempt_in(n: u32, ts: u64, state: u8) -> MultipartUpload {
        let mut m = MultipartUpload::new([0; 32], [0; 32], "k".into());
        m.put_part(
            n,
            Timestamp::new(ts, 0, 0),
            MpuPart {
                version: [ts as u8; 32],
                etag: (state > 0).then(|| format!("e{ts}")),
                size: (state > 0).then_some(ts),
                checksum: None,
                pending: state == 1,
            },
        );
        m
    }

    /// A pending attempt supersedes nothing and is no finished part until settled; confirmed (by
    /// its UploadPart, or settled as stored) it supersedes the older ones; settled as not stored it
    /// is an attempt under way, and the older finished attempt is still the part.
    #[test]
    fn pending_attempts_count_once_confirmed_or_settled() {
        let mut m = attempt(1, 1, true);
        m.merge(&attempt_in(1, 2, 1));
        assert_eq!(m.parts.len(), 2, "a pending attempt supersedes nothing");
        assert_eq!(m.finished_parts()[0].1, Timestamp::new(1, 0, 0));
        assert_eq!(m.unsettled_parts().len(), 1);
        let mut failed = m.clone();
        failed.settle((1, Timestamp::new(2, 0, 0)), false);
        assert_eq!(failed.finished_parts()[0].1, Timestamp::new(1, 0, 0));
        assert!(failed.unsettled_parts().is_empty());
        let mut stored = m.clone();
        stored.settle((1, Timestamp::new(2, 0, 0)), true);
        assert_eq!(stored.parts.len(), 1, "settled as stored, it supersedes");
        assert_eq!(stored.finished_parts()[0].1, Timestamp::new(2, 0, 0));
        // The confirmation merges in the same way, in either order.
        let mut confirmed = m.clone();
        confirmed.merge(&attempt_in(1, 2, 2));
        assert_eq!(confirmed, stored);
        let mut other = attempt_in(1, 2, 2);
        other.merge(&m);
        assert_eq!(other, stored);
        // A pending attempt older than a finished one needs no settling.
        let mut m = attempt_in(1, 1, 1);
        m.merge(&attempt_in(1, 3, 2));
        assert!(m.unsettled_parts().is_empty());
    }

    /// Confirmed parts encode as before the field existed: a node of the previous release reads them.
    #[test]
    fn confirmed_parts_encode_without_the_pending_field() {
        let m = attempt(1, 1, true);
        let bytes = m.encode().unwrap();
        assert!(!bytes.windows(7).any(|w| w == b"pending"));
        let p = attempt_in(1, 1, 1);
        let bytes = p.encode().unwrap();
        assert!(bytes.windows(7).any(|w| w == b"pending"));
        assert_eq!(MultipartUpload::decode(&bytes).unwrap(), p);
    }

    #[test]
    fn superseded_and_excess_attempts_are_dropped() {
        let mut m = MultipartUpload::new([0; 32], [0; 32], "k".into());
        // Part 1: many failed attempts, then a finished one, then more attempts under way.
        for ts in 0..50 {
            m.merge(&attempt(1, ts, false));
        }
        assert_eq!(
            m.parts.len(),
            MAX_PART_ATTEMPTS,
            "only the newest failed attempts"
        );
        m.merge(&attempt(1, 60, true));
        assert_eq!(
            m.parts.len(),
            1,
            "a finished attempt supersedes the older ones"
        );
        for ts in 61..70 {
            m.merge(&attempt(1, ts, false));
        }
        assert_eq!(m.parts.len(), 1 + MAX_PART_ATTEMPTS);
        assert_eq!(m.finished_parts()[0].1, Timestamp::new(60, 0, 0));
        // A retry that finishes supersedes the first finished attempt.
        m.merge(&attempt(1, 69, true));
        assert_eq!(m.parts.len(), 1);
        assert_eq!(m.finished_parts()[0].1, Timestamp::new(69, 0, 0));
        // A stale replica's copy of a dropped attempt stays dropped; other parts are independent.
        let before = m.clone();
        m.merge(&attempt(1, 5, true));
        assert_eq!(m, before);
        m.merge(&attempt(2, 1, true));
        assert_eq!(m.parts.len(), 2);
    }

    #[test]
    fn dropped_attempts_release_their_blocks() {
        let db = crate::db::Db::open_mem();
        let schema = MpuSchema {
            version_queue: InsertQueue::open(&db).unwrap(),
        };
        let mut old = attempt(1, 1, true);
        old.merge(&attempt(1, 2, false));
        let mut new = old.clone();
        new.merge(&attempt(1, 3, true));
        assert_eq!(new.parts.len(), 1);
        db.transaction(|tx| {
            schema
                .updated(tx, Some(&old), Some(&new))
                .map_err(crate::db::TxError::Abort)
        })
        .unwrap();
        assert_eq!(
            crate::model::version::queued_deletions(&schema.version_queue),
            vec![[1; 32], [2; 32]]
        );
    }

    #[test]
    fn declared_checksum_is_kept_and_optional_on_disk() {
        // An entry written before the field existed (no `checksum` key) still reads.
        let old = attempt(1, 1, true);
        let bytes = old.encode().unwrap();
        assert_eq!(MultipartUpload::decode(&bytes).unwrap().checksum, None);
        let mut created = MultipartUpload::new([0; 32], [0; 32], "k".into());
        created.checksum = Some(UploadChecksum {
            algorithm: "CRC32".into(),
            full_object: true,
        });
        let back = MultipartUpload::decode(&created.encode().unwrap()).unwrap();
        assert_eq!(back, created);
        // Parts written later (without the field) do not erase it, in either order.
        let mut a = created.clone();
        a.merge(&old);
        let mut b = old.clone();
        b.merge(&created);
        assert_eq!(a, b);
        assert_eq!(a.checksum, created.checksum);
    }

    fn upload() -> impl Strategy<Value = MultipartUpload> {
        (
            proptest::collection::vec((1u32..3, 0u64..12, 0u8..3), 0..10),
            proptest::option::of(0u8..3),
        )
            .prop_map(|(xs, completed)| {
                let mut m = MultipartUpload::new([0; 32], [0; 32], "k".into());
                for (n, ts, state) in xs {
                    // An attempt's identity is its timestamp; it is under way, pending or finished.
                    m.merge(&attempt_in(n, ts, state));
                }
                if let Some(c) = completed {
                    // Completed (by one of a few racing Completes).
                    m.deleted.set();
                    m.completed = Some([c; 32]);
                }
                m
            })
    }

    #[test]
    fn entries_without_completion_decode() {
        // An entry as written before `completed` existed: same marker, one field less.
        #[derive(Serialize)]
        struct Before {
            upload_id: Hash,
            deleted: MaxBool,
            bucket: Hash,
            key: String,
            parts: GMap<(u32, Timestamp), MpuPart>,
        }
        let m = attempt(1, 3, true);
        let mut bytes = MultipartUpload::MARKER.to_vec();
        rmp_serde::encode::write_named(
            &mut bytes,
            &Before {
                upload_id: m.upload_id,
                deleted: m.deleted,
                bucket: m.bucket,
                key: m.key.clone(),
                parts: m.parts.clone(),
            },
        )
        .unwrap();
        assert_eq!(MultipartUpload::decode(&bytes).unwrap(), m);
        let mut done = m.clone();
        done.deleted.set();
        done.completed = Some([7; 32]);
        assert_eq!(
            MultipartUpload::decode(&done.encode().unwrap()).unwrap(),
            done
        );
    }

    proptest! {
        #[test]
        fn mpu_laws(a in upload(), b in upload(), c in upload()) {
            laws::check(&a, &b, &c);
        }

        #[test]
        fn mpu_stays_bounded(a in upload(), b in upload()) {
            let m = merged(&a, &b);
            for n in 1..3 {
                let count = m.parts.iter().filter(|((k, _), _)| *k == n).count();
                prop_assert!(count <= 1 + MAX_PART_ATTEMPTS);
            }
        }
    }
}
