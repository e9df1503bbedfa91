//! A block as stored on disk and sent between nodes: plain or zstd-compressed bytes behind a header.
//!
//! A block travels as its kind and payload (the stored bytes, compressed or not), so a block read from
//! disk is sent (and a received block written) without re-encoding, and the receiver verifies exactly
//! what the sender stored. A block is always checked before its content is used: against its BLAKE2b
//! hash when it comes from another node (and by the scrub), against the CRC32C its file holds when it
//! is read from this node's disk to be served (see [`DataBlock::verify_stored`]).
//!
//! Files: `GRblk`, a version byte, the kind, a reserved zero byte, then in version 2 the CRC32C
//! (Castagnoli, little-endian) of the payload, then the payload. Version 1 files (no CRC, written by
//! earlier releases) are still read, and verified with BLAKE2b.

use std::fmt;
use std::io::Read;

use bytes::Bytes;

use super::BlockError;
use crate::util::hash::{Hash, blake2sum};

/// Length of the header that precedes the payload in the files written now (version 2).
pub const HEADER_LEN: usize = 12;
/// Length of the header of version 1 files (no CRC).
const HEADER_LEN_V1: usize = 8;

/// Largest plain block we accept to decompress: bounds memory on a hostile or corrupt zstd frame.
pub const MAX_BLOCK_PLAIN: usize = crate::util::config::MAX_BLOCK_SIZE as usize;

/// Blocks from this size are probed for compressibility before being compressed whole.
pub const PROBE_FROM: usize = 256 << 10;
/// Length of each of the two samples of the probe.
pub const PROBE_LEN: usize = 32 << 10;

/// Whether samples of `plain` (at its start and middle) save at least 1/32 under zstd at `level`.
fn samples_compress(plain: &[u8], level: i32) -> bool {
    let mid = plain.len() / 2;
    [&plain[..PROBE_LEN], &plain[mid..mid + PROBE_LEN]]
        .iter()
        .any(|sample| match zstd::bulk::compress(sample, level) {
            Ok(c) => c.len() <= sample.len() - sample.len() / 32,
            Err(_) => true,
        })
}

/// Magic at the start of every encoded block, so a stray file is never mistaken for a block.
const MAGIC: &[u8; 5] = b"GRblk";
/// Format version of the header written; a change of the encoding needs a new value. Version 1 (no
/// CRC) is still read.
const VERSION: u8 = 2;
/// Kind byte of an uncompressed payload.
pub const KIND_PLAIN: u8 = 0;
/// Kind byte of a zstd-compressed payload.
pub const KIND_ZSTD: u8 = 1;

/// The content of a block, as stored and sent.
#[derive(Clone, PartialEq, Eq)]
pub enum DataBlock {
    /// The block's bytes as the client sent them.
    Plain(Bytes),
    /// One zstd frame whose decompression is the block's bytes.
    Compressed(Bytes),
}

impl fmt::Debug for DataBlock {
    /// Kind and length only: blocks are up to 64 MiB, never dump them into logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataBlock::Plain(b) => write!(f, "DataBlock::Plain({} bytes)", b.len()),
            DataBlock::Compressed(b) => write!(f, "DataBlock::Compressed({} bytes)", b.len()),
        }
    }
}

impl DataBlock {
    /// Compress `plain` with zstd at `level` (`None` = never compress), keeping the compressed form only if
    /// it saves at least 1/16 of the size: below that, decompressing on every read costs more than the
    /// space saved. CPU-heavy: callers run it in `spawn_blocking`.
    ///
    /// Blocks past [`PROBE_FROM`] are probed first: two samples of [`PROBE_LEN`] bytes (the start and
    /// the middle) are compressed, and the block is stored plain when they save less than 1/32. Media,
    /// archives and encrypted data (most of the bytes of a media store) then cost a sixteenth of a
    /// compression instead of a whole one; a block whose samples compress is compressed whole.
    pub fn from_plain(plain: Bytes, level: Option<i32>) -> DataBlock {
        let Some(level) = level else {
            return DataBlock::Plain(plain);
        };
        if plain.len() >= PROBE_FROM && !samples_compress(&plain, level) {
            return DataBlock::Plain(plain);
        }
        match zstd::bulk::compress(&plain, level) {
            Ok(c) if c.len() <= plain.len() - plain.len() / 16 && !plain.is_empty() => {
                DataBlock::Compressed(Bytes::from(c))
            }
            _ => DataBlock::Plain(plain),
        }
    }

