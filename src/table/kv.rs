//! A small replicated key-value table that exercises the table engine on its own: integration tests and
//! `grenier debug kv-*` use it through the admin API. Values are last-writer-wins; a deletion is a
//! tombstone (`None`).

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::schema::{Entry, TableSchema};
use crate::crdt::{Crdt, Lww};
use crate::util::encode::{NoPrevious, Versioned};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvEntry {
    pub partition: String,
    pub key: String,
    pub value: Lww<Option<ByteBuf>>,
}

impl KvEntry {
    pub fn new(partition: &str, key: &str, value: Option<Vec<u8>>) -> KvEntry {
        Self::new_by(0, partition, key, value)
    }

    /// A value written through node `node` (its id's first 8 bytes): the hybrid timestamp then never ties
    /// with a write coordinated by another node in the same millisecond.
    pub fn new_by(node: u64, partition: &str, key: &str, value: Option<Vec<u8>>) -> KvEntry {
        KvEntry {
            partition: partition.into(),
            key: key.into(),
            value: Lww::new_by(node, value.map(ByteBuf::from)),
        }
    }
    pub fn value(&self) -> Option<&[u8]> {
        self.value.get().as_deref().map(|b| &b[..])
    }
}

impl Crdt for KvEntry {
    fn merge(&mut self, other: &Self) {
        self.value.merge(&other.value);
    }
}

impl Versioned for KvEntry {
    const MARKER: &'static [u8] = b"GRkv01";
    type Previous = NoPrevious;
}

impl Entry<String, String> for KvEntry {
    fn partition_key(&self) -> &String {
        &self.partition
    }
    fn sort_key(&self) -> &String {
        &self.key
    }
    fn is_tombstone(&self) -> bool {
        self.value.get().is_none()
    }
}

pub struct KvSchema;

impl TableSchema for KvSchema {
    const TABLE_NAME: &'static str = "kv";
    type P = String;
    type S = String;
    type E = KvEntry;
    /// Values that start with these bytes (None: every value). Encoded as nil when None, as the
    /// `()` filter of earlier releases was.
    type Filter = Option<ByteBuf>;
    fn matches_filter(e: &KvEntry, f: &Option<ByteBuf>) -> bool {
        match f {
            None => true,
            Some(prefix) => e.value().is_some_and(|v| v.starts_with(prefix)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value-prefix filter is encoded as the `()` filter was when absent, so replicas of either
    /// release understand each other.
    #[test]
    fn no_filter_is_encoded_as_unit_was() {
        let none: Option<ByteBuf> = None;
        assert_eq!(
            rmp_serde::to_vec_named(&none).unwrap(),
            rmp_serde::to_vec_named(&()).unwrap()
        );
        let old = rmp_serde::to_vec_named(&()).unwrap();
        assert_eq!(
            rmp_serde::from_slice::<Option<ByteBuf>>(&old).unwrap(),
            None
        );
    }
}
