//! Server-side encryption with customer-provided keys (SSE-C): the client sends a 256-bit key with
//! every request that reads or writes the object's data; the store encrypts what it stores with it and
//! keeps only the key's MD5, to tell a wrong key from the right one. Without the key the data cannot
//! be read, by the store or by anyone holding its disks.
//!
//! **Format of an encrypted block** (and of encrypted inline data): `salt (32 bytes) ‖ ciphertext ‖
//! tag (16 bytes)`. Each block gets a fresh random salt; its AES-256-GCM key is
//! `HMAC-SHA256(customer key, "grenier sse-c block v1" ‖ salt)`, so no two blocks share a key and the
//! all-zero nonce is safe (a nonce is never reused under one key). Consequences:
//! - a block is self-contained: any version holding the same customer key can list it, so a copy
//!   with the same key shares blocks as a plain copy does; a copy to another key (or to or from
//!   plain) re-encrypts;
//! - equal plaintexts give different blocks: encrypted data is not deduplicated, and nothing in the
//!   stored bytes tells whether two objects are equal;
//! - the block's content hash (its address) is the hash of the ciphertext, checked on every read as
//!   for any block, so swapped or altered blocks are caught before decryption, and GCM's tag catches a
//!   wrong key.
//!
//! What is **not** encrypted: the object's key (name), size, timestamps, ETag (random for encrypted
//! objects, see [`random_etag`]), content-type and user metadata, checksums the client sent, and the
//! key's MD5 (an MD5 of a random 256-bit key reveals nothing usable). This is AWS's model too.
//!
//! **Invariant:** the customer key lives in memory for one request only; it is never written to
//! disk, logged, or sent to another node (blocks travel encrypted).

use bytes::Bytes;
use md5::Digest;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hmac;
use serde::{Deserialize, Serialize};

use super::ModelError;

/// Bytes an encrypted block is longer than its plaintext (salt and tag).
pub const OVERHEAD: usize = SALT_LEN + TAG_LEN;
const SALT_LEN: usize = 32;
const TAG_LEN: usize = 16;
const KDF_LABEL: &[u8] = b"grenier sse-c block v1";

/// How a version's data is stored, as recorded in its metadata (never the key itself).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Encryption {
    /// SSE-C with the customer key whose MD5 this is.
    SseC { key_md5: [u8; 16] },
}

/// A customer-provided key, held for the duration of one request.
#[derive(Clone)]
pub struct CustomerKey {
    key: [u8; 32],
    md5: [u8; 16],
}

impl std::fmt::Debug for CustomerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("CustomerKey")
            .field("md5", &hex::encode(self.md5))
            .finish_non_exhaustive()
    }
}

impl CustomerKey {
    pub fn new(key: [u8; 32]) -> CustomerKey {
        let md5 = md5::Md5::digest(key).into();
        CustomerKey { key, md5 }
    }

    pub fn md5(&self) -> [u8; 16] {
        self.md5
    }

    /// What a version encrypted with this key records.
    pub fn encryption(&self) -> Encryption {
        Encryption::SseC { key_md5: self.md5 }
    }

    /// Whether this is the key `e` was encrypted with.
    pub fn matches(&self, e: &Encryption) -> bool {
        match e {
            Encryption::SseC { key_md5 } => *key_md5 == self.md5,
        }
    }

    fn block_key(&self, salt: &[u8]) -> LessSafeKey {
        let mac = hmac::Key::new(hmac::HMAC_SHA256, &self.key);
        let mut ctx = hmac::Context::with_key(&mac);
        ctx.update(KDF_LABEL);
        ctx.update(salt);
        let derived = ctx.sign();
        let unbound = UnboundKey::new(&AES_256_GCM, derived.as_ref())
            .expect("HMAC-SHA256 gives 32 bytes, the AES-256 key length");
        LessSafeKey::new(unbound)
    }

    /// Encrypt one block (or inline body): `salt ‖ ciphertext ‖ tag`.
    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        let salt: [u8; SALT_LEN] = super::random_bytes();
        let mut out = Vec::with_capacity(plain.len() + OVERHEAD);
        out.extend_from_slice(&salt);
        out.extend_from_slice(plain);
        let tag = self
            .block_key(&salt)
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key([0; 12]),
                Aad::empty(),
                &mut out[SALT_LEN..],
            )
            .expect("AES-GCM seals any input below 64 GiB");
        out.extend_from_slice(tag.as_ref());
        out
    }

    /// Decrypt what [`CustomerKey::seal`] made with this key, in place (no copy when `sealed` is
    /// the only handle on its buffer). A wrong key or altered bytes fail.
    pub fn open(&self, sealed: impl Into<Vec<u8>>) -> Result<Bytes, ModelError> {
        let mut buf: Vec<u8> = sealed.into();
        if buf.len() < OVERHEAD {
            return Err(ModelError::Invalid(
                "encrypted data is shorter than its header".into(),
            ));
        }
        let key = self.block_key(&buf[..SALT_LEN]);
        let plain_len = key
            .open_in_place(
                Nonce::assume_unique_for_key([0; 12]),
                Aad::empty(),
                &mut buf[SALT_LEN..],
            )
            .map_err(|_| ModelError::Decrypt)?
            .len();
        Ok(Bytes::from(buf).slice(SALT_LEN..SALT_LEN + plain_len))
    }
}

/// The ETag of an encrypted version: random, as AWS documents it is "not an MD5 of the object data"
/// (an MD5 of the plaintext would let anyone who can list the bucket test a guess of the content).
pub fn random_etag() -> String {
    hex::encode(super::random_bytes::<16>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open_round_trips_and_each_seal_differs() {
        let k = CustomerKey::new([7; 32]);
        for len in [0usize, 1, 15, 16, 17, 4096, 1 << 20] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 31) as u8).collect();
            let a = k.seal(&plain);
            let b = k.seal(&plain);
            assert_eq!(a.len(), len + OVERHEAD);
            assert_ne!(a, b, "a fresh salt per block");
            assert_eq!(k.open(a.clone()).unwrap(), plain);
            assert_eq!(k.open(b).unwrap(), plain);
            // 16 bytes: a shorter run could appear in random bytes by chance.
            if len >= 16 {
                assert!(
                    !a.windows(16).any(|w| w == &plain[..16]),
                    "the plaintext does not appear in the sealed bytes"
                );
            }
        }
    }

    #[test]
    fn a_wrong_key_or_altered_bytes_do_not_open() {
        let (k, other) = (CustomerKey::new([1; 32]), CustomerKey::new([2; 32]));
        let sealed = k.seal(b"secret data");
        assert!(matches!(
            other.open(sealed.clone()),
            Err(ModelError::Decrypt)
        ));
        for i in [0, 31, 32, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(k.open(bad).is_err(), "byte {i} altered");
        }
        assert!(k.open(&sealed[..OVERHEAD - 1]).is_err());
        assert!(k.open(&sealed[..sealed.len() - 1]).is_err());
    }

    #[test]
    fn the_key_is_identified_by_its_md5_and_never_printed() {
        let k = CustomerKey::new([9; 32]);
        assert_eq!(k.md5(), <[u8; 16]>::from(md5::Md5::digest([9u8; 32])));
        assert!(k.matches(&k.encryption()));
        assert!(!CustomerKey::new([8; 32]).matches(&k.encryption()));
        let shown = format!("{k:?}");
        assert!(!shown.contains("9, 9"), "{shown}");
        assert_ne!(random_etag(), random_etag());
        assert_eq!(random_etag().len(), 32);
    }
}
