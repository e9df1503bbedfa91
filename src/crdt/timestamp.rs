//! Hybrid logical timestamps: wall-clock milliseconds, a logical counter, and a node tie-breaker.

use serde::{Deserialize, Serialize};

use super::Crdt;
use crate::util::time::now_msec;

/// A hybrid logical clock (HLC) timestamp, totally ordered by `(msec, logical, node)` lexicographically
/// (the derived `Ord` follows the field order, which must therefore not change).
///
/// - `msec`: wall-clock milliseconds since the Unix epoch, or the highest such value already seen for the
///   key if the local clock is behind it;
/// - `logical`: counts timestamps issued within the same `msec` (it advances when the wall clock stalls
///   or goes backwards);
/// - `node`: the issuing node's identifier, so that two nodes never issue equal timestamps.
///
/// [`Timestamp::after`] returns a timestamp strictly greater than the previous one for the key and no
/// earlier than the local wall clock, so per-key timestamps never go backwards, even across clock jumps.
/// As a CRDT a timestamp is a max-register: merge keeps the larger one.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Timestamp {
    pub msec: u64,
    pub logical: u32,
    pub node: u64,
}

impl Timestamp {
    /// The smallest timestamp.
    pub const MIN: Timestamp = Timestamp {
        msec: 0,
        logical: 0,
        node: 0,
    };
    /// The largest timestamp: [`Timestamp::after`] saturates here.
    pub const MAX: Timestamp = Timestamp {
        msec: u64::MAX,
        logical: u32::MAX,
        node: u64::MAX,
    };

    pub const fn new(msec: u64, logical: u32, node: u64) -> Timestamp {
        Timestamp {
            msec,
            logical,
            node,
        }
    }

    /// A timestamp for a new write by `node` on a key whose latest known timestamp is `prev`, using the
    /// local wall clock; see [`Timestamp::after_with_clock`].
    pub fn after(prev: Option<Timestamp>, node: u64) -> Timestamp {
        Self::after_with_clock(prev, node, now_msec())
    }

    /// A timestamp for a new write by `node` on a key whose latest known timestamp is `prev`, with the
    /// wall clock reading `now_msec`:
    /// - `msec` is `max(now_msec, prev.msec)`, so the result is never earlier than the wall clock;
    /// - if the clock is not ahead of `prev.msec` (it stalled or went backwards), `logical` is
    ///   `prev.logical + 1` (on overflow `msec` advances by one and `logical` restarts at 0), otherwise 0;
    /// - `node` is `node`.
    ///
    /// The result is strictly greater than `prev`, except that it saturates at [`Timestamp::MAX`] (only
    /// reachable from a `prev` at the very top of the range).
    pub fn after_with_clock(prev: Option<Timestamp>, node: u64, now_msec: u64) -> Timestamp {
        match prev {
            Some(p) if now_msec <= p.msec => match p.logical.checked_add(1) {
                Some(logical) => Timestamp::new(p.msec, logical, node),
                None => match p.msec.checked_add(1) {
                    Some(msec) => Timestamp::new(msec, 0, node),
                    None => Timestamp::MAX,
                },
            },
            _ => Timestamp::new(now_msec, 0, node),
        }
    }
}

