//! The node configuration file (TOML), as documented in doc/configuration.md.
//!
//! [`Config::load`] reads a file and [`Config::parse`] parses text; both return a fully
//! validated [`Config`] in which every default is filled in, every relative path is resolved and
//! every secret file has been read.
//!
//! # Rules
//!
//! - **Unknown keys are errors** that name the key (`s3_api.regoin`), the file and the line.
//! - **Every error names the file and the field**: [`ConfigError`] displays as
//!   `<file>: <field>: <problem> (line L, column C)`; TOML syntax errors display as
//!   `<file>: TOML syntax error at line L, column C: <toml's message>`.
//! - **Relative paths** (`metadata_dir`, `data_dir` paths, `*_file` secret files) are resolved
//!   against the directory that contains the configuration file, not against the current
//!   directory, so a config file and its data can be moved together. The resolved paths are
//!   absolute whenever the current directory is known.
//! - **Secrets** can be written inline (`rpc_secret`, `admin_token`, `metrics_token`) or read from
//!   a file (`rpc_secret_file`, `admin_token_file`, `metrics_token_file`), never both. Secret files
//!   are read at load time (surrounding whitespace trimmed) and must not be world-readable
//!   (`chmod 600 <file>`). [`Config`] holds the secret values themselves; its `Debug` output
//!   redacts them, and error messages never print them.
//! - **A configuration file holding an inline secret must not be world-readable**: [`Config::load`]
//!   refuses it (the error names the secret's field and says `chmod 600 <file>`), since anyone on the
//!   machine could otherwise join the cluster or drive the admin API. [`Config::parse`] (text without
//!   a file) does not check modes.
//! - **`test_hooks`** (default `false`) enables, for the test suite only, the endpoints that destroy data
//!   (`/v1/debug/*` writes, the test `kv` table) and the test clock offset; see `doc/configuration.md`.
//! - Sizes (`block_size`, `data_dir` capacities) accept a size string such as `"1MiB"` or `"2T"`
//!   or an integer number of bytes (see [`crate::util::size`]).

use std::fmt;
use std::net::{Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use toml::{Spanned, Value};

use super::size::parse_size;

/// Highest accepted `replication_factor`.
pub const MAX_REPLICATION_FACTOR: usize = 7;
/// Default `block_size`: 1 MiB.
pub const DEFAULT_BLOCK_SIZE: u64 = 1 << 20;
/// Smallest accepted `block_size`: 4 KiB.
pub const MIN_BLOCK_SIZE: u64 = 4 << 10;
/// Largest accepted `block_size`: 64 MiB.
pub const MAX_BLOCK_SIZE: u64 = 64 << 20;
/// Default zstd `compression_level`.
pub const DEFAULT_COMPRESSION_LEVEL: i32 = 1;
/// Lowest accepted zstd `compression_level`.
pub const MIN_COMPRESSION_LEVEL: i32 = -7;
/// Highest accepted zstd `compression_level`.
pub const MAX_COMPRESSION_LEVEL: i32 = 22;
/// Default `rpc_bind_addr`.
pub const DEFAULT_RPC_BIND_ADDR: &str = "[::]:3901";
/// Default `tombstone_gc_delay_secs`: 24 hours.
pub const DEFAULT_TOMBSTONE_GC_DELAY_SECS: u64 = 86_400;
/// Default `shutdown_grace_secs`: how long requests in progress may take to finish on SIGTERM.
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 30;
/// Default `block_gc_delay_secs`: 10 minutes.
pub const DEFAULT_BLOCK_GC_DELAY_SECS: u64 = 600;
/// Default `block_ram_buffer_max`: 256 MiB.
pub const DEFAULT_BLOCK_RAM_BUFFER_MAX: u64 = 256 << 20;
/// Smallest accepted `block_ram_buffer_max`: 1 MiB.
pub const MIN_BLOCK_RAM_BUFFER_MAX: u64 = 1 << 20;
/// Default `[s3_api] api_bind_addr`.
pub const DEFAULT_S3_API_BIND_ADDR: &str = "[::]:3900";
/// Default `[s3_api] s3_region`.
pub const DEFAULT_S3_REGION: &str = "garage";
/// Default `[s3_api] xml_body_max`: 8 MiB (a DeleteObjects of 1000 long keys, escaped).
pub const DEFAULT_S3_XML_BODY_MAX: u64 = 8 << 20;
/// Smallest accepted `[s3_api] xml_body_max`: 64 KiB.
pub const MIN_S3_XML_BODY_MAX: u64 = 64 << 10;
/// Largest accepted `[s3_api] xml_body_max`: 64 MiB.
pub const MAX_S3_XML_BODY_MAX: u64 = 64 << 20;
/// Default `[s3_web] bind_addr`.
pub const DEFAULT_S3_WEB_BIND_ADDR: &str = "[::]:3902";
/// Default `[admin] api_bind_addr`.
pub const DEFAULT_ADMIN_BIND_ADDR: &str = "127.0.0.1:3903";
/// Default `header_read_timeout_secs` of the HTTP listeners (`[s3_api]`, `[s3_web]`, `[admin]`).
pub const DEFAULT_HEADER_READ_TIMEOUT_SECS: u64 = 30;
/// Default `idle_timeout_secs` of the HTTP listeners.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 60;
/// Default `body_stall_timeout_secs` of the HTTP listeners.
pub const DEFAULT_BODY_STALL_TIMEOUT_SECS: u64 = 60;
/// Default `send_stall_timeout_secs` of the HTTP listeners.
pub const DEFAULT_SEND_STALL_TIMEOUT_SECS: u64 = 60;
/// Longest accepted HTTP listener timeout: 1 day.
pub const MAX_HTTP_TIMEOUT_SECS: u64 = 86_400;
/// Highest accepted `max_connections` of an HTTP listener.
pub const MAX_HTTP_CONNECTIONS: usize = 1_000_000;

// ---------------------------------------------------------------------------------------------
// Public configuration types
// ---------------------------------------------------------------------------------------------

/// A validated node configuration. See the [module documentation](self) for the rules.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// Where the metadata database lives (required). Resolved against the config file's directory.
    pub metadata_dir: PathBuf,
    /// Where data blocks live (required, never empty). A single string gives one entry with
    /// `capacity: None`; with several entries every writable one has a capacity.
    pub data_dir: Vec<DataDir>,
    /// Number of copies of each object, 1..=7 (required; the same on every node).
    pub replication_factor: usize,
    /// Default `consistent`.
    pub consistency_mode: ConsistencyMode,
    /// Default `redb`.
    pub db_engine: DbEngine,
    /// Default `true`.
    pub metadata_fsync: bool,
    /// Default `false`.
    pub data_fsync: bool,
    /// Seconds a deletion marker (tombstone) is kept before it may be collected, once every replica has
    /// it; default [`DEFAULT_TOMBSTONE_GC_DELAY_SECS`] (24 h). Longer than any expected outage is safe.
    pub tombstone_gc_delay_secs: u64,
    /// Seconds an unreferenced block is kept before it is deleted; default
    /// [`DEFAULT_BLOCK_GC_DELAY_SECS`] (10 min). Covers a block written just before its first reference.
    pub block_gc_delay_secs: u64,
    /// Seconds requests in progress get to finish after SIGTERM/SIGINT, while the node accepts no new
    /// connection; default [`DEFAULT_SHUTDOWN_GRACE_SECS`]. What is still open then is cut.
    pub shutdown_grace_secs: u64,
    /// Most block bytes held in memory for sending to other nodes (writes and reads served) at once;
    /// further transfers wait. Default [`DEFAULT_BLOCK_RAM_BUFFER_MAX`] (256 MiB).
    pub block_ram_buffer_max: u64,
    /// Block size in bytes, [`MIN_BLOCK_SIZE`]..=[`MAX_BLOCK_SIZE`]; default [`DEFAULT_BLOCK_SIZE`].
    pub block_size: u64,
    /// zstd level in [`MIN_COMPRESSION_LEVEL`]..=[`MAX_COMPRESSION_LEVEL`], or `None` when the file
    /// says `"none"`; default `Some(1)`.
    pub compression_level: Option<i32>,
    /// Default `[::]:3901`.
    pub rpc_bind_addr: SocketAddr,
    /// What peers dial, `host:port` (validated to have a port), if set.
    pub rpc_public_addr: Option<String>,
    /// Bind outgoing RPC sockets to `rpc_bind_addr`'s IP. Default `false`.
    pub rpc_bind_outgoing: bool,
    /// The cluster secret, from `rpc_secret` (64 hex chars) or the file named by
    /// `rpc_secret_file`.
    pub rpc_secret: [u8; 32],
    /// Peers to contact at startup, each `<64-hex node id>@host:port` (validated, kept as
    /// written). See [`Config::bootstrap_peer_addrs`] and [`parse_bootstrap_peer`].
    pub bootstrap_peers: Vec<String>,
    /// `[s3_api]`, defaults filled in when the section is absent.
    pub s3_api: S3ApiConfig,
    /// `[s3_web]`: `Some` (website endpoint enabled) exactly when the section is present.
    pub s3_web: Option<S3WebConfig>,
    /// `[admin]`, defaults filled in when the section is absent.
    pub admin: AdminConfig,
    /// For the test suite only: enables endpoints that destroy data (`/v1/debug/*` writes, the test
    /// `kv` table) and the test clock offset (`GRENIER_TEST_CLOCK_OFFSET_MS`). Default `false`.
    pub test_hooks: bool,
}

/// One data directory.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DataDir {
    /// Resolved against the config file's directory.
    pub path: PathBuf,
    /// Capacity in bytes, if given (`capacity = "2T"`).
    pub capacity: Option<u64>,
    /// A read-only directory is still read from but receives no new blocks. Default `false`.
    pub read_only: bool,
}

/// `consistency_mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsistencyMode {
    /// Quorum reads and writes (the default).
    #[default]
    Consistent,
    /// Reads may be served by a single node.
    Degraded,
    /// Reads and writes may be served by a single node.
    Dangerous,
}

impl ConsistencyMode {
    /// Every mode, in the order they are documented.
    pub const ALL: [ConsistencyMode; 3] = [
        ConsistencyMode::Consistent,
        ConsistencyMode::Degraded,
        ConsistencyMode::Dangerous,
    ];

    /// The name used in the configuration file.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsistencyMode::Consistent => "consistent",
            ConsistencyMode::Degraded => "degraded",
            ConsistencyMode::Dangerous => "dangerous",
        }
    }
}

impl fmt::Display for ConsistencyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `db_engine`: the metadata database engine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DbEngine {
    /// redb (the only engine for now, and the default).
    #[default]
    Redb,
}

impl DbEngine {
    /// Every known engine.
    pub const ALL: [DbEngine; 1] = [DbEngine::Redb];

    /// The name used in the configuration file.
    pub fn as_str(self) -> &'static str {
        match self {
            DbEngine::Redb => "redb",
        }
    }
}

