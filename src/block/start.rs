//! Block wiring: opens the resync queue, the local reference counts, the block-reference table, the
//! block store and the block manager, starts resync and scrub, and registers their workers and
//! persisted tunables (tree `worker_vars`). Called once by `server.rs` when a node starts.

use std::sync::Arc;

use super::BlockError;
use super::manager::BlockManager;
use super::rc::BlockRc;
use super::refs::BlockRefSchema;
use super::resync::{MAX_WORKERS, Resync};
use super::resync_queue::ResyncQueue;
use super::scrub::Scrub;
use super::store::BlockStore;
use crate::db::Db;
use crate::layout::System;
use crate::table::gc::GcConfig;
use crate::table::{ShardedReplication, Table};
use crate::util::background::{Registry, Tunable};
use crate::util::config::Config;

/// The running block layer of a node.
pub struct BlockParts {
    pub block: Arc<BlockManager>,
    pub block_ref: Arc<Table<BlockRefSchema, ShardedReplication>>,
    pub resync: Arc<Resync>,
    pub scrub: Arc<Scrub>,
    /// Background tasks (reference recorder, table workers, resync, scrub); aborted when the node stops.
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Start the block layer; its workers and tunables are registered in `workers`.
pub async fn start(
    config: &Config,
    system: &Arc<System>,
    db: &Db,
    sharded: &dyn Fn() -> ShardedReplication,
    gc_config: &GcConfig,
    workers: &Registry,
) -> Result<BlockParts, BlockError> {
    let mut tasks = Vec::new();
    // Blocks: the reference table's hook keeps local reference counts, which feed the resync queue.
    let resync_queue = ResyncQueue::open(db)?;
    let rc = BlockRc::open(
        db,
        resync_queue.clone(),
        std::time::Duration::from_secs(config.block_gc_delay_secs),
    )?;
    tasks.push(rc.spawn_recorder());
    let block_ref = Table::new(BlockRefSchema { rc: rc.clone() }, sharded(), system, db)?;
    tasks.extend(block_ref.spawn_all(gc_config.clone()));
    let store = {
        let (dirs, fsync) = (config.data_dir.clone(), config.data_fsync);
        super::resync::spawn_blocking(move || BlockStore::open(&dirs, fsync)).await?
    };
    let block = BlockManager::new(
        system,
        Arc::new(store),
        rc,
        resync_queue,
        Arc::new(sharded()),
        config.compression_level,
        config.block_ram_buffer_max,
    );
    let vars = db.open_tree("worker_vars")?;
    let resync = Resync::new(
        block.clone(),
        persisted_tunable(
            &vars,
            "resync-worker-count",
            2,
            1,
            MAX_WORKERS,
            "parallel resync workers (fetch, hand over, delete blocks)",
        ),
        persisted_tunable(
            &vars,
            "resync-tranquility",
            2,
            0,
            100,
            "resync sleeps this many times the duration of each step (0 = full speed)",
        ),
    );
    tasks.extend(resync.spawn());
    let scrub = Scrub::new(
        block.clone(),
        db,
        persisted_tunable(
            &vars,
            "scrub-tranquility",
            4,
            0,
            100,
            "scrub sleeps this many times the duration of each block check",
        ),
    )?;
    tasks.push(scrub.spawn());
    workers.add_tunable("resync-worker-count", resync.workers.clone());
    workers.add_tunable("resync-tranquility", resync.tranquility.clone());
    workers.add_tunable("scrub-tranquility", scrub.tranquility.clone());
    workers.add_worker(resync.clone());
    workers.add_worker(scrub.clone());
    Ok(BlockParts {
        block,
        block_ref,
        resync,
        scrub,
        tasks,
    })
}

/// A tunable whose value survives restarts (tree `worker_vars`, big-endian u64 per name); the model's
/// workers use it too.
pub fn persisted_tunable(
    tree: &crate::db::Tree,
    name: &'static str,
    default: u64,
    min: u64,
    max: u64,
    description: &'static str,
) -> Arc<Tunable> {
    let value = match tree.get(name) {
        Ok(Some(v)) if v.len() == 8 => u64::from_be_bytes(v[..].try_into().expect("8 bytes")),
        _ => default,
    };
    let tree = tree.clone();
    Tunable::new(value, min, max, description, move |v| {
        if let Err(e) = tree.insert(name, v.to_be_bytes()) {
            tracing::error!("saving {name}: {e}");
        }
    })
}
