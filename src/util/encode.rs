//! Versioned MessagePack encoding for everything persisted or sent on the wire.
//!
//! Every such struct implements [`Versioned`]: its encoding is a short version marker followed by the
//! struct in MessagePack (`rmp_serde`, named fields). When a struct changes, the old definition is kept in a
//! `v1` module, the new one names it as [`Versioned::Previous`] and says how to [`Versioned::migrate`] from
//! it; [`Versioned::decode`] then reads any older encoding. This keeps upgrades boring.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Errors of encoding and decoding versioned structs.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("encoding failed: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    #[error("decoding failed: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    #[error("unknown version marker (data written by a newer or foreign release?)")]
    UnknownVersion,
}

/// A struct that is persisted or sent on the wire, with its version history.
pub trait Versioned: Serialize + DeserializeOwned + Sized {
    /// Marker written before the MessagePack body; unique per struct and version (e.g. `b"GRlayout01"`).
    const MARKER: &'static [u8];
    /// The previous version of this struct, or [`NoPrevious`] for the first one.
    type Previous: Versioned;
    /// Upgrade a value of the previous version.
    fn migrate(_prev: Self::Previous) -> Self {
        unreachable!("migrate called on a struct without a previous version")
    }

    fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(Self::MARKER.len() + 64);
        out.extend_from_slice(Self::MARKER);
        rmp_serde::encode::write_named(&mut out, self)?;
        Ok(out)
    }

    fn decode(bytes: &[u8]) -> Result<Self, EncodeError> {
        if let Some(body) = bytes.strip_prefix(Self::MARKER) {
            return Ok(rmp_serde::from_slice(body)?);
        }
        if Self::Previous::MARKER.is_empty() {
            return Err(EncodeError::UnknownVersion);
        }
        Ok(Self::migrate(Self::Previous::decode(bytes)?))
    }
}

/// The "previous version" of a first version: it never decodes.
#[derive(serde::Serialize, serde::Deserialize)]
pub enum NoPrevious {}

