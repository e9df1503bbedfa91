//! Block files in one or several data directories.
//!
//! A block lives at `<dir>/<hex[0..2]>/<hex[2..4]>/<hex>` (two fan-out levels keep directories small) and
//! holds [`DataBlock::header`] followed by the payload. With several directories, each block has one
//! *primary* directory chosen by weighted rendezvous hashing on the directory's persisted identity, so
//! blocks spread in proportion to capacities and a change of directories moves only the blocks that must
//! move. Copies found elsewhere (read-only directories being drained, capacity changes) are still read and
//! are moved home by [`BlockStore::move_to_primary`].
//!
//! A writable data directory is created mode 0700, and an existing one open to other users is set to
//! 0700 when opened (logged).
//!
//! Every method is synchronous and may block on disk: async callers use `spawn_blocking`.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use rand::RngCore;

use super::BlockError;
use super::data::{DataBlock, HEADER_LEN, MAX_BLOCK_PLAIN};
use crate::layout::system::DiskSpace;
use crate::util::config::DataDir;
use crate::util::hash::{Hash, blake2sum};

/// Name of the file that holds a data directory's identity.
pub const DIR_ID_FILE: &str = "grenier-data-dir";
/// Suffix given to a quarantined (corrupted) block file.
pub const CORRUPTED_SUFFIX: &str = ".corrupted";
/// Marker in temporary file names; anything named `<hex or id file>.tmp.*` is a leftover of a crash.
const TMP_MARKER: &str = ".tmp.";

/// Makes temporary names unique within the process (the pid makes them unique across processes).
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// One configured data directory.
struct Dir {
    path: PathBuf,
    /// Persisted random identity: placement hashes on it, not on the path, so remounting elsewhere keeps
    /// every block where it is. `None` only for a read-only directory without an identity file (it never
    /// takes part in placement).
    id: Option<[u8; 16]>,
    capacity: Option<u64>,
    read_only: bool,
}

impl Dir {
    /// Rendezvous weight: the capacity, or 1 when not given (a single directory needs none).
    fn weight(&self) -> f64 {
        self.capacity.map_or(1.0, |c| c as f64)
    }
}

/// Per-directory information for `grenier worker list` and stats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirInfo {
    pub path: PathBuf,
    pub capacity: Option<u64>,
    pub read_only: bool,
    /// Bytes available to unprivileged users, from `statvfs`; `None` if it failed.
    pub avail: Option<u64>,
    /// Size of the file system, from `statvfs`; `None` if it failed.
    pub total: Option<u64>,
}

/// The block files of this node.
pub struct BlockStore {
    dirs: Vec<Dir>,
    /// Indices of the directories that accept new blocks.
    writable: Vec<usize>,
    fsync: bool,
}

/// An I/O error labelled with the path it concerns, so that operators know which disk is failing.
fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BlockError + '_ {
    move |e| BlockError::Io(path.display().to_string(), e)
}

/// An `InvalidData` I/O error labelled with `path`.
fn invalid(path: &Path, why: String) -> BlockError {
    BlockError::Io(
        path.display().to_string(),
        io::Error::new(io::ErrorKind::InvalidData, why),
    )
}

/// fsync a directory so that a rename or creation inside it survives a crash.
fn sync_dir(path: &Path) -> Result<(), BlockError> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_err(path))
}

/// A temporary name beside `final_path` that no other writer, in this process or another, can pick.
fn tmp_path(final_path: &Path) -> PathBuf {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut name = final_path.file_name().unwrap_or_default().to_os_string();
    name.push(format!("{TMP_MARKER}{}.{n}", std::process::id()));
    final_path.with_file_name(name)
}

/// Remove a file, saying whether it existed.
fn remove_if_exists(path: &Path) -> Result<bool, BlockError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Entries of a directory; a missing directory is empty (fan-out levels are created lazily, and a
/// read-only directory may be absent).
fn read_dir_names(path: &Path) -> Result<Vec<(String, fs::FileType)>, BlockError> {
    let entries = match fs::read_dir(path) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(io_err(path)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(path))?;
        let ty = entry.file_type().map_err(io_err(&entry.path()))?;
        if let Ok(name) = entry.file_name().into_string() {
            out.push((name, ty));
        }
    }
    Ok(out)
}

/// Whether `s` is lowercase hex of exactly `len` characters (the only form we write).
fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Fan-out byte named by a directory entry, if it is a two-hex-char directory.
fn fanout_byte(name: &str, ty: &fs::FileType) -> Option<u8> {
    if !ty.is_dir() || !is_lower_hex(name, 2) {
        return None;
    }
    u8::from_str_radix(name, 16).ok()
}

/// Whether a file name is a temporary file of ours (block or identity file) left by an interrupted write.
fn is_leftover_tmp(name: &str) -> bool {
    match name.split_once(TMP_MARKER) {
        Some((base, _)) => is_lower_hex(base, 64) || base == DIR_ID_FILE,
        None => false,
    }
}

