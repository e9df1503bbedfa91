//! The `grenier` command line: `server` and `dev` run a node; every other command is a thin client of the
//! admin API of a running node (see [`crate::admin`]). `anyhow` is used here and in `main` only.
//! Answers are read into the typed bodies of [`crate::admin::api`], and `--json` re-serializes the
//! typed value.

mod blocks;
mod client;
pub mod dev;
mod keys;
mod table;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use crate::admin::api;
use crate::util::config::Config;
use crate::util::size::{format_size, parse_size};
use crate::util::url;
use client::AdminClient;
use table::format_table;

#[derive(Parser, Debug)]
#[command(
    name = "grenier",
    version,
    about = "S3-compatible geo-distributed object store"
)]
pub struct Cli {
    /// Configuration file (an option of `grenier` itself: put it before the command, as in
    /// `grenier -c node.toml status`, since `layout assign` uses `-c` for the capacity).
    #[arg(
        short = 'c',
        long = "config",
        env = "GRENIER_CONFIG",
        default_value = "/etc/grenier.toml"
    )]
    pub config: PathBuf,
    /// Admin API URL (default: from the config file's [admin] section).
    #[arg(long, env = "GRENIER_ADMIN_URL", global = true)]
    pub admin_url: Option<String>,
    /// Admin API token (default: from the config file's [admin] section).
    #[arg(
        long,
        env = "GRENIER_ADMIN_TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a node with the configuration file.
    Server,
    /// One-command local store: a single node with its layout applied, in the foreground.
    Dev(dev::DevArgs),
    /// This node's identity.
    #[command(subcommand)]
    Node(NodeCmd),
    /// Nodes, layout version and cluster health.
    Status(JsonFlag),
    /// Cluster layout: roles, staged changes, partition assignment.
    #[command(subcommand)]
    Layout(LayoutCmd),
    /// Metadata tables on this node: entries, pending Merkle updates, tombstones waiting for GC.
    Stats(JsonFlag),
    /// Repair work: `tables` runs a full anti-entropy pass of every metadata table now; `blocks` checks
    /// that this node holds exactly the blocks it should; `scrub` verifies every local block.
    Repair {
        what: RepairWhat,
        /// For `scrub`: start (default), pause, resume or cancel.
        #[arg(value_enum)]
        action: Option<blocks::ScrubAction>,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// S3 access keys.
    #[command(subcommand)]
    Key(keys::KeyCmd),
    /// Buckets and who may use them.
    #[command(subcommand)]
    Bucket(keys::BucketCmd),
    /// Background workers (resync, scrub) and their tunables.
    #[command(subcommand)]
    Worker(blocks::WorkerCmd),
    /// Low-level tools for testing the replicated metadata engine and the block store.
    #[command(subcommand, hide = true)]
    Debug(DebugCmd),
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum RepairWhat {
    /// Compare every metadata table with the other replicas and push differences.
    Tables,
    /// Verify every local block against its hash; corrupted ones are moved aside and refetched.
    Scrub,
    /// Queue a check of every block this node references or holds: fetch missing ones, hand over and
    /// delete ones it no longer stores.
    Blocks,
}

#[derive(Subcommand, Debug)]
pub enum DebugCmd {
    /// Write a value into the test key-value table (quorum write).
    KvPut {
        partition: String,
        key: String,
        value: String,
    },
    /// Read a value (quorum read); exits non-zero if absent.
    KvGet { partition: String, key: String },
    /// Delete a value (writes a tombstone).
    KvDelete { partition: String, key: String },
    /// List a partition's entries (quorum range read), as JSON.
    KvList {
        partition: String,
        #[arg(long)]
        start: Option<String>,
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long)]
        reverse: bool,
    },
    #[command(flatten)]
    Block(blocks::BlockDebugCmd),
}

#[derive(Args, Debug)]
pub struct JsonFlag {
    /// Print one JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum NodeCmd {
    /// Print `<id>@<rpc_public_addr>`.
    Id(JsonFlag),
    /// Connect to a peer given as `<id>@<host:port>`.
    Connect { peer: String },
}

