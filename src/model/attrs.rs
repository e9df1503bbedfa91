//! Changing what can change on a stored object or bucket without touching its data: a version's tags
//! and canned ACL, a bucket's canned ACL and the admins' public-read switch. Each is a last-writer-wins
//! register of its own (see [`super::object::VersionAttrs`], [`super::bucket::BucketParams`]), so two
//! concurrent changes of different attributes both stay.

use super::bucket::Bucket;
use super::object::{CannedAcl, Object, ObjectVersion, Tags, set_register};
use super::{Model, ModelError};
use crate::table::schema::EmptyKey;
use crate::util::hash::Hash;

impl Model {
    /// Apply `change` to the current version of `key`: one quorum read of the object entry, one
    /// quorum write of that version with its changed register (merged into each replica's entry,
    /// so its data and other registers are untouched; if it was superseded meanwhile, the write is
    /// dropped with it). `None` when the key has no current version.
    async fn change_current(
        &self,
        bucket: &Hash,
        key: &str,
        change: impl FnOnce(&mut ObjectVersion, u64),
    ) -> Result<Option<ObjectVersion>, ModelError> {
        let Some(object) = self.objects.get(bucket, &key.to_string()).await? else {
            return Ok(None);
        };
        let Some(mut v) = object.current().cloned() else {
            return Ok(None);
        };
        change(&mut v, self.node);
        self.objects
            .insert(&Object::new(*bucket, key.to_string(), vec![v.clone()]))
            .await?;
        Ok(Some(v))
    }

    /// Replace the tags of the current version of `key` (empty: delete them).
    pub async fn set_object_tags(
        &self,
        bucket: &Hash,
        key: &str,
        tags: Tags,
    ) -> Result<Option<ObjectVersion>, ModelError> {
        self.change_current(bucket, key, |v, node| set_register(&mut v.tags, node, tags))
            .await
    }

    /// Set the canned ACL of the current version of `key`.
    pub async fn set_object_acl(
        &self,
        bucket: &Hash,
        key: &str,
        acl: CannedAcl,
    ) -> Result<Option<ObjectVersion>, ModelError> {
        self.change_current(bucket, key, |v, node| set_register(&mut v.acl, node, acl))
            .await
    }

    /// Apply `change` to a bucket's parameters (a quorum read, then a quorum write of the entry).
    async fn change_bucket(
        &self,
        bucket: &Hash,
        change: impl FnOnce(&mut super::bucket::BucketParams, u64),
    ) -> Result<Bucket, ModelError> {
        let mut b = self
            .buckets
            .get(bucket, &EmptyKey)
            .await?
            .filter(|b| !b.state.is_deleted())
            .ok_or_else(|| ModelError::NoSuchBucket(hex::encode(bucket)))?;
        let p = b
            .state
            .get_mut()
            .ok_or_else(|| ModelError::NoSuchBucket(hex::encode(bucket)))?;
        change(p, self.node);
        self.buckets.insert(&b).await?;
        Ok(b)
    }

    /// Set a bucket's canned ACL (PutBucketAcl): `PublicRead` lets anyone list the bucket.
    pub async fn set_bucket_acl(
        &self,
        bucket: &Hash,
        acl: CannedAcl,
    ) -> Result<Bucket, ModelError> {
        self.change_bucket(bucket, |p, node| p.set_acl(node, acl))
            .await
    }

    /// The admins' switch (`grenier bucket public <b> --read` / `--deny`): when on, anyone may read
    /// (GET, HEAD) every object of the bucket without a signature, whatever the objects' own ACLs;
    /// when off, only objects whose own ACL is `public-read` are. It does not open the listing.
    pub async fn set_bucket_public_read(
        &self,
        bucket: &Hash,
        public: bool,
    ) -> Result<Bucket, ModelError> {
        self.change_bucket(bucket, |p, node| p.set_objects_public(node, public))
            .await
    }
}
