//! A value that can be deleted for good: a tombstone beats any value.

use serde::{Deserialize, Serialize};

use super::Crdt;

/// A CRDT value that can be deleted: `Present(value)` or the tombstone `Deleted`.
///
/// **Merge:** `Deleted` wins over anything (a deletion is final: a deleted value is never resurrected by
/// merging, whatever its timestamps); `Present(a) ⊔ Present(b) = Present(a ⊔ b)`. This is the lattice of
/// `T` with a top element added, so merge is commutative, associative and idempotent whenever `T`'s is.
///
/// To allow re-creation after a deletion, store a register instead, e.g. `Lww<Option<T>>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Deletable<T> {
    Present(T),
    Deleted,
}

impl<T> Deletable<T> {
    pub fn is_deleted(&self) -> bool {
        matches!(self, Deletable::Deleted)
    }
    /// The value, unless deleted.
    pub fn get(&self) -> Option<&T> {
        match self {
            Deletable::Present(v) => Some(v),
            Deletable::Deleted => None,
        }
    }
    /// The value, unless deleted. Only change it monotonically (e.g. with `Lww::update_by` or by merging),
    /// or replicas may diverge.
    pub fn get_mut(&mut self) -> Option<&mut T> {
        match self {
            Deletable::Present(v) => Some(v),
            Deletable::Deleted => None,
        }
    }
    /// Turn into the tombstone (final).
    pub fn delete(&mut self) {
        *self = Deletable::Deleted;
    }
    pub fn into_option(self) -> Option<T> {
        match self {
            Deletable::Present(v) => Some(v),
            Deletable::Deleted => None,
        }
    }
}

impl<T> From<T> for Deletable<T> {
    fn from(v: T) -> Self {
        Deletable::Present(v)
    }
}

impl<T: Crdt + Clone> Crdt for Deletable<T> {
    fn merge(&mut self, other: &Self) {
        match other {
            Deletable::Deleted => *self = Deletable::Deleted,
            Deletable::Present(b) => {
                if let Deletable::Present(a) = self {
                    a.merge(b);
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::crdt::laws::{self, merged};
    use crate::crdt::lww::tests::lww;
    use crate::crdt::{Lww, Timestamp};
    use proptest::prelude::*;

    pub fn deletable() -> impl Strategy<Value = Deletable<Lww<u8>>> {
        prop_oneof![
            3 => lww().prop_map(Deletable::Present),
            1 => Just(Deletable::Deleted),
        ]
    }

    proptest! {
        #[test]
        fn deletable_laws(a in deletable(), b in deletable(), c in deletable()) {
            laws::check(&a, &b, &c);
        }
        #[test]
        fn deleted_wins(a in deletable()) {
            prop_assert!(merged(&a, &Deletable::Deleted).is_deleted());
            prop_assert!(merged(&Deletable::Deleted, &a).is_deleted());
        }
    }

    #[test]
    fn present_values_merge() {
        let old = Deletable::from(Lww::with_timestamp(Timestamp::new(1, 0, 0), 5u8));
        let new = Deletable::from(Lww::with_timestamp(Timestamp::new(2, 0, 1), 3u8));
        assert_eq!(merged(&old, &new).get().map(|l| *l.get()), Some(3));
        assert_eq!(merged(&new, &old), new);
        let mut d = new.clone();
        d.delete();
        assert!(d.is_deleted());
        assert_eq!(d.get(), None);
        assert_eq!(d.get_mut(), None);
        assert_eq!(d.clone().into_option(), None);
        // A newer write does not resurrect a deleted value.
        let newer = Deletable::from(Lww::with_timestamp(Timestamp::MAX, 9u8));
        assert!(merged(&d, &newer).is_deleted());
        assert_eq!(new.into_option().map(|l| *l.get()), Some(3));
    }
}