    /// Header of a block file: `GRblk`, version, kind, a reserved zero byte, the payload's CRC32C
    /// (computed here: a pass over the payload). Kept apart from the payload so callers write both
    /// without copying the payload.
    pub fn header(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..MAGIC.len()].copy_from_slice(MAGIC);
        h[5] = VERSION;
        h[6] = self.kind_byte();
        h[8..12].copy_from_slice(&crc32c(self.payload()).to_le_bytes());
        h
    }

    /// The stored bytes after the header (compressed or not).
    pub fn payload(&self) -> &Bytes {
        match self {
            DataBlock::Plain(b) | DataBlock::Compressed(b) => b,
        }
    }

    /// [`KIND_PLAIN`] or [`KIND_ZSTD`].
    pub fn kind_byte(&self) -> u8 {
        match self {
            DataBlock::Plain(_) => KIND_PLAIN,
            DataBlock::Compressed(_) => KIND_ZSTD,
        }
    }

    /// Whether the payload is zstd-compressed.
    pub fn is_compressed(&self) -> bool {
        matches!(self, DataBlock::Compressed(_))
    }

    /// Size of the encoding (header + payload): what a file or message holds.
    pub fn stored_len(&self) -> usize {
        HEADER_LEN + self.payload().len()
    }

    /// Parse a block file's content, with the payload's CRC32C from a version 2 header (None in a
    /// version 1 file); not checked here. The payload is a zero-copy slice of `bytes`. The hash is
    /// unknown here, so a [`BlockError::Corrupted`] names the block `?`; callers that know it re-label.
    pub fn decode(bytes: Bytes) -> Result<(DataBlock, Option<u32>), BlockError> {
        let corrupted = |why: String| BlockError::Corrupted("?".into(), why);
        if bytes.len() < HEADER_LEN_V1 {
            return Err(corrupted(format!(
                "{} bytes, shorter than the header",
                bytes.len()
            )));
        }
        if &bytes[..MAGIC.len()] != MAGIC {
            return Err(corrupted("not a block (bad magic)".into()));
        }
        let (header_len, crc) = match bytes[5] {
            1 => (HEADER_LEN_V1, None),
            2 if bytes.len() >= HEADER_LEN => {
                let crc = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
                (HEADER_LEN, Some(crc))
            }
            2 => {
                return Err(corrupted(format!(
                    "{} bytes, shorter than the header",
                    bytes.len()
                )));
            }
            v => return Err(corrupted(format!("unknown block format version {v}"))),
        };
        if bytes[7] != 0 {
            return Err(corrupted(format!("reserved header byte is {}", bytes[7])));
        }
        Ok((
            DataBlock::from_parts(bytes[6], bytes.slice(header_len..))?,
            crc,
        ))
    }

    /// Build a block from a kind byte and its payload (e.g. received as two message fields).
    pub fn from_parts(kind: u8, payload: Bytes) -> Result<DataBlock, BlockError> {
        match kind {
            KIND_PLAIN => Ok(DataBlock::Plain(payload)),
            KIND_ZSTD => Ok(DataBlock::Compressed(payload)),
            k => Err(BlockError::Corrupted(
                "?".into(),
                format!("unknown block kind {k}"),
            )),
        }
    }

    /// A block read from this node's disk, to be served: with the CRC32C its file holds, the payload
    /// is checked against it (a fraction of BLAKE2b's cost: what bounds serving large objects from
    /// the page cache) and decompressed; without one (a version 1 file), [`DataBlock::verify`]. The
    /// CRC was computed when the file was written, from bytes whose hash was checked then: it catches
    /// what happens on the disk (bit rot, torn or misplaced writes). The scrub still checks BLAKE2b.
    pub fn verify_stored(self, hash: &Hash, crc: Option<u32>) -> Result<Bytes, BlockError> {
        let Some(crc) = crc else {
            return self.verify(hash);
        };
        let corrupted = |why: String| BlockError::Corrupted(hex::encode(hash), why);
        if crc32c(self.payload()) != crc {
            return Err(corrupted(
                "content does not match the CRC32C of its file".into(),
            ));
        }
        match self {
            DataBlock::Plain(b) if b.len() <= MAX_BLOCK_PLAIN => Ok(b),
            DataBlock::Plain(b) => Err(corrupted(format!(
                "{} bytes, above the maximum block size",
                b.len()
            ))),
            DataBlock::Compressed(c) => Ok(Bytes::from(decompress_bounded(&c).map_err(corrupted)?)),
        }
    }

    /// Decompress if needed and check that BLAKE2b(plain) is `hash`; returns the plain bytes. A mismatch,
    /// a zstd error or a plain size above [`MAX_BLOCK_PLAIN`] is [`BlockError::Corrupted`]. CPU-heavy.
    pub fn verify(self, hash: &Hash) -> Result<Bytes, BlockError> {
        let corrupted = |why: String| BlockError::Corrupted(hex::encode(hash), why);
        let plain = match self {
            DataBlock::Plain(b) => b,
            DataBlock::Compressed(c) => Bytes::from(decompress_bounded(&c).map_err(corrupted)?),
        };
        if plain.len() > MAX_BLOCK_PLAIN {
            return Err(corrupted(format!(
                "{} bytes, above the maximum block size",
                plain.len()
            )));
        }
        if blake2sum(&plain) != *hash {
            return Err(corrupted("content does not match its hash".into()));
        }
        Ok(plain)
    }
}