/// Uniform value in (0, 1) from the first 8 bytes of a hash (53 bits, centred so 0 and 1 never occur).
fn unit_interval(h: &Hash) -> f64 {
    let x = u64::from_be_bytes(h[..8].try_into().expect("8 bytes"));
    ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

/// Weighted rendezvous score of a directory for a block: `weight / -ln(u)`; the highest wins, which gives
/// each directory a share of blocks proportional to its weight.
fn score(dir_id: &[u8; 16], weight: f64, hash: &Hash) -> f64 {
    let mut input = [0u8; 48];
    input[..16].copy_from_slice(dir_id);
    input[16..].copy_from_slice(hash);
    weight / -unit_interval(&blake2sum(&input)).ln()
}

/// Read a directory's identity, or create it (atomically, fsynced) if `create`.
fn load_or_create_id(dir: &Path, create: bool) -> Result<Option<[u8; 16]>, BlockError> {
    let path = dir.join(DIR_ID_FILE);
    match fs::read_to_string(&path) {
        Ok(s) => parse_id(&path, &s).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
            let mut id = [0u8; 16];
            rand::rngs::OsRng.fill_bytes(&mut id);
            write_file_atomic(&path, &[format!("{}\n", hex::encode(id)).as_bytes()], true)?;
            Ok(Some(id))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(&path)(e)),
    }
}

/// An identity file holds 32 lowercase hex characters and a newline.
fn parse_id(path: &Path, s: &str) -> Result<[u8; 16], BlockError> {
    let s = s.trim();
    let bytes = hex::decode(s).ok().filter(|b| b.len() == 16);
    let bytes = bytes.ok_or_else(|| {
        invalid(
            path,
            format!("not a data directory identity ({s:?}); restore it or delete it"),
        )
    })?;
    Ok(bytes.try_into().expect("16 bytes"))
}

/// Write `parts` to a fresh temporary file beside `path` (fsynced if asked) and return its path. The final
/// name is untouched, so a crash here leaves only a `*.tmp.*` file that the next `open` removes.
fn write_tmp(path: &Path, parts: &[&[u8]], fsync: bool) -> Result<PathBuf, BlockError> {
    let tmp = tmp_path(path);
    let result = (|| {
        let mut f = File::options().write(true).create_new(true).open(&tmp)?;
        for p in parts {
            f.write_all(p)?;
        }
        if fsync {
            f.sync_all()?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(io_err(&tmp)(e))
        }
    }
}

/// Write-then-rename: readers see either no file or the complete one under `path`, never a partial one.
fn write_file_atomic(path: &Path, parts: &[&[u8]], fsync: bool) -> Result<(), BlockError> {
    let tmp = write_tmp(path, parts, fsync)?;
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(path)(e));
    }
    match (fsync, path.parent()) {
        (true, Some(parent)) => sync_dir(parent),
        _ => Ok(()),
    }
}

/// Remove leftover temporary files at the top of a data directory and in its fan-out directories (only
/// names we could have written are touched, in case the directory holds anything else).
fn remove_leftovers(root: &Path) -> Result<usize, BlockError> {
    let mut removed = remove_tmp_files_in(root)?;
    for (n1, t1) in read_dir_names(root)? {
        if fanout_byte(&n1, &t1).is_none() {
            continue;
        }
        let l1 = root.join(&n1);
        for (n2, t2) in read_dir_names(&l1)? {
            if fanout_byte(&n2, &t2).is_some() {
                removed += remove_tmp_files_in(&l1.join(&n2))?;
            }
        }
    }
    Ok(removed)
}

/// Remove the leftover temporary files directly inside `dir`.
fn remove_tmp_files_in(dir: &Path) -> Result<usize, BlockError> {
    let mut removed = 0;
    for (name, ty) in read_dir_names(dir)? {
        if ty.is_file() && is_leftover_tmp(&name) && remove_if_exists(&dir.join(&name))? {
            removed += 1;
        }
    }
    Ok(removed)
}

impl BlockStore {
    /// Open the data directories: create missing writable ones with their identity, and remove temporary
    /// files left by interrupted writes. A missing read-only directory is tolerated (with a warning): it
    /// receives nothing, and refusing to start would make its blocks no more readable.
    pub fn open(dirs: &[DataDir], fsync: bool) -> Result<BlockStore, BlockError> {
        let mut opened = Vec::with_capacity(dirs.len());
        for d in dirs {
            opened.push(Self::open_dir(d)?);
        }
        check_distinct_ids(&opened)?;
        let writable = (0..opened.len())
            .filter(|&i| !opened[i].read_only)
            .collect();
        Ok(BlockStore {
            dirs: opened,
            writable,
            fsync,
        })
    }

