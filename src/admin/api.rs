//! The admin API's request and response bodies, typed once for both sides: the handlers in
//! [`crate::admin`] build these and parse requests into them, and the CLI ([`crate::cli`]) deserializes
//! answers into them and prints `--json` by re-serializing the typed value.
//!
//! **Invariant:** this module defines data only: serde types (and `serde_json` for the rare field that
//! accepts several JSON types), plus the lower layers' own plain serde types where the wire shape is
//! exactly theirs (worker rows, a layout history entry, the scrub command), re-exported so that the
//! two cannot drift apart.
//! Field names are the product contract (doc/cli.md): more fields may be added, none renamed. An
//! `Option` field without `skip_serializing_if` is `null` when empty, as it always was; the one field
//! that is absent rather than `null` says so.
//!
//! Request bodies have `Option` fields and `Default`: an empty body is the default request, and a
//! missing field gets the same "field `x` is required" answer it always did (the handler checks it).

use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------------
// Node identity and status

/// `GET /v1/node`; `node id --json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeIdentity {
    pub id: String,
    /// `rpc_public_addr`, `null` when not configured.
    pub addr: Option<String>,
}

/// `POST /v1/node/connect`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectRequest {
    /// `<id>@<host:port>`.
    pub peer: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConnectResponse {
    pub connected: String,
}

/// Cluster health, as `status` and `/health` name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Healthy,
    Degraded,
    Unavailable,
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Health::Healthy => "healthy",
            Health::Degraded => "degraded",
            Health::Unavailable => "unavailable",
        })
    }
}

/// `GET /v1/status`; `status --json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// Its fields (`health`, `partitions`, ...) sit at the top level, as in `GET /health`.
    #[serde(flatten)]
    pub report: HealthReport,
    pub layout_version: u64,
    pub nodes: Vec<NodeStatus>,
}

/// One node of [`ClusterStatus`]; `zone`/`capacity` are `null` for nodes without a role.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub id: String,
    pub hostname: Option<String>,
    pub addr: Option<String>,
    pub zone: Option<String>,
    pub capacity: Option<u64>,
    pub gateway: bool,
    pub up: bool,
    pub last_seen_msec: Option<u64>,
    pub rtt_ms: Option<f64>,
    pub release: Option<String>,
    pub layout_version: Option<u64>,
    pub data_avail: Option<u64>,
    pub data_total: Option<u64>,
    pub meta_avail: Option<u64>,
}

// ---------------------------------------------------------------------------------------------------
// Layout

/// A node's role in a layout (current or staged).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Role {
    pub id: String,
    pub zone: String,
    /// `null` for a gateway.
    pub capacity: Option<u64>,
    pub gateway: bool,
    pub tags: Vec<String>,
}

/// A staged change: a new role, or the removal of the node (`{"id", "remove": true}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StagedRole {
    Role(Role),
    Remove { id: String, remove: bool },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StagedParameters {
    pub zone_redundancy: String,
}

/// Partitions and usable capacity of one storage node in the current version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeUsage {
    pub id: String,
    pub zone: String,
    pub partitions: usize,
    pub usable_capacity: u64,
    pub capacity: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ZoneUsage {
    pub zone: String,
    pub nodes: usize,
    pub usable_capacity: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartitionNodes {
    pub partition: usize,
    pub nodes: Vec<String>,
}

/// Progress of the transition to the current version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub active_versions: Vec<u64>,
    pub read_version: u64,
    pub nodes: Vec<TransitionNode>,
}

/// Highest version each node has acknowledged, synced, and switched its reads to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransitionNode {
    pub id: String,
    pub ack: u64,
    pub sync: u64,
    pub sync_ack: u64,
}

/// `GET /v1/layout`; `layout show --json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayoutShow {
    pub version: u64,
    pub transition: Transition,
    pub replication_factor: usize,
    pub zone_redundancy: String,
    pub effective_zone_redundancy: usize,
    pub partition_size: u64,
    pub usable_capacity: u64,
    pub roles: Vec<Role>,
    pub staged: Vec<StagedRole>,
    pub staged_parameters: Option<StagedParameters>,
    pub nodes_usage: Vec<NodeUsage>,
    pub zones: Vec<ZoneUsage>,
    /// 256 entries once a layout is applied, none before.
    pub partitions: Vec<PartitionNodes>,
}

/// One applied version in `GET /v1/layout/history`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryVersion {
    /// The layout's own summary of the version (`version`, `applied_msec`, `storage_nodes`,
    /// `gateways`, `zones`, `usable_capacity`, `moved`), its fields at the top level.
    #[serde(flatten)]
    pub entry: HistoryEntry,
    /// `historical`, `current` or `active (transition in progress)`.
    pub status: String,
}

pub use crate::block::scrub::ScrubCommand;
pub use crate::layout::history::HistoryEntry;

/// `GET /v1/layout/history`; `layout history --json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayoutHistory {
    pub current_version: u64,
    pub versions: Vec<HistoryVersion>,
    pub transition: Transition,
}