impl fmt::Display for DbEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[s3_api]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3ApiConfig {
    /// Default `[::]:3900`.
    pub api_bind_addr: SocketAddr,
    /// Region clients must sign for. Default `"garage"`.
    pub s3_region: String,
    /// Enables virtual-hosted-style buckets. Normalized: lowercase and always starting with `.`
    /// (`"s3.example.org"` and `".s3.example.org"` both give `".s3.example.org"`).
    pub root_domain: Option<String>,
    /// Largest XML request body (DeleteObjects, CompleteMultipartUpload), in bytes: larger ones are
    /// refused with `MaxMessageLengthExceeded` as soon as they get that long, before any parsing.
    /// (CreateBucket bodies have a fixed 64 KiB cap.)
    /// [`MIN_S3_XML_BODY_MAX`]..=[`MAX_S3_XML_BODY_MAX`], default [`DEFAULT_S3_XML_BODY_MAX`].
    pub xml_body_max: u64,
    /// Connection cap and timeouts of the listener.
    pub http: HttpListenerConfig,
}

impl Default for S3ApiConfig {
    fn default() -> Self {
        S3ApiConfig {
            api_bind_addr: DEFAULT_S3_API_BIND_ADDR.parse().expect("valid default"),
            s3_region: DEFAULT_S3_REGION.to_string(),
            root_domain: None,
            xml_body_max: DEFAULT_S3_XML_BODY_MAX,
            http: HttpListenerConfig::default(),
        }
    }
}

/// The connection cap and timeouts of an HTTP listener: the same keys in `[s3_api]`, `[s3_web]` and
/// `[admin]` (see [`crate::util::http`] for what each bounds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpListenerConfig {
    /// `max_connections`, 1..=[`MAX_HTTP_CONNECTIONS`]; `None` (the default) derives the cap from the
    /// open-file limit at startup ([`crate::util::http::default_max_connections`]).
    pub max_connections: Option<usize>,
    /// Seconds from the first byte of a request head to its end; default
    /// [`DEFAULT_HEADER_READ_TIMEOUT_SECS`].
    pub header_read_timeout_secs: u64,
    /// Seconds a connection may stay open without a request; default [`DEFAULT_IDLE_TIMEOUT_SECS`].
    pub idle_timeout_secs: u64,
    /// Seconds a request body may send nothing while it is awaited; default
    /// [`DEFAULT_BODY_STALL_TIMEOUT_SECS`].
    pub body_stall_timeout_secs: u64,
    /// Seconds a client may read nothing of a response; default [`DEFAULT_SEND_STALL_TIMEOUT_SECS`].
    pub send_stall_timeout_secs: u64,
}

impl Default for HttpListenerConfig {
    fn default() -> Self {
        HttpListenerConfig {
            max_connections: None,
            header_read_timeout_secs: DEFAULT_HEADER_READ_TIMEOUT_SECS,
            idle_timeout_secs: DEFAULT_IDLE_TIMEOUT_SECS,
            body_stall_timeout_secs: DEFAULT_BODY_STALL_TIMEOUT_SECS,
            send_stall_timeout_secs: DEFAULT_SEND_STALL_TIMEOUT_SECS,
        }
    }
}

/// `[s3_web]`: the static website endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3WebConfig {
    /// Default `[::]:3902`.
    pub bind_addr: SocketAddr,
    /// Normalized like [`S3ApiConfig::root_domain`].
    pub root_domain: Option<String>,
    /// Connection cap and timeouts of the listener.
    pub http: HttpListenerConfig,
}

impl Default for S3WebConfig {
    fn default() -> Self {
        S3WebConfig {
            bind_addr: DEFAULT_S3_WEB_BIND_ADDR.parse().expect("valid default"),
            root_domain: None,
            http: HttpListenerConfig::default(),
        }
    }
}

/// `[admin]`.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Default `127.0.0.1:3903`.
    pub api_bind_addr: SocketAddr,
    /// From `admin_token` or `admin_token_file`, if either is set.
    pub admin_token: Option<String>,
    /// From `metrics_token` or `metrics_token_file`, if either is set; `/metrics` is open
    /// without it.
    pub metrics_token: Option<String>,
    /// Connection cap and timeouts of the listener.
    pub http: HttpListenerConfig,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            api_bind_addr: DEFAULT_ADMIN_BIND_ADDR.parse().expect("valid default"),
            admin_token: None,
            metrics_token: None,
            http: HttpListenerConfig::default(),
        }
    }
}

const REDACTED: &str = "<redacted>";

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("metadata_dir", &self.metadata_dir)
            .field("data_dir", &self.data_dir)
            .field("replication_factor", &self.replication_factor)
            .field("consistency_mode", &self.consistency_mode)
            .field("db_engine", &self.db_engine)
            .field("metadata_fsync", &self.metadata_fsync)
            .field("data_fsync", &self.data_fsync)
            .field("tombstone_gc_delay_secs", &self.tombstone_gc_delay_secs)
            .field("block_gc_delay_secs", &self.block_gc_delay_secs)
            .field("shutdown_grace_secs", &self.shutdown_grace_secs)
            .field("block_ram_buffer_max", &self.block_ram_buffer_max)
            .field("block_size", &self.block_size)
            .field("compression_level", &self.compression_level)
            .field("rpc_bind_addr", &self.rpc_bind_addr)
            .field("rpc_public_addr", &self.rpc_public_addr)
            .field("rpc_bind_outgoing", &self.rpc_bind_outgoing)
            .field("rpc_secret", &REDACTED)
            .field("bootstrap_peers", &self.bootstrap_peers)
            .field("s3_api", &self.s3_api)
            .field("s3_web", &self.s3_web)
            .field("admin", &self.admin)
            .field("test_hooks", &self.test_hooks)
            .finish()
    }
}

impl fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminConfig")
            .field("api_bind_addr", &self.api_bind_addr)
            .field("admin_token", &self.admin_token.as_ref().map(|_| REDACTED))
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| REDACTED),
            )
            .field("http", &self.http)
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// A position in the configuration file, 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

fn fmt_location(location: &Option<Location>) -> String {
    match location {
        Some(l) => format!(" ({l})"),
        None => String::new(),
    }
}

fn read_hint(error: &std::io::Error) -> &'static str {
    if error.kind() == std::io::ErrorKind::NotFound {
        " (pass another file with -c PATH or set GRENIER_CONFIG; `grenier dev` writes a working example)"
    } else {
        ""
    }
}

/// Why a configuration could not be loaded. Every variant names the file; field-level problems
/// also name the field (dotted, with indexes: `s3_api.root_domain`, `data_dir[1].capacity`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read the configuration file: {error}{}", .path.display(), read_hint(.error))]
    Read {
        /// The configuration file.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{}: TOML syntax error{}: {message}", .path.display(), .location.map(|l| format!(" at {l}")).unwrap_or_default())]
    Syntax {
        /// The configuration file.
        path: PathBuf,
        /// Where toml found the problem.
        location: Option<Location>,
        /// toml's own message.
        message: String,
    },
    /// A field is missing, unknown, of the wrong type or has an invalid value.
    #[error("{}: {field}: {message}{}", .path.display(), fmt_location(.location))]
    Invalid {
        /// The configuration file.
        path: PathBuf,
        /// Dotted field name, e.g. `rpc_secret_file` or `s3_api.api_bind_addr`.
        field: String,
        /// Where the field is in the file, when known.
        location: Option<Location>,
        /// What is wrong and how to fix it.
        message: String,
    },
}

impl ConfigError {
    /// The configuration file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            ConfigError::Read { path, .. }
            | ConfigError::Syntax { path, .. }
            | ConfigError::Invalid { path, .. } => path,
        }
    }

    /// The field the error is about, for [`ConfigError::Invalid`].
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// Why a `<node-id>@<host>:<port>` peer address was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid peer address {input:?}: {reason}; expected <node-id>@<host>:<port> where <node-id> \
     is the 64 hex characters printed by `grenier node id`, e.g. \"4f2a…e91c@203.0.113.7:3901\""
)]
pub struct PeerAddrError {
    /// The input as given.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Splits a peer address `<64-hex node id>@<host>:<port>` into the node id bytes and the
/// `host:port` string (as written). The host may be an IPv4 address, a bracketed IPv6 address
/// (`[2001:db8::1]:3901`) or a host name. Used for `bootstrap_peers` and `grenier node connect`.
pub fn parse_bootstrap_peer(s: &str) -> Result<([u8; 32], String), PeerAddrError> {
    let fail = |reason: &str| PeerAddrError {
        input: s.to_string(),
        reason: reason.to_string(),
    };
    let (id, addr) = s.split_once('@').ok_or_else(|| fail("there is no '@'"))?;
    if id.len() != 64 {
        return Err(fail(&format!(
            "the node id must be 64 hex characters, found {}",
            id.chars().count()
        )));
    }
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(id, &mut bytes)
        .map_err(|_| fail("the node id must contain only hex characters (0-9, a-f)"))?;
    check_host_port(addr).map_err(|reason| fail(&reason))?;
    Ok((bytes, addr.to_string()))
}

/// Checks that `s` is `host:port` with a non-zero port; IPv6 hosts must be bracketed.
fn check_host_port(s: &str) -> Result<(), String> {
    let port = if let Some(rest) = s.strip_prefix('[') {
        let (ip, after) = rest
            .split_once(']')
            .ok_or_else(|| "missing ']' after the IPv6 address".to_string())?;
        ip.parse::<Ipv6Addr>()
            .map_err(|_| format!("{ip:?} is not an IPv6 address"))?;
        after
            .strip_prefix(':')
            .ok_or_else(|| "missing ':<port>' after the address".to_string())?
    } else {
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| "missing ':<port>'".to_string())?;
        if host.contains(':') {
            return Err("IPv6 addresses must be in brackets, e.g. [2001:db8::1]:3901".to_string());
        }
        if host.is_empty() {
            return Err("the host is empty".to_string());
        }
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        {
            return Err(format!("{host:?} is not a valid host name or IP address"));
        }
        port
    };
    match port.parse::<u16>() {
        Ok(0) => Err("the port must not be 0".to_string()),
        Ok(_) => Ok(()),
        Err(_) => Err(format!("{port:?} is not a port number (1-65535)")),
    }
}

// ---------------------------------------------------------------------------------------------
// Raw (syntactic) form
// ---------------------------------------------------------------------------------------------

/// A leaf value with its position; types are checked during validation so that errors name the
/// field precisely.
type Field = Option<Spanned<Value>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table of configuration keys")]
struct RawConfig {
    metadata_dir: Field,
    data_dir: Option<RawDataDirs>,
    replication_factor: Field,
    consistency_mode: Field,
    db_engine: Field,
    metadata_fsync: Field,
    data_fsync: Field,
    tombstone_gc_delay_secs: Field,
    block_gc_delay_secs: Field,
    shutdown_grace_secs: Field,
    block_ram_buffer_max: Field,
    block_size: Field,
    compression_level: Field,
    rpc_bind_addr: Field,
    rpc_public_addr: Field,
    rpc_bind_outgoing: Field,
    rpc_secret: Field,
    rpc_secret_file: Field,
    bootstrap_peers: Field,
    s3_api: Option<RawS3Api>,
    s3_web: Option<RawS3Web>,
    admin: Option<RawAdmin>,
    test_hooks: Field,
}

