//! Buckets (`bucket` table) and their global names (`bucket_alias` table), both a full copy on every
//! node so that resolving a name and checking a permission never leave the node.
//!
//! A bucket has a random 32-byte id; objects are stored under the id, so a bucket can be renamed
//! (aliased) without moving anything. A name points to at most one bucket (last writer wins).

use serde::{Deserialize, Serialize};

use super::cors::CorsConfig;
use super::lifecycle::LifecycleConfig;
use super::object::{CannedAcl, set_register};
use super::website::WebsiteConfig;
use crate::crdt::{Crdt, Deletable, Lww};
use crate::table::schema::{EmptyKey, Entry, TableSchema};
use crate::util::encode::{NoPrevious, Versioned};
use crate::util::hash::Hash;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketParams {
    /// Milliseconds since the epoch.
    pub created: u64,
    /// The bucket's global name (also recorded in `bucket_alias`).
    pub name: Lww<String>,
    /// The bucket's canned ACL (PutBucketAcl, x-amz-acl on CreateBucket). `PublicRead` lets anyone
    /// list the bucket (as AWS); it does not make its objects readable. Absent = private.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl: Option<Lww<CannedAcl>>,
    /// The admins' switch (`grenier bucket public`): every object of the bucket may be read (GET,
    /// HEAD) by anyone, whatever its own ACL. Listing is not opened by it. Absent = off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_read: Option<Lww<bool>>,
    /// The static website configuration (PutBucketWebsite, `grenier bucket website`); `None` inside
    /// the register once deleted. Absent = no website.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub website: Option<Lww<Option<WebsiteConfig>>>,
    /// The CORS rules (PutBucketCors). Absent = none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<Lww<Option<CorsConfig>>>,
    /// The lifecycle rules (PutBucketLifecycleConfiguration). Absent = none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lww<Option<LifecycleConfig>>>,
}

impl BucketParams {
    pub fn new(node: u64, created: u64, name: String, acl: CannedAcl) -> BucketParams {
        BucketParams {
            created,
            name: Lww::new_by(node, name),
            acl: (acl != CannedAcl::Private).then(|| Lww::new_by(node, acl)),
            public_read: None,
            website: None,
            cors: None,
            lifecycle: None,
        }
    }
    /// The bucket's canned ACL (private when none was set).
    pub fn canned_acl(&self) -> CannedAcl {
        self.acl.as_ref().map_or(CannedAcl::Private, |a| *a.get())
    }
    /// Whether the admins opened every object of the bucket to anonymous reads.
    pub fn objects_public(&self) -> bool {
        self.public_read.as_ref().is_some_and(|p| *p.get())
    }
    pub fn set_acl(&mut self, node: u64, acl: CannedAcl) {
        set_register(&mut self.acl, node, acl);
    }
    pub fn set_objects_public(&mut self, node: u64, public: bool) {
        set_register(&mut self.public_read, node, public);
    }
    pub fn website(&self) -> Option<&WebsiteConfig> {
        self.website.as_ref().and_then(|w| w.get().as_ref())
    }
    pub fn set_website(&mut self, node: u64, website: Option<WebsiteConfig>) {
        set_register(&mut self.website, node, website);
    }
    pub fn cors(&self) -> Option<&CorsConfig> {
        self.cors.as_ref().and_then(|c| c.get().as_ref())
    }
    pub fn set_cors(&mut self, node: u64, cors: Option<CorsConfig>) {
        set_register(&mut self.cors, node, cors);
    }
    pub fn lifecycle(&self) -> Option<&LifecycleConfig> {
        self.lifecycle.as_ref().and_then(|l| l.get().as_ref())
    }
    pub fn set_lifecycle(&mut self, node: u64, lifecycle: Option<LifecycleConfig>) {
        set_register(&mut self.lifecycle, node, lifecycle);
    }
}

impl Crdt for BucketParams {
    fn merge(&mut self, other: &Self) {
        self.created = self.created.min(other.created);
        self.name.merge(&other.name);
        self.acl.merge(&other.acl);
        self.public_read.merge(&other.public_read);
        self.website.merge(&other.website);
        self.cors.merge(&other.cors);
        self.lifecycle.merge(&other.lifecycle);
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub id: Hash,
    pub state: Deletable<BucketParams>,
}

impl Bucket {
    pub fn new(id: Hash, params: BucketParams) -> Bucket {
        Bucket {
            id,
            state: Deletable::Present(params),
        }
    }
    pub fn params(&self) -> Option<&BucketParams> {
        self.state.get()
    }
}

impl Crdt for Bucket {
    fn merge(&mut self, other: &Self) {
        self.state.merge(&other.state);
    }
}

impl Versioned for Bucket {
    const MARKER: &'static [u8] = b"GRbucket01";
    type Previous = NoPrevious;
}

impl Entry<Hash, EmptyKey> for Bucket {
    fn partition_key(&self) -> &Hash {
        &self.id
    }
    fn sort_key(&self) -> &EmptyKey {
        &EmptyKey
    }
    fn is_tombstone(&self) -> bool {
        self.state.is_deleted()
    }
}

pub struct BucketSchema;

impl TableSchema for BucketSchema {
    const TABLE_NAME: &'static str = "bucket";
    type P = Hash;
    type S = EmptyKey;
    type E = Bucket;
    type Filter = ();
    fn matches_filter(_: &Bucket, _: &()) -> bool {
        true
    }
}

/// A global bucket name → bucket id (None: the name is free).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketAlias {
    pub name: String,
    pub bucket: Lww<Option<Hash>>,
}

