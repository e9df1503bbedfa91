//! Last-writer-wins register and map.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Crdt;
use crate::util::time::now_msec;

/// A last-writer-wins register: the value with the highest timestamp wins; equal timestamps are broken
/// by the larger value, so every replica picks the same one. [`Lww::update`] always moves the timestamp
/// forward, even if the local clock went backwards.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lww<T> {
    ts: u64,
    value: T,
}

impl<T: Clone + Ord> Lww<T> {
    pub fn new(value: T) -> Lww<T> {
        Lww {
            ts: now_msec(),
            value,
        }
    }
    /// A register at an explicit timestamp (for tests and migrations).
    pub fn raw(ts: u64, value: T) -> Lww<T> {
        Lww { ts, value }
    }
    pub fn update(&mut self, value: T) {
        self.ts = now_msec().max(self.ts + 1);
        self.value = value;
    }
    pub fn get(&self) -> &T {
        &self.value
    }
    pub fn timestamp(&self) -> u64 {
        self.ts
    }
}

impl<T: Clone + Ord> Crdt for Lww<T> {
    fn merge(&mut self, other: &Self) {
        if (other.ts, &other.value) > (self.ts, &self.value) {
            *self = other.clone();
        }
    }
}

/// A map of last-writer-wins registers, one per key. Keys are never removed; store an `Option` to delete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LwwMap<K: Ord, V> {
    entries: BTreeMap<K, Lww<V>>,
}

impl<K: Ord, V> Default for LwwMap<K, V> {
    fn default() -> Self {
        LwwMap {
            entries: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone, V: Clone + Ord> LwwMap<K, V> {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn get(&self, k: &K) -> Option<&V> {
        self.entries.get(k).map(|l| l.get())
    }
    /// Set `k` to `v` with a timestamp above any this key has seen.
    pub fn update(&mut self, k: K, v: V) {
        match self.entries.get_mut(&k) {
            Some(l) => l.update(v),
            None => {
                self.entries.insert(k, Lww::new(v));
            }
        }
    }
    pub fn insert_raw(&mut self, k: K, l: Lww<V>) {
        self.entries.insert(k, l);
    }
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, l)| (k, l.get()))
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<K: Ord + Clone, V: Clone + Ord> Crdt for LwwMap<K, V> {
    fn merge(&mut self, other: &Self) {
        for (k, l) in other.entries.iter() {
            match self.entries.get_mut(k) {
                Some(mine) => mine.merge(l),
                None => {
                    self.entries.insert(k.clone(), l.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crdt::laws;
    use proptest::prelude::*;

    fn lww() -> impl Strategy<Value = Lww<u8>> {
        (0u64..5, 0u8..4).prop_map(|(ts, v)| Lww::raw(ts, v))
    }
    fn map() -> impl Strategy<Value = LwwMap<u8, u8>> {
        proptest::collection::vec((0u8..4, lww()), 0..6).prop_map(|v| {
            let mut m = LwwMap::new();
            for (k, l) in v {
                m.insert_raw(k, l);
            }
            m
        })
    }

    proptest! {
        #[test]
        fn lww_laws(a in lww(), b in lww(), c in lww()) { laws::check(&a, &b, &c); }
        #[test]
        fn lww_map_laws(a in map(), b in map(), c in map()) { laws::check(&a, &b, &c); }
        #[test]
        fn bool_laws(a: bool, b: bool, c: bool) { laws::check(&a, &b, &c); }
        #[test]
        fn option_laws(a in proptest::option::of(lww()), b in proptest::option::of(lww()), c in proptest::option::of(lww())) {
            laws::check(&a, &b, &c);
        }
    }

    #[test]
    fn update_never_goes_back() {
        let mut l = Lww::raw(u64::MAX / 2, 1u8);
        l.update(2);
        assert!(l.timestamp() > u64::MAX / 2);
        assert_eq!(*l.get(), 2);
    }
}
