//! What S3 stores, on the table engine and the block store: access keys, buckets and their names,
//! objects with their versions, the block lists of versions, and multipart uploads.
//!
//! Tables: `key`, `bucket`, `bucket_alias` (full copy on every node: checked on every request, read
//! locally), `object` (sharded by bucket), `version` (sharded by version uuid). Cascades: dropping or
//! aborting an object version queues the deletion of its `version` entry; a `version` entry queues its
//! block references (live or deleted). Both queues are persistent and filled in the same transaction
//! as the change that causes them (see `table::queue`).
//!
//! **Invariant:** `model` knows nothing about HTTP, XML or signatures; `s3` calls it.

pub mod attrs;
pub mod bucket;
pub mod cors;
pub mod key;
pub mod lifecycle;
pub mod lifecycle_worker;
pub mod mpu;
pub mod multipart;
pub mod object;
pub mod ops;
mod refresh;
pub mod sse;
pub mod version;
pub mod website;

use std::sync::Arc;

use futures::FutureExt;
use rand::RngCore;

use crate::block::BlockManager;
use crate::block::refs::BlockRefSchema;
use crate::crdt::Lww;
use crate::db::Db;
use crate::layout::System;
use crate::table::gc::GcConfig;
use crate::table::queue::{InsertQueue, InsertQueueWorker, table_inserter};
use crate::table::schema::EmptyKey;
use crate::table::{FullReplication, ShardedReplication, Table, TableError, TableInfo};
use crate::util::config::Config;
use crate::util::hash::Hash;
use bucket::{Bucket, BucketAlias, BucketAliasSchema, BucketParams, BucketSchema};
use key::{Key, KeySchema, Permissions};
use object::{ObjectFilter, ObjectSchema};
use version::VersionSchema;