impl Crdt for BucketAlias {
    fn merge(&mut self, other: &Self) {
        self.bucket.merge(&other.bucket);
    }
}

impl Versioned for BucketAlias {
    const MARKER: &'static [u8] = b"GRbalias01";
    type Previous = NoPrevious;
}

impl Entry<String, EmptyKey> for BucketAlias {
    fn partition_key(&self) -> &String {
        &self.name
    }
    fn sort_key(&self) -> &EmptyKey {
        &EmptyKey
    }
    fn is_tombstone(&self) -> bool {
        self.bucket.get().is_none()
    }
}

pub struct BucketAliasSchema;

impl TableSchema for BucketAliasSchema {
    const TABLE_NAME: &'static str = "bucket_alias";
    type P = String;
    type S = EmptyKey;
    type E = BucketAlias;
    type Filter = ();
    fn matches_filter(_: &BucketAlias, _: &()) -> bool {
        true
    }
}

/// S3 bucket naming rules: 3–63 characters of lowercase letters, digits, '-' and '.', starting and
/// ending with a letter or digit, no "..", not an IP address, no reserved prefixes/suffixes.
pub fn valid_bucket_name(n: &str) -> bool {
    let b = n.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'.')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && !n.contains("..")
        && n.parse::<std::net::Ipv4Addr>().is_err()
        && !n.starts_with("xn--")
        && !n.starts_with("sthree-")
        && !n.ends_with("-s3alias")
        && !n.ends_with("--ol-s3")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crdt::laws;
    use proptest::prelude::*;

    fn params() -> impl Strategy<Value = BucketParams> {
        (0u64..3, 0u8..3, 0u64..3, 0u8..3, 0u64..3).prop_map(|(created, acl, ats, public, pts)| {
            BucketParams {
                created,
                name: Lww::raw(created, format!("b{created}")),
                acl: match acl {
                    0 => None,
                    1 => Some(Lww::raw(ats, CannedAcl::Private)),
                    _ => Some(Lww::raw(ats, CannedAcl::PublicRead)),
                },
                public_read: (public > 0).then(|| Lww::raw(pts, public == 2)),
                website: (public == 1).then(|| {
                    Lww::raw(
                        ats,
                        (acl > 0).then(|| WebsiteConfig {
                            index_suffix: Some(format!("i{acl}")),
                            ..Default::default()
                        }),
                    )
                }),
                cors: None,
                lifecycle: None,
            }
        })
    }

    proptest! {
        #[test]
        fn bucket_params_laws(a in params(), b in params(), c in params()) {
            laws::check(&a, &b, &c);
        }
    }

    #[test]
    fn buckets_written_before_acls_decode_as_private() {
        #[derive(Serialize)]
        struct OldParams {
            created: u64,
            name: Lww<String>,
        }
        #[derive(Serialize)]
        struct OldBucket {
            id: Hash,
            state: Deletable<OldParams>,
        }
        let old = OldBucket {
            id: [1; 32],
            state: Deletable::Present(OldParams {
                created: 5,
                name: Lww::raw(5, "b".into()),
            }),
        };
        let mut bytes = Bucket::MARKER.to_vec();
        rmp_serde::encode::write_named(&mut bytes, &old).unwrap();
        let b = Bucket::decode(&bytes).unwrap();
        let p = b.params().unwrap();
        assert_eq!(
            (p.canned_acl(), p.objects_public()),
            (CannedAcl::Private, false)
        );
        assert_eq!(p.name.get(), "b");
    }

    #[test]
    fn bucket_names() {
        for ok in ["abc", "my-bucket.1", "a1b", &"a".repeat(63)] {
            assert!(valid_bucket_name(ok), "{ok}");
        }
        for bad in [
            "ab",
            "Abc",
            "-abc",
            "abc-",
            "a..b",
            "192.168.1.1",
            "a_b",
            "xn--abc",
            &"a".repeat(64),
        ] {
            assert!(!valid_bucket_name(bad), "{bad}");
        }
    }
}
