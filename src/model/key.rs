//! Access keys (`key` table, a full copy on every node): id, secret, name, the right to create buckets,
//! and per-bucket permissions. Permissions live only here (not duplicated in the bucket entry), so there
//! is one place to change them; `bucket info` lists a bucket's keys by scanning this small local table.

use serde::{Deserialize, Serialize};

use crate::crdt::{Crdt, Deletable, Lww, LwwMap};
use crate::table::schema::{EmptyKey, Entry, TableSchema};
use crate::util::encode::{NoPrevious, Versioned};
use crate::util::hash::Hash;

/// What a key may do on a bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Permissions {
    pub read: bool,
    pub write: bool,
    pub owner: bool,
}

impl Permissions {
    pub const ALL: Permissions = Permissions {
        read: true,
        write: true,
        owner: true,
    };
    pub fn is_none(&self) -> bool {
        !(self.read || self.write || self.owner)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyParams {
    /// Never changes after creation (an import sets it once); merge keeps the larger to stay a CRDT.
    pub secret: String,
    pub name: Lww<String>,
    pub allow_create_bucket: Lww<bool>,
    /// Bucket id → permissions (all false = no access).
    pub buckets: LwwMap<Hash, Permissions>,
    /// Names only this key sees (checked before the global names) → bucket id, None when removed.
    #[serde(default)]
    pub local_aliases: LwwMap<String, Option<Hash>>,
}

impl Crdt for KeyParams {
    fn merge(&mut self, other: &Self) {
        if other.secret > self.secret {
            self.secret = other.secret.clone();
        }
        self.name.merge(&other.name);
        self.allow_create_bucket.merge(&other.allow_create_bucket);
        self.buckets.merge(&other.buckets);
        self.local_aliases.merge(&other.local_aliases);
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    /// The access key id (`GK` + 24 hex digits for keys made here; imported keys keep theirs).
    pub id: String,
    pub state: Deletable<KeyParams>,
}

impl Key {
    pub fn new(node: u64, id: String, secret: String, name: String) -> Key {
        Key {
            id,
            state: Deletable::Present(KeyParams {
                secret,
                name: Lww::new_by(node, name),
                allow_create_bucket: Lww::new_by(node, false),
                buckets: LwwMap::new(),
                local_aliases: LwwMap::new(),
            }),
        }
    }

    pub fn params(&self) -> Option<&KeyParams> {
        self.state.get()
    }

    /// The bucket this key's local alias `name` points to.
    pub fn local_alias(&self, name: &str) -> Option<Hash> {
        self.params()
            .and_then(|p| p.local_aliases.get(&name.to_string()).copied().flatten())
    }

    /// Permissions of this key on a bucket (none if deleted or not allowed).
    pub fn permissions(&self, bucket: &Hash) -> Permissions {
        self.params()
            .and_then(|p| p.buckets.get(bucket).copied())
            .unwrap_or_default()
    }
}

impl Crdt for Key {
    fn merge(&mut self, other: &Self) {
        self.state.merge(&other.state);
    }
}

impl Versioned for Key {
    const MARKER: &'static [u8] = b"GRkey01";
    type Previous = NoPrevious;
}

impl Entry<String, EmptyKey> for Key {
    fn partition_key(&self) -> &String {
        &self.id
    }
    fn sort_key(&self) -> &EmptyKey {
        &EmptyKey
    }
    fn is_tombstone(&self) -> bool {
        self.state.is_deleted()
    }
}

pub struct KeySchema;

impl TableSchema for KeySchema {
    const TABLE_NAME: &'static str = "key";
    type P = String;
    type S = EmptyKey;
    type E = Key;
    type Filter = ();
    fn matches_filter(_: &Key, _: &()) -> bool {
        true
    }
}
