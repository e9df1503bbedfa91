//! Grow-only map of CRDTs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Crdt;

/// A grow-only map whose values are CRDTs: keys are never removed (use [`super::Deletable`] values for
/// deletion).
///
/// **Merge:** union of the keys; on a key present on both sides, the values merge (`V::merge`). Being a
/// pointwise merge over a union, it is commutative, associative and idempotent whenever `V`'s merge is.
///
/// Encoded as a plain map (`#[serde(transparent)]`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GMap<K: Ord, V> {
    entries: BTreeMap<K, V>,
}

impl<K: Ord, V> Default for GMap<K, V> {
    fn default() -> Self {
        GMap {
            entries: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone, V: Crdt + Clone> GMap<K, V> {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn get(&self, k: &K) -> Option<&V> {
        self.entries.get(k)
    }
    /// The value of `k`, to update in place. Only change it monotonically (e.g. with `Lww::update_by`, or
    /// by merging into it), or replicas may diverge.
    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.entries.get_mut(k)
    }
    /// Merge `v` into the value of `k` (insert it if `k` is new). This is `self ⊔ {k: v}`.
    pub fn put(&mut self, k: K, v: V) {
        match self.entries.get_mut(&k) {
            Some(mine) => mine.merge(&v),
            None => {
                self.entries.insert(k, v);
            }
        }
    }
    pub fn contains_key(&self, k: &K) -> bool {
        self.entries.contains_key(k)
    }
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter()
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<K: Ord + Clone, V: Crdt + Clone> Crdt for GMap<K, V> {
    fn merge(&mut self, other: &Self) {
        for (k, v) in other.entries.iter() {
            match self.entries.get_mut(k) {
                Some(mine) => mine.merge(v),
                None => {
                    self.entries.insert(k.clone(), v.clone());
                }
            }
        }
    }
}

/// Collects with [`GMap::put`]: values of repeated keys are merged.
impl<K: Ord + Clone, V: Crdt + Clone> FromIterator<(K, V)> for GMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut m = GMap::new();
        for (k, v) in iter {
            m.put(k, v);
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crdt::deletable::tests::deletable;
    use crate::crdt::laws::{self, merged};
    use crate::crdt::lww::tests::lww;
    use crate::crdt::{Deletable, Lww, Timestamp};
    use proptest::prelude::*;

    fn gmap<V: Crdt + Clone + std::fmt::Debug>(
        v: impl Strategy<Value = V>,
    ) -> impl Strategy<Value = GMap<u8, V>> {
        proptest::collection::vec((0u8..4, v), 0..6).prop_map(|e| e.into_iter().collect())
    }

    proptest! {
        #[test]
        fn gmap_lww_laws(a in gmap(lww()), b in gmap(lww()), c in gmap(lww())) {
            laws::check(&a, &b, &c);
        }
        #[test]
        fn gmap_deletable_laws(a in gmap(deletable()), b in gmap(deletable()), c in gmap(deletable())) {
            laws::check(&a, &b, &c);
        }
        #[test]
        fn gmap_nested_laws(
            a in gmap(gmap(deletable())),
            b in gmap(gmap(deletable())),
            c in gmap(gmap(deletable())),
        ) {
            laws::check(&a, &b, &c);
        }
        /// `put` is merging with a singleton map.
        #[test]
        fn put_is_merge(m in gmap(deletable()), k in 0u8..4, v in deletable()) {
            let mut p = m.clone();
            p.put(k, v.clone());
            prop_assert_eq!(p, merged(&m, &GMap::from_iter([(k, v)])));
        }
    }

    #[test]
    fn merge_unions_keys_and_merges_values() {
        let at = |ms, v| Lww::with_timestamp(Timestamp::new(ms, 0, 1), v);
        let mut a: GMap<u8, Deletable<Lww<u8>>> = GMap::new();
        assert!(a.is_empty());
        a.put(1, at(1, 10).into());
        a.put(2, at(1, 20).into());
        let mut b = GMap::new();
        b.put(2, at(2, 21).into());
        b.put(3, Deletable::Deleted);
        a.merge(&b);
        assert_eq!(a.len(), 3);
        assert_eq!(a.get(&2).and_then(|d| d.get()).map(|l| *l.get()), Some(21));
        assert!(a.get(&3).unwrap().is_deleted());
        assert!(a.contains_key(&1) && !a.contains_key(&4));
        // put merges: an older value does not overwrite, a tombstone does.
        a.put(1, at(0, 99).into());
        assert_eq!(a.get(&1).and_then(|d| d.get()).map(|l| *l.get()), Some(10));
        a.put(1, Deletable::Deleted);
        assert!(a.get(&1).unwrap().is_deleted());
        // In-place monotone update.
        if let Some(Deletable::Present(l)) = a.get_mut(&2) {
            l.update_by(1, 22);
        }
        assert_eq!(a.get(&2).and_then(|d| d.get()).map(|l| *l.get()), Some(22));
        let keys: Vec<u8> = a.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, vec![1, 2, 3]);
    }

    #[test]
    fn encodes_as_a_plain_map() {
        let m: GMap<u8, Lww<u8>> = [(1, Lww::raw(5, 6))].into_iter().collect();
        let bytes = rmp_serde::to_vec_named(&m).unwrap();
        assert_eq!(
            rmp_serde::from_slice::<GMap<u8, Lww<u8>>>(&bytes).unwrap(),
            m
        );
        let plain: BTreeMap<u8, Lww<u8>> = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(plain.len(), 1);
    }
}