/// CRC32C (Castagnoli) of `bytes`.
fn crc32c(bytes: &[u8]) -> u32 {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, bytes) as u32
}

/// Decompress a zstd payload, reading at most one byte more than [`MAX_BLOCK_PLAIN`] so that a frame that
/// expands without bound (a "zip bomb", or garbage) fails without exhausting memory.
fn decompress_bounded(compressed: &[u8]) -> Result<Vec<u8>, String> {
    let decoder =
        zstd::stream::read::Decoder::with_buffer(compressed).map_err(|e| format!("zstd: {e}"))?;
    let mut out = Vec::with_capacity(size_hint(compressed));
    decoder
        .take(MAX_BLOCK_PLAIN as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("zstd: {e}"))?;
    if out.len() > MAX_BLOCK_PLAIN {
        return Err(format!("decompresses to more than {MAX_BLOCK_PLAIN} bytes"));
    }
    Ok(out)
}

/// Initial output capacity: the frame's declared content size when it has one, capped so that a lying
/// header cannot make us allocate more than the bound.
fn size_hint(compressed: &[u8]) -> usize {
    match zstd::zstd_safe::get_frame_content_size(compressed) {
        Ok(Some(n)) => n.min(MAX_BLOCK_PLAIN as u64 + 1) as usize,
        _ => compressed.len().saturating_mul(4).min(MAX_BLOCK_PLAIN + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngCore;

    fn random(n: usize) -> Bytes {
        let mut v = vec![0u8; n];
        rand::thread_rng().fill_bytes(&mut v);
        Bytes::from(v)
    }

    fn compressible(n: usize) -> Bytes {
        Bytes::from((0..n).map(|i| (i % 7) as u8 + b'a').collect::<Vec<u8>>())
    }

    /// Encode as a file would hold it.
    fn encode(b: &DataBlock) -> Bytes {
        let mut v = b.header().to_vec();
        v.extend_from_slice(b.payload());
        Bytes::from(v)
    }

    #[test]
    fn compressible_data_is_compressed_and_roundtrips() {
        let plain = compressible(100_000);
        let hash = blake2sum(&plain);
        let b = DataBlock::from_plain(plain.clone(), Some(1));
        assert!(b.is_compressed());
        assert!(b.payload().len() < plain.len() / 2);
        assert_eq!(b.stored_len(), HEADER_LEN + b.payload().len());
        let (decoded, crc) = DataBlock::decode(encode(&b)).unwrap();
        assert_eq!(decoded, b);
        assert_eq!(decoded.clone().verify(&hash).unwrap(), plain);
        assert_eq!(decoded.verify_stored(&hash, crc).unwrap(), plain);
    }

    #[test]
    fn random_data_and_level_none_stay_plain() {
        let plain = random(50_000);
        let hash = blake2sum(&plain);
        let b = DataBlock::from_plain(plain.clone(), Some(3));
        assert_eq!(b, DataBlock::Plain(plain.clone()));
        assert_eq!(
            DataBlock::decode(encode(&b))
                .unwrap()
                .0
                .verify(&hash)
                .unwrap(),
            plain
        );

        let c = compressible(50_000);
        assert!(!DataBlock::from_plain(c.clone(), None).is_compressed());
        assert!(!DataBlock::from_plain(Bytes::new(), Some(1)).is_compressed());
        let empty = DataBlock::from_plain(Bytes::new(), Some(1));
        assert_eq!(empty.verify(&blake2sum(b"")).unwrap(), Bytes::new());
    }

    /// Large blocks: random bytes stay plain (the probe says no), compressible ones are compressed,
    /// and so is a block whose start is random but whose middle compresses (one sample is enough).
    #[test]
    fn the_probe_of_large_blocks_decides_like_a_whole_compression() {
        let n = 1 << 20;
        assert!(!DataBlock::from_plain(random(n), Some(1)).is_compressed());
        assert!(DataBlock::from_plain(compressible(n), Some(1)).is_compressed());
        let mut mixed = random(n / 2).to_vec();
        mixed.extend_from_slice(&compressible(n / 2));
        let plain = Bytes::from(mixed);
        let b = DataBlock::from_plain(plain.clone(), Some(1));
        assert!(b.is_compressed(), "half of it compresses");
        assert_eq!(b.verify(&blake2sum(&plain)).unwrap(), plain);
        // Random in both sampled places: plain, even if the rest would compress.
        let mut v = random(n).to_vec();
        v[PROBE_LEN..n / 2].fill(b'a');
        v[n / 2 + PROBE_LEN..].fill(b'a');
        assert!(!DataBlock::from_plain(Bytes::from(v), Some(1)).is_compressed());
        assert!(samples_compress(&compressible(PROBE_FROM), 1));
        assert!(!samples_compress(&random(PROBE_FROM), 1));
    }

    #[test]
    fn header_layout_is_the_documented_one() {
        // CRC32C's check value: CRC32C("123456789") = 0xE3069283; CRC32C("") = 0 (little-endian,
        // after the reserved byte).
        let b = DataBlock::Compressed(Bytes::from_static(b"123456789"));
        assert_eq!(&b.header(), b"GRblk\x02\x01\x00\x83\x92\x06\xe3");
        assert_eq!(
            &DataBlock::Plain(Bytes::new()).header(),
            b"GRblk\x02\x00\x00\x00\x00\x00\x00"
        );
    }

    /// A version 1 file (no CRC, written by an earlier release) still reads, and is verified with
    /// BLAKE2b; a version 2 file is served after its CRC, which catches a flipped byte.
    #[test]
    fn files_of_both_versions_read_and_the_crc_catches_damage() {
        let plain = random(70_000);
        let hash = blake2sum(&plain);
        let mut v1 = b"GRblk\x01\x00\x00".to_vec();
        v1.extend_from_slice(&plain);
        let (b, crc) = DataBlock::decode(Bytes::from(v1.clone())).unwrap();
        assert_eq!(crc, None);
        assert_eq!(b.verify_stored(&hash, crc).unwrap(), plain);
        v1[100] ^= 1;
        let (b, crc) = DataBlock::decode(Bytes::from(v1)).unwrap();
        assert!(matches!(
            b.verify_stored(&hash, crc),
            Err(BlockError::Corrupted(..))
        ));

        for block in [
            DataBlock::from_plain(plain.clone(), None),
            DataBlock::from_plain(compressible(70_000), Some(1)),
        ] {
            let want = block
                .clone()
                .verify_stored(&[0; 32], Some(crc32c(block.payload())));
            let mut file = encode(&block).to_vec();
            let (b, crc) = DataBlock::decode(Bytes::from(file.clone())).unwrap();
            assert_eq!(crc, Some(crc32c(block.payload())));
            assert_eq!(b.verify_stored(&[0; 32], crc).unwrap(), want.unwrap());
            let last = file.len() - 1;
            file[last] ^= 0x10;
            let (b, crc) = DataBlock::decode(Bytes::from(file)).unwrap();
            let err = b.verify_stored(&hash, crc).unwrap_err();
            assert!(
                matches!(&err, BlockError::Corrupted(_, why) if why.contains("CRC32C")),
                "{err}"
            );
        }
    }

    #[test]
    fn verify_detects_a_flipped_byte() {
        let plain = compressible(10_000);
        let hash = blake2sum(&plain);
        let mut v = plain.to_vec();
        v[1234] ^= 1;
        let err = DataBlock::Plain(Bytes::from(v)).verify(&hash).unwrap_err();
        assert!(matches!(err, BlockError::Corrupted(h, _) if h == hex::encode(hash)));

        let b = DataBlock::from_plain(plain, Some(1));
        let mut c = b.payload().to_vec();
        let mid = c.len() / 2;
        c[mid] ^= 0x40;
        let err = DataBlock::Compressed(Bytes::from(c))
            .verify(&hash)
            .unwrap_err();
        assert!(matches!(err, BlockError::Corrupted(..)), "{err}");
    }

    #[test]
    fn verify_rejects_a_wrong_hash() {
        let plain = random(100);
        let err = DataBlock::Plain(plain).verify(&[0u8; 32]).unwrap_err();
        assert!(matches!(err, BlockError::Corrupted(..)));
    }

    #[test]
    fn decode_rejects_garbage() {
        for bad in [
            &b""[..],
            b"GRblk\x01",
            b"GRblX\x01\x00\x00payload",
            b"GRblk\x03\x00\x00payload",
            b"GRblk\x02\x00\x00pay",
            b"GRblk\x01\x07\x00payload",
            b"GRblk\x01\x00\x01payload",
        ] {
            let err = DataBlock::decode(Bytes::copy_from_slice(bad)).unwrap_err();
            assert!(matches!(err, BlockError::Corrupted(..)), "{bad:?}");
        }
        assert!(DataBlock::from_parts(9, Bytes::new()).is_err());
        let ok = DataBlock::decode(Bytes::from_static(b"GRblk\x01\x00\x00")).unwrap();
        assert_eq!(ok, (DataBlock::Plain(Bytes::new()), None));
    }

    #[test]
    fn garbage_compressed_payload_is_corrupted() {
        let err = DataBlock::Compressed(random(1000))
            .verify(&[0u8; 32])
            .unwrap_err();
        assert!(matches!(err, BlockError::Corrupted(..)));
    }

    #[test]
    fn decompression_bomb_is_rejected() {
        let bomb = zstd::bulk::compress(&vec![0u8; MAX_BLOCK_PLAIN + 4096], 1).unwrap();
        assert!(bomb.len() < 100_000);
        let err = DataBlock::Compressed(Bytes::from(bomb))
            .verify(&[0u8; 32])
            .unwrap_err();
        match err {
            BlockError::Corrupted(_, why) => assert!(why.contains("more than"), "{why}"),
            e => panic!("{e}"),
        }
    }
}