/// Errors of the model layer.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{0}")]
    Table(#[from] TableError),
    #[error("{0}")]
    Block(#[from] crate::block::BlockError),
    #[error("{0}")]
    Db(#[from] crate::db::Error),
    #[error("no such bucket: {0}")]
    NoSuchBucket(String),
    #[error("no such key: {0}")]
    NoSuchAccessKey(String),
    #[error("bucket name {0:?} is already taken")]
    BucketExists(String),
    #[error("invalid bucket name {0:?}: 3-63 lowercase letters, digits, '-' and '.'")]
    InvalidBucketName(String),
    #[error("bucket {0} is not empty")]
    BucketNotEmpty(String),
    #[error("{0}")]
    Invalid(String),
    #[error("several keys are named {0:?}; use the key id")]
    AmbiguousKey(String),
    /// The body stream given to [`ops::PutUpload::write`] failed: its error is kept as it came, boxed,
    /// so the caller that made the stream can take its own error type back out (the s3 layer downcasts
    /// it to its `S3Error`) while this layer knows nothing of HTTP or S3.
    #[error("{0}")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// Encrypted data did not decrypt with the key given (a wrong SSE-C key, or altered bytes).
    #[error("the data does not decrypt with the key given")]
    Decrypt,
    /// A blocking or spawned task of the model died (panicked or was cancelled).
    #[error("{0}: {1}")]
    Task(&'static str, #[source] tokio::task::JoinError),
    /// The gate of a [`ops::PutUpload`] closed: what had to be recorded before its blocks could be
    /// listed was refused or failed (the caller knows why).
    #[error("the upload was not registered")]
    NotRegistered,
    /// The block list of a version is gone: a newer version of its key superseded it (and released
    /// it) while the request that read it was under way.
    #[error("the version's block list is missing (superseded by a newer write of the key)")]
    VersionGone,
}

impl ModelError {
    /// Not enough nodes reachable (the client may retry), as opposed to a bug or bad data.
    pub fn is_unavailable(&self) -> bool {
        match self {
            ModelError::Table(e) => e.is_unavailable(),
            ModelError::Block(e) => e.is_unavailable(),
            ModelError::Db(e) => e.is_unavailable(),
            _ => false,
        }
    }
}

pub type KeyTable = Table<KeySchema, FullReplication>;
pub type BucketTable = Table<BucketSchema, FullReplication>;
pub type AliasTable = Table<BucketAliasSchema, FullReplication>;
pub type ObjectTable = Table<ObjectSchema, ShardedReplication>;
pub type VersionTable = Table<VersionSchema, ShardedReplication>;
pub type MpuTable = Table<mpu::MpuSchema, ShardedReplication>;

pub struct Model {
    pub system: Arc<System>,
    pub block: Arc<BlockManager>,
    pub keys: Arc<KeyTable>,
    pub buckets: Arc<BucketTable>,
    pub aliases: Arc<AliasTable>,
    pub objects: Arc<ObjectTable>,
    pub versions: Arc<VersionTable>,
    pub mpus: Arc<MpuTable>,
    pub block_size: usize,
    /// This node's id as the HLC node number of timestamps it issues.
    pub node: u64,
    /// The newest timestamp this node issued or learned of: new versions go above it.
    clock: std::sync::Mutex<crate::crdt::Timestamp>,
    /// Bounds the majority reads that unknown access key ids may cause (see [`Model::key_for_request`]).
    key_refresh: Arc<refresh::Refresher<Key>>,
    /// Part attempts this node knows stored (see [`Model::settle_parts`]).
    stored_parts: std::sync::Mutex<multipart::StoredParts>,
    /// Test hook ([`multipart::SKIP_PART_CONFIRMATIONS_ENV`] with `test_hooks = true`): parts
    /// uploaded through this node stay pending, for tests of how others settle them.
    skip_part_confirmations: bool,
}

/// How long a request waits for a refresh of the key table before answering from the local copy.
const KEY_REFRESH_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

impl Model {
    /// Build the tables and start their background work (anti-entropy, GC, cascading queues).
    pub fn start(
        system: &Arc<System>,
        db: &Db,
        config: &Config,
        block: Arc<BlockManager>,
        block_ref: Arc<Table<BlockRefSchema, ShardedReplication>>,
        gc: GcConfig,
    ) -> Result<(Arc<Model>, Vec<tokio::task::JoinHandle<()>>), ModelError> {
        let full = || FullReplication {
            system: system.clone(),
        };
        let sharded = || ShardedReplication {
            system: system.clone(),
            consistency: config.consistency_mode,
        };
        let block_ref_queue = InsertQueue::<BlockRefSchema>::open(db)?;
        let version_queue = InsertQueue::<VersionSchema>::open(db)?;
        let keys = Table::new(KeySchema, full(), system, db)?;
        let buckets = Table::new(BucketSchema, full(), system, db)?;
        let aliases = Table::new(BucketAliasSchema, full(), system, db)?;
        let versions = Table::new(
            VersionSchema {
                block_ref_queue: block_ref_queue.clone(),
            },
            sharded(),
            system,
            db,
        )?;
        let objects = Table::new(
            ObjectSchema {
                version_queue: version_queue.clone(),
            },
            sharded(),
            system,
            db,
        )?;
        let mpus = Table::new(
            mpu::MpuSchema {
                version_queue: version_queue.clone(),
            },
            sharded(),
            system,
            db,
        )?;
        let mut tasks = vec![];
        tasks.extend(mpus.spawn_all(gc.clone()));
        tasks.extend(keys.spawn_all(gc.clone()));
        tasks.extend(buckets.spawn_all(gc.clone()));
        tasks.extend(aliases.spawn_all(gc.clone()));
        tasks.extend(versions.spawn_all(gc.clone()));
        tasks.extend(objects.spawn_all(gc));
        tasks.push(InsertQueueWorker::new(block_ref_queue, table_inserter(block_ref)).spawn());
        tasks.push(InsertQueueWorker::new(version_queue, table_inserter(versions.clone())).spawn());
        let model = Arc::new(Model {
            system: system.clone(),
            block,
            keys,
            buckets,
            aliases,
            objects,
            versions,
            mpus,
            block_size: config.block_size as usize,
            node: system.id().as_u64(),
            clock: std::sync::Mutex::new(crate::crdt::Timestamp::MIN),
            key_refresh: refresh::Refresher::new(),
            stored_parts: Default::default(),
            skip_part_confirmations: config.test_hooks
                && std::env::var_os(multipart::SKIP_PART_CONFIRMATIONS_ENV).is_some(),
        });
        Ok((model, tasks))
    }

    /// A timestamp for a new object version: above every one this node issued or learned of, and no
    /// earlier than its wall clock.
    pub fn next_timestamp(&self) -> crate::crdt::Timestamp {
        let mut c = self.clock.lock().unwrap_or_else(|e| e.into_inner());
        *c = crate::crdt::Timestamp::after(Some(*c), self.node);
        *c
    }

    /// Learn of a timestamp seen elsewhere (a replica's newer version): later ones go above it.
    pub fn observe_timestamp(&self, t: crate::crdt::Timestamp) {
        let mut c = self.clock.lock().unwrap_or_else(|e| e.into_inner());
        *c = (*c).max(t);
    }

    /// The model's tables, for statistics and anti-entropy passes.
    pub fn tables(&self) -> Vec<Arc<dyn TableInfo>> {
        vec![
            self.keys.clone(),
            self.buckets.clone(),
            self.aliases.clone(),
            self.objects.clone(),
            self.versions.clone(),
            self.mpus.clone(),
        ]
    }

    // ---- keys -----------------------------------------------------------------------------------

    /// Create a key with a fresh id (`GK` + 24 hex digits) and secret (64 hex digits).
    pub async fn create_key(&self, name: &str) -> Result<Key, ModelError> {
        let id = format!("GK{}", hex::encode(random_bytes::<12>()));
        let secret = hex::encode(random_bytes::<32>());
        self.import_key(&id, &secret, name).await
    }

    /// Add a key with a given id and secret (keys kept from another S3 store).
    pub async fn import_key(&self, id: &str, secret: &str, name: &str) -> Result<Key, ModelError> {
        let id_ok = (3..=128).contains(&id.len()) && id.bytes().all(|c| c.is_ascii_alphanumeric());
        let secret_ok = (8..=128).contains(&secret.len())
            && secret.bytes().all(|c| c.is_ascii_graphic() && c != b'"');
        if !id_ok || !secret_ok {
            return Err(ModelError::Invalid(
                "a key id is 3-128 letters and digits; a secret is 8-128 printable characters"
                    .into(),
            ));
        }
        if self.keys.get(&id.to_string(), &EmptyKey).await?.is_some() {
            return Err(ModelError::Invalid(format!("key {id} already exists")));
        }
        let k = Key::new(self.node, id.into(), secret.into(), name.into());
        self.keys.insert(&k).await?;
        Ok(k)
    }

    /// A live key by exact id.
    pub async fn key_by_id(&self, id: &str) -> Result<Option<Key>, ModelError> {
        Ok(self
            .keys
            .get(&id.to_string(), &EmptyKey)
            .await?
            .filter(|k| !k.state.is_deleted()))
    }

    /// The live key of an incoming request, before its signature is checked (so the id may be made
    /// up by anyone): from this node's full copy of the key table, without a network call. On a miss
    /// the key may have been created a moment ago through another node, or this node's copy may be
    /// being rebuilt, so a majority read refreshes the local copy: one per id at a time, shared by
    /// every request for it, within [`refresh::Refresher`]'s budget; a request waits at most
    /// [`KEY_REFRESH_WAIT`] for it (the read goes on in the background and repairs the local copy).
    pub async fn key_for_request(&self, id: &str) -> Result<Option<Key>, ModelError> {
        let live = |k: Option<Key>| k.filter(|k| !k.state.is_deleted());
        if let Some(k) = live(self.keys.get_local(&id.to_string(), &EmptyKey)?) {
            return Ok(Some(k));
        }
        let keys = self.keys.clone();
        let read = self.key_refresh.read(id, || {
            let id = id.to_string();
            async move {
                match keys.get_fresh(&id, &EmptyKey).await {
                    Ok(found) => found,
                    Err(e) => {
                        tracing::debug!("refreshing access key {id}: {e}");
                        None
                    }
                }
            }
            .boxed()
        });
        let Some(read) = read else {
            return Ok(None);
        };
        match tokio::time::timeout(KEY_REFRESH_WAIT, read).await {
            Ok(found) => Ok(live(found)),
            // Slow (a majority unreachable): the local copy's answer stands.
            Err(_) => Ok(None),
        }
    }

    /// A live key read from a majority of nodes (after a local copy said no: it may be a moment behind).
    pub async fn key_by_id_fresh(&self, id: &str) -> Result<Option<Key>, ModelError> {
        Ok(self
            .keys
            .get_fresh(&id.to_string(), &EmptyKey)
            .await?
            .filter(|k| !k.state.is_deleted()))
    }

    /// Every live key (the table is small and a full copy is local).
    pub fn list_keys(&self) -> Result<Vec<Key>, ModelError> {
        let mut out = vec![];
        for (_, v) in self.keys.data.iter_local()? {
            let k: Key = crate::table::TableData::<KeySchema>::decode(&v)?;
            if !k.state.is_deleted() {
                out.push(k);
            }
        }
        Ok(out)
    }

    /// A key by id, or by name if unique.
    pub async fn find_key(&self, pattern: &str) -> Result<Key, ModelError> {
        if let Some(k) = self.key_by_id(pattern).await? {
            return Ok(k);
        }
        let mut named: Vec<Key> = self
            .list_keys()?
            .into_iter()
            .filter(|k| k.params().is_some_and(|p| p.name.get() == pattern))
            .collect();
        match named.len() {
            0 => Err(ModelError::NoSuchAccessKey(pattern.into())),
            1 => Ok(named.remove(0)),
            _ => Err(ModelError::AmbiguousKey(pattern.into())),
        }
    }

    pub async fn delete_key(&self, pattern: &str) -> Result<Key, ModelError> {
        let mut k = self.find_key(pattern).await?;
        k.state.delete();
        self.keys.insert(&k).await?;
        Ok(k)
    }

    /// Change what a key may do: on a bucket (`perms` replaces the previous set), and/or creating buckets.
    pub async fn set_key_permissions(
        &self,
        pattern: &str,
        bucket: Option<(Hash, Permissions)>,
        allow_create_bucket: Option<bool>,
    ) -> Result<Key, ModelError> {
        let mut k = self.find_key(pattern).await?;
        let node = self.node;
        let p = k
            .state
            .get_mut()
            .ok_or_else(|| ModelError::NoSuchAccessKey(pattern.into()))?;
        if let Some((b, perms)) = bucket {
            p.buckets.update_by(node, b, perms);
        }
        if let Some(c) = allow_create_bucket {
            p.allow_create_bucket.update_by(node, c);
        }
        self.keys.insert(&k).await?;
        Ok(k)
    }

    // ---- buckets --------------------------------------------------------------------------------

    /// The live bucket a global name points to.
    pub async fn bucket_by_name(&self, name: &str) -> Result<Option<Bucket>, ModelError> {
        let Some(alias) = self.aliases.get(&name.to_string(), &EmptyKey).await? else {
            return Ok(None);
        };
        let Some(id) = *alias.bucket.get() else {
            return Ok(None);
        };
        Ok(self
            .buckets
            .get(&id, &EmptyKey)
            .await?
            .filter(|b| !b.state.is_deleted()))
    }

    /// [`Model::bucket_by_name`] from this node's own full copy, without a network read: for requests
    /// nobody signed, which must not make the cluster work for made-up names (a bucket created a
    /// moment ago on another node may not be seen yet).
    pub fn bucket_by_name_local(&self, name: &str) -> Result<Option<Bucket>, ModelError> {
        let Some(alias) = self.aliases.get_local(&name.to_string(), &EmptyKey)? else {
            return Ok(None);
        };
        let Some(id) = *alias.bucket.get() else {
            return Ok(None);
        };
        Ok(self
            .buckets
            .get_local(&id, &EmptyKey)?
            .filter(|b| !b.state.is_deleted()))
    }

    /// The bucket `name` means for `key`: its local alias first, then the global name.
    pub async fn bucket_for_key(
        &self,
        key: &Key,
        name: &str,
    ) -> Result<Option<Bucket>, ModelError> {
        if let Some(id) = key.local_alias(name) {
            return Ok(self
                .buckets
                .get(&id, &EmptyKey)
                .await?
                .filter(|b| !b.state.is_deleted()));
        }
        self.bucket_by_name(name).await
    }

    /// Give a bucket another name: global (`key` None; the name must be free) or local to a key.
    pub async fn alias_bucket(
        &self,
        bucket: &Bucket,
        alias: &str,
        key: Option<&str>,
    ) -> Result<(), ModelError> {
        if !bucket::valid_bucket_name(alias) {
            return Err(ModelError::InvalidBucketName(alias.into()));
        }
        match key {
            Some(k) => {
                let mut k = self.find_key(k).await?;
                let node = self.node;
                if let Some(p) = k.state.get_mut() {
                    p.local_aliases
                        .update_by(node, alias.to_string(), Some(bucket.id));
                }
                self.keys.insert(&k).await?;
            }
            None => {
                if self.bucket_by_name(alias).await?.is_some() {
                    return Err(ModelError::BucketExists(alias.into()));
                }
                self.aliases
                    .insert(&BucketAlias {
                        name: alias.into(),
                        bucket: Lww::new_by(self.node, Some(bucket.id)),
                    })
                    .await?;
            }
        }
        Ok(())
    }

    /// Remove a name (global, or local to a key).
    pub async fn unalias_bucket(&self, alias: &str, key: Option<&str>) -> Result<(), ModelError> {
        match key {
            Some(k) => {
                let mut k = self.find_key(k).await?;
                if k.local_alias(alias).is_none() {
                    return Err(ModelError::NoSuchBucket(alias.into()));
                }
                let node = self.node;
                if let Some(p) = k.state.get_mut() {
                    p.local_aliases.update_by(node, alias.to_string(), None);
                }
                self.keys.insert(&k).await?;
            }
            None => {
                let b = self
                    .bucket_by_name(alias)
                    .await?
                    .ok_or_else(|| ModelError::NoSuchBucket(alias.into()))?;
                if b.params().is_some_and(|p| p.name.get() == alias) {
                    return Err(ModelError::Invalid(format!(
                        "{alias} is the bucket's main name; delete the bucket instead"
                    )));
                }
                self.aliases
                    .insert(&BucketAlias {
                        name: alias.into(),
                        bucket: Lww::new_by(self.node, None),
                    })
                    .await?;
            }
        }
        Ok(())
    }

    pub async fn bucket_by_name_or_id(&self, pattern: &str) -> Result<Bucket, ModelError> {
        if let Some(b) = self.bucket_by_name(pattern).await? {
            return Ok(b);
        }
        if let Ok(v) = hex::decode(pattern)
            && let Ok(id) = Hash::try_from(&v[..])
            && let Some(b) = self.buckets.get(&id, &EmptyKey).await?
            && !b.state.is_deleted()
        {
            return Ok(b);
        }
        Err(ModelError::NoSuchBucket(pattern.into()))
    }

    /// Every live bucket (local full copy).
    pub fn list_buckets(&self) -> Result<Vec<Bucket>, ModelError> {
        let mut out = vec![];
        for (_, v) in self.buckets.data.iter_local()? {
            let b: Bucket = crate::table::TableData::<BucketSchema>::decode(&v)?;
            if !b.state.is_deleted() {
                out.push(b);
            }
        }
        Ok(out)
    }

    /// Create a private bucket named `name`; its creator (if any) gets every permission on it.
    pub async fn create_bucket(
        &self,
        name: &str,
        owner: Option<&str>,
    ) -> Result<Bucket, ModelError> {
        self.create_bucket_with_acl(name, owner, object::CannedAcl::Private)
            .await
    }

    /// Create a bucket named `name` with a canned ACL (x-amz-acl of CreateBucket); its creator (if
    /// any) gets every permission on it.
    pub async fn create_bucket_with_acl(
        &self,
        name: &str,
        owner: Option<&str>,
        acl: object::CannedAcl,
    ) -> Result<Bucket, ModelError> {
        if !bucket::valid_bucket_name(name) {
            return Err(ModelError::InvalidBucketName(name.into()));
        }
        if self.bucket_by_name(name).await?.is_some() {
            return Err(ModelError::BucketExists(name.into()));
        }
        let b = Bucket::new(
            random_bytes::<32>(),
            BucketParams::new(self.node, crate::util::time::now_msec(), name.into(), acl),
        );
        self.buckets.insert(&b).await?;
        self.aliases
            .insert(&BucketAlias {
                name: name.into(),
                bucket: Lww::new_by(self.node, Some(b.id)),
            })
            .await?;
        if let Some(k) = owner {
            self.set_key_permissions(k, Some((b.id, Permissions::ALL)), None)
                .await?;
        }
        Ok(b)
    }

    /// CreateBucket for a signed request: `key` (the request's key, as read to check its signature)
    /// becomes the bucket's owner. The caller has just found `name` free with a quorum read (the
    /// permission check of CreateBucket), so this writes the bucket, its name and the key's permission
    /// at once: one round of quorum writes instead of a check and three writes in a row.
    ///
    /// If some of the writes fail the request fails, and what was written is inert: a name pointing
    /// to no bucket is free, a bucket no name points to is unreachable, a permission on no bucket
    /// grants nothing. Writing `key` as read is safe even if the copy is stale: every field of a key
    /// is a CRDT, so older fields lose the merge and a deletion wins.
    pub async fn create_bucket_owned_by(
        &self,
        key: &Key,
        name: &str,
        acl: object::CannedAcl,
    ) -> Result<Bucket, ModelError> {
        if !bucket::valid_bucket_name(name) {
            return Err(ModelError::InvalidBucketName(name.into()));
        }
        let b = Bucket::new(
            random_bytes::<32>(),
            BucketParams::new(self.node, crate::util::time::now_msec(), name.into(), acl),
        );
        let alias = BucketAlias {
            name: name.into(),
            bucket: Lww::new_by(self.node, Some(b.id)),
        };
        let mut k = key.clone();
        k.state
            .get_mut()
            .ok_or_else(|| ModelError::NoSuchAccessKey(key.id.clone()))?
            .buckets
            .update_by(self.node, b.id, Permissions::ALL);
        let (bucket, name, key) = tokio::join!(
            self.buckets.insert(&b),
            self.aliases.insert(&alias),
            self.keys.insert(&k)
        );
        bucket?;
        name?;
        key?;
        Ok(b)
    }

    /// Delete an empty bucket (and free its name).
    pub async fn delete_bucket(&self, b: &Bucket) -> Result<(), ModelError> {
        let name = b.params().map(|p| p.name.get().clone()).unwrap_or_default();
        let any = self
            .objects
            .get_range(&b.id, None, Some(ObjectFilter::IsData), 1, false)
            .await?;
        let uploads = self
            .objects
            .get_range(
                &b.id,
                None,
                Some(ObjectFilter::IsUploadingMultipart),
                1,
                false,
            )
            .await?;
        if !any.is_empty() || !uploads.is_empty() {
            return Err(ModelError::BucketNotEmpty(name));
        }
        let mut d = b.clone();
        d.state.delete();
        self.buckets.insert(&d).await?;
        self.aliases
            .insert(&BucketAlias {
                name,
                bucket: Lww::new_by(self.node, None),
            })
            .await?;
        Ok(())
    }

    /// Keys with some permission on a bucket.
    pub fn bucket_keys(&self, bucket: &Hash) -> Result<Vec<(Key, Permissions)>, ModelError> {
        Ok(self
            .list_keys()?
            .into_iter()
            .filter_map(|k| {
                let p = k.permissions(bucket);
                (!p.is_none()).then_some((k, p))
            })
            .collect())
    }
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::thread_rng().fill_bytes(&mut b);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model error the client may retry (no quorum, or this node's metadata database unavailable
    /// for now: a full disk, a reopen in progress) is unavailable, which the S3 API answers 503
    /// (`s3::ctx::internal`); a bug or bad data is not (500).
    #[test]
    fn full_disk_and_quorum_errors_are_unavailable_and_others_not() {
        let closed = || crate::db::Error::Redb(Box::new(redb::Error::DatabaseClosed));
        for e in [
            ModelError::Table(TableError::Db(closed())),
            ModelError::Db(closed()),
            ModelError::Block(crate::block::BlockError::Table(TableError::Db(closed()))),
            ModelError::Block(crate::block::BlockError::Db(closed())),
            ModelError::Table(TableError::NoLayout),
        ] {
            assert!(e.is_unavailable(), "{e}");
        }
        let corrupt = ModelError::Table(TableError::Db(crate::db::Error::Corrupt("x".into())));
        assert!(!corrupt.is_unavailable());
        assert!(!ModelError::VersionGone.is_unavailable());
    }
}