#[derive(Subcommand, Debug)]
pub enum LayoutCmd {
    /// Show the current layout, staged changes and usable capacity.
    Show(JsonFlag),
    /// Stage a role for a node: its zone and capacity, or --gateway.
    Assign {
        /// Node id or unique prefix of it.
        node: String,
        #[arg(short = 'z', long)]
        zone: Option<String>,
        /// Capacity, like 500G or 2T.
        #[arg(short = 'c', long)]
        capacity: Option<String>,
        /// Serve the APIs but store nothing.
        #[arg(long, conflicts_with = "capacity")]
        gateway: bool,
        #[arg(short = 't', long = "tag")]
        tags: Vec<String>,
    },
    /// Stage the removal of a node from the layout.
    Remove { node: String },
    /// Stage layout parameters.
    Config {
        /// A number of zones, or `max`.
        #[arg(long)]
        zone_redundancy: String,
    },
    /// Compute and apply the staged layout.
    Apply {
        /// Refuse unless this is the next version (current + 1).
        #[arg(long)]
        version: Option<u64>,
    },
    /// Drop staged changes.
    Revert,
    /// Applied versions.
    History(JsonFlag),
    /// Let a layout transition complete without the nodes (with a role in an active version) that
    /// are down and will never come back; refused if that could lose acknowledged writes.
    SkipDeadNodes {
        /// Skip them even if some writes may exist only on them, or if they keep a role.
        #[arg(long)]
        allow_missing_data: bool,
        #[arg(long)]
        json: bool,
    },
}

/// Run a client command against the admin API.
pub async fn run_client(cli: &Cli) -> Result<()> {
    let client = admin_client(cli)?;
    match &cli.command {
        Command::Server | Command::Dev(_) => unreachable!("handled by main"),
        Command::Node(NodeCmd::Id(f)) => {
            let v: api::NodeIdentity = client.get_as("/v1/node").await?;
            if f.json {
                print_json(&v);
            } else {
                let addr = v.addr.as_deref().unwrap_or("<no rpc_public_addr>");
                println!("{}@{}", v.id, addr);
            }
        }
        Command::Node(NodeCmd::Connect { peer }) => {
            let req = api::ConnectRequest {
                peer: Some(peer.clone()),
            };
            let v: api::ConnectResponse = client.post_as("/v1/node/connect", &req).await?;
            println!("connected to {}", v.connected);
        }
        Command::Status(f) => {
            let v: api::ClusterStatus = client.get_as("/v1/status").await?;
            if f.json {
                print_json(&v)
            } else {
                print!("{}", human_status(&v))
            }
        }
        Command::Layout(cmd) => layout(&client, cmd).await?,
        Command::Stats(f) => {
            let v: api::Stats = client.get_as("/v1/stats").await?;
            if f.json {
                print_json(&v);
            } else {
                print!("{}", human_stats(&v));
            }
        }
        Command::Debug(cmd) => debug(&client, cmd).await?,
        Command::Worker(cmd) => blocks::worker(&client, cmd).await?,
        Command::Key(cmd) => keys::key(&client, cmd).await?,
        Command::Bucket(cmd) => keys::bucket(&client, cmd).await?,
        Command::Repair {
            what,
            action,
            yes: _,
        } => match what {
            RepairWhat::Tables => repair_tables(&client).await?,
            RepairWhat::Scrub => blocks::repair_scrub(&client, action.unwrap_or_default()).await?,
            RepairWhat::Blocks => blocks::repair_blocks(&client).await?,
        },
    }
    Ok(())
}

fn admin_client(cli: &Cli) -> Result<AdminClient> {
    let (mut url, mut token) = (cli.admin_url.clone(), cli.admin_token.clone());
    if url.is_none() || token.is_none() {
        match Config::load(&cli.config) {
            Ok(cfg) => {
                if url.is_none() {
                    let mut a = cfg.admin.api_bind_addr;
                    if a.ip().is_unspecified() {
                        a.set_ip(if a.is_ipv4() {
                            [127, 0, 0, 1].into()
                        } else {
                            std::net::Ipv6Addr::LOCALHOST.into()
                        });
                    }
                    url = Some(format!("http://{a}"));
                }
                token = token.or(cfg.admin.admin_token);
            }
            Err(e) if url.is_none() => {
                return Err(anyhow::Error::new(e)
                    .context("cannot find the admin API: give -c <config>, or GRENIER_ADMIN_URL and GRENIER_ADMIN_TOKEN"));
            }
            Err(_) => (),
        }
    }
    AdminClient::new(url.as_deref().unwrap_or_default(), token)
}

