//! `grenier worker ...`, `grenier repair scrub|blocks`, and the hidden block test tools.

use anyhow::{Result, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use super::client::AdminClient;
use super::table::format_table;
use super::{JsonFlag, print_json};

#[derive(Subcommand, Debug)]
pub enum WorkerCmd {
    /// Background workers with their state and progress.
    List(JsonFlag),
    /// Tunable variables with their current values and bounds.
    Get(JsonFlag),
    /// Change a tunable variable now (e.g. `grenier worker set resync-tranquility 0`); it is kept across
    /// restarts.
    Set { name: String, value: u64 },
}

/// What `grenier repair scrub` does.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default)]
pub enum ScrubAction {
    /// Start a full scrub now (restarts a running one from the beginning).
    #[default]
    Start,
    Pause,
    Resume,
    Cancel,
}

/// Subcommands of `grenier debug` (named `block-*` next to the `kv-*` ones).
#[derive(Subcommand, Debug)]
#[allow(clippy::enum_variant_names)]
pub enum BlockDebugCmd {
    /// Write COUNT deterministic pseudo-random blocks with a reference named REF; prints their hashes.
    BlockGen {
        #[arg(long, default_value_t = 1)]
        count: u64,
        /// Bytes per block (default: block_size).
        #[arg(long)]
        size: Option<u64>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long = "ref", default_value = "debug")]
        reference: String,
        /// Make the blocks compressible.
        #[arg(long)]
        compressible: bool,
    },
    /// Read a block through this node; prints its length, BLAKE2b, who served it and how long it took.
    BlockGet { hash: String },
    /// Blocks stored on this node.
    BlockLocal,
    /// Delete the references named REF to these blocks.
    BlockUnref {
        #[arg(long = "ref", default_value = "debug")]
        reference: String,
        hashes: Vec<String>,
    },
}

pub async fn worker(client: &AdminClient, cmd: &WorkerCmd) -> Result<()> {
    match cmd {
        WorkerCmd::List(f) => {
            let v = client.get("/v1/workers").await?;
            if f.json {
                print_json(&v["workers"]);
                return Ok(());
            }
            let mut rows = vec![
                ["WORKER", "STATE", "QUEUE", "DONE", "ERRORS", "PROGRESS"]
                    .map(String::from)
                    .to_vec(),
            ];
            for w in v["workers"].as_array().into_iter().flatten() {
                rows.push(vec![
                    str_of(&w["name"]),
                    str_of(&w["state"]),
                    match &w["queue_length"] {
                        Value::Null => "-".into(),
                        q => q.to_string(),
                    },
                    w["done"].to_string(),
                    w["errors"].to_string(),
                    str_of(&w["progress"]),
                ]);
            }
            print!("{}", format_table(&rows));
            for w in v["workers"].as_array().into_iter().flatten() {
                if let Some(e) = w["last_error"].as_str() {
                    println!("{}: last error: {e}", str_of(&w["name"]));
                }
            }
        }
        WorkerCmd::Get(f) => {
            let v = client.get("/v1/workers").await?;
            if f.json {
                print_json(&v["variables"]);
                return Ok(());
            }
            let mut rows = vec![
                ["VARIABLE", "VALUE", "RANGE", "WHAT"]
                    .map(String::from)
                    .to_vec(),
            ];
            for t in v["variables"].as_array().into_iter().flatten() {
                rows.push(vec![
                    str_of(&t["name"]),
                    t["value"].to_string(),
                    format!("{}..={}", t["min"], t["max"]),
                    str_of(&t["description"]),
                ]);
            }
            print!("{}", format_table(&rows));
        }
        WorkerCmd::Set { name, value } => {
            client
                .post("/v1/workers/set", json!({"name": name, "value": value}))
                .await?;
            println!("{name} = {value}");
        }
    }
    Ok(())
}

pub async fn repair_scrub(client: &AdminClient, action: ScrubAction) -> Result<()> {
    let command = match action {
        ScrubAction::Start => "start",
        ScrubAction::Pause => "pause",
        ScrubAction::Resume => "resume",
        ScrubAction::Cancel => "cancel",
    };
    let v = client
        .post("/v1/repair/scrub", json!({ "command": command }))
        .await?;
    let state = if v["running"].as_bool() != Some(true) {
        "not running"
    } else if v["paused"].as_bool() == Some(true) {
        "paused"
    } else {
        "running"
    };
    println!("scrub {state}; follow it with `grenier worker list`");
    Ok(())
}

pub async fn repair_blocks(client: &AdminClient) -> Result<()> {
    client.post("/v1/repair/blocks", json!({})).await?;
    println!(
        "every block this node references or holds is queued for a check; follow it with `grenier worker list`"
    );
    Ok(())
}

pub async fn debug(client: &AdminClient, cmd: &BlockDebugCmd) -> Result<()> {
    let v = match cmd {
        BlockDebugCmd::BlockGen {
            count,
            size,
            seed,
            reference,
            compressible,
        } => {
            let mut body = json!({"count": count, "seed": seed, "ref": reference,
                                  "compressible": compressible});
            if let Some(s) = size {
                body["size"] = json!(s);
            }
            client.post("/v1/debug/blocks/generate", body).await?
        }
        BlockDebugCmd::BlockGet { hash } => {
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!("a block hash is 64 hex digits");
            }
            client.get(&format!("/v1/debug/blocks/{hash}")).await?
        }
        BlockDebugCmd::BlockLocal => client.get("/v1/debug/blocks/local").await?,
        BlockDebugCmd::BlockUnref { reference, hashes } => {
            client
                .post(
                    "/v1/debug/blocks/unref",
                    json!({"ref": reference, "hashes": hashes}),
                )
                .await?
        }
    };
    print_json(&v);
    Ok(())
}

/// The block part of `grenier stats`.
pub fn human_stats(b: &Value) -> String {
    use crate::util::size::format_size;
    let n = |k: &str| b[k].as_u64().unwrap_or(0);
    let mut out = format!(
        "\nblocks: {} referenced here, resync queue {} ({} awaiting retry), send buffer {} in use\n\
         since start: {} written ({}), {} read locally, {} from replicas ({} hedged), {} served, {} corrupted found\n",
        n("referenced_blocks"),
        n("resync_queue"),
        n("resync_errors"),
        format_size(n("buffer_used")),
        n("blocks_written"),
        format_size(n("bytes_written")),
        n("blocks_read_local"),
        n("blocks_read_remote"),
        n("hedged_reads"),
        n("blocks_served"),
        n("corrupted_found"),
    );
    let mut rows = vec![
        ["DATA DIR", "CAPACITY", "FREE", "MODE"]
            .map(String::from)
            .to_vec(),
    ];
    for d in b["data_dirs"].as_array().into_iter().flatten() {
        rows.push(vec![
            str_of(&d["path"]),
            d["capacity"]
                .as_u64()
                .map(format_size)
                .unwrap_or("-".into()),
            d["avail"].as_u64().map(format_size).unwrap_or("-".into()),
            if d["read_only"].as_bool() == Some(true) {
                "read-only (draining)".into()
            } else {
                "read-write".into()
            },
        ]);
    }
    out.push_str(&format_table(&rows));
    out
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or("").to_string()
}