/// `POST /v1/layout/assign`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AssignRequest {
    /// Node id or unique prefix of it.
    pub node: Option<String>,
    pub zone: Option<String>,
    /// Bytes; required unless `gateway`.
    pub capacity: Option<u64>,
    #[serde(default)]
    pub gateway: Option<bool>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AssignResponse {
    pub staged: String,
    pub role: Role,
}

/// `POST /v1/layout/remove`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RemoveRequest {
    pub node: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RemoveResponse {
    pub staged_removal: String,
}

/// `zone_redundancy`: a number of zones, given as a JSON number or string, or `"max"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ZoneRedundancyArg {
    Text(String),
    Number(serde_json::Number),
}

/// `POST /v1/layout/config`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LayoutConfigRequest {
    pub zone_redundancy: Option<ZoneRedundancyArg>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayoutConfigResponse {
    pub staged_zone_redundancy: String,
}

/// `POST /v1/layout/apply`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ApplyRequest {
    /// Refuse unless this is the next version.
    pub version: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApplyResponse {
    pub version: u64,
    pub moved: usize,
    pub partition_size: u64,
    pub usable_capacity: u64,
    pub zone_redundancy: usize,
    pub nodes: Vec<ApplyNode>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApplyNode {
    pub id: String,
    pub zone: String,
    pub partitions_before: usize,
    pub partitions_after: usize,
}

/// `POST /v1/layout/skip-dead-nodes`: let a transition complete without nodes that will never come
/// back (every node with a role in an active version and seen down now).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SkipDeadRequest {
    /// Also skip nodes whose data may be the only copy of some writes (see `doc/layout.md`).
    #[serde(default)]
    pub allow_missing_data: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SkipDeadResponse {
    /// The current layout version, which the skipped nodes now count as having reached.
    pub version: u64,
    /// Hex ids of the nodes skipped.
    pub skipped: Vec<String>,
    /// Whether a transition is still in progress (waiting for live nodes).
    pub in_transition: bool,
}

/// `POST /v1/layout/revert`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RevertResponse {
    pub reverted: bool,
}

// ---------------------------------------------------------------------------------------------------
// Access keys and buckets

/// A key's rights on a bucket, or a bucket's grant to a key: `id` and `name` are the other side's
/// (the bucket's in [`KeyInfo::buckets`], the key's in [`BucketInfo::keys`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    pub id: String,
    pub name: String,
    pub read: bool,
    pub write: bool,
    pub owner: bool,
}

/// `POST /v1/keys`, `/v1/keys/import`, `/v1/keys/allow`, `GET /v1/keys/info`; `key create --json`,
/// `key info --json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyInfo {
    pub id: String,
    pub name: String,
    pub allow_create_bucket: bool,
    pub buckets: Vec<Grant>,
    /// The one field that is **absent** rather than `null`: only at creation (and import), or with
    /// `show_secret=true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// One key of `GET /v1/keys`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyListItem {
    pub id: String,
    pub name: String,
}

/// `GET /v1/keys`; `key list --json` prints `keys`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyList {
    pub keys: Vec<KeyListItem>,
}

/// `POST /v1/keys` and `POST /v1/buckets`: create one by name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateRequest {
    pub name: Option<String>,
}

/// `POST /v1/keys/import`: keep a key of another store (`name` defaults to `id`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ImportKeyRequest {
    pub id: Option<String>,
    pub secret: Option<String>,
    pub name: Option<String>,
}

/// `POST /v1/keys/delete` and `POST /v1/keys/allow` (`key` is an id or a name).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyRequest {
    pub key: Option<String>,
    /// `allow` only: may the key create buckets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_bucket: Option<bool>,
}

/// `POST /v1/keys/delete`, `POST /v1/buckets/delete`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Deleted {
    pub id: String,
    pub deleted: bool,
}

/// One bucket of `GET /v1/buckets`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BucketListItem {
    pub id: String,
    pub name: String,
    pub created: u64,
}

/// `GET /v1/buckets`, sorted by name; `bucket list --json` prints `buckets`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BucketList {
    pub buckets: Vec<BucketListItem>,
}

/// A name of a bucket that only one key sees.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LocalAlias {
    pub key: String,
    pub alias: String,
}

/// `POST /v1/buckets`, `GET /v1/buckets/info`, `POST /v1/buckets/alias|allow|deny`;
/// `bucket info --json`. `name` and `created` are `null` for a deleted bucket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BucketInfo {
    pub id: String,
    pub name: Option<String>,
    pub local_aliases: Vec<LocalAlias>,
    pub created: Option<u64>,
    pub objects: u64,
    pub bytes: u64,
    pub keys: Vec<Grant>,
    /// The admins' switch (`bucket public`): every object readable (GET/HEAD) without a signature.
    #[serde(default)]
    pub public_read: bool,
    /// The bucket's canned ACL, as PutBucketAcl sets it: `private` or `public-read` (which opens the
    /// listing, as on AWS).
    #[serde(default)]
    pub acl: String,
    /// The static website configuration (`bucket website`, PutBucketWebsite); `null` when off.
    #[serde(default)]
    pub website: Option<WebsiteInfo>,
}