enum RawDataDirs {
    One(String),
    Many(Vec<RawDataDirEntry>),
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table like { path = \"/srv/disk1\", capacity = \"2T\" }"
)]
struct RawDataDirEntry {
    path: Field,
    capacity: Field,
    read_only: Field,
}

impl<'de> Deserialize<'de> for RawDataDirs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawDataDirs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a directory path, or an array of tables like \
                     { path = \"/srv/disk1\", capacity = \"2T\" }",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawDataDirs, E> {
                Ok(RawDataDirs::One(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawDataDirs, A::Error> {
                let mut entries = Vec::new();
                while let Some(e) = seq.next_element::<RawDataDirEntry>()? {
                    entries.push(e);
                }
                Ok(RawDataDirs::Many(entries))
            }
        }
        deserializer.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table (the [s3_api] section)")]
struct RawS3Api {
    api_bind_addr: Field,
    s3_region: Field,
    root_domain: Field,
    xml_body_max: Field,
    max_connections: Field,
    header_read_timeout_secs: Field,
    idle_timeout_secs: Field,
    body_stall_timeout_secs: Field,
    send_stall_timeout_secs: Field,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table (the [s3_web] section)")]
struct RawS3Web {
    bind_addr: Field,
    root_domain: Field,
    max_connections: Field,
    header_read_timeout_secs: Field,
    idle_timeout_secs: Field,
    body_stall_timeout_secs: Field,
    send_stall_timeout_secs: Field,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table (the [admin] section)")]
struct RawAdmin {
    api_bind_addr: Field,
    admin_token: Field,
    admin_token_file: Field,
    metrics_token: Field,
    metrics_token_file: Field,
    max_connections: Field,
    header_read_timeout_secs: Field,
    idle_timeout_secs: Field,
    body_stall_timeout_secs: Field,
    send_stall_timeout_secs: Field,
}

// ---------------------------------------------------------------------------------------------
// Loading and validation
// ---------------------------------------------------------------------------------------------

impl Config {
    /// Reads and validates the configuration file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        let mut ctx = Ctx::new(&text, path);
        ctx.world_readable = world_readable_mode(path);
        ctx.parse()
    }

    /// Parses and validates configuration `text`. `path` is the file the text came from: it is
    /// named in error messages, and relative paths in the configuration (data and metadata
    /// directories, secret files) are resolved against its directory. Secret files are read.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        Ctx::new(text, path).parse()
    }

    /// The bootstrap peers split by [`parse_bootstrap_peer`] into (node id, `host:port`).
    pub fn bootstrap_peer_addrs(&self) -> Vec<([u8; 32], String)> {
        self.bootstrap_peers
            .iter()
            .filter_map(|p| parse_bootstrap_peer(p).ok())
            .collect()
    }
}

type Result<T, E = ConfigError> = std::result::Result<T, E>;

struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
    base_dir: PathBuf,
    /// The configuration file's mode when it is readable by every user (set by [`Config::load`]):
    /// inline secrets are then refused.
    world_readable: Option<u32>,
}

/// The mode of the file at `path` if every user can read it.
fn world_readable_mode(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode();
        (mode & 0o004 != 0).then_some(mode & 0o7777)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

impl<'a> Ctx<'a> {
    fn new(text: &'a str, path: &'a Path) -> Self {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let base_dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        Ctx {
            path,
            text,
            base_dir,
            world_readable: None,
        }
    }

    fn parse(&self) -> Result<Config> {
        // Syntax first, so that syntax errors are reported as such.
        if let Err(e) = toml::from_str::<toml::Table>(self.text) {
            return Err(self.syntax_error(&e));
        }
        let raw: RawConfig = toml::from_str(self.text).map_err(|e| self.serde_error(&e))?;
        self.validate(raw)
    }

    /// Refuses a secret written inline in a configuration file that every user can read.
    fn check_inline_secret(&self, field: &str, span: Range<usize>) -> Result<()> {
        match self.world_readable {
            None => Ok(()),
            Some(mode) => {
                let shown = self.path.display();
                Err(self.err(
                    field,
                    Some(span),
                    format!(
                        "this secret is written in {shown}, which every user can read (mode {mode:04o}); \
                         run `chmod 600 {shown}` (or move the secret to {field}_file, mode 600)"
                    ),
                ))
            }
        }
    }

    // --- error construction ------------------------------------------------------------------

    fn location(&self, offset: usize) -> Option<Location> {
        let before = self.text.get(..offset)?;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Some(Location {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        })
    }

    fn err(
        &self,
        field: &str,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            field: field.to_string(),
            location: span.and_then(|s| self.location(s.start)),
            message: message.into(),
        }
    }

    fn syntax_error(&self, e: &toml::de::Error) -> ConfigError {
        ConfigError::Syntax {
            path: self.path.to_path_buf(),
            location: e.span().and_then(|s| self.location(s.start)),
            message: one_line(e.message()),
        }
    }

    /// Turns a deserialization error (unknown key, wrong type of a section) into an
    /// [`ConfigError::Invalid`], recovering the field name from the error's position.
    fn serde_error(&self, e: &toml::de::Error) -> ConfigError {
        let message = one_line(e.message());
        let unknown = message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split_once('`'))
            .map(|(name, _)| name.to_string());
        let field = e
            .span()
            .and_then(|span| self.field_at(span.start, unknown.as_deref()))
            .or(unknown.clone())
            .unwrap_or_else(|| "(top level)".to_string());
        let message = match &unknown {
            Some(name) => unknown_key_message(name, &message),
            None => message,
        };
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            field,
            location: e.span().and_then(|s| self.location(s.start)),
            message,
        }
    }

    /// Best-effort dotted name of the field at byte `offset`: the enclosing `[table]` header,
    /// the key at the start of the line and, for values, the key right before the value (inline
    /// tables). `unknown` is the name of an unknown key reported by serde.
    fn field_at(&self, offset: usize, unknown: Option<&str>) -> Option<String> {
        let before = self.text.get(..offset)?;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let line_end = self.text[line_start..]
            .find('\n')
            .map_or(self.text.len(), |i| line_start + i);
        let line = &self.text[line_start..line_end];
        let mut parts: Vec<String> = Vec::new();
        if let Some(header) = header_name(line) {
            // The error is on a `[table]` header line: the table itself is the field.
            if let Some((parent, _)) = header.rsplit_once('.') {
                parts.push(parent.to_string());
            }
            if unknown.is_none() {
                parts.push(header);
            }
        } else {
            if let Some(h) = self.text[..line_start].lines().rev().find_map(header_name) {
                parts.push(h);
            }
            let first = first_key(line);
            if let Some(f) = &first
                && unknown != Some(f.as_str())
            {
                parts.push(f.clone());
            }
            if unknown.is_none()
                && let Some(inner) = key_before(&self.text[line_start..offset])
                && first.as_deref() != Some(inner.as_str())
            {
                parts.push(inner);
            }
        }
        if let Some(u) = unknown {
            parts.push(u.to_string());
        }
        if parts.is_empty() {
            None
        } else {
            Some(parts.join("."))
        }
    }

    fn missing(&self, field: &str, hint: &str) -> ConfigError {
        self.err(field, None, format!("missing; {hint}"))
    }

    // --- typed accessors ---------------------------------------------------------------------

    fn type_error(&self, field: &str, v: &Spanned<Value>, expected: &str) -> ConfigError {
        let found = match v.get_ref() {
            Value::String(s) => format!("the string {s:?}"),
            Value::Integer(i) => format!("the integer {i}"),
            Value::Float(x) => format!("the number {x}"),
            Value::Boolean(b) => format!("the boolean {b}"),
            Value::Datetime(d) => format!("the date {d}"),
            Value::Array(_) => "an array".to_string(),
            Value::Table(_) => "a table".to_string(),
        };
        self.err(
            field,
            Some(v.span()),
            format!("expected {expected}, found {found}"),
        )
    }

    fn string(&self, field: &str, v: &Spanned<Value>, expected: &str) -> Result<String> {
        match v.get_ref() {
            Value::String(s) if s.trim().is_empty() => Err(self.err(
                field,
                Some(v.span()),
                format!("must not be empty; expected {expected}"),
            )),
            Value::String(s) => Ok(s.clone()),
            _ => Err(self.type_error(field, v, expected)),
        }
    }

    fn boolean(&self, field: &str, v: &Field, default: bool) -> Result<bool> {
        match v {
            None => Ok(default),
            Some(v) => match v.get_ref() {
                Value::Boolean(b) => Ok(*b),
                _ => Err(self.type_error(field, v, "true or false")),
            },
        }
    }

    fn seconds(&self, field: &str, v: &Field, default: u64, expected: &str) -> Result<u64> {
        match v {
            None => Ok(default),
            Some(v) => match v.get_ref() {
                Value::Integer(i) if *i >= 0 => Ok(*i as u64),
                _ => Err(self.type_error(field, v, expected)),
            },
        }
    }

    fn path_value(&self, field: &str, v: &Spanned<Value>) -> Result<PathBuf> {
        let s = self.string(field, v, "a directory path")?;
        Ok(self.resolve(&s))
    }

    fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    fn size(&self, field: &str, v: &Spanned<Value>) -> Result<u64> {
        match v.get_ref() {
            Value::Integer(i) => u64::try_from(*i)
                .map_err(|_| self.err(field, Some(v.span()), "a size cannot be negative")),
            Value::String(s) => {
                parse_size(s).map_err(|e| self.err(field, Some(v.span()), e.to_string()))
            }
            _ => Err(self.type_error(
                field,
                v,
                "a size such as \"2T\" or \"1MiB\", or a number of bytes",
            )),
        }
    }

    fn socket_addr(&self, field: &str, v: &Field, default: &str) -> Result<SocketAddr> {
        let Some(v) = v else {
            return Ok(default.parse().expect("valid default address"));
        };
        let expected = format!("an IP address and port such as \"{default}\"");
        let s = self.string(field, v, &expected)?;
        s.trim().parse().map_err(|_| {
            self.err(
                field,
                Some(v.span()),
                format!(
                    "{s:?} is not {expected} (host names are not accepted for bind addresses; \
                     use \"[::]:PORT\" for all interfaces)"
                ),
            )
        })
    }

    fn root_domain(&self, field: &str, v: &Field) -> Result<Option<String>> {
        let Some(v) = v else { return Ok(None) };
        let expected = "a domain name such as \".s3.example.org\"";
        let s = self.string(field, v, expected)?;
        let domain = s.trim().trim_start_matches('.').to_ascii_lowercase();
        let valid = !domain.is_empty()
            && domain.split('.').all(|label| {
                !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !valid {
            return Err(self.err(
                field,
                Some(v.span()),
                format!("{s:?} is not {expected} (no scheme, port or path)"),
            ));
        }
        Ok(Some(format!(".{domain}")))
    }

    /// Reads a secret file: resolved against the config directory, must not be
    /// world-readable, trimmed, must not be empty. The error messages never show the content.
    fn secret_file(&self, field: &str, v: &Spanned<Value>) -> Result<(PathBuf, String)> {
        let name = self.string(field, v, "the path of a file holding the secret")?;
        let file = self.resolve(&name);
        let shown = file.display();
        let meta = std::fs::metadata(&file)
            .map_err(|e| self.err(field, Some(v.span()), format!("cannot read {shown}: {e}")))?;
        if !meta.is_file() {
            return Err(self.err(
                field,
                Some(v.span()),
                format!("{shown} is not a regular file"),
            ));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode();
            if mode & 0o004 != 0 {
                return Err(self.err(
                    field,
                    Some(v.span()),
                    format!(
                        "{shown} is readable by every user (mode {:04o}); secret files must not be \
                         world-readable: run `chmod 600 {shown}`",
                        mode & 0o7777
                    ),
                ));
            }
        }
        let content = std::fs::read_to_string(&file)
            .map_err(|e| self.err(field, Some(v.span()), format!("cannot read {shown}: {e}")))?;
        let content = content.trim().to_string();
        if content.is_empty() {
            return Err(self.err(field, Some(v.span()), format!("{shown} is empty")));
        }
        Ok((file, content))
    }

    /// An optional token given inline (`name`) or in a file (`name_file`), never both.
    fn token(
        &self,
        section: &str,
        name: &str,
        inline: &Field,
        file: &Field,
    ) -> Result<Option<String>> {
        let inline_field = format!("{section}.{name}");
        let file_field = format!("{section}.{name}_file");
        let check = |field: &str, span: Range<usize>, token: String, origin: &str| {
            if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                Err(self.err(
                    field,
                    Some(span),
                    format!("{origin} must not contain spaces or control characters"),
                ))
            } else {
                Ok(Some(token))
            }
        };
        match (inline, file) {
            (Some(_), Some(f)) => Err(self.err(
                &file_field,
                Some(f.span()),
                format!("set either {name} or {name}_file, not both"),
            )),
            (Some(v), None) => {
                let token = self.string(&inline_field, v, "a token string")?;
                self.check_inline_secret(&inline_field, v.span())?;
                check(&inline_field, v.span(), token, "the token")
            }
            (None, Some(f)) => {
                let (file, token) = self.secret_file(&file_field, f)?;
                check(
                    &file_field,
                    f.span(),
                    token,
                    &format!("the token in {}", file.display()),
                )
            }
            (None, None) => Ok(None),
        }
    }

    // --- the whole file ----------------------------------------------------------------------

    fn validate(&self, raw: RawConfig) -> Result<Config> {
        let metadata_dir = match &raw.metadata_dir {
            Some(v) => self.path_value("metadata_dir", v)?,
            None => {
                return Err(self.missing(
                    "metadata_dir",
                    "add e.g. `metadata_dir = \"/var/lib/grenier/meta\"`",
                ));
            }
        };
        let data_dir = self.data_dirs(&raw.data_dir)?;

        let replication_factor = self.replication_factor(&raw.replication_factor)?;
        let consistency_mode = self.consistency_mode(&raw.consistency_mode)?;
        let db_engine = self.db_engine(&raw.db_engine)?;

        let metadata_fsync = self.boolean("metadata_fsync", &raw.metadata_fsync, true)?;
        let data_fsync = self.boolean("data_fsync", &raw.data_fsync, false)?;
        let tombstone_gc_delay_secs = self.seconds(
            "tombstone_gc_delay_secs",
            &raw.tombstone_gc_delay_secs,
            DEFAULT_TOMBSTONE_GC_DELAY_SECS,
            "a number of seconds (default 86400 = 24 h)",
        )?;
        let block_gc_delay_secs = self.seconds(
            "block_gc_delay_secs",
            &raw.block_gc_delay_secs,
            DEFAULT_BLOCK_GC_DELAY_SECS,
            "a number of seconds (default 600 = 10 min)",
        )?;
        let shutdown_grace_secs = self.seconds(
            "shutdown_grace_secs",
            &raw.shutdown_grace_secs,
            DEFAULT_SHUTDOWN_GRACE_SECS,
            "a number of seconds (default 30)",
        )?;
        let block_ram_buffer_max = self.block_ram_buffer_max(&raw.block_ram_buffer_max)?;
        let block_size = self.block_size(&raw.block_size)?;
        let compression_level = self.compression_level(&raw.compression_level)?;

        let rpc_bind_addr =
            self.socket_addr("rpc_bind_addr", &raw.rpc_bind_addr, DEFAULT_RPC_BIND_ADDR)?;
        let rpc_public_addr = self.rpc_public_addr(&raw.rpc_public_addr)?;
        let rpc_bind_outgoing = self.boolean("rpc_bind_outgoing", &raw.rpc_bind_outgoing, false)?;
        let rpc_secret = self.rpc_secret(&raw.rpc_secret, &raw.rpc_secret_file)?;

        let bootstrap_peers = self.bootstrap_peers(&raw.bootstrap_peers)?;

        let s3_api = self.s3_api_section(&raw.s3_api)?;
        let s3_web = self.s3_web_section(&raw.s3_web)?;
        let admin = self.admin_section(&raw.admin)?;

        let test_hooks = self.boolean("test_hooks", &raw.test_hooks, false)?;

        Ok(Config {
            metadata_dir,
            data_dir,
            replication_factor,
            consistency_mode,
            db_engine,
            metadata_fsync,
            data_fsync,
            tombstone_gc_delay_secs,
            block_gc_delay_secs,
            shutdown_grace_secs,
            block_ram_buffer_max,
            block_size,
            compression_level,
            rpc_bind_addr,
            rpc_public_addr,
            rpc_bind_outgoing,
            rpc_secret,
            bootstrap_peers,
            s3_api,
            s3_web,
            admin,
            test_hooks,
        })
    }

    /// `replication_factor`: required, 1 to 7.
    fn replication_factor(&self, v: &Field) -> Result<usize> {
        Ok(match v {
            None => {
                return Err(self.missing(
                    "replication_factor",
                    "add e.g. `replication_factor = 3` (1 to 7, the same on every node)",
                ));
            }
            Some(v) => match v.get_ref() {
                Value::Integer(i) if (1..=MAX_REPLICATION_FACTOR as i64).contains(i) => *i as usize,
                Value::Integer(i) => {
                    return Err(self.err(
                        "replication_factor",
                        Some(v.span()),
                        format!("must be between 1 and {MAX_REPLICATION_FACTOR}, found {i}"),
                    ));
                }
                _ => {
                    return Err(self.type_error("replication_factor", v, "an integer from 1 to 7"));
                }
            },
        })
    }

    /// `consistency_mode`: one of the known modes.
    fn consistency_mode(&self, v: &Field) -> Result<ConsistencyMode> {
        Ok(match v {
            None => ConsistencyMode::default(),
            Some(v) => {
                let names = ConsistencyMode::ALL.map(|m| format!("\"{m}\"")).join(", ");
                let s = self.string("consistency_mode", v, &format!("one of {names}"))?;
                ConsistencyMode::ALL
                    .into_iter()
                    .find(|m| m.as_str() == s)
                    .ok_or_else(|| {
                        self.err(
                            "consistency_mode",
                            Some(v.span()),
                            format!("unknown mode {s:?}; expected one of {names}"),
                        )
                    })?
            }
        })
    }

    /// `db_engine`: one of the known engines.
    fn db_engine(&self, v: &Field) -> Result<DbEngine> {
        Ok(match v {
            None => DbEngine::default(),
            Some(v) => {
                let names = DbEngine::ALL.map(|m| format!("\"{m}\"")).join(", ");
                let s = self.string("db_engine", v, &format!("one of {names}"))?;
                DbEngine::ALL
                    .into_iter()
                    .find(|m| m.as_str() == s)
                    .ok_or_else(|| {
                        self.err(
                            "db_engine",
                            Some(v.span()),
                            format!("unknown engine {s:?}; known engines: {names}"),
                        )
                    })?
            }
        })
    }

    /// `block_ram_buffer_max`: at least 1 MiB.
    fn block_ram_buffer_max(&self, v: &Field) -> Result<u64> {
        Ok(match v {
            None => DEFAULT_BLOCK_RAM_BUFFER_MAX,
            Some(v) => {
                let size = self.size("block_ram_buffer_max", v)?;
                if size < MIN_BLOCK_RAM_BUFFER_MAX {
                    return Err(self.err(
                        "block_ram_buffer_max",
                        Some(v.span()),
                        format!(
                            "must be at least 1MiB, found {size} bytes; \"256MiB\" is the default"
                        ),
                    ));
                }
                size
            }
        })
    }

    /// `block_size`: 4 KiB to 64 MiB.
    fn block_size(&self, v: &Field) -> Result<u64> {
        Ok(match v {
            None => DEFAULT_BLOCK_SIZE,
            Some(v) => {
                let size = self.size("block_size", v)?;
                if !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&size) {
                    return Err(self.err(
                    "block_size",
                    Some(v.span()),
                    format!("must be between 4KiB and 64MiB, found {size} bytes; \"1MiB\" is a good default"),
                ));
                }
                size
            }
        })
    }

    /// `compression_level`: a zstd level or `"none"`.
    fn compression_level(&self, v: &Field) -> Result<Option<i32>> {
        Ok(match v {
            None => Some(DEFAULT_COMPRESSION_LEVEL),
            Some(v) => {
                let expected = format!(
                    "a zstd level from {MIN_COMPRESSION_LEVEL} to {MAX_COMPRESSION_LEVEL}, or \"none\""
                );
                match v.get_ref() {
                    Value::String(s) if s.eq_ignore_ascii_case("none") => None,
                    Value::Integer(i)
                        if (i64::from(MIN_COMPRESSION_LEVEL)
                            ..=i64::from(MAX_COMPRESSION_LEVEL))
                            .contains(i) =>
                    {
                        Some(*i as i32)
                    }
                    Value::Integer(i) => {
                        return Err(self.err(
                            "compression_level",
                            Some(v.span()),
                            format!("{i} is out of range; expected {expected}"),
                        ));
                    }
                    _ => return Err(self.type_error("compression_level", v, &expected)),
                }
            }
        })
    }

    /// `rpc_public_addr`: a `host:port`.
    fn rpc_public_addr(&self, v: &Field) -> Result<Option<String>> {
        Ok(match v {
            None => None,
            Some(v) => {
                let expected = "host:port such as \"203.0.113.7:3901\" or \"[2001:db8::1]:3901\"";
                let s = self.string("rpc_public_addr", v, expected)?;
                check_host_port(&s).map_err(|reason| {
                    self.err(
                        "rpc_public_addr",
                        Some(v.span()),
                        format!("{s:?}: {reason}; expected {expected}"),
                    )
                })?;
                Some(s)
            }
        })
    }

    /// `bootstrap_peers`: `"<node-id>@host:port"` strings.
    fn bootstrap_peers(&self, v: &Field) -> Result<Vec<String>> {
        Ok(match v {
            None => Vec::new(),
            Some(v) => {
                let Value::Array(items) = v.get_ref() else {
                    return Err(self.type_error(
                        "bootstrap_peers",
                        v,
                        "an array of \"<node-id>@host:port\" strings",
                    ));
                };
                let mut peers = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let field = format!("bootstrap_peers[{i}]");
                    let Value::String(s) = item else {
                        return Err(self.err(
                            &field,
                            Some(v.span()),
                            format!(
                                "expected a \"<node-id>@host:port\" string, found {}",
                                item.type_str()
                            ),
                        ));
                    };
                    parse_bootstrap_peer(s)
                        .map_err(|e| self.err(&field, Some(v.span()), e.to_string()))?;
                    peers.push(s.clone());
                }
                peers
            }
        })
    }

    /// The `[s3_api]` section.
    fn s3_api_section(&self, s3_api: &Option<RawS3Api>) -> Result<S3ApiConfig> {
        Ok(match s3_api {
            None => S3ApiConfig::default(),
            Some(s) => S3ApiConfig {
                api_bind_addr: self.socket_addr(
                    "s3_api.api_bind_addr",
                    &s.api_bind_addr,
                    DEFAULT_S3_API_BIND_ADDR,
                )?,
                s3_region: match &s.s3_region {
                    None => DEFAULT_S3_REGION.to_string(),
                    Some(v) => {
                        let region =
                            self.string("s3_api.s3_region", v, "a region name such as \"garage\"")?;
                        if region.chars().any(|c| c.is_whitespace() || c.is_control()) {
                            return Err(self.err(
                                "s3_api.s3_region",
                                Some(v.span()),
                                format!("{region:?} must not contain spaces"),
                            ));
                        }
                        region
                    }
                },
                root_domain: self.root_domain("s3_api.root_domain", &s.root_domain)?,
                xml_body_max: match &s.xml_body_max {
                    None => DEFAULT_S3_XML_BODY_MAX,
                    Some(v) => {
                        let size = self.size("s3_api.xml_body_max", v)?;
                        if !(MIN_S3_XML_BODY_MAX..=MAX_S3_XML_BODY_MAX).contains(&size) {
                            return Err(self.err(
                                "s3_api.xml_body_max",
                                Some(v.span()),
                                format!(
                                    "must be between 64KiB and 64MiB, found {size} bytes; \
                                 \"8MiB\" is the default"
                                ),
                            ));
                        }
                        size
                    }
                },
                http: self.http_listener(
                    "s3_api",
                    [
                        &s.max_connections,
                        &s.header_read_timeout_secs,
                        &s.idle_timeout_secs,
                        &s.body_stall_timeout_secs,
                        &s.send_stall_timeout_secs,
                    ],
                )?,
            },
        })
    }

    /// The `[s3_web]` section.
    fn s3_web_section(&self, s3_web: &Option<RawS3Web>) -> Result<Option<S3WebConfig>> {
        Ok(match s3_web {
            None => None,
            Some(w) => Some(S3WebConfig {
                bind_addr: self.socket_addr(
                    "s3_web.bind_addr",
                    &w.bind_addr,
                    DEFAULT_S3_WEB_BIND_ADDR,
                )?,
                root_domain: self.root_domain("s3_web.root_domain", &w.root_domain)?,
                http: self.http_listener(
                    "s3_web",
                    [
                        &w.max_connections,
                        &w.header_read_timeout_secs,
                        &w.idle_timeout_secs,
                        &w.body_stall_timeout_secs,
                        &w.send_stall_timeout_secs,
                    ],
                )?,
            }),
        })
    }

    /// The `[admin]` section.
    fn admin_section(&self, admin: &Option<RawAdmin>) -> Result<AdminConfig> {
        Ok(match admin {
            None => AdminConfig::default(),
            Some(a) => AdminConfig {
                api_bind_addr: self.socket_addr(
                    "admin.api_bind_addr",
                    &a.api_bind_addr,
                    DEFAULT_ADMIN_BIND_ADDR,
                )?,
                admin_token: self.token(
                    "admin",
                    "admin_token",
                    &a.admin_token,
                    &a.admin_token_file,
                )?,
                metrics_token: self.token(
                    "admin",
                    "metrics_token",
                    &a.metrics_token,
                    &a.metrics_token_file,
                )?,
                http: self.http_listener(
                    "admin",
                    [
                        &a.max_connections,
                        &a.header_read_timeout_secs,
                        &a.idle_timeout_secs,
                        &a.body_stall_timeout_secs,
                        &a.send_stall_timeout_secs,
                    ],
                )?,
            },
        })
    }

    /// The connection cap and timeouts of the `[section]` listener, from its `max_connections`,
    /// `header_read_timeout_secs`, `idle_timeout_secs`, `body_stall_timeout_secs` and
    /// `send_stall_timeout_secs` (in that order).
    fn http_listener(&self, section: &str, raw: [&Field; 5]) -> Result<HttpListenerConfig> {
        let [max_connections, header, idle, body_stall, send_stall] = raw;
        let max_connections = match max_connections {
            None => None,
            Some(v) => {
                let field = format!("{section}.max_connections");
                let expected = format!(
                    "a number of connections from 1 to {MAX_HTTP_CONNECTIONS} (default: derived \
                     from the open-file limit)"
                );
                match v.get_ref() {
                    Value::Integer(i) if (1..=MAX_HTTP_CONNECTIONS as i64).contains(i) => {
                        Some(*i as usize)
                    }
                    Value::Integer(i) => {
                        return Err(self.err(
                            &field,
                            Some(v.span()),
                            format!("{i} is out of range; expected {expected}"),
                        ));
                    }
                    _ => return Err(self.type_error(&field, v, &expected)),
                }
            }
        };
        let timeout = |name: &str, v: &Field, default: u64| -> Result<u64> {
            let field = format!("{section}.{name}");
            let expected = format!(
                "a number of seconds from 1 to {MAX_HTTP_TIMEOUT_SECS} (default {default})"
            );
            let Some(v) = v else { return Ok(default) };
            match v.get_ref() {
                Value::Integer(i) if (1..=MAX_HTTP_TIMEOUT_SECS as i64).contains(i) => {
                    Ok(*i as u64)
                }
                Value::Integer(i) => Err(self.err(
                    &field,
                    Some(v.span()),
                    format!("{i} is out of range; expected {expected}"),
                )),
                _ => Err(self.type_error(&field, v, &expected)),
            }
        };
        Ok(HttpListenerConfig {
            max_connections,
            header_read_timeout_secs: timeout(
                "header_read_timeout_secs",
                header,
                DEFAULT_HEADER_READ_TIMEOUT_SECS,
            )?,
            idle_timeout_secs: timeout("idle_timeout_secs", idle, DEFAULT_IDLE_TIMEOUT_SECS)?,
            body_stall_timeout_secs: timeout(
                "body_stall_timeout_secs",
                body_stall,
                DEFAULT_BODY_STALL_TIMEOUT_SECS,
            )?,
            send_stall_timeout_secs: timeout(
                "send_stall_timeout_secs",
                send_stall,
                DEFAULT_SEND_STALL_TIMEOUT_SECS,
            )?,
        })
    }

    fn rpc_secret(&self, inline: &Field, file: &Field) -> Result<[u8; 32]> {
        let parse = |s: &str| -> std::result::Result<[u8; 32], String> {
            if s.len() != 64 {
                return Err(format!(
                    "must be exactly 64 hex characters (32 bytes), found {} characters; generate one \
                     with `openssl rand -hex 32`",
                    s.chars().count()
                ));
            }
            let mut out = [0u8; 32];
            hex::decode_to_slice(s, &mut out)
                .map_err(|_| "must contain only hex characters (0-9, a-f)".to_string())?;
            Ok(out)
        };
        match (inline, file) {
            (Some(_), Some(f)) => Err(self.err(
                "rpc_secret_file",
                Some(f.span()),
                "set either rpc_secret or rpc_secret_file, not both",
            )),
            (None, None) => Err(self.err(
                "rpc_secret",
                None,
                "missing; set `rpc_secret = \"<64 hex chars>\"` (generate with `openssl rand -hex 32`) \
                 or `rpc_secret_file = \"/path/to/file\"`; it must be the same on every node",
            )),
            (Some(v), None) => {
                let s = self.string("rpc_secret", v, "64 hex characters")?;
                self.check_inline_secret("rpc_secret", v.span())?;
                parse(s.trim()).map_err(|m| self.err("rpc_secret", Some(v.span()), m))
            }
            (None, Some(f)) => {
                let (file, s) = self.secret_file("rpc_secret_file", f)?;
                parse(&s).map_err(|m| {
                    self.err(
                        "rpc_secret_file",
                        Some(f.span()),
                        format!("the secret in {} {m}", file.display()),
                    )
                })
            }
        }
    }

    fn data_dirs(&self, raw: &Option<RawDataDirs>) -> Result<Vec<DataDir>> {
        let entries = match raw {
            None => {
                return Err(self.missing(
                    "data_dir",
                    "add e.g. `data_dir = \"/var/lib/grenier/data\"` or \
                     `data_dir = [{ path = \"/srv/disk1\", capacity = \"2T\" }]`",
                ));
            }
            Some(RawDataDirs::One(s)) => {
                if s.trim().is_empty() {
                    return Err(self.err(
                        "data_dir",
                        None,
                        "must not be empty; expected a directory path",
                    ));
                }
                return Ok(vec![DataDir {
                    path: self.resolve(s),
                    capacity: None,
                    read_only: false,
                }]);
            }
            Some(RawDataDirs::Many(entries)) => entries,
        };
        if entries.is_empty() {
            return Err(self.err(
                "data_dir",
                None,
                "the array is empty; list at least one { path = \"...\", capacity = \"...\" } entry",
            ));
        }
        let several = entries.len() > 1;
        let mut dirs: Vec<DataDir> = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let dir = self.data_dir_entry(i, e, several, &dirs)?;
            dirs.push(dir);
        }
        if dirs.iter().all(|d| d.read_only) {
            return Err(self.err(
                "data_dir",
                None,
                "every data directory is read_only; at least one must be writable",
            ));
        }
        Ok(dirs)
    }

    /// Entry `i` of a `data_dir = [ … ]` array; `dirs` are the entries before it.
    fn data_dir_entry(
        &self,
        i: usize,
        e: &RawDataDirEntry,
        several: bool,
        dirs: &[DataDir],
    ) -> Result<DataDir> {
        let field = |name: &str| format!("data_dir[{i}].{name}");
        let any_span = [&e.path, &e.capacity, &e.read_only]
            .into_iter()
            .flatten()
            .map(|v| v.span())
            .next();
        let path = match &e.path {
            Some(v) => self.path_value(&field("path"), v)?,
            None => {
                return Err(self.err(
                    &field("path"),
                    any_span,
                    "missing; every data_dir entry needs a path",
                ));
            }
        };
        let capacity = match &e.capacity {
            None => None,
            Some(v) => {
                let c = self.size(&field("capacity"), v)?;
                if c == 0 {
                    return Err(self.err(&field("capacity"), Some(v.span()), "must not be zero"));
                }
                Some(c)
            }
        };
        let read_only = self.boolean(&field("read_only"), &e.read_only, false)?;
        if several && !read_only && capacity.is_none() {
            return Err(self.err(
                &field("capacity"),
                any_span,
                "missing; with several data directories each writable one needs a capacity \
                 (e.g. capacity = \"2T\") so that blocks are spread in proportion",
            ));
        }
        if let Some(j) = dirs.iter().position(|d| d.path == path) {
            return Err(self.err(
                &field("path"),
                any_span,
                format!("{} is already listed as data_dir[{j}]", path.display()),
            ));
        }
        Ok(DataDir {
            path,
            capacity,
            read_only,
        })
    }
}

