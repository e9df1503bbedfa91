//! `grenier worker ...`, `grenier repair scrub|blocks`, and the hidden block test tools.

use anyhow::{Result, bail};
use clap::Subcommand;

use super::client::AdminClient;
use super::table::format_table;
use super::{JsonFlag, print_json};
use crate::admin::api;

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
            let v: api::Workers = client.get_as("/v1/workers").await?;
            if f.json {
                print_json(&v.workers);
            } else {
                print!("{}", human_workers(&v.workers));
            }
        }
        WorkerCmd::Get(f) => {
            let v: api::Workers = client.get_as("/v1/workers").await?;
            if f.json {
                print_json(&v.variables);
                return Ok(());
            }
            let mut rows = vec![
                ["VARIABLE", "VALUE", "RANGE", "WHAT"]
                    .map(String::from)
                    .to_vec(),
            ];
            for t in v.variables {
                rows.push(vec![
                    t.name,
                    t.value.to_string(),
                    format!("{}..={}", t.min, t.max),
                    t.description,
                ]);
            }
            print!("{}", format_table(&rows));
        }
        WorkerCmd::Set { name, value } => {
            let req = api::SetVariableRequest {
                name: Some(name.clone()),
                value: Some(*value),
            };
            let _: api::VariableSet = client.post_as("/v1/workers/set", &req).await?;
            println!("{name} = {value}");
        }
    }
    Ok(())
}

/// `worker list` for humans: a table, then each worker's last error.
fn human_workers(workers: &[api::WorkerInfo]) -> String {
    let mut rows = vec![
        ["WORKER", "STATE", "QUEUE", "DONE", "ERRORS", "PROGRESS"]
            .map(String::from)
            .to_vec(),
    ];
    for w in workers {
        rows.push(vec![
            w.name.clone(),
            w.state.to_string(),
            w.queue_length.map_or_else(|| "-".into(), |q| q.to_string()),
            w.done.to_string(),
            w.errors.to_string(),
            w.progress.clone().unwrap_or_default(),
        ]);
    }
    let mut out = format_table(&rows);
    for w in workers {
        if let Some(e) = &w.last_error {
            out.push_str(&format!("{}: last error: {e}\n", w.name));
        }
    }
    out
}

pub async fn repair_scrub(client: &AdminClient, action: ScrubAction) -> Result<()> {
    let command = match action {
        ScrubAction::Start => api::ScrubCommand::Start,
        ScrubAction::Pause => api::ScrubCommand::Pause,
        ScrubAction::Resume => api::ScrubCommand::Resume,
        ScrubAction::Cancel => api::ScrubCommand::Cancel,
    };
    let req = api::ScrubRequest {
        command: Some(command),
    };
    let v: api::ScrubStatus = client.post_as("/v1/repair/scrub", &req).await?;
    let state = if !v.running {
        "not running"
    } else if v.paused {
        "paused"
    } else {
        "running"
    };
    println!("scrub {state}; follow it with `grenier worker list`");
    Ok(())
}

pub async fn repair_blocks(client: &AdminClient) -> Result<()> {
    let _: api::ScanStarted = client.post_as("/v1/repair/blocks", &api::Empty {}).await?;
    println!(
        "every block this node references or holds is queued for a check; follow it with `grenier worker list`"
    );
    Ok(())
}

pub async fn debug(client: &AdminClient, cmd: &BlockDebugCmd) -> Result<()> {
    match cmd {
        BlockDebugCmd::BlockGen {
            count,
            size,
            seed,
            reference,
            compressible,
        } => {
            let req = api::GenerateRequest {
                count: Some(*count),
                size: *size,
                seed: Some(*seed),
                reference: Some(reference.clone()),
                compressible: Some(*compressible),
            };
            let v: api::Generated = client.post_as("/v1/debug/blocks/generate", &req).await?;
            print_json(&v);
        }
        BlockDebugCmd::BlockGet { hash } => {
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!("a block hash is 64 hex digits");
            }
            let v: api::BlockRead = client.get_as(&format!("/v1/debug/blocks/{hash}")).await?;
            print_json(&v);
        }
        BlockDebugCmd::BlockLocal => {
            let v: api::LocalBlocks = client.get_as("/v1/debug/blocks/local").await?;
            print_json(&v);
        }
        BlockDebugCmd::BlockUnref { reference, hashes } => {
            let req = api::UnrefRequest {
                reference: Some(reference.clone()),
                hashes: Some(hashes.clone()),
            };
            let v: api::Unreferenced = client.post_as("/v1/debug/blocks/unref", &req).await?;
            print_json(&v);
        }
    }
    Ok(())
}

/// The block part of `grenier stats`.
pub fn human_stats(b: &api::BlockStats) -> String {
    use crate::util::size::format_size;
    let mut out = format!(
        "\nblocks: {} referenced here, resync queue {} ({} awaiting retry), send buffer {} in use\n\
         since start: {} written ({}), {} read locally, {} from replicas ({} hedged), {} served, {} corrupted found\n",
        b.referenced_blocks,
        b.resync_queue,
        b.resync_errors,
        format_size(b.buffer_used),
        b.blocks_written,
        format_size(b.bytes_written),
        b.blocks_read_local,
        b.blocks_read_remote,
        b.hedged_reads,
        b.blocks_served,
        b.corrupted_found,
    );
    let mut rows = vec![
        ["DATA DIR", "CAPACITY", "FREE", "MODE"]
            .map(String::from)
            .to_vec(),
    ];
    for d in &b.data_dirs {
        rows.push(vec![
            d.path.clone(),
            super::size_or_dash(d.capacity),
            super::size_or_dash(d.avail),
            if d.read_only {
                "read-only (draining)".into()
            } else {
                "read-write".into()
            },
        ]);
    }
    out.push_str(&format_table(&rows));
    out
}