    /// Prepare one directory (see [`BlockStore::open`]).
    fn open_dir(d: &DataDir) -> Result<Dir, BlockError> {
        if !d.read_only {
            // Private to the node's user (mode 0700): other local users have no business reading blocks.
            if let Some(old) =
                crate::util::fs::create_private_dir(&d.path).map_err(io_err(&d.path))?
            {
                tracing::warn!(
                    "data directory {} was mode {old:04o} (open to other users); set it to 0700",
                    d.path.display()
                );
            }
        } else if !d.path.is_dir() {
            tracing::warn!(
                "read-only data directory {} does not exist",
                d.path.display()
            );
        }
        let removed = match remove_leftovers(&d.path) {
            Ok(n) => n,
            Err(e) if d.read_only => {
                tracing::warn!("cleaning read-only data directory: {e}");
                0
            }
            Err(e) => return Err(e),
        };
        if removed > 0 {
            tracing::info!("removed {removed} temporary files in {}", d.path.display());
        }
        Ok(Dir {
            path: d.path.clone(),
            id: load_or_create_id(&d.path, !d.read_only)?,
            capacity: d.capacity,
            read_only: d.read_only,
        })
    }

    /// Whether block files are fsynced (with their directory) before a write returns.
    pub fn fsync(&self) -> bool {
        self.fsync
    }

    /// Index (into the configured directories) of the directory a block belongs in: weighted rendezvous
    /// hashing over the writable directories, so blocks spread in proportion to capacities and adding or
    /// removing a directory moves only the blocks whose best directory changed.
    pub fn primary_dir(&self, hash: &Hash) -> Result<usize, BlockError> {
        if let [only] = self.writable[..] {
            return Ok(only);
        }
        let mut best: Option<(f64, usize)> = None;
        for &i in &self.writable {
            let d = &self.dirs[i];
            let id =
                d.id.as_ref()
                    .expect("writable directories have an identity");
            let s = score(id, d.weight(), hash);
            if best.is_none_or(|(b, _)| s > b) {
                best = Some((s, i));
            }
        }
        best.map(|(_, i)| i).ok_or(BlockError::NoWritableDir)
    }

    /// Path the block has (or would have) in directory `dir`.
    pub fn block_path(&self, dir: usize, hash: &Hash) -> PathBuf {
        let h = hex::encode(hash);
        self.dirs[dir].path.join(&h[0..2]).join(&h[2..4]).join(h)
    }

    /// Indices of the directories holding a copy of the block, primary first if it holds one.
    pub fn locate(&self, hash: &Hash) -> Vec<usize> {
        let primary = self.primary_dir(hash).ok();
        let others = (0..self.dirs.len()).filter(|&i| Some(i) != primary);
        primary
            .into_iter()
            .chain(others)
            .filter(|&i| self.block_path(i, hash).is_file())
            .collect()
    }

    /// Path of the block if present: the primary directory first (where it almost always is), then every
    /// other one. The primary is checked again at the end: `move_to_primary` writes there before deleting
    /// the misplaced copy, so a block being moved is never reported absent.
    pub fn find(&self, hash: &Hash) -> Option<PathBuf> {
        let primary = self.primary_dir(hash).ok();
        let present = |i: usize| Some(self.block_path(i, hash)).filter(|p| p.is_file());
        primary
            .and_then(present)
            .or_else(|| {
                (0..self.dirs.len())
                    .filter(|&i| Some(i) != primary)
                    .find_map(present)
            })
            .or_else(|| primary.and_then(present))
    }

    /// Whether the block is present in some directory.
    pub fn contains(&self, hash: &Hash) -> bool {
        self.find(hash).is_some()
    }

    /// Write the block into its primary directory, atomically (see [`write_file_atomic`]); the temporary
    /// name is unique so concurrent writers of the same block never collide. Does nothing if the primary
    /// directory already has it; removes copies from other directories once the new file is in place.
    /// Returns whether a new file was written.
    pub fn write(&self, hash: &Hash, block: &DataBlock) -> Result<bool, BlockError> {
        let primary = self.primary_dir(hash)?;
        let path = self.block_path(primary, hash);
        if path.is_file() {
            return Ok(false);
        }
        self.create_fanout(primary, hash)?;
        write_file_atomic(&path, &[&block.header(), block.payload()], self.fsync)?;
        self.remove_misplaced(primary, hash)?;
        Ok(true)
    }

