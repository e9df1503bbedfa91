//! Last-writer-wins register and map.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Crdt, Timestamp};
use crate::util::time::now_msec;

/// A last-writer-wins register holding a value and the hybrid [`Timestamp`] of the write that set it.
///
/// **Merge:** keep the register with the larger `(timestamp, value)` pair: the highest timestamp wins,
/// and equal timestamps (only possible when the same node's timestamp is reused, or for timestamps built by
/// hand with [`Lww::raw`]) are broken by the larger value, so every replica picks the same one. This is
/// the join of a total order, so merge is commutative, associative and idempotent.
///
/// [`Lww::update`] / [`Lww::update_by`] always move the timestamp strictly forward (see
/// [`Timestamp::after`]), even if the local clock went backwards, so a local write always beats the
/// value it replaces.
///
/// **Encoding:** the timestamp is stored as `ts` (its `msec` part) and a trailing `hlc` field
/// (`[logical, node]`), omitted when both are zero and read as zero when absent: encodings from before
/// hybrid timestamps still decode, and registers written without a node and logical part encode exactly
/// as before.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lww<T> {
    ts: u64,
    value: T,
    #[serde(default, skip_serializing_if = "is_zero")]
    hlc: (u32, u64),
}

fn is_zero(hlc: &(u32, u64)) -> bool {
    *hlc == (0, 0)
}

impl<T: Clone + Ord> Lww<T> {
    /// A register written now by an unnamed node (node 0); prefer [`Lww::new_by`].
    pub fn new(value: T) -> Lww<T> {
        Self::new_by(0, value)
    }
    /// A register written now by `node`.
    pub fn new_by(node: u64, value: T) -> Lww<T> {
        Self::with_timestamp(Timestamp::after(None, node), value)
    }
    /// A register at an explicit timestamp.
    pub fn with_timestamp(ts: Timestamp, value: T) -> Lww<T> {
        Lww {
            ts: ts.msec,
            value,
            hlc: (ts.logical, ts.node),
        }
    }
    /// A register at an explicit millisecond timestamp, logical part and node 0 (for tests and
    /// migrations).
    pub fn raw(ts: u64, value: T) -> Lww<T> {
        Self::with_timestamp(Timestamp::new(ts, 0, 0), value)
    }
    /// Set the value as an unnamed node (node 0); prefer [`Lww::update_by`].
    pub fn update(&mut self, value: T) {
        self.update_by(0, value);
    }
    /// Set the value as `node`, with a timestamp strictly above the current one and no earlier than the
    /// local clock.
    pub fn update_by(&mut self, node: u64, value: T) {
        self.update_with_clock(node, value, now_msec());
    }
    fn update_with_clock(&mut self, node: u64, value: T, now_msec: u64) {
        *self = Self::with_timestamp(
            Timestamp::after_with_clock(Some(self.stamp()), node, now_msec),
            value,
        );
    }
    pub fn get(&self) -> &T {
        &self.value
    }
    /// The millisecond part of the timestamp.
    pub fn timestamp(&self) -> u64 {
        self.ts
    }
    /// The full hybrid timestamp.
    pub fn stamp(&self) -> Timestamp {
        Timestamp::new(self.ts, self.hlc.0, self.hlc.1)
    }
}

impl<T: Clone + Ord> Crdt for Lww<T> {
    fn merge(&mut self, other: &Self) {
        if (other.stamp(), &other.value) > (self.stamp(), &self.value) {
            *self = other.clone();
        }
    }
}

/// A map of last-writer-wins registers, one per key. Keys are never removed; store an `Option` (or use
/// [`super::Deletable`]) to delete.
///
/// **Merge:** union of the keys; on a key present on both sides, the [`Lww`] registers merge. Being a
/// pointwise merge of CRDTs, it is commutative, associative and idempotent.
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
    /// The register of `k`, with its timestamp.
    pub fn get_lww(&self, k: &K) -> Option<&Lww<V>> {
        self.entries.get(k)
    }
    /// Set `k` to `v` as an unnamed node (node 0), with a timestamp above any this key has seen; prefer
    /// [`LwwMap::update_by`].
    pub fn update(&mut self, k: K, v: V) {
        self.update_by(0, k, v);
    }
    /// Set `k` to `v` as `node`, with a timestamp above any this key has seen.
    pub fn update_by(&mut self, node: u64, k: K, v: V) {
        match self.entries.get_mut(&k) {
            Some(l) => l.update_by(node, v),
            None => {
                self.entries.insert(k, Lww::new_by(node, v));
            }
        }
    }
    /// Replace the register of `k` as is, without merging (for tests and migrations).
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
pub(crate) mod tests {
    use super::*;
    use crate::crdt::laws;
    use crate::crdt::timestamp::tests::small_ts;
    use proptest::prelude::*;