/// A bucket's website configuration as `bucket info` shows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WebsiteInfo {
    pub index_document: Option<String>,
    pub error_document: Option<String>,
    /// `RedirectAllRequestsTo` as `protocol://host` (or just `host`).
    #[serde(default)]
    pub redirect_all: Option<String>,
    #[serde(default)]
    pub routing_rules: usize,
}

/// `POST /v1/buckets/website`: serve a bucket as a website (`allow: true`, with its index document,
/// default `index.html`, and optional error document) or stop (`allow: false`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WebsiteRequest {
    pub bucket: Option<String>,
    pub allow: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_document: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_document: Option<String>,
}

/// `POST /v1/buckets/public`: open (`read: true`) or close every object of a bucket to anonymous
/// reads.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PublicRequest {
    pub bucket: Option<String>,
    pub read: Option<bool>,
}

/// `POST /v1/buckets/delete` (`bucket` is a name or an id).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BucketRequest {
    pub bucket: Option<String>,
}

/// `POST /v1/buckets/alias` (`bucket`, `alias`, `key`) and `/v1/buckets/unalias` (`alias`, `key`):
/// a global name, or with `key` a name only that key sees.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AliasRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    pub alias: Option<String>,
    pub key: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Unaliased {
    pub alias: String,
    pub removed: bool,
}

/// `POST /v1/buckets/allow` (adds the given rights) and `/v1/buckets/deny` (removes them); a right
/// missing or `false` is left as it is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RightsRequest {
    pub bucket: Option<String>,
    pub key: Option<String>,
    pub read: Option<bool>,
    pub write: Option<bool>,
    pub owner: Option<bool>,
}

// ---------------------------------------------------------------------------------------------------
// Workers, repair and statistics

/// One row of `worker list --json` and its state, and one row of `worker get --json` (a tunable with
/// its bounds): the worker registry's own serde types, from `util` (a leaf like this module), so the
/// wire shape and the registry cannot drift apart.
pub use crate::util::background::{
    TunableInfo as Variable, WorkerState, WorkerStatus as WorkerInfo,
};

/// `GET /v1/workers`: `worker list --json` prints `workers`, `worker get --json` `variables`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Workers {
    pub workers: Vec<WorkerInfo>,
    pub variables: Vec<Variable>,
}

/// `POST /v1/workers/set`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SetVariableRequest {
    pub name: Option<String>,
    pub value: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VariableSet {
    pub name: String,
    pub value: u64,
}

/// `POST /v1/repair/scrub`: no `command` starts a scrub.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ScrubRequest {
    pub command: Option<ScrubCommand>,
}

/// The scrub's state after a command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScrubStatus {
    pub running: bool,
    pub paused: bool,
    /// Last block checked, as the 32 bytes of its hash (a JSON array of numbers), `null` if none.
    pub position: Option<Vec<u8>>,
    pub checked: u64,
    pub corrupted: u64,
    pub started_at: Option<u64>,
    pub last_completed: Option<u64>,
}

/// `POST /v1/repair/blocks`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScanStarted {
    /// Always `started`.
    pub scan: String,
}

/// One table of `POST /v1/repair/tables`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableSynced {
    pub table: String,
    /// Every replica of every partition stored here was reached.
    pub synced: bool,
}

/// `POST /v1/repair/tables`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TablesRepaired {
    pub tables: Vec<TableSynced>,
}

/// How a table's last full anti-entropy pass went.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LastFullSync {
    pub at_msec: u64,
    pub complete: bool,
    pub partitions_differing: usize,
    pub entries_pushed: usize,
}

/// One metadata table of `stats --json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableStats {
    pub table: String,
    pub entries: usize,
    pub merkle_todo: usize,
    pub gc_todo: usize,
    pub local_writes: u64,
    /// `null` before the first pass.
    pub last_full_sync: Option<LastFullSync>,
}

/// One data directory of the block statistics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataDir {
    pub path: String,
    /// `null` when the capacity is not configured.
    pub capacity: Option<u64>,
    pub read_only: bool,
    /// `null` when the file system could not be queried.
    pub avail: Option<u64>,
    pub total: Option<u64>,
}

/// The `blocks` section of `stats --json`; counters since the node started.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlockStats {
    pub referenced_blocks: usize,
    pub resync_queue: usize,
    pub resync_errors: usize,
    pub buffer_used: u64,
    pub blocks_written: u64,
    pub bytes_written: u64,
    pub blocks_read_local: u64,
    pub blocks_read_remote: u64,
    pub blocks_served: u64,
    pub hedged_reads: u64,
    pub corrupted_found: u64,
    pub data_dirs: Vec<DataDir>,
}

/// `GET /v1/stats`; `stats --json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub node: String,
    pub health: Health,
    pub tables: Vec<TableStats>,
    pub blocks: BlockStats,
}