/// Rewrites serde's "unknown field `x`, expected one of `a`, `b`" as "unknown key `x`; did you
/// mean `a`? valid keys here: `a`, `b`".
fn unknown_key_message(name: &str, message: &str) -> String {
    let valid: Vec<&str> = message
        .split_once(", expected")
        .map(|(_, list)| list.split('`').skip(1).step_by(2).collect())
        .unwrap_or_default();
    let mut out = format!("unknown key `{name}`");
    let closest = valid
        .iter()
        .map(|v| (edit_distance(name, v), *v))
        .filter(|&(d, v)| {
            d <= (name.len().max(v.len()) / 3).max(2) || (name.len() >= 3 && v.contains(name))
        })
        .min();
    if let Some((_, v)) = closest {
        out.push_str(&format!("; did you mean `{v}`?"));
    }
    if !valid.is_empty() {
        let list: Vec<String> = valid.iter().map(|v| format!("`{v}`")).collect();
        out.push_str(&format!(" (valid keys here: {})", list.join(", ")));
    }
    out
}

/// Levenshtein distance between two short strings.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = subst.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Joins a multi-line toml message into one line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

fn is_bare_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Normalizes a (possibly dotted, possibly quoted) key: `s3_api . "x"` → `s3_api.x`.
fn normalize_key(key: &str) -> Option<String> {
    let parts: Vec<&str> = key
        .split('.')
        .map(|p| p.trim().trim_matches('"').trim_matches('\''))
        .collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || !p.chars().all(is_bare_key_char))
    {
        return None;
    }
    Some(parts.join("."))
}