    /// Create the two fan-out directories of a block if missing, fsyncing the parent of each one created
    /// (if asked) so the block file's directory entry cannot vanish in a crash.
    fn create_fanout(&self, dir: usize, hash: &Hash) -> Result<(), BlockError> {
        let root = &self.dirs[dir].path;
        let h = hex::encode(hash);
        let l1 = root.join(&h[0..2]);
        for (parent, path) in [
            (root.as_path(), l1.clone()),
            (l1.as_path(), l1.join(&h[2..4])),
        ] {
            match fs::create_dir(&path) {
                Ok(()) if self.fsync => sync_dir(parent)?,
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
        Ok(())
    }

    /// Delete the copies of a block outside directory `keep`; returns whether one existed.
    fn remove_misplaced(&self, keep: usize, hash: &Hash) -> Result<bool, BlockError> {
        let mut removed = false;
        for i in (0..self.dirs.len()).filter(|&i| i != keep) {
            removed |= remove_if_exists(&self.block_path(i, hash))?;
        }
        Ok(removed)
    }

    /// Read the raw stored block, not verified (callers verify, off the I/O path): `Ok(None)` if absent.
    /// A copy that vanishes between lookup and open (moved or deleted meanwhile) triggers one more lookup.
    pub fn read(&self, hash: &Hash) -> Result<Option<DataBlock>, BlockError> {
        Ok(self.read_with_crc(hash)?.map(|(b, _)| b))
    }

    /// [`Self::read`], with the CRC32C the file holds for [`DataBlock::verify_stored`] (None in a file
    /// of the first format).
    pub fn read_with_crc(
        &self,
        hash: &Hash,
    ) -> Result<Option<(DataBlock, Option<u32>)>, BlockError> {
        for _ in 0..3 {
            let Some(path) = self.find(hash) else {
                return Ok(None);
            };
            match read_block_file(&path, hash) {
                Err(BlockError::Io(_, e)) if e.kind() == io::ErrorKind::NotFound => continue,
                r => return r.map(Some),
            }
        }
        Ok(None)
    }

    /// Delete every copy of the block (not quarantined ones); returns whether something was deleted.
    pub fn delete(&self, hash: &Hash) -> Result<bool, BlockError> {
        let mut removed = false;
        for i in 0..self.dirs.len() {
            removed |= remove_if_exists(&self.block_path(i, hash))?;
        }
        Ok(removed)
    }

    /// Move the copy that [`BlockStore::read`] returns aside to `<name>.corrupted`: kept for the operator,
    /// but no longer seen as the block, so it can be fetched again from another node. Returns the new path,
    /// or `None` if there was no copy.
    pub fn quarantine(&self, hash: &Hash) -> Result<Option<PathBuf>, BlockError> {
        for _ in 0..3 {
            let Some(path) = self.find(hash) else {
                return Ok(None);
            };
            let mut name = path.clone().into_os_string();
            name.push(CORRUPTED_SUFFIX);
            let aside = PathBuf::from(name);
            match fs::rename(&path, &aside) {
                Ok(()) => return Ok(Some(aside)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
        Ok(None)
    }

    /// Every block present in any directory (deduplicated), in increasing hash order, strictly after
    /// `after`, at most `limit`: scrub and resync walk all local blocks in resumable batches. Walks the
    /// fan-out directories in sorted order, entering only those that can hold hashes after `after`.
    pub fn list_after(&self, after: Option<&Hash>, limit: usize) -> Result<Vec<Hash>, BlockError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let roots: Vec<PathBuf> = self.dirs.iter().map(|d| d.path.clone()).collect();
        for b0 in fanout_union(&roots)? {
            if after.is_some_and(|a| b0 < a[0]) {
                continue;
            }
            let level1: Vec<PathBuf> = roots.iter().map(|r| r.join(format!("{b0:02x}"))).collect();
            for b1 in fanout_union(&level1)? {
                if after.is_some_and(|a| (b0, b1) < (a[0], a[1])) {
                    continue;
                }
                let leaves: Vec<PathBuf> =
                    level1.iter().map(|l| l.join(format!("{b1:02x}"))).collect();
                for h in hashes_in(&leaves, [b0, b1], after)? {
                    out.push(h);
                    if out.len() == limit {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Rebalance step: if the block has a copy outside its primary directory (a read-only directory being
    /// drained, changed capacities), make sure the primary has it (copied with the same atomic write), then
    /// delete the misplaced copies. Returns whether something was moved or removed.
    pub fn move_to_primary(&self, hash: &Hash) -> Result<bool, BlockError> {
        let primary = self.primary_dir(hash)?;
        let Some(&from) = self.locate(hash).iter().find(|&&i| i != primary) else {
            return Ok(false);
        };
        if !self.block_path(primary, hash).is_file() {
            let block = match read_block_file(&self.block_path(from, hash), hash) {
                Err(BlockError::Io(_, e)) if e.kind() == io::ErrorKind::NotFound => {
                    return Ok(false);
                }
                r => r?.0,
            };
            self.create_fanout(primary, hash)?;
            let path = self.block_path(primary, hash);
            write_file_atomic(&path, &[&block.header(), block.payload()], self.fsync)?;
        }
        self.remove_misplaced(primary, hash)?;
        Ok(true)
    }

    /// Per-directory configuration and free space.
    pub fn dirs(&self) -> Vec<DirInfo> {
        self.dirs
            .iter()
            .map(|d| {
                let space = DiskSpace::of(&d.path);
                DirInfo {
                    path: d.path.clone(),
                    capacity: d.capacity,
                    read_only: d.read_only,
                    avail: space.as_ref().map(|s| s.avail),
                    total: space.as_ref().map(|s| s.total),
                }
            })
            .collect()
    }
}

/// Two directories with the same identity (a copied disk) would always lose placement to each other in the
/// same way; refuse to start and say how to fix it.
fn check_distinct_ids(dirs: &[Dir]) -> Result<(), BlockError> {
    for (i, a) in dirs.iter().enumerate() {
        for b in &dirs[i + 1..] {
            if a.id.is_some() && a.id == b.id {
                return Err(invalid(
                    &b.path.join(DIR_ID_FILE),
                    format!(
                        "same identity as {}; delete one of the two {DIR_ID_FILE} files",
                        a.path.display()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Fan-out bytes present in any of `dirs`, sorted.
fn fanout_union(dirs: &[PathBuf]) -> Result<BTreeSet<u8>, BlockError> {
    let mut set = BTreeSet::new();
    for d in dirs {
        for (name, ty) in read_dir_names(d)? {
            set.extend(fanout_byte(&name, &ty));
        }
    }
    Ok(set)
}

/// Block hashes in the leaf directories `leaves` (all for fan-out `prefix`), after `after`, sorted and
/// deduplicated. Files whose name is not 64 lowercase hex chars of this prefix are ignored.
fn hashes_in(
    leaves: &[PathBuf],
    prefix: [u8; 2],
    after: Option<&Hash>,
) -> Result<BTreeSet<Hash>, BlockError> {
    let mut set = BTreeSet::new();
    for leaf in leaves {
        for (name, ty) in read_dir_names(leaf)? {
            if !ty.is_file() || !is_lower_hex(&name, 64) {
                continue;
            }
            let mut h = [0u8; 32];
            if hex::decode_to_slice(&name, &mut h).is_ok()
                && h[..2] == prefix
                && after.is_none_or(|a| h > *a)
            {
                set.insert(h);
            }
        }
    }
    Ok(set)
}

/// Read and decode one block file. Files larger than any valid block are rejected before reading (a
/// compressed payload is kept only when smaller than the plain block, so none exceeds the bound).
fn read_block_file(path: &Path, hash: &Hash) -> Result<(DataBlock, Option<u32>), BlockError> {
    let len = fs::metadata(path).map_err(io_err(path))?.len();
    let corrupted = |why: String| {
        BlockError::Corrupted(hex::encode(hash), format!("{}: {why}", path.display()))
    };
    if len > (HEADER_LEN + MAX_BLOCK_PLAIN) as u64 {
        return Err(corrupted(format!("{len} bytes, larger than any block")));
    }
    let bytes = fs::read(path).map_err(io_err(path))?;
    DataBlock::decode(Bytes::from(bytes)).map_err(|e| match e {
        BlockError::Corrupted(_, why) => corrupted(why),
        e => e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(path: &Path, capacity: u64, read_only: bool) -> DataDir {
        DataDir {
            path: path.to_path_buf(),
            capacity: Some(capacity),
            read_only,
        }
    }

    fn random_hash() -> Hash {
        let mut h = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut h);
        h
    }

    /// A block with random content, and its hash.
    fn block(n: usize, level: Option<i32>) -> (Hash, Bytes, DataBlock) {
        let mut v = vec![0u8; n];
        rand::thread_rng().fill_bytes(&mut v[..n / 2]);
        let plain = Bytes::from(v);
        let hash = blake2sum(&plain);
        (hash, plain.clone(), DataBlock::from_plain(plain, level))
    }

    fn one_dir_store(root: &Path) -> BlockStore {
        BlockStore::open(&[dir(root, 1, false)], true).unwrap()
    }

    #[test]
    fn write_read_verify_roundtrip() {
        let tmp = tempfile::tempdir().unwrap();
        let store = one_dir_store(tmp.path());
        for level in [None, Some(1)] {
            let (hash, plain, b) = block(100_000, level);
            assert!(!store.contains(&hash));
            assert!(store.read(&hash).unwrap().is_none());
            assert!(store.write(&hash, &b).unwrap());
            let h = hex::encode(hash);
            let path = tmp.path().join(&h[0..2]).join(&h[2..4]).join(&h);
            assert_eq!(store.find(&hash), Some(path.clone()));
            assert_eq!(fs::metadata(&path).unwrap().len() as usize, b.stored_len());
            let read = store.read(&hash).unwrap().unwrap();
            assert_eq!(read, b);
            assert_eq!(read.verify(&hash).unwrap(), plain);
        }
        assert!(tmp.path().join(DIR_ID_FILE).is_file());
        assert!(store.fsync());
    }

    #[test]
    fn data_dirs_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let (new, old) = (tmp.path().join("new/data"), tmp.path().join("old"));
        fs::create_dir(&old).unwrap();
        fs::set_permissions(&old, fs::Permissions::from_mode(0o755)).unwrap();
        BlockStore::open(&[dir(&new, 1, false), dir(&old, 1, false)], false).unwrap();
        assert_eq!(mode(&new), 0o700);
        assert_eq!(mode(&old), 0o700);
    }

    #[test]
    fn write_is_idempotent_and_delete_removes() {
        let tmp = tempfile::tempdir().unwrap();
        let store = one_dir_store(tmp.path());
        let (hash, _, b) = block(1000, None);
        assert!(store.write(&hash, &b).unwrap());
        assert!(!store.write(&hash, &b).unwrap());
        assert_eq!(store.list_after(None, 10).unwrap(), vec![hash]);
        assert!(store.delete(&hash).unwrap());
        assert!(!store.delete(&hash).unwrap());
        assert!(!store.contains(&hash));
    }

    #[test]
    fn concurrent_writes_of_the_same_block_both_succeed() {
        let tmp = tempfile::tempdir().unwrap();
        let store = one_dir_store(tmp.path());
        for _ in 0..20 {
            let (hash, plain, b) = block(200_000, None);
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..4).map(|_| s.spawn(|| store.write(&hash, &b))).collect();
                for h in handles {
                    h.join().unwrap().unwrap();
                }
            });
            assert_eq!(
                store.read(&hash).unwrap().unwrap().verify(&hash).unwrap(),
                plain
            );
        }
        assert_eq!(store.list_after(None, 100).unwrap().len(), 20);
        // No temporary file survives a completed write.
        assert_eq!(remove_leftovers(tmp.path()).unwrap(), 0);
    }

    #[test]
    fn interrupted_write_leaves_nothing_under_the_final_name() {
        let tmp = tempfile::tempdir().unwrap();
        let store = one_dir_store(tmp.path());
        let (hash, _, b) = block(5000, None);
        let primary = store.primary_dir(&hash).unwrap();
        store.create_fanout(primary, &hash).unwrap();
        let path = store.block_path(primary, &hash);
        // What `write` does before its rename, then "crash".
        let tmp_file = write_tmp(&path, &[&b.header(), b.payload()], true).unwrap();
        assert!(tmp_file.is_file());
        assert!(
            tmp_file
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .contains(".tmp.")
        );
        assert!(!path.exists());
        assert!(!store.contains(&hash));
        assert!(store.list_after(None, 10).unwrap().is_empty());
        // An interrupted identity-file write too.
        let id_tmp = write_tmp(&tmp.path().join(DIR_ID_FILE), &[b"x"], false).unwrap();
        // An unrelated file that merely looks similar is left alone.
        let other = tmp.path().join("notes.tmp.1");
        fs::write(&other, b"keep").unwrap();
        drop(store);

        let store = one_dir_store(tmp.path());
        assert!(!tmp_file.exists());
        assert!(!id_tmp.exists());
        assert!(other.exists());
        assert!(!store.contains(&hash));
        assert!(store.write(&hash, &b).unwrap());
        assert!(store.contains(&hash));
    }

    #[test]
    fn temp_names_never_collide() {
        let p = Path::new("/x/ab/cd/abcd");
        let names: BTreeSet<PathBuf> = (0..1000).map(|_| tmp_path(p)).collect();
        assert_eq!(names.len(), 1000);
        // Only temporary names of blocks and identity files count as ours.
        assert!(
            !names
                .iter()
                .any(|n| is_leftover_tmp(n.file_name().unwrap().to_str().unwrap()))
        );
        let h = hex::encode([7u8; 32]);
        let t = tmp_path(&Path::new("/x").join(&h));
        assert!(is_leftover_tmp(t.file_name().unwrap().to_str().unwrap()));
    }

    /// Share of `hashes` whose primary is each directory.
    fn placement(store: &BlockStore, hashes: &[Hash]) -> Vec<usize> {
        hashes
            .iter()
            .map(|h| store.primary_dir(h).unwrap())
            .collect()
    }

    #[test]
    fn blocks_spread_in_proportion_and_adding_a_dir_moves_only_its_share() {
        let tmp = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = (0..4).map(|i| tmp.path().join(format!("d{i}"))).collect();
        let three = [
            dir(&paths[0], 1000, false),
            dir(&paths[1], 2000, false),
            dir(&paths[2], 1000, false),
        ];
        let store = BlockStore::open(&three, false).unwrap();
        let hashes: Vec<Hash> = (0..20_000).map(|_| random_hash()).collect();
        let before = placement(&store, &hashes);
        let mut counts = [0usize; 3];
        for &i in &before {
            counts[i] += 1;
        }
        for (count, share) in counts.iter().zip([0.25, 0.5, 0.25]) {
            let got = *count as f64 / hashes.len() as f64;
            assert!((got - share).abs() < 0.03, "{counts:?}");
        }
        // Reopening keeps every placement (identities are persisted).
        assert_eq!(
            placement(&BlockStore::open(&three, false).unwrap(), &hashes),
            before
        );

        let mut four = three.to_vec();
        four.push(dir(&paths[3], 1000, false));
        let after = placement(&BlockStore::open(&four, false).unwrap(), &hashes);
        let moved: Vec<(usize, usize)> = before
            .iter()
            .zip(&after)
            .filter(|(a, b)| a != b)
            .map(|(&a, &b)| (a, b))
            .collect();
        assert!(
            moved.iter().all(|&(_, to)| to == 3),
            "blocks moved between old directories"
        );
        let share = moved.len() as f64 / hashes.len() as f64;
        assert!((share - 0.2).abs() < 0.03, "{share}");
    }

    #[test]
    fn placement_follows_identity_not_path() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            tmp.path().join("a"),
            tmp.path().join("b"),
            tmp.path().join("c"),
        );
        let store = BlockStore::open(&[dir(&a, 1, false), dir(&b, 1, false)], false).unwrap();
        let hashes: Vec<Hash> = (0..200).map(|_| random_hash()).collect();
        let before = placement(&store, &hashes);
        fs::rename(&b, &c).unwrap();
        let store = BlockStore::open(&[dir(&a, 1, false), dir(&c, 1, false)], false).unwrap();
        assert_eq!(placement(&store, &hashes), before);
    }

    #[test]
    fn copied_identity_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        one_dir_store(&a);
        fs::create_dir(&b).unwrap();
        fs::copy(a.join(DIR_ID_FILE), b.join(DIR_ID_FILE)).unwrap();
        let err = BlockStore::open(&[dir(&a, 1, false), dir(&b, 1, false)], false)
            .err()
            .unwrap();
        assert!(err.to_string().contains(DIR_ID_FILE), "{err}");
        fs::write(b.join(DIR_ID_FILE), "garbage").unwrap();
        let err = BlockStore::open(&[dir(&b, 1, false)], false).err().unwrap();
        assert!(err.to_string().contains("identity"), "{err}");
    }

    #[test]
    fn read_only_dir_is_read_and_drained_but_never_written() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        let old = one_dir_store(&b);
        let blocks: Vec<_> = (0..50).map(|_| block(3000, Some(1))).collect();
        for (h, _, blk) in &blocks {
            old.write(h, blk).unwrap();
        }
        drop(old);

        let store = BlockStore::open(&[dir(&a, 1, false), dir(&b, 1, true)], false).unwrap();
        for (h, plain, blk) in &blocks {
            assert_eq!(store.primary_dir(h).unwrap(), 0);
            assert_eq!(store.locate(h), vec![1]);
            assert_eq!(&store.read(h).unwrap().unwrap().verify(h).unwrap(), plain);
            assert!(store.write(h, blk).unwrap());
        }
        // Writes went to `a`, and removed the copies from `b`: rewrite them there to test draining.
        let fresh: Vec<_> = (0..50).map(|_| block(3000, None)).collect();
        for (h, _, blk) in &fresh {
            assert!(store.write(h, blk).unwrap());
            assert_eq!(store.locate(h), vec![0]);
        }
        let old = one_dir_store(&b);
        for (h, _, blk) in &blocks {
            old.write(h, blk).unwrap();
        }
        drop(old);
        for (h, plain, _) in &blocks {
            assert!(store.move_to_primary(h).unwrap());
            assert!(!store.move_to_primary(h).unwrap());
            assert_eq!(store.locate(h), vec![0]);
            assert_eq!(&store.read(h).unwrap().unwrap().verify(h).unwrap(), plain);
        }
        assert_eq!(store.list_after(None, 1000).unwrap().len(), 100);
        let b_only = BlockStore::open(&[dir(&b, 1, true)], false).unwrap();
        assert!(b_only.list_after(None, 1000).unwrap().is_empty());
        assert!(matches!(
            b_only.primary_dir(&blocks[0].0),
            Err(BlockError::NoWritableDir)
        ));
        assert!(matches!(
            b_only.write(&blocks[0].0, &blocks[0].2),
            Err(BlockError::NoWritableDir)
        ));
    }

    #[test]
    fn move_to_primary_after_capacity_change() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        let store = BlockStore::open(&[dir(&a, 1, false), dir(&b, 1, false)], false).unwrap();
        let blocks: Vec<_> = (0..200).map(|_| block(100, None)).collect();
        for (h, _, blk) in &blocks {
            store.write(h, blk).unwrap();
        }
        let store =
            BlockStore::open(&[dir(&a, 1, false), dir(&b, 1_000_000, false)], false).unwrap();
        let moved = blocks
            .iter()
            .filter(|(h, _, _)| store.move_to_primary(h).unwrap())
            .count();
        assert!(moved > 50, "{moved}");
        for (h, plain, _) in &blocks {
            assert_eq!(store.locate(h), vec![store.primary_dir(h).unwrap()]);
            assert_eq!(&store.read(h).unwrap().unwrap().verify(h).unwrap(), plain);
        }
    }

    #[test]
    fn write_removes_a_misplaced_copy() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        let blocks: Vec<_> = (0..20).map(|_| block(100, None)).collect();
        let only_b = one_dir_store(&b);
        for (h, _, blk) in &blocks {
            only_b.write(h, blk).unwrap();
        }
        let store = BlockStore::open(&[dir(&a, 1, false), dir(&b, 1, false)], false).unwrap();
        for (h, _, blk) in &blocks {
            let primary = store.primary_dir(h).unwrap();
            assert_eq!(store.write(h, blk).unwrap(), primary == 0);
            assert_eq!(store.locate(h), vec![primary]);
        }
    }

    #[test]
    fn list_after_pages_are_sorted_deduplicated_and_complete() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        let store = BlockStore::open(&[dir(&a, 1, false), dir(&b, 1, false)], false).unwrap();
        let mut all = BTreeSet::new();
        for i in 0..500u32 {
            let mut h = random_hash();
            if i % 5 == 0 {
                h[0] = 0x12; // several blocks per fan-out directory
            }
            store
                .write(&h, &DataBlock::Plain(Bytes::from_static(b"x")))
                .unwrap();
            all.insert(h);
        }
        // A duplicate copy in the non-primary directory, and junk that must be ignored.
        let dup = *all.iter().next().unwrap();
        let other = 1 - store.primary_dir(&dup).unwrap();
        store.create_fanout(other, &dup).unwrap();
        fs::write(store.block_path(other, &dup), b"GRblk\x01\x00\x00x").unwrap();
        let leaf = store.block_path(0, &dup).parent().unwrap().to_path_buf();
        fs::create_dir_all(&leaf).unwrap();
        fs::write(leaf.join("README"), b"junk").unwrap();
        fs::write(leaf.join(hex::encode([0xffu8; 32])), b"wrong prefix").unwrap();
        fs::write(leaf.join(hex::encode(dup).to_uppercase()), b"upper").unwrap();
        fs::write(
            leaf.join(format!("{}{CORRUPTED_SUFFIX}", hex::encode(dup))),
            b"q",
        )
        .unwrap();

        let mut listed = Vec::new();
        let mut cursor = None;
        loop {
            let page = store.list_after(cursor.as_ref(), 37).unwrap();
            assert!(page.len() <= 37);
            listed.extend_from_slice(&page);
            match page.last() {
                Some(last) if page.len() == 37 => cursor = Some(*last),
                _ => break,
            }
        }
        assert_eq!(listed, all.iter().copied().collect::<Vec<_>>());
        assert!(store.list_after(None, 0).unwrap().is_empty());
        let last = *all.iter().next_back().unwrap();
        assert!(store.list_after(Some(&last), 10).unwrap().is_empty());
        let mid = listed[250];
        assert_eq!(store.list_after(Some(&mid), 5).unwrap(), listed[251..256]);
    }

    #[test]
    fn quarantine_hides_a_block() {
        let tmp = tempfile::tempdir().unwrap();
        let store = one_dir_store(tmp.path());
        let (hash, _, b) = block(1000, None);
        assert!(store.quarantine(&hash).unwrap().is_none());
        store.write(&hash, &b).unwrap();
        let path = store.find(&hash).unwrap();
        fs::write(&path, b"GRblk\x01\x00\x00bad").unwrap();
        let err = store
            .read(&hash)
            .unwrap()
            .unwrap()
            .verify(&hash)
            .unwrap_err();
        assert!(matches!(err, BlockError::Corrupted(..)));
        let aside = store.quarantine(&hash).unwrap().unwrap();
        assert!(aside.to_str().unwrap().ends_with(".corrupted"));
        assert_eq!(fs::read(&aside).unwrap(), b"GRblk\x01\x00\x00bad");
        assert!(!store.contains(&hash));
        assert!(store.list_after(None, 10).unwrap().is_empty());
        assert!(store.write(&hash, &b).unwrap());
        assert!(store.read(&hash).unwrap().unwrap().verify(&hash).is_ok());
    }

    #[test]
    fn bad_block_file_is_corrupted_and_names_path() {
        let tmp = tempfile::tempdir().unwrap();
        let store = one_dir_store(tmp.path());
        let (hash, _, b) = block(100, None);
        store.write(&hash, &b).unwrap();
        fs::write(store.find(&hash).unwrap(), b"garbage!garbage").unwrap();
        match store.read(&hash) {
            Err(BlockError::Corrupted(h, why)) => {
                assert_eq!(h, hex::encode(hash));
                assert!(why.contains(&hex::encode(hash)), "{why}");
            }
            r => panic!("{r:?}"),
        }
    }

    #[test]
    fn missing_read_only_dir_is_tolerated_and_dirs_reports_space() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, gone) = (tmp.path().join("a"), tmp.path().join("gone"));
        let store = BlockStore::open(&[dir(&a, 10, false), dir(&gone, 5, true)], false).unwrap();
        assert!(!gone.exists());
        let (hash, _, b) = block(100, None);
        store.write(&hash, &b).unwrap();
        assert_eq!(store.list_after(None, 10).unwrap(), vec![hash]);
        let infos = store.dirs();
        assert_eq!(infos.len(), 2);
        assert_eq!((infos[0].capacity, infos[0].read_only), (Some(10), false));
        assert!(infos[0].avail.is_some() && infos[0].total.is_some());
        assert_eq!((infos[1].path.clone(), infos[1].read_only), (gone, true));
        assert!(infos[1].avail.is_none());
    }

    #[test]
    fn store_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<BlockStore>();
    }
}