/// `grenier stats` for humans: the tables, then the blocks.
fn human_stats(v: &api::Stats) -> String {
    let mut rows = vec![
        [
            "TABLE",
            "ENTRIES",
            "MERKLE TODO",
            "GC TODO",
            "LOCAL WRITES",
            "LAST FULL SYNC",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for t in &v.tables {
        rows.push(vec![
            t.table.clone(),
            t.entries.to_string(),
            t.merkle_todo.to_string(),
            t.gc_todo.to_string(),
            t.local_writes.to_string(),
            match &t.last_full_sync {
                None => "not yet".into(),
                Some(l) => format!(
                    "{}, {}",
                    ago_msec(Some(l.at_msec)),
                    if l.complete {
                        "complete"
                    } else {
                        "some replicas unreachable"
                    }
                ),
            },
        ]);
    }
    let mut out = format_table(&rows);
    out.push_str(&blocks::human_stats(&v.blocks));
    out
}

/// `grenier repair tables`: fails naming the tables that could not reach every replica.
async fn repair_tables(client: &AdminClient) -> Result<()> {
    let v: api::TablesRepaired = client.post_as("/v1/repair/tables", &api::Empty {}).await?;
    let mut failed = vec![];
    for t in v.tables {
        if t.synced {
            println!("table {}: in sync with every other replica", t.table);
        } else {
            failed.push(t.table);
        }
    }
    if !failed.is_empty() {
        bail!(
            "tables {} could not reach every replica; see `grenier status` and retry",
            failed.join(", ")
        );
    }
    Ok(())
}

/// Print one JSON document on stdout. Typed values go through a `Value` first, so keys come out in the
/// same (sorted) order as the server's answer.
pub(crate) fn print_json(v: &impl serde::Serialize) {
    let v = serde_json::to_value(v).unwrap_or_default();
    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
}

fn short(id: &str) -> String {
    id.chars().take(16).collect()
}

fn size_or_dash(v: Option<u64>) -> String {
    v.map(format_size).unwrap_or_else(|| "-".into())
}

fn ago_msec(msec: Option<u64>) -> String {
    let Some(t) = msec else {
        return "never".into();
    };
    let now = crate::util::time::now_msec();
    let s = now.saturating_sub(t) / 1000;
    match s {
        0..=2 => "now".into(),
        3..=119 => format!("{s}s ago"),
        120..=7199 => format!("{}min ago", s / 60),
        _ => format!("{}h ago", s / 3600),
    }
}

fn human_status(v: &api::ClusterStatus) -> String {
    let mut out = format!(
        "Cluster health: {} (layout version {}; {}/{} storage nodes up; partitions: {} all replicas up, {} quorum only, {} unavailable)\n\n",
        v.report.health,
        v.layout_version,
        v.report.storage_nodes_up,
        v.report.storage_nodes,
        v.report.partitions_all_replicas_up,
        v.report.partitions_quorum_up,
        v.report.partitions_unavailable,
    );
    if v.layout_version == 0 {
        out.push_str(
            "No layout applied yet: give nodes a role with `grenier layout assign <node> -z ZONE -c CAPACITY`, \
             then `grenier layout apply`.\n\n",
        );
    }
    let mut rows = vec![
        [
            "ID",
            "HOSTNAME",
            "ADDRESS",
            "ZONE",
            "CAPACITY",
            "UP",
            "LAST SEEN",
            "DATA FREE",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for n in &v.nodes {
        let free = match (n.data_avail, n.data_total) {
            (Some(a), Some(t)) if t > 0 => format!("{} ({}%)", format_size(a), a * 100 / t),
            _ => "-".into(),
        };
        rows.push(vec![
            short(&n.id),
            n.hostname.as_deref().unwrap_or("?").into(),
            n.addr.as_deref().unwrap_or("-").into(),
            n.zone.as_deref().unwrap_or("(no role)").into(),
            capacity_cell(n.gateway, n.capacity),
            if n.up { "yes".into() } else { "NO".into() },
            ago_msec(n.last_seen_msec),
            free,
        ]);
    }
    out.push_str(&format_table(&rows));
    out
}

/// One path segment or query value for the admin API.
pub(crate) fn enc(s: &str) -> String {
    url::encode(s, url::Encode::Component)
}

async fn debug(client: &AdminClient, cmd: &DebugCmd) -> Result<()> {
    use hyper::Method;
    let kv_path =
        |partition: &str, key: &str| format!("/v1/debug/kv/{}/{}", enc(partition), enc(key));
    match cmd {
        DebugCmd::KvPut {
            partition,
            key,
            value,
        } => {
            let req = api::KvPutRequest {
                value: Some(value.clone()),
            };
            let _: api::KvStored = client
                .request_as(Method::PUT, &kv_path(partition, key), Some(&req))
                .await?;
        }
        DebugCmd::KvGet { partition, key } => {
            let v: api::KvEntry = client.get_as(&kv_path(partition, key)).await?;
            println!("{}", v.value.unwrap_or_default());
        }
        DebugCmd::KvDelete { partition, key } => {
            let _: api::KvDeleted = client
                .request_as(
                    Method::DELETE,
                    &kv_path(partition, key),
                    None::<&api::Empty>,
                )
                .await?;
        }
        DebugCmd::KvList {
            partition,
            start,
            limit,
            reverse,
        } => {
            let mut q = vec![];
            if let Some(s) = start {
                q.push(format!("start={}", enc(s)));
            }
            if let Some(l) = limit {
                q.push(format!("limit={l}"));
            }
            if *reverse {
                q.push("reverse=true".into());
            }
            let v: api::KvList = client
                .get_as(&format!("/v1/debug/kv/{}?{}", enc(partition), q.join("&")))
                .await?;
            print_json(&v);
        }
        DebugCmd::Block(cmd) => blocks::debug(client, cmd).await?,
    }
    Ok(())
}

async fn layout(client: &AdminClient, cmd: &LayoutCmd) -> Result<()> {
    match cmd {
        LayoutCmd::Show(f) => {
            let v: api::LayoutShow = client.get_as("/v1/layout").await?;
            if f.json {
                print_json(&v)
            } else {
                print!("{}", human_layout(&v))
            }
        }
        LayoutCmd::Assign {
            node,
            zone,
            capacity,
            gateway,
            tags,
        } => {
            layout_assign(
                client,
                node,
                zone.as_deref(),
                capacity.as_deref(),
                *gateway,
                tags,
            )
            .await?
        }
        LayoutCmd::Remove { node } => {
            let req = api::RemoveRequest {
                node: Some(node.clone()),
            };
            let v: api::RemoveResponse = client.post_as("/v1/layout/remove", &req).await?;
            println!(
                "Staged removal of {}. Apply with `grenier layout apply`.",
                short(&v.staged_removal)
            );
        }
        LayoutCmd::Config { zone_redundancy } => {
            let req = api::LayoutConfigRequest {
                zone_redundancy: Some(api::ZoneRedundancyArg::Text(zone_redundancy.clone())),
            };
            let _: api::LayoutConfigResponse = client.post_as("/v1/layout/config", &req).await?;
            println!(
                "Staged zone redundancy {zone_redundancy}. Apply with `grenier layout apply`."
            );
        }
        LayoutCmd::Apply { version } => {
            let req = api::ApplyRequest { version: *version };
            let v: api::ApplyResponse = client.post_as("/v1/layout/apply", &req).await?;
            print!("{}", human_apply(&v));
        }
        LayoutCmd::Revert => {
            let _: api::RevertResponse =
                client.post_as("/v1/layout/revert", &api::Empty {}).await?;
            println!("Staged changes dropped.");
        }
        LayoutCmd::SkipDeadNodes {
            allow_missing_data,
            json,
        } => {
            let req = api::SkipDeadRequest {
                allow_missing_data: *allow_missing_data,
            };
            let v: api::SkipDeadResponse =
                client.post_as("/v1/layout/skip-dead-nodes", &req).await?;
            if *json {
                print_json(&v);
            } else {
                for id in &v.skipped {
                    println!(
                        "Skipped {} in the transition to layout version {}.",
                        &id[..16.min(id.len())],
                        v.version
                    );
                }
                if v.skipped.is_empty() {
                    println!(
                        "Nothing to skip: the nodes down had already reached version {}.",
                        v.version
                    );
                }
                println!(
                    "{}",
                    if v.in_transition {
                        "The transition goes on with the live nodes: follow it with `grenier layout history`."
                    } else {
                        "The transition is complete."
                    }
                );
            }
        }
        LayoutCmd::History(f) => {
            let v: api::LayoutHistory = client.get_as("/v1/layout/history").await?;
            if f.json {
                print_json(&v);
            } else {
                print!("{}", human_history(&v));
            }
        }
    }
    Ok(())
}

async fn layout_assign(
    client: &AdminClient,
    node: &str,
    zone: Option<&str>,
    capacity: Option<&str>,
    gateway: bool,
    tags: &[String],
) -> Result<()> {
    let Some(zone) = zone else {
        bail!("give the node's zone with -z ZONE (one zone = one site)")
    };
    let capacity = match (capacity, gateway) {
        (Some(c), false) => Some(parse_size(c)?),
        (None, true) => None,
        (None, false) => {
            bail!("give the node's capacity with -c CAPACITY (like 500G), or --gateway")
        }
        (Some(_), true) => unreachable!("clap rejects --capacity with --gateway"),
    };
    let req = api::AssignRequest {
        node: Some(node.to_string()),
        zone: Some(zone.to_string()),
        capacity,
        gateway: Some(gateway),
        tags: Some(tags.to_vec()),
    };
    let v: api::AssignResponse = client.post_as("/v1/layout/assign", &req).await?;
    let what = match capacity {
        Some(c) => format!("zone {zone}, capacity {}", format_size(c)),
        None => format!("zone {zone}, gateway"),
    };
    println!("Staged role for {}: {what}.", short(&v.staged));
    println!("Review with `grenier layout show`, then `grenier layout apply`.");
    Ok(())
}

fn human_apply(v: &api::ApplyResponse) -> String {
    let mut out = format!(
        "Applied layout version {}: {} partition replicas move; usable capacity {} (zone redundancy {}).\n\n",
        v.version,
        v.moved,
        format_size(v.usable_capacity),
        v.zone_redundancy
    );
    let mut rows = vec![
        ["NODE", "ZONE", "PARTITIONS BEFORE", "PARTITIONS AFTER"]
            .map(String::from)
            .to_vec(),
    ];
    for n in &v.nodes {
        rows.push(vec![
            short(&n.id),
            n.zone.clone(),
            n.partitions_before.to_string(),
            n.partitions_after.to_string(),
        ]);
    }
    out.push_str(&format_table(&rows));
    out
}

fn human_history(v: &api::LayoutHistory) -> String {
    let mut rows = vec![
        [
            "VERSION",
            "STATUS",
            "APPLIED",
            "STORAGE NODES",
            "GATEWAYS",
            "ZONES",
            "USABLE",
            "MOVED",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for h in &v.versions {
        let e = &h.entry;
        rows.push(vec![
            e.version.to_string(),
            h.status.clone(),
            ago_msec(Some(e.applied_msec)),
            e.storage_nodes.to_string(),
            e.gateways.to_string(),
            e.zones.to_string(),
            format_size(e.usable_capacity),
            e.moved.to_string(),
        ]);
    }
    let mut out = format_table(&rows);
    out.push_str(&transition_line(&v.transition));
    out
}

/// One line on an unfinished layout transition, or nothing.
fn transition_line(t: &api::Transition) -> String {
    if t.active_versions.len() <= 1 {
        return String::new();
    }
    let target = t.active_versions.last().copied().unwrap_or(0);
    let count =
        |k: fn(&api::TransitionNode) -> u64| t.nodes.iter().filter(|n| k(n) >= target).count();
    format!(
        "Transition to version {target} in progress (reads use version {}): {}/{} nodes acknowledged, {} synced, {} switched reads.\n",
        t.read_version,
        count(|n| n.ack),
        t.nodes.len(),
        count(|n| n.sync),
        count(|n| n.sync_ack)
    )
}

fn human_layout(v: &api::LayoutShow) -> String {
    let mut out = format!(
        "Layout version {}, replication factor {}, zone redundancy {} (in force: {})\n\n",
        v.version, v.replication_factor, v.zone_redundancy, v.effective_zone_redundancy
    );
    out.push_str(&transition_line(&v.transition));
    let usage: std::collections::HashMap<&str, &api::NodeUsage> =
        v.nodes_usage.iter().map(|n| (n.id.as_str(), n)).collect();
    let mut rows = vec![
        ["ID", "ZONE", "CAPACITY", "PARTITIONS", "USABLE", "TAGS"]
            .map(String::from)
            .to_vec(),
    ];
    for r in &v.roles {
        let u = usage.get(r.id.as_str());
        rows.push(vec![
            short(&r.id),
            r.zone.clone(),
            capacity_cell(r.gateway, r.capacity),
            u.map(|u| u.partitions.to_string())
                .unwrap_or_else(|| "-".into()),
            u.map(|u| format_size(u.usable_capacity))
                .unwrap_or_else(|| "-".into()),
            r.tags.join(","),
        ]);
    }
    if rows.len() == 1 {
        out.push_str(
            "No roles yet: stage some with `grenier layout assign <node> -z ZONE -c CAPACITY`.\n",
        );
    } else {
        out.push_str(&format_table(&rows));
        out.push('\n');
        for z in &v.zones {
            out.push_str(&format!(
                "Zone {}: {} storage node(s), usable {}\n",
                z.zone,
                z.nodes,
                format_size(z.usable_capacity)
            ));
        }
        out.push_str(&format!(
            "Usable capacity of the cluster: {} (partition size {})\n",
            format_size(v.usable_capacity),
            format_size(v.partition_size)
        ));
    }
    if !v.staged.is_empty() || v.staged_parameters.is_some() {
        out.push_str("\nStaged changes (apply with `grenier layout apply`, drop with `grenier layout revert`):\n");
        let mut rows = vec![["ID", "CHANGE"].map(String::from).to_vec()];
        for s in &v.staged {
            rows.push(match s {
                api::StagedRole::Remove { id, .. } => vec![short(id), "remove".to_string()],
                api::StagedRole::Role(r) if r.gateway => {
                    vec![short(&r.id), format!("zone {}, gateway", r.zone)]
                }
                api::StagedRole::Role(r) => vec![
                    short(&r.id),
                    format!("zone {}, capacity {}", r.zone, size_or_dash(r.capacity)),
                ],
            });
        }
        if let Some(p) = &v.staged_parameters {
            rows.push(vec![
                "(parameters)".into(),
                format!("zone redundancy {}", p.zone_redundancy),
            ]);
        }
        out.push_str(&format_table(&rows));
    }
    out
}

/// A node's capacity, or `gateway` for a node that stores nothing.
fn capacity_cell(gateway: bool, capacity: Option<u64>) -> String {
    if gateway {
        "gateway".into()
    } else {
        size_or_dash(capacity)
    }
}

/// Load the configuration for `server`, with the path in the error.
pub fn load_config(path: &std::path::Path) -> Result<Config> {
    Config::load(path).context("cannot start the node")
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }

    #[test]
    fn config_before_command_and_capacity_after() {
        use clap::Parser;
        let cli = super::Cli::try_parse_from([
            "grenier", "-c", "n.toml", "layout", "assign", "ab", "-z", "z", "-c", "1G",
        ])
        .unwrap();
        assert_eq!(cli.config.to_str(), Some("n.toml"));
        match cli.command {
            super::Command::Layout(super::LayoutCmd::Assign { capacity, .. }) => {
                assert_eq!(capacity.as_deref(), Some("1G"))
            }
            other => panic!("parsed as {other:?}"),
        }
    }
}
