//! 32-byte hashes: what partitions, table keys and blocks are addressed by.

use blake2::{Blake2b512, Digest};

pub type Hash = [u8; 32];

/// BLAKE2b-512 truncated to 32 bytes.
pub fn blake2sum(data: &[u8]) -> Hash {
    let h = Blake2b512::digest(data);
    h[..32].try_into().expect("64-byte digest")
}
