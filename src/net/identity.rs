//! Node identity: an ed25519 key pair created on first start; the node id is the public key.

use std::fmt;
use std::io::Write;
use std::path::Path;

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use super::NetError;

/// A node's identity: its ed25519 public key (32 bytes), shown as hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId(pub [u8; 32]);

impl NodeId {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    /// The first 16 hex digits, for tables and logs.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..8])
    }
    /// The first 8 bytes as a number: a compact tie-breaker for hybrid timestamps.
    pub fn as_u64(&self) -> u64 {
        u64::from_be_bytes(self.0[..8].try_into().expect("8 bytes"))
    }

    pub fn from_hex(s: &str) -> Option<NodeId> {
        let v = hex::decode(s.trim()).ok()?;
        Some(NodeId(v.try_into().ok()?))
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}
impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.short())
    }
}

/// The node's secret key. Persisted as the raw 32-byte seed in `<metadata_dir>/node_key`, mode 0600
/// (an existing key file readable by other users is set back to 0600 when loaded, and logged).
#[derive(Clone)]
pub struct NodeKey(SigningKey);

impl NodeKey {
    pub fn generate() -> NodeKey {
        NodeKey(SigningKey::generate(&mut rand::rngs::OsRng))
    }

    pub fn id(&self) -> NodeId {
        NodeId(self.0.verifying_key().to_bytes())
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.0
    }

    /// Load the key from `dir/node_key`, creating it (and `dir`) on first start.
    pub fn load_or_create(dir: &Path) -> Result<NodeKey, NetError> {
        let path = dir.join("node_key");
        let io = |e: std::io::Error| NetError::Identity(format!("{}: {e}", path.display()));
        match std::fs::read(&path) {
            Ok(bytes) => {
                let seed: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                    NetError::Identity(format!(
                        "{}: expected 32 bytes, found {}; the file is damaged",
                        path.display(),
                        bytes.len()
                    ))
                })?;
                if let Some(old) =
                    crate::util::fs::restrict_mode(&path, crate::util::fs::PRIVATE_FILE_MODE)
                        .map_err(io)?
                {
                    tracing::warn!(
                        "{} was mode {old:04o} (readable by other users); set it to 0600",
                        path.display()
                    );
                }
                Ok(NodeKey(SigningKey::from_bytes(&seed)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                crate::util::fs::create_private_dir(dir).map_err(io)?;
                let key = NodeKey::generate();
                let tmp = dir.join("node_key.tmp");
                // A leftover keeps its mode when reopened: start from a fresh file.
                match std::fs::remove_file(&tmp) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
                    _ => (),
                }
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    let mut f = std::fs::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .mode(crate::util::fs::PRIVATE_FILE_MODE)
                        .open(&tmp)
                        .map_err(io)?;
                    f.write_all(&key.0.to_bytes()).map_err(io)?;
                    f.sync_all().map_err(io)?;
                }
                std::fs::rename(&tmp, &path).map_err(io)?;
                Ok(key)
            }
            Err(e) => Err(io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn key_is_created_once_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let k1 = NodeKey::load_or_create(dir.path()).unwrap();
        let k2 = NodeKey::load_or_create(dir.path()).unwrap();
        assert_eq!(k1.id(), k2.id());
        let mode = std::fs::metadata(dir.path().join("node_key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(NodeId::from_hex(&k1.id().to_hex()), Some(k1.id()));
        // A key file made readable by others is made private again when loaded.
        let path = dir.path().join("node_key");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let k3 = NodeKey::load_or_create(dir.path()).unwrap();
        assert_eq!(k3.id(), k1.id());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
