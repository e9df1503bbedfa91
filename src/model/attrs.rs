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
    pub(super) async fn change_bucket(
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

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::time::Duration;

    use bytes::Bytes;

    use crate::layout::NodeRole;
    use crate::model::object::{CannedAcl, ObjectMeta, VersionAttrs};
    use crate::test_support::{NodeConfig, start_node, wait_until};

    /// An anonymous GET on the node's S3 port: the status.
    fn anonymous_get(ip: &str, path: &str) -> u16 {
        let mut s = std::net::TcpStream::connect(format!("{ip}:3900")).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        resp[9..12].parse().unwrap()
    }

    /// The admins' switch on a one-node store: every object of the bucket becomes anonymously
    /// readable and private again, whatever its own ACL; tags and ACL change without the data.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bucket_public_read_switch_and_object_attributes() {
        let root = tempfile::tempdir().unwrap();
        let ip = format!("127.{}.252.1", 10 + (std::process::id() % 200) as u8);
        let mut cfg = NodeConfig::new(&ip);
        cfg.replication_factor = 1;
        let node = start_node(cfg.write(root.path())).await;
        let id = node.system.id();
        node.layout
            .update(|h| {
                h.stage_role(
                    id,
                    Some(NodeRole {
                        zone: "a".into(),
                        capacity: Some(10 << 30),
                        tags: vec![],
                    }),
                );
                h.apply(None)
            })
            .unwrap();
        wait_until("the layout", Duration::from_secs(30), || {
            node.layout.version() == 1
        })
        .await;
        let m = node.model.clone();
        let b = m.create_bucket("switch", None).await.unwrap();
        let up = m.start_put(b.id, "obj".into(), vec![]);
        let body = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"data"))]);
        let stored = up.write(body).await.unwrap();
        let meta = ObjectMeta {
            size: 4,
            etag: "e".into(),
            headers: vec![],
            checksum: None,
            parts: None,
            encryption: None,
        };
        let attrs = VersionAttrs::new(m.node, vec![("k".into(), "v".into())], CannedAcl::Private);
        up.commit(stored, meta, attrs).await.unwrap();

        assert_eq!(anonymous_get(&ip, "/switch/obj"), 403);
        m.set_bucket_public_read(&b.id, true).await.unwrap();
        assert_eq!(anonymous_get(&ip, "/switch/obj"), 200);
        assert_eq!(anonymous_get(&ip, "/switch/absent"), 403);
        assert_eq!(
            anonymous_get(&ip, "/switch?list-type=2"),
            403,
            "not the listing"
        );
        m.set_bucket_public_read(&b.id, false).await.unwrap();
        assert_eq!(anonymous_get(&ip, "/switch/obj"), 403);

        // The object's own ACL and tags, each changed without the other or the data.
        let v = m
            .set_object_acl(&b.id, "obj", CannedAcl::PublicRead)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(v.tag_set(), &[("k".to_string(), "v".to_string())]);
        m.set_object_tags(&b.id, "obj", vec![]).await.unwrap();
        let cur = m.get_object(&b.id, "obj").await.unwrap().unwrap();
        let cur = cur.current().unwrap();
        assert_eq!(
            (cur.canned_acl(), cur.tag_set().len()),
            (CannedAcl::PublicRead, 0)
        );
        assert_eq!(anonymous_get(&ip, "/switch/obj"), 200);
        assert!(
            m.set_object_tags(&b.id, "absent", vec![])
                .await
                .unwrap()
                .is_none()
        );
    }
}
