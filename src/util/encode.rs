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
