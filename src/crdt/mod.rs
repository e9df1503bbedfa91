//! State-based CRDTs: values that replicas merge in any order and still agree.
//!
//! Every type here implements [`Crdt`], whose `merge` must be
//! - **commutative**: `a ⊔ b = b ⊔ a`,
//! - **associative**: `(a ⊔ b) ⊔ c = a ⊔ (b ⊔ c)`,
//! - **idempotent**: `a ⊔ a = a`,
//!
//! so that gossip, retries and anti-entropy can apply updates any number of times, in any order.
//! Property tests in this module check the three laws for every type.
//!
//! The building blocks, each documenting its merge rule:
//! - [`Timestamp`]: hybrid logical timestamps `(msec, logical, node)`, totally ordered; per key they never
//!   go backwards ([`Timestamp::after`]) and two nodes never issue equal ones;
//! - [`Lww`] / [`LwwMap`]: last-writer-wins register and map of registers, on hybrid timestamps;
//! - [`Deletable`]: a value or its tombstone; the tombstone wins;
//! - [`GMap`]: grow-only map of CRDTs, merged key by key;
//! - [`MaxBool`] (or plain `bool`): a monotone boolean; `Option<T>`: `None` below any `Some`.
//!
//! Composites (e.g. `GMap<K, Deletable<Lww<V>>>`) obey the laws because each constructor preserves them.
//!
//! **Invariant:** `crdt` knows nothing about the network, storage or S3.

mod deletable;
mod gmap;
mod lww;
mod max_bool;
mod timestamp;

pub use deletable::Deletable;
pub use gmap::GMap;
pub use lww::{Lww, LwwMap};
pub use max_bool::MaxBool;
pub use timestamp::Timestamp;

/// A state-based CRDT; see the module documentation for the laws `merge` obeys.
pub trait Crdt {
    fn merge(&mut self, other: &Self);
}

/// A monotone boolean: once true, true forever. **Merge:** logical or. See also [`MaxBool`].
impl Crdt for bool {
    fn merge(&mut self, other: &Self) {
        *self |= *other;
    }
}

/// **Merge:** `None` is the bottom element: `None ⊔ x = x`, `Some(a) ⊔ Some(b) = Some(a ⊔ b)`; the laws
/// hold whenever they hold for `T`.
impl<T: Crdt + Clone> Crdt for Option<T> {
    fn merge(&mut self, other: &Self) {
        match (self.as_mut(), other) {
            (Some(a), Some(b)) => a.merge(b),
            (None, Some(b)) => *self = Some(b.clone()),
            _ => (),
        }
    }
}

#[cfg(test)]
pub(crate) mod laws {
    //! Shared checks of the three laws, used by each type's property tests.
    use super::Crdt;

    pub fn merged<T: Crdt + Clone>(a: &T, b: &T) -> T {
        let mut x = a.clone();
        x.merge(b);
        x
    }

    pub fn check<T: Crdt + Clone + PartialEq + std::fmt::Debug>(a: &T, b: &T, c: &T) {
        assert_eq!(merged(a, b), merged(b, a), "merge is not commutative");
        assert_eq!(
            merged(&merged(a, b), c),
            merged(a, &merged(b, c)),
            "merge is not associative"
        );
        assert_eq!(merged(a, a), a.clone(), "merge is not idempotent");
    }
}