impl Crdt for Timestamp {
    /// A max-register: keeps the larger timestamp (a join in a total order, so all three laws hold).
    fn merge(&mut self, other: &Self) {
        if *other > *self {
            *self = *other;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::crdt::laws;
    use proptest::prelude::*;

    /// Small ranges on purpose, so that generated timestamps often collide on some or all fields.
    pub fn small_ts() -> impl Strategy<Value = Timestamp> {
        (0u64..3, 0u32..3, 0u64..3).prop_map(|(m, l, n)| Timestamp::new(m, l, n))
    }

    fn any_ts() -> impl Strategy<Value = Timestamp> {
        prop_oneof![
            small_ts(),
            (any::<u64>(), any::<u32>(), any::<u64>())
                .prop_map(|(m, l, n)| Timestamp::new(m, l, n)),
            (any::<u64>(), Just(u32::MAX), any::<u64>())
                .prop_map(|(m, l, n)| Timestamp::new(m, l, n)),
        ]
    }

    proptest! {
        #[test]
        fn timestamp_laws(a in small_ts(), b in small_ts(), c in small_ts()) {
            laws::check(&a, &b, &c);
        }

        /// A sequence of writes to one key with an arbitrary clock (jumping backwards and forwards) gets
        /// strictly increasing timestamps, each no earlier than the clock.
        #[test]
        fn after_strictly_increases_whatever_the_clock(
            start in proptest::option::of(small_ts()),
            steps in proptest::collection::vec((0u64..3, 0u64..10), 1..20),
        ) {
            let mut prev = start;
            for (node, now) in steps {
                let t = Timestamp::after_with_clock(prev, node, now);
                if let Some(p) = prev {
                    prop_assert!(t > p, "{t:?} not after {p:?}");
                }
                prop_assert!(t.msec >= now);
                prop_assert_eq!(t.node, node);
                prev = Some(t);
            }
        }

        #[test]
        fn after_is_after_any_prev(prev in any_ts(), node: u64, now: u64) {
            let t = Timestamp::after_with_clock(Some(prev), node, now);
            prop_assert!(t > prev || prev == Timestamp::MAX);
            prop_assert!(t.msec >= now);
        }

        /// Two nodes writing at the same wall-clock time, after the same or different predecessors, get
        /// distinct timestamps, and the order between them is total and antisymmetric.
        #[test]
        fn different_nodes_never_collide(
            p1 in proptest::option::of(small_ts()),
            p2 in proptest::option::of(small_ts()),
            n1 in 0u64..4,
            n2 in 0u64..4,
            now in 0u64..4,
        ) {
            prop_assume!(n1 != n2);
            let a = Timestamp::after_with_clock(p1, n1, now);
            let b = Timestamp::after_with_clock(p2, n2, now);
            prop_assert_ne!(a, b);
            prop_assert_eq!(a.cmp(&b), b.cmp(&a).reverse());
            prop_assert!((a < b) ^ (b < a));
            prop_assert_eq!(a.cmp(&b), (a.msec, a.logical, a.node).cmp(&(b.msec, b.logical, b.node)));
        }
    }

    #[test]
    fn clock_backwards_advances_logical() {
        let t1 = Timestamp::after_with_clock(None, 1, 1000);
        assert_eq!(t1, Timestamp::new(1000, 0, 1));
        let t2 = Timestamp::after_with_clock(Some(t1), 1, 500);
        assert_eq!(t2, Timestamp::new(1000, 1, 1));
        let t3 = Timestamp::after_with_clock(Some(t2), 2, 1000);
        assert_eq!(t3, Timestamp::new(1000, 2, 2));
        let t4 = Timestamp::after_with_clock(Some(t3), 1, 1001);
        assert_eq!(t4, Timestamp::new(1001, 0, 1));
    }

    #[test]
    fn same_msec_different_nodes_differ() {
        let a = Timestamp::after_with_clock(None, 1, 42);
        let b = Timestamp::after_with_clock(None, 2, 42);
        assert_ne!(a, b);
        assert!(a < b);
    }

    #[test]
    fn logical_overflow_and_saturation() {
        let p = Timestamp::new(7, u32::MAX, 3);
        assert_eq!(
            Timestamp::after_with_clock(Some(p), 0, 0),
            Timestamp::new(8, 0, 0)
        );
        let top = Timestamp::new(u64::MAX, u32::MAX, 3);
        assert_eq!(Timestamp::after_with_clock(Some(top), 0, 0), Timestamp::MAX);
    }

    #[test]
    fn after_uses_wall_clock() {
        let before = now_msec();
        let t = Timestamp::after(None, 5);
        assert!(t.msec >= before && t.msec <= now_msec());
        assert_eq!((t.logical, t.node), (0, 5));
        let past = Timestamp::new(before + 3_600_000, 9, 1);
        assert_eq!(
            Timestamp::after(Some(past), 5),
            Timestamp::new(before + 3_600_000, 10, 5)
        );
    }

    #[test]
    fn serde_roundtrip() {
        let t = Timestamp::new(1, 2, 3);
        let named = rmp_serde::to_vec_named(&t).unwrap();
        assert_eq!(rmp_serde::from_slice::<Timestamp>(&named).unwrap(), t);
        let compact = rmp_serde::to_vec(&t).unwrap();
        assert_eq!(rmp_serde::from_slice::<Timestamp>(&compact).unwrap(), t);
    }
}