// ---------------------------------------------------------------------------------------------------
// Block test tools (`grenier debug block-*`, printed as JSON)

/// `POST /v1/debug/blocks/generate`: defaults 1 block of `block_size` bytes, seed 0, reference
/// `debug`, not compressible.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerateRequest {
    pub count: Option<u64>,
    pub size: Option<u64>,
    pub seed: Option<u64>,
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    pub compressible: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Generated {
    /// Hashes (hex) of the blocks written.
    pub blocks: Vec<String>,
    pub elapsed_ms: f64,
}

/// `GET /v1/debug/blocks/local`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LocalBlocks {
    pub blocks: Vec<String>,
}

/// `GET /v1/debug/blocks/<hash>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlockRead {
    pub hash: String,
    pub len: usize,
    pub blake2: String,
    pub served_by: String,
    pub elapsed_ms: f64,
}

/// `POST /v1/debug/blocks/unref`: reference `ref` (default `debug`) to the blocks `hashes` (hex).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UnrefRequest {
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    pub hashes: Option<Vec<String>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Unreferenced {
    pub unreferenced: usize,
}

// ---------------------------------------------------------------------------------------------------
// The test key-value table (`grenier debug kv-*`)

/// `PUT /v1/debug/kv/<partition>/<key>`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KvPutRequest {
    pub value: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KvStored {
    pub partition: String,
    pub key: String,
    pub stored: bool,
}

/// `DELETE /v1/debug/kv/<partition>/<key>` (writes a tombstone).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KvDeleted {
    pub partition: String,
    pub key: String,
    pub deleted: bool,
}

/// `GET /v1/debug/kv/<partition>/<key>`, and one entry of a listing (`value` is `null` for a
/// tombstone; bytes that are not UTF-8 are replaced).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KvEntry {
    pub key: String,
    pub value: Option<String>,
}

/// `GET /v1/debug/kv/<partition>`; `debug kv-list` prints it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KvList {
    pub partition: String,
    pub entries: Vec<KvEntry>,
}

// ---------------------------------------------------------------------------------------------------
// Shared by every endpoint

/// Every error answer: `{"error": "<what went wrong and what to do>"}` with a 4xx/5xx status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// The body of a request without parameters (`{}`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Empty {}

/// `GET /health` (no token; 503 when `unavailable`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    pub health: Health,
    pub partitions: usize,
    pub partitions_all_replicas_up: usize,
    pub partitions_quorum_up: usize,
    pub partitions_unavailable: usize,
    pub storage_nodes: usize,
    pub storage_nodes_up: usize,
}

#[cfg(test)]
mod tests {
    use serde::Serialize;
    use serde::de::DeserializeOwned;
    use serde_json::{Value, json};

    use super::*;