/// The table name if `line` is a `[table]` or `[[table]]` header.
fn header_name(line: &str) -> Option<String> {
    let t = line.trim_start();
    let inner = if let Some(rest) = t.strip_prefix("[[") {
        rest.split_once("]]")?.0
    } else {
        t.strip_prefix('[')?.split_once(']')?.0
    };
    normalize_key(inner)
}

/// The key of a `key = value` line.
fn first_key(line: &str) -> Option<String> {
    normalize_key(line.split_once('=')?.0)
}

/// The key of the last `key =` in `prefix` (the text of a line before an error position).
fn key_before(prefix: &str) -> Option<String> {
    let before = prefix[..prefix.rfind('=')?].trim_end();
    let start = before
        .char_indices()
        .rev()
        .find(|&(_, c)| !(is_bare_key_char(c) || c == '.' || c == '"'))
        .map_or(0, |(i, c)| i + c.len_utf8());
    normalize_key(&before[start..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const PEER_ID: &str = "4f2a000000000000000000000000000000000000000000000000000000e91c00";

    fn p() -> &'static Path {
        Path::new("/etc/grenier.toml")
    }

    fn minimal(extra: &str) -> String {
        format!(
            "metadata_dir = \"/m\"\ndata_dir = \"/d\"\nreplication_factor = 3\nrpc_secret = \"{SECRET}\"\n{extra}"
        )
    }

    fn parse(text: &str) -> Result<Config> {
        Config::parse(text, p())
    }

    fn parse_err(text: &str) -> String {
        let e = parse(text).expect_err(text);
        let msg = e.to_string();
        assert!(msg.starts_with("/etc/grenier.toml: "), "{msg}");
        msg
    }

    fn full_example() -> String {
        format!(
            r#"
metadata_dir = "/var/lib/grenier/meta"
data_dir = "/var/lib/grenier/data"      # or [[data_dir]] entries: {{ path = "...", capacity = "2T" }}
replication_factor = 3                   # 1..7, the same on every node
consistency_mode = "consistent"          # consistent | degraded | dangerous
db_engine = "redb"                       # the only engine for now; the key leaves room for others
metadata_fsync = true
data_fsync = false
block_size = "1MiB"
compression_level = 1                    # zstd level, or "none"

rpc_bind_addr = "[::]:3901"
rpc_public_addr = "203.0.113.7:3901"     # optional; what peers dial
rpc_bind_outgoing = false                # bind outgoing RPC sockets to rpc_bind_addr's IP
rpc_secret = "{SECRET}"            # or rpc_secret_file; the same on every node
bootstrap_peers = ["{PEER_ID}@host:3901"]

[s3_api]
api_bind_addr = "[::]:3900"
s3_region = "garage"                     # region clients must sign for; "garage" eases migration
root_domain = ".s3.example.org"          # enables virtual-hosted-style buckets

[s3_web]                                  # optional static website endpoint
bind_addr = "[::]:3902"
root_domain = ".web.example.org"

[admin]
api_bind_addr = "127.0.0.1:3903"
admin_token = "<secret>"                 # or admin_token_file
metrics_token = "<secret>"               # optional; /metrics is open without it
"#
        )
    }

    #[test]
    fn full_spec_example_parses() {
        let c = parse(&full_example()).unwrap();
        assert_eq!(c.metadata_dir, PathBuf::from("/var/lib/grenier/meta"));
        assert_eq!(
            c.data_dir,
            vec![DataDir {
                path: "/var/lib/grenier/data".into(),
                capacity: None,
                read_only: false
            }]
        );
        assert_eq!(c.replication_factor, 3);
        assert_eq!(c.consistency_mode, ConsistencyMode::Consistent);
        assert_eq!(c.db_engine, DbEngine::Redb);
        assert!(c.metadata_fsync);
        assert!(!c.data_fsync);
        assert_eq!(c.block_size, 1 << 20);
        assert_eq!(c.compression_level, Some(1));
        assert_eq!(c.rpc_bind_addr, "[::]:3901".parse().unwrap());
        assert_eq!(c.rpc_public_addr.as_deref(), Some("203.0.113.7:3901"));
        assert!(!c.rpc_bind_outgoing);
        assert_eq!(hex::encode(c.rpc_secret), SECRET);
        assert_eq!(c.bootstrap_peers, vec![format!("{PEER_ID}@host:3901")]);
        let peers = c.bootstrap_peer_addrs();
        assert_eq!(hex::encode(peers[0].0), PEER_ID);
        assert_eq!(peers[0].1, "host:3901");
        assert_eq!(c.s3_api.api_bind_addr, "[::]:3900".parse().unwrap());
        assert_eq!(c.s3_api.s3_region, "garage");
        assert_eq!(c.s3_api.root_domain.as_deref(), Some(".s3.example.org"));
        let web = c.s3_web.as_ref().unwrap();
        assert_eq!(web.bind_addr, "[::]:3902".parse().unwrap());
        assert_eq!(web.root_domain.as_deref(), Some(".web.example.org"));
        assert_eq!(c.admin.api_bind_addr, "127.0.0.1:3903".parse().unwrap());
        assert_eq!(c.admin.admin_token.as_deref(), Some("<secret>"));
        assert_eq!(c.admin.metrics_token.as_deref(), Some("<secret>"));

        // Secrets are not in the Debug output.
        let dbg = format!("{c:?}");
        assert!(!dbg.contains(SECRET) && !dbg.contains("<secret>"), "{dbg}");
        assert!(dbg.contains("<redacted>"));
    }

    #[test]
    fn defaults() {
        let c = parse(&minimal("")).unwrap();
        assert_eq!(c.consistency_mode, ConsistencyMode::Consistent);
        assert_eq!(c.db_engine, DbEngine::Redb);
        assert!(c.metadata_fsync);
        assert!(!c.data_fsync);
        assert_eq!(c.shutdown_grace_secs, DEFAULT_SHUTDOWN_GRACE_SECS);
        assert_eq!(
            parse(&minimal("shutdown_grace_secs = 5"))
                .unwrap()
                .shutdown_grace_secs,
            5
        );
        assert_eq!(c.block_size, DEFAULT_BLOCK_SIZE);
        assert_eq!(c.compression_level, Some(1));
        assert_eq!(c.rpc_bind_addr, "[::]:3901".parse().unwrap());
        assert_eq!(c.rpc_public_addr, None);
        assert!(!c.rpc_bind_outgoing);
        assert!(c.bootstrap_peers.is_empty());
        assert_eq!(c.s3_api, S3ApiConfig::default());
        assert_eq!(c.s3_api.api_bind_addr, "[::]:3900".parse().unwrap());
        assert_eq!(c.s3_api.s3_region, "garage");
        assert_eq!(c.s3_web, None);
        assert_eq!(c.admin, AdminConfig::default());
        assert_eq!(c.admin.api_bind_addr, "127.0.0.1:3903".parse().unwrap());
        assert_eq!(c.admin.admin_token, None);

        // An empty [s3_web] section enables the endpoint with defaults.
        let c = parse(&minimal("[s3_web]\n")).unwrap();
        assert_eq!(c.s3_web, Some(S3WebConfig::default()));
        // Partial sections keep the other defaults.
        let c = parse(&minimal(
            "[s3_api]\ns3_region = \"eu-west-1\"\nroot_domain = \"S3.Example.org\"\n",
        ))
        .unwrap();
        assert_eq!(c.s3_api.api_bind_addr, "[::]:3900".parse().unwrap());
        assert_eq!(c.s3_api.s3_region, "eu-west-1");
        assert_eq!(c.s3_api.root_domain.as_deref(), Some(".s3.example.org"));
        assert_eq!(c.s3_api.xml_body_max, DEFAULT_S3_XML_BODY_MAX);
    }

    #[test]
    fn xml_body_max() {
        let c = parse(&minimal("[s3_api]\nxml_body_max = \"1MiB\"\n")).unwrap();
        assert_eq!(c.s3_api.xml_body_max, 1 << 20);
        let c = parse(&minimal("[s3_api]\nxml_body_max = 65536\n")).unwrap();
        assert_eq!(c.s3_api.xml_body_max, 65536);
        for bad in ["65535", "\"65MiB\"", "-1", "\"lots\"", "true"] {
            let e = parse(&minimal(&format!("[s3_api]\nxml_body_max = {bad}\n")))
                .unwrap_err()
                .to_string();
            assert!(e.contains("s3_api.xml_body_max"), "{bad}: {e}");
        }
    }

    #[test]
    fn other_values() {
        let c = parse(&minimal(
            "consistency_mode = \"dangerous\"\ncompression_level = \"none\"\nblock_size = 65536\n\
             data_fsync = true\nrpc_public_addr = \"[2001:db8::1]:3901\"\nrpc_bind_outgoing = true\n",
        ))
        .unwrap();
        assert_eq!(c.consistency_mode, ConsistencyMode::Dangerous);
        assert_eq!(c.compression_level, None);
        assert_eq!(c.block_size, 65536);
        assert!(c.data_fsync);
        assert!(c.rpc_bind_outgoing);
        assert_eq!(c.rpc_public_addr.as_deref(), Some("[2001:db8::1]:3901"));

        assert_eq!(
            parse(&minimal("compression_level = 22"))
                .unwrap()
                .compression_level,
            Some(22)
        );
        assert_eq!(
            parse(&minimal("compression_level = -7"))
                .unwrap()
                .compression_level,
            Some(-7)
        );
        for bad in [
            "compression_level = 23",
            "compression_level = -8",
            "compression_level = \"fast\"",
        ] {
            let msg = parse_err(&minimal(bad));
            assert!(
                msg.contains(": compression_level: ") && msg.contains("\"none\""),
                "{msg}"
            );
        }
        let msg = parse_err(&minimal("consistency_mode = \"strong\""));
        assert!(
            msg.contains("consistency_mode") && msg.contains("\"degraded\""),
            "{msg}"
        );
    }

    #[test]
    fn unknown_db_engine_lists_known_ones() {
        let msg = parse_err(&minimal("db_engine = \"sqlite\""));
        assert!(
            msg.contains(": db_engine: ") && msg.contains("\"sqlite\"") && msg.contains("\"redb\""),
            "{msg}"
        );
        assert!(msg.contains("line 5"), "{msg}");
    }

    #[test]
    fn data_dir_forms() {
        let c = parse(&minimal("").replace(
            "data_dir = \"/d\"",
            "data_dir = [{ path = \"/a\", capacity = \"2T\" }, { path = \"/b\", capacity = 1000, read_only = false }, { path = \"/c\", read_only = true }]",
        ))
        .unwrap();
        assert_eq!(
            c.data_dir,
            vec![
                DataDir {
                    path: "/a".into(),
                    capacity: Some(2_000_000_000_000),
                    read_only: false
                },
                DataDir {
                    path: "/b".into(),
                    capacity: Some(1000),
                    read_only: false
                },
                DataDir {
                    path: "/c".into(),
                    capacity: None,
                    read_only: true
                },
            ]
        );

        // [[data_dir]] array of tables (must come after the top-level keys).
        let text = format!(
            "metadata_dir = \"/m\"\nreplication_factor = 3\nrpc_secret = \"{SECRET}\"\n\
             [[data_dir]]\npath = \"/a\"\ncapacity = \"1.5T\"\n[[data_dir]]\npath = \"/b\"\ncapacity = \"500G\"\n"
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.data_dir.len(), 2);
        assert_eq!(c.data_dir[0].capacity, Some(1_500_000_000_000));
        assert_eq!(c.data_dir[1].path, PathBuf::from("/b"));

        // A single entry may omit the capacity.
        let c = parse(&minimal("").replace("data_dir = \"/d\"", "data_dir = [{ path = \"/a\" }]"))
            .unwrap();
        assert_eq!(c.data_dir[0].capacity, None);

        // Several writable entries need capacities.
        let msg = parse_err(&minimal("").replace(
            "data_dir = \"/d\"",
            "data_dir = [{ path = \"/a\", capacity = \"2T\" }, { path = \"/b\" }]",
        ));
        assert!(msg.contains("data_dir[1].capacity: missing"), "{msg}");

        // Unknown key inside an entry.
        let msg = parse_err(&minimal("").replace(
            "data_dir = \"/d\"",
            "data_dir = [{ path = \"/a\", capcity = \"2T\" }]",
        ));
        assert!(
            msg.contains("data_dir.capcity") && msg.contains("unknown key"),
            "{msg}"
        );
        let msg = parse_err(&format!(
            "{}[[data_dir]]\npath = \"/a\"\nsize = 1\n",
            minimal("").replace("data_dir = \"/d\"\n", "")
        ));
        assert!(
            msg.contains("data_dir.size") && msg.contains("line 6"),
            "{msg}"
        );

        // Missing, empty, wrong type, duplicates.
        let msg = parse_err(&minimal("").replace("data_dir = \"/d\"\n", ""));
        assert!(msg.contains(": data_dir: missing"), "{msg}");
        let msg = parse_err(&minimal("").replace("data_dir = \"/d\"", "data_dir = []"));
        assert!(msg.contains(": data_dir: "), "{msg}");
        let msg = parse_err(&minimal("").replace("data_dir = \"/d\"", "data_dir = 5"));
        assert!(
            msg.contains(": data_dir: ") && msg.contains("line 2"),
            "{msg}"
        );
        let msg = parse_err(&minimal("").replace(
            "data_dir = \"/d\"",
            "data_dir = [{ path = \"/a\", capacity = 1 }, { path = \"/a\", capacity = 1 }]",
        ));
        assert!(
            msg.contains("data_dir[1].path") && msg.contains("already listed"),
            "{msg}"
        );
        let msg =
            parse_err(&minimal("").replace("data_dir = \"/d\"", "data_dir = [{ capacity = 1 }]"));
        assert!(msg.contains("data_dir[0].path: missing"), "{msg}");
        let msg = parse_err(&minimal("").replace(
            "data_dir = \"/d\"",
            "data_dir = [{ path = \"/a\", read_only = true }]",
        ));
        assert!(msg.contains("writable"), "{msg}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let msg = parse_err(&minimal("replication_facter = 3\n"));
        assert!(
            msg.contains(": replication_facter: unknown key `replication_facter`")
                && msg.contains("did you mean `replication_factor`?")
                && msg.contains("line 5"),
            "{msg}"
        );

        let msg = parse_err(&minimal("[s3_api]\nregion = \"x\"\n"));
        assert!(
            msg.contains(": s3_api.region: ")
                && msg.contains("line 6")
                && msg.contains("did you mean `s3_region`?"),
            "{msg}"
        );

        let msg = parse_err(&minimal(
            "[admin]\napi_bind_addr = \"127.0.0.1:3903\"\ntoken = \"x\"\n",
        ));
        assert!(msg.contains(": admin.token: "), "{msg}");

        let msg = parse_err(&minimal("[s3]\nregion = \"x\"\n"));
        assert!(
            msg.contains(": s3: ") && msg.contains("unknown key"),
            "{msg}"
        );

        let msg = parse_err(&minimal("s3_api.regon = \"x\"\n"));
        assert!(msg.contains("regon"), "{msg}");
    }

    #[test]
    fn wrong_types_name_the_field() {
        let cases = [
            ("replication_factor = \"3\"", ": replication_factor: "),
            ("metadata_fsync = \"yes\"", ": metadata_fsync: "),
            ("block_size = true", ": block_size: "),
            ("rpc_bind_addr = 3901", ": rpc_bind_addr: "),
            ("bootstrap_peers = \"x\"", ": bootstrap_peers: "),
            ("bootstrap_peers = [1]", ": bootstrap_peers[0]: "),
            ("[s3_api]\napi_bind_addr = 3900", ": s3_api.api_bind_addr: "),
            ("[admin]\nadmin_token = 5", ": admin.admin_token: "),
            ("s3_api = 5", ": s3_api: "),
        ];
        for (extra, expect) in cases {
            let text = if extra.starts_with("replication_factor") {
                minimal("").replace("replication_factor = 3", extra)
            } else {
                minimal(extra)
            };
            let msg = parse_err(&text);
            assert!(msg.contains(expect), "{extra}: {msg}");
            assert!(msg.contains("line "), "{extra}: {msg}");
        }
        let msg = parse_err(&minimal("").replace("metadata_dir = \"/m\"", "metadata_dir = 1"));
        assert!(
            msg.contains(
                ": metadata_dir: expected a directory path, found the integer 1 (line 1, column 16)"
            ),
            "{msg}"
        );
    }

    #[test]
    fn bad_sizes() {
        let msg = parse_err(&minimal("block_size = \"1XB\""));
        assert!(
            msg.contains(": block_size: ") && msg.contains("\"1XB\"") && msg.contains("\"1MiB\""),
            "{msg}"
        );
        let msg = parse_err(&minimal("block_size = \"1K\""));
        assert!(
            msg.contains(": block_size: ") && msg.contains("4KiB"),
            "{msg}"
        );
        let msg = parse_err(&minimal("block_size = \"65MiB\""));
        assert!(msg.contains(": block_size: "), "{msg}");
        let msg = parse_err(&minimal("block_size = -1"));
        assert!(
            msg.contains(": block_size: ") && msg.contains("negative"),
            "{msg}"
        );
        assert_eq!(
            parse(&minimal("block_size = \"4KiB\"")).unwrap().block_size,
            4096
        );
        assert_eq!(
            parse(&minimal("block_size = \"64MiB\""))
                .unwrap()
                .block_size,
            64 << 20
        );
        let msg = parse_err(&minimal("").replace(
            "data_dir = \"/d\"",
            "data_dir = [{ path = \"/a\", capacity = \"lots\" }]",
        ));
        assert!(
            msg.contains(": data_dir[0].capacity: ") && msg.contains("\"lots\""),
            "{msg}"
        );
    }

    #[test]
    fn replication_factor_range() {
        for ok in [1, 7] {
            let text = minimal("").replace(
                "replication_factor = 3",
                &format!("replication_factor = {ok}"),
            );
            assert_eq!(parse(&text).unwrap().replication_factor, ok);
        }
        for bad in [0, 8, -1] {
            let text = minimal("").replace(
                "replication_factor = 3",
                &format!("replication_factor = {bad}"),
            );
            let msg = parse_err(&text);
            assert!(
                msg.contains(": replication_factor: must be between 1 and 7"),
                "{msg}"
            );
        }
        let msg = parse_err(&minimal("").replace("replication_factor = 3\n", ""));
        assert!(msg.contains(": replication_factor: missing"), "{msg}");
        let msg = parse_err(&minimal("").replace("metadata_dir = \"/m\"\n", ""));
        assert!(msg.contains(": metadata_dir: missing"), "{msg}");
    }

    #[test]
    fn rpc_secret_inline_xor_file() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("grenier.toml");
        let secret = dir.path().join("rpc_secret");
        fs::write(&secret, format!("{SECRET}\n")).unwrap();
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();

        let both = minimal("rpc_secret_file = \"rpc_secret\"");
        let e = Config::parse(&both, &cfg).unwrap_err();
        assert_eq!(e.field(), Some("rpc_secret_file"));
        assert!(e.to_string().contains("not both"), "{e}");

        let neither = minimal("").replace(&format!("rpc_secret = \"{SECRET}\"\n"), "");
        let msg = parse_err(&neither);
        assert!(
            msg.contains(": rpc_secret: missing") && msg.contains("rpc_secret_file"),
            "{msg}"
        );

        let from_file = minimal("").replace(
            &format!("rpc_secret = \"{SECRET}\""),
            "rpc_secret_file = \"rpc_secret\"",
        );
        let c = Config::parse(&from_file, &cfg).unwrap();
        assert_eq!(hex::encode(c.rpc_secret), SECRET);

        for bad in ["abc", &SECRET.replace('0', "g")] {
            let msg = parse_err(&minimal("").replace(SECRET, bad));
            assert!(
                msg.contains(": rpc_secret: ") && !msg.contains(bad),
                "{msg}"
            );
        }
    }

    #[test]
    fn world_readable_config_with_inline_secrets_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("grenier.toml");
        let cases = [
            ("rpc_secret", minimal("")),
            (
                "admin.admin_token",
                minimal("[admin]\nadmin_token = \"t0ken\"\n").replace(
                    &format!("rpc_secret = \"{SECRET}\""),
                    "rpc_secret_file = \"s\"",
                ),
            ),
            (
                "admin.metrics_token",
                minimal("[admin]\nmetrics_token = \"t0ken\"\n").replace(
                    &format!("rpc_secret = \"{SECRET}\""),
                    "rpc_secret_file = \"s\"",
                ),
            ),
        ];
        let secret = dir.path().join("s");
        fs::write(&secret, SECRET).unwrap();
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
        for (field, text) in cases {
            fs::write(&cfg, &text).unwrap();
            fs::set_permissions(&cfg, fs::Permissions::from_mode(0o644)).unwrap();
            let e = Config::load(&cfg).expect_err(field);
            let msg = e.to_string();
            assert_eq!(e.field(), Some(field), "{msg}");
            assert!(
                msg.contains(&format!("chmod 600 {}", cfg.display())) && msg.contains("0644"),
                "{msg}"
            );
            assert!(!msg.contains(SECRET) && !msg.contains("t0ken"), "{msg}");
            // Readable by the group only, or by the owner only: accepted.
            for mode in [0o640, 0o600] {
                fs::set_permissions(&cfg, fs::Permissions::from_mode(mode)).unwrap();
                Config::load(&cfg).unwrap();
            }
            // Parsing text (no file to check) is not affected.
            Config::parse(&text, &cfg).unwrap();
        }
        // Secrets only in files: a world-readable config file is fine.
        let text = minimal("").replace(
            &format!("rpc_secret = \"{SECRET}\""),
            "rpc_secret_file = \"s\"",
        );
        fs::write(&cfg, &text).unwrap();
        fs::set_permissions(&cfg, fs::Permissions::from_mode(0o644)).unwrap();
        Config::load(&cfg).unwrap();
    }

    #[test]
    fn test_hooks_default_off() {
        assert!(!parse(&minimal("")).unwrap().test_hooks);
        assert!(parse(&minimal("test_hooks = true")).unwrap().test_hooks);
        assert!(!parse(&minimal("test_hooks = false")).unwrap().test_hooks);
        let msg = parse_err(&minimal("test_hooks = \"yes\""));
        assert!(msg.contains("test_hooks"), "{msg}");
    }

    #[test]
    fn world_readable_secret_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("grenier.toml");
        let secret = dir.path().join("secret");
        fs::write(&secret, SECRET).unwrap();
        let token = dir.path().join("admin_token");
        fs::write(&token, "  tok3n\n").unwrap();
        fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).unwrap();

        let text = minimal("[admin]\nadmin_token_file = \"admin_token\"\n").replace(
            &format!("rpc_secret = \"{SECRET}\""),
            "rpc_secret_file = \"secret\"",
        );

        fs::set_permissions(&secret, fs::Permissions::from_mode(0o644)).unwrap();
        let e = Config::parse(&text, &cfg).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("{}: rpc_secret_file: ", cfg.display())),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("chmod 600 {}", secret.display())),
            "{msg}"
        );
        assert!(!msg.contains(SECRET), "{msg}");

        fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
        let c = Config::parse(&text, &cfg).unwrap();
        assert_eq!(hex::encode(c.rpc_secret), SECRET);
        assert_eq!(c.admin.admin_token.as_deref(), Some("tok3n"));
        assert_eq!(c.admin.metrics_token, None);

        fs::set_permissions(&token, fs::Permissions::from_mode(0o604)).unwrap();
        let e = Config::parse(&text, &cfg).unwrap_err();
        assert_eq!(e.field(), Some("admin.admin_token_file"));
        assert!(e.to_string().contains("chmod 600"), "{e}");

        // Missing file, and both token forms.
        let e = Config::parse(&text.replace("\"secret\"", "\"nope\""), &cfg).unwrap_err();
        assert_eq!(e.field(), Some("rpc_secret_file"));
        fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).unwrap();
        let e = Config::parse(
            &text.replace("[admin]\n", "[admin]\nadmin_token = \"x\"\n"),
            &cfg,
        )
        .unwrap_err();
        assert_eq!(e.field(), Some("admin.admin_token_file"));
        assert!(e.to_string().contains("not both"), "{e}");
    }

    #[test]
    fn relative_paths_are_resolved_against_the_config_directory() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("etc");
        fs::create_dir(&sub).unwrap();
        let cfg = sub.join("grenier.toml");
        fs::write(sub.join("secret"), SECRET).unwrap();
        fs::set_permissions(sub.join("secret"), fs::Permissions::from_mode(0o400)).unwrap();
        let text = "metadata_dir = \"meta\"\nreplication_factor = 1\nrpc_secret_file = \"secret\"\n\
             data_dir = [{ path = \"../data1\", capacity = \"1G\" }, \
             { path = \"/abs\", capacity = \"1G\" }]\n";
        fs::write(&cfg, text).unwrap();
        let c = Config::load(&cfg).unwrap();
        assert_eq!(c.metadata_dir, sub.join("meta"));
        assert_eq!(c.data_dir[0].path, sub.join("../data1"));
        assert_eq!(c.data_dir[1].path, PathBuf::from("/abs"));
        assert_eq!(hex::encode(c.rpc_secret), SECRET);

        let c = Config::parse(
            &minimal("").replace("\"/d\"", "\"d\""),
            Path::new("grenier.toml"),
        )
        .unwrap();
        assert!(c.data_dir[0].path.is_absolute() && c.data_dir[0].path.ends_with("d"));
    }

    #[test]
    fn load_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("missing.toml");
        let e = Config::load(&cfg).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }));
        assert!(e.to_string().starts_with(&cfg.display().to_string()), "{e}");
        assert_eq!(e.path(), cfg);
    }

    #[test]
    fn syntax_errors_have_line_and_column() {
        let e = parse(&minimal("block_size = \n")).unwrap_err();
        assert!(matches!(e, ConfigError::Syntax { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.starts_with("/etc/grenier.toml: TOML syntax error at line 5, column"),
            "{msg}"
        );
        assert!(!msg.contains('\n'), "{msg}");

        let msg = parse_err(&minimal("replication_factor = 3\n"));
        assert!(
            msg.contains("TOML syntax error at line 5") && msg.contains("duplicate"),
            "{msg}"
        );
    }

    #[test]
    fn bind_and_public_addresses() {
        let msg = parse_err(&minimal("rpc_bind_addr = \"localhost:3901\""));
        assert!(
            msg.contains(": rpc_bind_addr: ") && msg.contains("localhost"),
            "{msg}"
        );
        for bad in [
            "203.0.113.7",
            "host:",
            "host:0",
            "host:99999",
            "2001:db8::1:3901",
            ":3901",
            "[::1]",
            "a b:1",
        ] {
            let msg = parse_err(&minimal(&format!("rpc_public_addr = \"{bad}\"")));
            assert!(
                msg.contains(": rpc_public_addr: ") && msg.contains(bad),
                "{msg}"
            );
        }
        for ok in ["node1.example.org:3901", "203.0.113.7:3901", "[::1]:3901"] {
            let c = parse(&minimal(&format!("rpc_public_addr = \"{ok}\""))).unwrap();
            assert_eq!(c.rpc_public_addr.as_deref(), Some(ok));
        }
        let msg = parse_err(&minimal(
            "[s3_api]\nroot_domain = \"https://s3.example.org\"",
        ));
        assert!(msg.contains(": s3_api.root_domain: "), "{msg}");
    }

    #[test]
    fn bootstrap_peers() {
        let (id, addr) = parse_bootstrap_peer(&format!("{PEER_ID}@[2001:db8::1]:3901")).unwrap();
        assert_eq!(hex::encode(id), PEER_ID);
        assert_eq!(addr, "[2001:db8::1]:3901");
        let upper = PEER_ID.to_uppercase();
        assert!(parse_bootstrap_peer(&format!("{upper}@h:1")).is_ok());
        for bad in [
            "host:3901".to_string(),
            format!("{PEER_ID}@host"),
            format!("{}@host:1", &PEER_ID[..63]),
            format!("{}@host:1", PEER_ID.replace('f', "x")),
            "@host:1".to_string(),
        ] {
            let e = parse_bootstrap_peer(&bad).unwrap_err();
            assert!(e.to_string().contains(&bad), "{e}");
        }
        let msg = parse_err(&minimal(&format!(
            "bootstrap_peers = [\"{PEER_ID}@a:1\", \"nope\"]"
        )));
        assert!(
            msg.contains(": bootstrap_peers[1]: ") && msg.contains("\"nope\""),
            "{msg}"
        );
    }

    #[test]
    fn http_listener_limits() {
        // Defaults, in every listener section.
        let c = parse(&minimal(
            "[s3_web]
",
        ))
        .unwrap();
        let d = HttpListenerConfig {
            max_connections: None,
            header_read_timeout_secs: 30,
            idle_timeout_secs: 60,
            body_stall_timeout_secs: 60,
            send_stall_timeout_secs: 60,
        };
        assert_eq!(c.s3_api.http, d);
        assert_eq!(c.admin.http, d);
        assert_eq!(c.s3_web.unwrap().http, d);

        let keys = "max_connections = 100\nheader_read_timeout_secs = 5\nidle_timeout_secs = 6\n\
                    body_stall_timeout_secs = 7\nsend_stall_timeout_secs = 8\n";
        let c = parse(&minimal(&format!(
            "[s3_api]\n{keys}[s3_web]\n{keys}[admin]\n{keys}"
        )))
        .unwrap();
        let set = HttpListenerConfig {
            max_connections: Some(100),
            header_read_timeout_secs: 5,
            idle_timeout_secs: 6,
            body_stall_timeout_secs: 7,
            send_stall_timeout_secs: 8,
        };
        assert_eq!(c.s3_api.http, set);
        assert_eq!(c.admin.http, set);
        assert_eq!(c.s3_web.unwrap().http, set);
        // Only the keys given change.
        let c = parse(&minimal("[admin]\nidle_timeout_secs = 5\n")).unwrap();
        assert_eq!(c.admin.http.idle_timeout_secs, 5);
        assert_eq!(c.admin.http.header_read_timeout_secs, 30);
        assert_eq!(c.s3_api.http, d);

        for (bad, field) in [
            ("[s3_api]\nmax_connections = 0", "s3_api.max_connections"),
            (
                "[s3_api]\nmax_connections = 1000001",
                "s3_api.max_connections",
            ),
            (
                "[admin]\nmax_connections = \"many\"",
                "admin.max_connections",
            ),
            (
                "[s3_api]\nheader_read_timeout_secs = 0",
                "s3_api.header_read_timeout_secs",
            ),
            (
                "[s3_web]\nidle_timeout_secs = -1",
                "s3_web.idle_timeout_secs",
            ),
            (
                "[admin]\nbody_stall_timeout_secs = 86401",
                "admin.body_stall_timeout_secs",
            ),
            (
                "[s3_api]\nsend_stall_timeout_secs = \"1m\"",
                "s3_api.send_stall_timeout_secs",
            ),
        ] {
            let msg = parse_err(&minimal(bad));
            assert!(msg.contains(&format!(": {field}: ")), "{bad}: {msg}");
            assert!(msg.contains("line "), "{bad}: {msg}");
        }
        let msg = parse_err(&minimal("[s3_api]\nidle_timeout = 5"));
        assert!(msg.contains("did you mean `idle_timeout_secs`"), "{msg}");
    }
}
