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
//! **Invariant:** `crdt` knows nothing about the network, storage or S3.

mod lww;

pub use lww::{Lww, LwwMap};

/// A state-based CRDT; see the module documentation for the laws `merge` obeys.
pub trait Crdt {
    fn merge(&mut self, other: &Self);
}

impl Crdt for bool {
    /// A monotone boolean: once true, true forever.
    fn merge(&mut self, other: &Self) {
        *self |= *other;
    }
}

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
