//! File helpers.

use std::io::Write;
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
        let mut f = std::fs::File::create(&tmp)?;
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