    /// `v` serializes to exactly `expected` (names, nesting, null vs absent), and `expected` parses back
    /// into a value equal to `v`: what the CLI prints with `--json` is what the server sent.
    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
        v: &T,
        expected: Value,
    ) {
        let got = serde_json::to_value(v).unwrap();
        assert_eq!(got, expected);
        let back: T = serde_json::from_value(expected).unwrap();
        assert_eq!(&back, v);
    }

    fn transition() -> (Transition, Value) {
        (
            Transition {
                active_versions: vec![1, 2],
                read_version: 1,
                nodes: vec![TransitionNode {
                    id: "aa".into(),
                    ack: 2,
                    sync: 1,
                    sync_ack: 1,
                }],
            },
            json!({"active_versions": [1, 2], "read_version": 1,
                   "nodes": [{"id": "aa", "ack": 2, "sync": 1, "sync_ack": 1}]}),
        )
    }

    #[test]
    fn node_id_json() {
        round_trip(
            &NodeIdentity {
                id: "ab12".into(),
                addr: Some("10.0.0.1:3901".into()),
            },
            json!({"id": "ab12", "addr": "10.0.0.1:3901"}),
        );
        round_trip(
            &NodeIdentity {
                id: "ab12".into(),
                addr: None,
            },
            json!({"id": "ab12", "addr": null}),
        );
    }

    #[test]
    fn status_json() {
        let role = NodeStatus {
            id: "aa".into(),
            hostname: Some("h1".into()),
            addr: Some("127.0.0.1:3901".into()),
            zone: Some("paris".into()),
            capacity: Some(1 << 30),
            gateway: false,
            up: true,
            last_seen_msec: Some(5),
            rtt_ms: Some(0.25),
            release: Some("0.1.0".into()),
            layout_version: Some(1),
            data_avail: Some(10),
            data_total: Some(20),
            meta_avail: Some(30),
        };
        let no_role = NodeStatus {
            id: "bb".into(),
            hostname: None,
            addr: None,
            zone: None,
            capacity: None,
            gateway: false,
            up: false,
            last_seen_msec: None,
            rtt_ms: None,
            release: None,
            layout_version: None,
            data_avail: None,
            data_total: None,
            meta_avail: None,
        };
        round_trip(
            &ClusterStatus {
                report: HealthReport {
                    health: Health::Degraded,
                    partitions: 256,
                    partitions_all_replicas_up: 200,
                    partitions_quorum_up: 56,
                    partitions_unavailable: 0,
                    storage_nodes: 2,
                    storage_nodes_up: 1,
                },
                layout_version: 1,
                nodes: vec![role, no_role],
            },
            json!({
                "health": "degraded", "layout_version": 1, "partitions": 256,
                "partitions_all_replicas_up": 200, "partitions_quorum_up": 56, "partitions_unavailable": 0,
                "storage_nodes": 2, "storage_nodes_up": 1,
                "nodes": [
                    {"id": "aa", "hostname": "h1", "addr": "127.0.0.1:3901", "zone": "paris",
                     "capacity": 1u64 << 30, "gateway": false, "up": true, "last_seen_msec": 5, "rtt_ms": 0.25,
                     "release": "0.1.0", "layout_version": 1, "data_avail": 10, "data_total": 20,
                     "meta_avail": 30},
                    {"id": "bb", "hostname": null, "addr": null, "zone": null, "capacity": null,
                     "gateway": false, "up": false, "last_seen_msec": null, "rtt_ms": null, "release": null,
                     "layout_version": null, "data_avail": null, "data_total": null, "meta_avail": null},
                ],
            }),
        );
        for h in ["healthy", "degraded", "unavailable"] {
            let parsed: Health = serde_json::from_value(json!(h)).unwrap();
            assert_eq!(parsed.to_string(), h);
        }
    }

    #[test]
    fn layout_show_json() {
        let (t, tj) = transition();
        let role = Role {
            id: "aa".into(),
            zone: "paris".into(),
            capacity: Some(100),
            gateway: false,
            tags: vec!["ssd".into()],
        };
        let gw = Role {
            id: "cc".into(),
            zone: "lyon".into(),
            capacity: None,
            gateway: true,
            tags: vec![],
        };
        round_trip(
            &LayoutShow {
                version: 2,
                transition: t.clone(),
                replication_factor: 3,
                zone_redundancy: "max".into(),
                effective_zone_redundancy: 1,
                partition_size: 10,
                usable_capacity: 2560,
                roles: vec![role.clone(), gw.clone()],
                staged: vec![
                    StagedRole::Role(gw),
                    StagedRole::Remove {
                        id: "bb".into(),
                        remove: true,
                    },
                ],
                staged_parameters: Some(StagedParameters {
                    zone_redundancy: "2".into(),
                }),
                nodes_usage: vec![NodeUsage {
                    id: "aa".into(),
                    zone: "paris".into(),
                    partitions: 256,
                    usable_capacity: 2560,
                    capacity: Some(100),
                }],
                zones: vec![ZoneUsage {
                    zone: "paris".into(),
                    nodes: 1,
                    usable_capacity: 2560,
                }],
                partitions: vec![PartitionNodes {
                    partition: 0,
                    nodes: vec!["aa".into()],
                }],
            },
            json!({
                "version": 2, "transition": tj, "replication_factor": 3, "zone_redundancy": "max",
                "effective_zone_redundancy": 1, "partition_size": 10, "usable_capacity": 2560,
                "roles": [
                    {"id": "aa", "zone": "paris", "capacity": 100, "gateway": false, "tags": ["ssd"]},
                    {"id": "cc", "zone": "lyon", "capacity": null, "gateway": true, "tags": []},
                ],
                "staged": [
                    {"id": "cc", "zone": "lyon", "capacity": null, "gateway": true, "tags": []},
                    {"id": "bb", "remove": true},
                ],
                "staged_parameters": {"zone_redundancy": "2"},
                "nodes_usage": [{"id": "aa", "zone": "paris", "partitions": 256, "usable_capacity": 2560,
                                 "capacity": 100}],
                "zones": [{"zone": "paris", "nodes": 1, "usable_capacity": 2560}],
                "partitions": [{"partition": 0, "nodes": ["aa"]}],
            }),
        );
        // Nothing staged: `staged_parameters` is null, not absent.
        let empty = LayoutShow {
            version: 0,
            transition: t,
            replication_factor: 1,
            zone_redundancy: "max".into(),
            effective_zone_redundancy: 0,
            partition_size: 0,
            usable_capacity: 0,
            roles: vec![],
            staged: vec![],
            staged_parameters: None,
            nodes_usage: vec![],
            zones: vec![],
            partitions: vec![],
        };
        let v = serde_json::to_value(&empty).unwrap();
        assert_eq!(v["staged_parameters"], Value::Null);
        assert!(v.as_object().unwrap().contains_key("staged_parameters"));
        round_trip(&empty, v.clone());
        // Role round-trips on its own too (assign's answer).
        round_trip(
            &AssignResponse {
                staged: "aa".into(),
                role: role.clone(),
            },
            json!({"staged": "aa", "role": {"id": "aa", "zone": "paris", "capacity": 100,
                   "gateway": false, "tags": ["ssd"]}}),
        );
    }

    #[test]
    fn layout_history_and_apply_json() {
        let (t, tj) = transition();
        round_trip(
            &LayoutHistory {
                current_version: 2,
                versions: vec![HistoryVersion {
                    entry: HistoryEntry {
                        version: 1,
                        applied_msec: 7,
                        storage_nodes: 3,
                        gateways: 0,
                        zones: 3,
                        usable_capacity: 99,
                        moved: 768,
                    },
                    status: "historical".into(),
                }],
                transition: t,
            },
            json!({"current_version": 2, "transition": tj, "versions": [
                {"version": 1, "applied_msec": 7, "storage_nodes": 3, "gateways": 0, "zones": 3,
                 "usable_capacity": 99, "moved": 768, "status": "historical"}]}),
        );
        round_trip(
            &ApplyResponse {
                version: 1,
                moved: 768,
                partition_size: 10,
                usable_capacity: 2560,
                zone_redundancy: 3,
                nodes: vec![ApplyNode {
                    id: "aa".into(),
                    zone: "paris".into(),
                    partitions_before: 0,
                    partitions_after: 256,
                }],
            },
            json!({"version": 1, "moved": 768, "partition_size": 10, "usable_capacity": 2560,
                   "zone_redundancy": 3, "nodes": [{"id": "aa", "zone": "paris", "partitions_before": 0,
                   "partitions_after": 256}]}),
        );
    }

    #[test]
    fn cluster_requests_parse_as_the_cli_sends_them() {
        let a: AssignRequest = serde_json::from_value(json!({"node": "ab", "zone": "z",
            "capacity": null, "gateway": true, "tags": ["t"]}))
        .unwrap();
        assert_eq!(a.capacity, None);
        assert_eq!(a.gateway, Some(true));
        let c: LayoutConfigRequest =
            serde_json::from_value(json!({"zone_redundancy": "max"})).unwrap();
        assert_eq!(
            c.zone_redundancy,
            Some(ZoneRedundancyArg::Text("max".into()))
        );
        let c: LayoutConfigRequest = serde_json::from_value(json!({"zone_redundancy": 2})).unwrap();
        assert!(matches!(
            c.zone_redundancy,
            Some(ZoneRedundancyArg::Number(_))
        ));
        let r: ApplyRequest = serde_json::from_value(json!({"version": null})).unwrap();
        assert_eq!(r.version, None);
        let e: RemoveRequest = serde_json::from_value(json!({})).unwrap();
        assert_eq!(e.node, None);
    }

    fn grant(id: &str, name: &str) -> (Grant, Value) {
        (
            Grant {
                id: id.into(),
                name: name.into(),
                read: true,
                write: false,
                owner: true,
            },
            json!({"id": id, "name": name, "read": true, "write": false, "owner": true}),
        )
    }

    #[test]
    fn key_json() {
        let (g, gj) = grant("b0", "photos");
        let mut key = KeyInfo {
            id: "GK1".into(),
            name: "alice".into(),
            allow_create_bucket: true,
            buckets: vec![g],
            secret: Some("s3cr3t".into()),
        };
        round_trip(
            &key,
            json!({"id": "GK1", "name": "alice", "allow_create_bucket": true, "buckets": [gj],
                   "secret": "s3cr3t"}),
        );
        // Without the secret (`key info` without --show-secret): absent, not null.
        key.secret = None;
        round_trip(
            &key,
            json!({"id": "GK1", "name": "alice", "allow_create_bucket": true, "buckets": [gj]}),
        );
        round_trip(
            &KeyList {
                keys: vec![KeyListItem {
                    id: "GK1".into(),
                    name: "alice".into(),
                }],
            },
            json!({"keys": [{"id": "GK1", "name": "alice"}]}),
        );
        round_trip(
            &Deleted {
                id: "GK1".into(),
                deleted: true,
            },
            json!({"id": "GK1", "deleted": true}),
        );
    }

    #[test]
    fn bucket_json() {
        let (g, gj) = grant("GK1", "alice");
        round_trip(
            &BucketInfo {
                id: "b0".into(),
                name: Some("photos".into()),
                local_aliases: vec![LocalAlias {
                    key: "GK1".into(),
                    alias: "pics".into(),
                }],
                created: Some(9),
                objects: 3,
                bytes: 4096,
                keys: vec![g],
                public_read: true,
                acl: "private".into(),
                website: None,
            },
            json!({"id": "b0", "name": "photos", "local_aliases": [{"key": "GK1", "alias": "pics"}],
                   "created": 9, "objects": 3, "bytes": 4096, "keys": [gj],
                   "public_read": true, "acl": "private", "website": null}),
        );
        round_trip(
            &WebsiteInfo {
                index_document: Some("index.html".into()),
                error_document: None,
                redirect_all: None,
                routing_rules: 2,
            },
            json!({"index_document": "index.html", "error_document": null,
                   "redirect_all": null, "routing_rules": 2}),
        );
        round_trip(
            &WebsiteRequest {
                bucket: Some("site".into()),
                allow: Some(true),
                index_document: Some("home.html".into()),
                error_document: None,
            },
            json!({"bucket": "site", "allow": true, "index_document": "home.html"}),
        );
        let r: PublicRequest =
            serde_json::from_value(json!({"bucket": "media", "read": true})).unwrap();
        assert_eq!((r.bucket.as_deref(), r.read), (Some("media"), Some(true)));
        round_trip(
            &BucketList {
                buckets: vec![BucketListItem {
                    id: "b0".into(),
                    name: "photos".into(),
                    created: 9,
                }],
            },
            json!({"buckets": [{"id": "b0", "name": "photos", "created": 9}]}),
        );
        round_trip(
            &Unaliased {
                alias: "pics".into(),
                removed: true,
            },
            json!({"alias": "pics", "removed": true}),
        );
    }

    #[test]
    fn key_and_bucket_requests_parse_as_the_cli_sends_them() {
        let r: RightsRequest = serde_json::from_value(
            json!({"bucket": "b", "key": "k", "read": true, "write": false, "owner": false}),
        )
        .unwrap();
        assert_eq!(
            (r.read, r.write, r.owner),
            (Some(true), Some(false), Some(false))
        );
        let a: AliasRequest = serde_json::from_value(json!({"alias": "x", "key": null})).unwrap();
        assert_eq!((a.bucket, a.key), (None, None));
        let k: KeyRequest =
            serde_json::from_value(json!({"key": "k", "create_bucket": true})).unwrap();
        assert_eq!(k.create_bucket, Some(true));
        let i: ImportKeyRequest =
            serde_json::from_value(json!({"id": "GK1", "secret": "s"})).unwrap();
        assert_eq!(i.name, None);
        // What the CLI sends for `key delete`: no `create_bucket`.
        let d = KeyRequest {
            key: Some("k".into()),
            create_bucket: None,
        };
        assert_eq!(serde_json::to_value(&d).unwrap(), json!({"key": "k"}));
    }

    #[test]
    fn workers_json() {
        let busy = WorkerInfo {
            name: "resync".into(),
            state: WorkerState::Busy,
            progress: Some("12 blocks".into()),
            queue_length: Some(4),
            done: 12,
            errors: 1,
            last_error: Some("peer down".into()),
        };
        let idle = WorkerInfo {
            name: "scrub".into(),
            state: WorkerState::Idle,
            progress: None,
            queue_length: None,
            done: 0,
            errors: 0,
            last_error: None,
        };
        round_trip(
            &Workers {
                workers: vec![busy, idle],
                variables: vec![Variable {
                    name: "resync-tranquility".into(),
                    value: 2,
                    min: 0,
                    max: 100,
                    description: "sleep".into(),
                }],
            },
            json!({
                "workers": [
                    {"name": "resync", "state": "busy", "progress": "12 blocks", "queue_length": 4,
                     "done": 12, "errors": 1, "last_error": "peer down"},
                    {"name": "scrub", "state": "idle", "progress": null, "queue_length": null,
                     "done": 0, "errors": 0, "last_error": null},
                ],
                "variables": [{"name": "resync-tranquility", "value": 2, "min": 0, "max": 100,
                               "description": "sleep"}],
            }),
        );
        for s in ["busy", "throttled", "idle", "paused"] {
            let parsed: WorkerState = serde_json::from_value(json!(s)).unwrap();
            assert_eq!(parsed.to_string(), s);
        }
        round_trip(
            &VariableSet {
                name: "resync-tranquility".into(),
                value: 0,
            },
            json!({"name": "resync-tranquility", "value": 0}),
        );
    }

    #[test]
    fn repair_json() {
        round_trip(
            &ScrubStatus {
                running: true,
                paused: false,
                position: Some(vec![7; 32]),
                checked: 10,
                corrupted: 0,
                started_at: Some(5),
                last_completed: None,
            },
            json!({"running": true, "paused": false, "position": vec![7; 32], "checked": 10,
                   "corrupted": 0, "started_at": 5, "last_completed": null}),
        );
        round_trip(
            &ScanStarted {
                scan: "started".into(),
            },
            json!({"scan": "started"}),
        );
        round_trip(
            &TablesRepaired {
                tables: vec![TableSynced {
                    table: "object".into(),
                    synced: false,
                }],
            },
            json!({"tables": [{"table": "object", "synced": false}]}),
        );
        let s: ScrubRequest = serde_json::from_value(json!({"command": "pause"})).unwrap();
        assert_eq!(s.command, Some(ScrubCommand::Pause));
        assert!(serde_json::from_value::<ScrubRequest>(json!({"command": "stop"})).is_err());
    }

    #[test]
    fn stats_json() {
        let synced = TableStats {
            table: "key".into(),
            entries: 3,
            merkle_todo: 0,
            gc_todo: 1,
            local_writes: 9,
            last_full_sync: Some(LastFullSync {
                at_msec: 100,
                complete: true,
                partitions_differing: 2,
                entries_pushed: 5,
            }),
        };
        let fresh = TableStats {
            last_full_sync: None,
            table: "bucket".into(),
            ..synced.clone()
        };
        round_trip(
            &Stats {
                node: "aa".into(),
                health: Health::Healthy,
                tables: vec![synced, fresh],
                blocks: BlockStats {
                    referenced_blocks: 1,
                    resync_queue: 2,
                    resync_errors: 3,
                    buffer_used: 4,
                    blocks_written: 5,
                    bytes_written: 6,
                    blocks_read_local: 7,
                    blocks_read_remote: 8,
                    blocks_served: 9,
                    hedged_reads: 10,
                    corrupted_found: 11,
                    data_dirs: vec![DataDir {
                        path: "/data".into(),
                        capacity: None,
                        read_only: false,
                        avail: Some(1),
                        total: Some(2),
                    }],
                },
            },
            json!({
                "node": "aa", "health": "healthy",
                "tables": [
                    {"table": "key", "entries": 3, "merkle_todo": 0, "gc_todo": 1, "local_writes": 9,
                     "last_full_sync": {"at_msec": 100, "complete": true, "partitions_differing": 2,
                                        "entries_pushed": 5}},
                    {"table": "bucket", "entries": 3, "merkle_todo": 0, "gc_todo": 1, "local_writes": 9,
                     "last_full_sync": null},
                ],
                "blocks": {
                    "referenced_blocks": 1, "resync_queue": 2, "resync_errors": 3, "buffer_used": 4,
                    "blocks_written": 5, "bytes_written": 6, "blocks_read_local": 7,
                    "blocks_read_remote": 8, "blocks_served": 9, "hedged_reads": 10,
                    "corrupted_found": 11,
                    "data_dirs": [{"path": "/data", "capacity": null, "read_only": false, "avail": 1,
                                   "total": 2}],
                },
            }),
        );
    }

    #[test]
    fn block_tools_json() {
        round_trip(
            &Generated {
                blocks: vec!["ab".into()],
                elapsed_ms: 1.5,
            },
            json!({"blocks": ["ab"], "elapsed_ms": 1.5}),
        );
        round_trip(
            &LocalBlocks {
                blocks: vec!["ab".into()],
            },
            json!({"blocks": ["ab"]}),
        );
        round_trip(
            &BlockRead {
                hash: "ab".into(),
                len: 10,
                blake2: "cd".into(),
                served_by: "ee".into(),
                elapsed_ms: 0.25,
            },
            json!({"hash": "ab", "len": 10, "blake2": "cd", "served_by": "ee", "elapsed_ms": 0.25}),
        );
        round_trip(
            &Unreferenced { unreferenced: 2 },
            json!({"unreferenced": 2}),
        );
        // `ref` on the wire, a keyword in Rust.
        let g: GenerateRequest =
            serde_json::from_value(json!({"count": 2, "ref": "r", "size": null})).unwrap();
        assert_eq!(
            (g.count, g.size, g.reference.as_deref()),
            (Some(2), None, Some("r"))
        );
        let u: UnrefRequest =
            serde_json::from_value(json!({"ref": "r", "hashes": ["ab"]})).unwrap();
        assert_eq!(u.hashes, Some(vec!["ab".to_string()]));
    }

    #[test]
    fn kv_json() {
        round_trip(
            &KvStored {
                partition: "p".into(),
                key: "k".into(),
                stored: true,
            },
            json!({"partition": "p", "key": "k", "stored": true}),
        );
        round_trip(
            &KvDeleted {
                partition: "p".into(),
                key: "k".into(),
                deleted: true,
            },
            json!({"partition": "p", "key": "k", "deleted": true}),
        );
        round_trip(
            &KvList {
                partition: "p".into(),
                entries: vec![
                    KvEntry {
                        key: "a".into(),
                        value: Some("1".into()),
                    },
                    KvEntry {
                        key: "b".into(),
                        value: None,
                    },
                ],
            },
            json!({"partition": "p", "entries": [{"key": "a", "value": "1"},
                                                 {"key": "b", "value": null}]}),
        );
    }

    #[test]
    fn errors_health_and_empty_json() {
        round_trip(
            &ErrorBody {
                error: "no such bucket".into(),
            },
            json!({"error": "no such bucket"}),
        );
        round_trip(&Empty {}, json!({}));
        round_trip(
            &HealthReport {
                health: Health::Unavailable,
                partitions: 256,
                partitions_all_replicas_up: 0,
                partitions_quorum_up: 0,
                partitions_unavailable: 256,
                storage_nodes: 3,
                storage_nodes_up: 0,
            },
            json!({"health": "unavailable", "partitions": 256, "partitions_all_replicas_up": 0,
                   "partitions_quorum_up": 0, "partitions_unavailable": 256, "storage_nodes": 3,
                   "storage_nodes_up": 0}),
        );
    }
}