    /// Registers with hybrid timestamps from small ranges, so that timestamps and values often collide.
    pub fn lww() -> impl Strategy<Value = Lww<u8>> {
        (small_ts(), 0u8..4).prop_map(|(ts, v)| Lww::with_timestamp(ts, v))
    }
    /// Registers as the pre-HLC code built them: milliseconds only.
    fn lww_raw() -> impl Strategy<Value = Lww<u8>> {
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
        fn lww_raw_laws(a in lww_raw(), b in lww_raw(), c in lww_raw()) { laws::check(&a, &b, &c); }
        #[test]
        fn lww_map_laws(a in map(), b in map(), c in map()) { laws::check(&a, &b, &c); }
        #[test]
        fn bool_laws(a: bool, b: bool, c: bool) { laws::check(&a, &b, &c); }
        #[test]
        fn option_laws(a in proptest::option::of(lww()), b in proptest::option::of(lww()), c in proptest::option::of(lww())) {
            laws::check(&a, &b, &c);
        }

        /// Local updates, whatever the clock does, always win over the value they replace, and the
        /// timestamps of one register strictly increase.
        #[test]
        fn updates_always_win(
            start in lww(),
            steps in proptest::collection::vec((0u64..3, 0u64..6, 0u8..4), 1..12),
        ) {
            let mut l = start;
            for (node, now, v) in steps {
                let before = l.clone();
                l.update_with_clock(node, v, now);
                prop_assert!(l.stamp() > before.stamp());
                prop_assert_eq!(*l.get(), v);
                prop_assert_eq!(laws::merged(&before, &l), l.clone());
                prop_assert_eq!(laws::merged(&l, &before), l.clone());
            }
        }
    }

    #[test]
    fn update_never_goes_back() {
        let mut l = Lww::raw(u64::MAX / 2, 1u8);
        l.update(2);
        assert!(l.stamp() > Timestamp::new(u64::MAX / 2, 0, 0));
        assert!(l.timestamp() >= u64::MAX / 2);
        assert_eq!(*l.get(), 2);
        l.update_by(7, 3);
        assert_eq!(l.stamp(), Timestamp::new(u64::MAX / 2, 2, 7));
        assert_eq!(*l.get(), 3);
    }

    #[test]
    fn clock_forced_backwards() {
        let mut l = Lww::with_timestamp(Timestamp::new(1000, 0, 1), 0u8);
        l.update_with_clock(1, 1, 10);
        assert_eq!(l.stamp(), Timestamp::new(1000, 1, 1));
        l.update_with_clock(2, 2, 999);
        assert_eq!(l.stamp(), Timestamp::new(1000, 2, 2));
        l.update_with_clock(1, 3, 2000);
        assert_eq!(l.stamp(), Timestamp::new(2000, 0, 1));
    }

    #[test]
    fn concurrent_writes_same_msec_resolve_by_node() {
        let base = Lww::with_timestamp(Timestamp::new(5, 0, 0), 0u8);
        let mut a = base.clone();
        a.update_with_clock(1, 9, 100);
        let mut b = base;
        b.update_with_clock(2, 1, 100);
        assert_ne!(a.stamp(), b.stamp());
        let (ab, ba) = (laws::merged(&a, &b), laws::merged(&b, &a));
        assert_eq!(ab, ba);
        assert_eq!(*ab.get(), 1, "node 2 wins the tie on msec and logical");
    }

    #[test]
    fn map_update_by() {
        let mut m = LwwMap::new();
        m.update_by(3, 1u8, 10u8);
        m.update_by(4, 1, 11);
        assert_eq!(m.get(&1), Some(&11));
        assert_eq!(m.get_lww(&1).unwrap().stamp().node, 4);
        assert_eq!(m.len(), 1);
        assert!(m.get_lww(&2).is_none());
    }

    /// The encoding of a register from before hybrid timestamps.
    #[derive(Serialize)]
    struct OldLww {
        ts: u64,
        value: u8,
    }

    #[test]
    fn encoding_is_compatible_with_millisecond_registers() {
        let old = OldLww { ts: 42, value: 7 };
        let expect = Lww::raw(42, 7u8);
        // Named (what persistence and RPC use) and compact encodings of the old layout still decode...
        let named = rmp_serde::to_vec_named(&old).unwrap();
        assert_eq!(rmp_serde::from_slice::<Lww<u8>>(&named).unwrap(), expect);
        let compact = rmp_serde::to_vec(&old).unwrap();
        assert_eq!(rmp_serde::from_slice::<Lww<u8>>(&compact).unwrap(), expect);
        // ...a register without logical part and node encodes exactly as before...
        assert_eq!(rmp_serde::to_vec_named(&expect).unwrap(), named);
        assert_eq!(rmp_serde::to_vec(&expect).unwrap(), compact);
        // ...and full hybrid timestamps round-trip in both encodings.
        let full = Lww::with_timestamp(Timestamp::new(42, 3, 9), 7u8);
        let named = rmp_serde::to_vec_named(&full).unwrap();
        assert_eq!(rmp_serde::from_slice::<Lww<u8>>(&named).unwrap(), full);
        let compact = rmp_serde::to_vec(&full).unwrap();
        assert_eq!(rmp_serde::from_slice::<Lww<u8>>(&compact).unwrap(), full);
    }
}
