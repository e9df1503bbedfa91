//! Monotone boolean.

use serde::{Deserialize, Serialize};

use super::Crdt;

/// A monotone boolean ("has this ever happened?"): starts false, can be set, never unset.
///
/// **Merge:** logical or (`false < true`, merge keeps the max), so merge is commutative, associative and
/// idempotent. Same rule as `impl Crdt for bool`; this newtype only names the intent and hides
/// assignment of `false`. Encoded as a plain boolean.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct MaxBool(bool);

impl MaxBool {
    pub fn new(b: bool) -> MaxBool {
        MaxBool(b)
    }
    /// Set to true, for good.
    pub fn set(&mut self) {
        self.0 = true;
    }
    pub fn get(&self) -> bool {
        self.0
    }
}

impl From<bool> for MaxBool {
    fn from(b: bool) -> Self {
        MaxBool(b)
    }
}

impl Crdt for MaxBool {
    fn merge(&mut self, other: &Self) {
        self.0 |= other.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crdt::laws::{self, merged};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn max_bool_laws(a: bool, b: bool, c: bool) {
            laws::check(&MaxBool::new(a), &MaxBool::new(b), &MaxBool::new(c));
        }
    }

    #[test]
    fn once_true_true_forever() {
        let mut f = MaxBool::default();
        assert!(!f.get());
        let t = MaxBool::from(true);
        assert!(merged(&f, &t).get() && merged(&t, &f).get());
        f.set();
        assert!(f.get());
        f.merge(&MaxBool::new(false));
        assert!(f.get());
        assert_eq!(
            rmp_serde::to_vec(&f).unwrap(),
            rmp_serde::to_vec(&true).unwrap()
        );
    }
}
