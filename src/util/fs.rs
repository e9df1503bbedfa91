//! File helpers.
//!
//! Everything under the metadata and data directories is private to the node's user: directories are
//! created mode 0700 ([`create_private_dir`]) and files written here mode 0600, whatever the umask, since
//! the metadata holds every S3 secret key and the node's private key.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Write `data` to `path` atomically: write a temporary file beside it, optionally fsync it, rename it over
/// `path`, and (with `fsync`) fsync the directory so the rename itself is durable.
pub fn write_atomic(path: &Path, data: &[u8], fsync: bool) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(name);
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        if fsync {
            f.sync_all()?;
        }
    }
    std::fs::rename(&tmp, path)?;
    if fsync {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Mode of the directories created by [`create_private_dir`].
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// Mode of the node's private files (database, node key, state files).
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// Create `dir` (and missing parents) mode 0700; if it already exists and other users may access it
/// (any group or other permission bit), set it to 0700. Returns the previous mode when it was changed,
/// so the caller can log it.
pub fn create_private_dir(dir: &Path) -> std::io::Result<Option<u32>> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(PRIVATE_DIR_MODE)
            .create(dir)?;
    }
    restrict_mode(dir, PRIVATE_DIR_MODE)
}

/// If `path` grants any permission to group or others, set its mode to `mode`; returns the previous
/// mode when it was changed.
pub fn restrict_mode(path: &Path, mode: u32) -> std::io::Result<Option<u32>> {
    let old = std::fs::metadata(path)?.permissions().mode() & 0o7777;
    if old & 0o077 == 0 {
        return Ok(None);
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(Some(old))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn private_dirs_and_files() {
        let root = tempfile::tempdir().unwrap();
        let d = root.path().join("a/b");
        assert_eq!(create_private_dir(&d).unwrap(), None);
        assert_eq!(mode(&d), 0o700);
        assert_eq!(mode(&root.path().join("a")), 0o700);
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(create_private_dir(&d).unwrap(), Some(0o755));
        assert_eq!(mode(&d), 0o700);
        let f = d.join("state");
        write_atomic(&f, b"x", false).unwrap();
        assert_eq!(mode(&f), 0o600);
    }
}