impl Versioned for NoPrevious {
    const MARKER: &'static [u8] = b"";
    type Previous = NoPrevious;
    fn decode(_bytes: &[u8]) -> Result<Self, EncodeError> {
        Err(EncodeError::UnknownVersion)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    mod v1 {
        use super::*;
        #[derive(Serialize, Deserialize, Debug, PartialEq)]
        pub struct Thing {
            pub a: u32,
        }
        impl Versioned for Thing {
            const MARKER: &'static [u8] = b"GRtest01";
            type Previous = NoPrevious;
        }
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Thing {
        a: u64,
        b: String,
    }
    impl Versioned for Thing {
        const MARKER: &'static [u8] = b"GRtest02";
        type Previous = v1::Thing;
        fn migrate(prev: v1::Thing) -> Self {
            Thing {
                a: prev.a as u64,
                b: "migrated".into(),
            }
        }
    }

    #[test]
    fn roundtrip_and_migrate() {
        let t = Thing {
            a: 7,
            b: "x".into(),
        };
        assert_eq!(Thing::decode(&t.encode().unwrap()).unwrap(), t);
        let old = v1::Thing { a: 3 }.encode().unwrap();
        assert_eq!(
            Thing::decode(&old).unwrap(),
            Thing {
                a: 3,
                b: "migrated".into()
            }
        );
        assert!(matches!(
            v1::Thing::decode(b"GRzzz"),
            Err(EncodeError::UnknownVersion)
        ));
    }
}

/// Property-based fuzzing of decoding (case count: `PROPTEST_CASES`, default 256; `script/fuzz`
/// runs them for a given time): whatever a peer or a damaged disk hands over decodes or fails,
/// without a panic and without allocating what a length prefix claims.
#[cfg(test)]
mod fuzz {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use serde::Deserialize;

    use super::*;

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    enum Shape {
        Empty,
        Point(i64, i64),
        Named { name: String, tags: Vec<String> },
    }

    /// A struct with every kind of field our persisted types use.
    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    struct Rich {
        n: u64,
        small: u8,
        text: String,
        #[serde(with = "serde_bytes")]
        blob: Vec<u8>,
        list: Vec<(u32, String)>,
        map: BTreeMap<String, Option<u64>>,
        shape: Shape,
        hash: [u8; 32],
    }

    impl Versioned for Rich {
        const MARKER: &'static [u8] = b"GRfuzz01";
        type Previous = NoPrevious;
    }

    fn rich() -> impl Strategy<Value = Rich> {
        let shape = prop_oneof![
            Just(Shape::Empty),
            (any::<i64>(), any::<i64>()).prop_map(|(a, b)| Shape::Point(a, b)),
            ("\\PC{0,8}", prop::collection::vec("\\PC{0,8}", 0..3))
                .prop_map(|(name, tags)| Shape::Named { name, tags }),
        ];
        (
            any::<u64>(),
            any::<u8>(),
            "\\PC{0,20}",
            prop::collection::vec(any::<u8>(), 0..40),
            prop::collection::vec((any::<u32>(), "\\PC{0,8}"), 0..4),
            prop::collection::btree_map("\\PC{0,8}", any::<Option<u64>>(), 0..4),
            shape,
            any::<[u8; 32]>(),
        )
            .prop_map(|(n, small, text, blob, list, map, shape, hash)| Rich {
                n,
                small,
                text,
                blob,
                list,
                map,
                shape,
                hash,
            })
    }

    proptest! {
        /// Encoding then decoding gives the value back.
        #[test]
        fn round_trip(v in rich()) {
            prop_assert_eq!(Rich::decode(&v.encode().unwrap()).unwrap(), v);
        }

        /// Arbitrary bytes after the marker, or a valid encoding with bytes changed, cut or
        /// added: an error or some value, never a panic.
        #[test]
        fn damaged_encodings_never_panic(
            v in rich(),
            garbage in prop::collection::vec(any::<u8>(), 0..200),
            edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            cut in any::<usize>(),
        ) {
            let _ = Rich::decode(&[Rich::MARKER, &garbage[..]].concat());
            let _ = Rich::decode(&garbage);
            let mut bytes = v.encode().unwrap();
            for (at, byte) in edits {
                let at = at % bytes.len();
                bytes[at] = byte;
            }
            let _ = Rich::decode(&bytes);
            let _ = Rich::decode(&bytes[..cut % (bytes.len() + 1)]);
        }
    }

    /// MessagePack length prefixes of 4 Gi elements or bytes, with nothing behind them, are
    /// refused without allocating what they announce.
    #[test]
    fn huge_length_prefixes_are_refused() {
        let prefixes: [&[u8]; 4] = [
            &[0xdd, 0xff, 0xff, 0xff, 0xff], // array32
            &[0xdf, 0xff, 0xff, 0xff, 0xff], // map32
            &[0xc6, 0xff, 0xff, 0xff, 0xff], // bin32
            &[0xdb, 0xff, 0xff, 0xff, 0xff], // str32
        ];
        for p in prefixes {
            assert!(rmp_serde::from_slice::<Vec<u64>>(p).is_err());
            assert!(rmp_serde::from_slice::<BTreeMap<String, u64>>(p).is_err());
            assert!(rmp_serde::from_slice::<serde_bytes::ByteBuf>(p).is_err());
            assert!(rmp_serde::from_slice::<String>(p).is_err());
            // The same claim inside a struct, at every field.
            let v = Rich {
                n: 1,
                small: 2,
                text: "t".into(),
                blob: vec![1],
                list: vec![(1, "x".into())],
                map: BTreeMap::new(),
                shape: Shape::Empty,
                hash: [0; 32],
            };
            let good = v.encode().unwrap();
            for at in Rich::MARKER.len()..good.len() {
                let bad = [&good[..at], p].concat();
                assert!(Rich::decode(&bad).is_err());
            }
        }
    }
}
