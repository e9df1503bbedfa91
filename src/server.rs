//! Wiring: builds every layer of a node from its [`Config`] and runs it.
//!
//! Start order: private directories (metadata and data dirs mode 0700, fixed if looser) → node key →
//! metadata database → RPC listener and peering → layout manager → status gossip → tables → block
//! layer ([`crate::block::start`]) → model → admin and S3 APIs. With `test_hooks` (tests only) the test `kv` table is registered and the test clock
//! offset applies; without it neither exists. Shutdown (SIGINT/SIGTERM) first drains the HTTP listeners
//! (no new connections; requests in progress finish, for up to `shutdown_grace_secs`, while the rest of
//! the node keeps working), then aborts the background tasks; every persisted state was written with
//! write-then-rename, so there is nothing to flush beyond the database.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::admin;
use crate::block::refs::BlockRefSchema;
use crate::block::start::BlockParts;
use crate::block::{BlockError, BlockManager};
use crate::db::Db;
use crate::layout::manager::SyncPass;
use crate::layout::{LayoutManager, System};
use crate::model::Model;
use crate::net::peering::Peering;
use crate::net::{NetApp, NodeId, NodeKey};
use crate::table::gc::GcConfig;
use crate::table::kv::KvSchema;
use crate::table::{ShardedReplication, Table, TableInfo, TableWorkers};
use crate::util::background::Registry;
use crate::util::config::Config;
use crate::util::http::{Drain, HttpLimits, default_max_connections};

/// Errors that stop a node from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Net(#[from] crate::net::NetError),
    #[error("metadata database: {0}")]
    Db(#[from] crate::db::Error),
    #[error("{0}")]
    Layout(#[from] crate::layout::LayoutError),
    #[error("{0}")]
    Table(#[from] crate::table::TableError),
    #[error("admin API: {0}")]
    Admin(#[from] admin::AdminError),
    #[error("{0}")]
    Block(#[from] BlockError),
    #[error("{0}")]
    Model(#[from] crate::model::ModelError),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

/// A running node.
pub struct Node {
    pub config: Config,
    pub db: Db,
    pub net: Arc<NetApp>,
    pub peering: Arc<Peering>,
    pub layout: Arc<LayoutManager>,
    pub system: Arc<System>,
    /// The test key-value table: only with `test_hooks`.
    pub kv: Option<Arc<Table<KvSchema, ShardedReplication>>>,
    pub block: Arc<BlockManager>,
    pub block_ref: Arc<Table<BlockRefSchema, ShardedReplication>>,
    pub workers: Arc<Registry>,
    pub model: Arc<Model>,
    /// The graceful shutdown of the HTTP listeners (see [`Node::run_until_signal`]).
    pub drain: Drain,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Node {
    pub async fn start(config: Config) -> Result<Node, ServerError> {
        let nofile = raise_nofile_limit();
        let meta = config.metadata_dir.clone();
        prepare(&config)?;
        let key = NodeKey::load_or_create(&meta)?;
        let db = Db::open_redb(&meta.join("db.redb"), config.metadata_fsync)?;

        let public_addr = config.rpc_public_addr.clone().or_else(|| {
            let a = config.rpc_bind_addr;
            (!a.ip().is_unspecified()).then(|| a.to_string())
        });
        let bind_outgoing: Option<IpAddr> = (config.rpc_bind_outgoing
            && !config.rpc_bind_addr.ip().is_unspecified())
        .then(|| config.rpc_bind_addr.ip());
        let net = NetApp::new(&key, config.rpc_secret, public_addr, bind_outgoing)?;
        let mut tasks = vec![net.listen(config.rpc_bind_addr).await?];

        let bootstrap = config
            .bootstrap_peer_addrs()
            .into_iter()
            .map(|(id, addr)| (NodeId(id), addr))
            .collect::<Vec<_>>();
        let peering = Peering::new(&net, bootstrap, Some(meta.join("peer_list")));
        tasks.push(peering.spawn());

        let layout = LayoutManager::new(
            &net,
            &meta,
            config.replication_factor,
            config.metadata_fsync,
        )?;
        let data_dir = config.data_dir.first().map(|d| d.path.clone());
        let system = System::new(
            &net,
            &peering,
            &layout,
            config.consistency_mode,
            meta.clone(),
            data_dir,
        );
        tasks.push(system.spawn());

        let sharded = || ShardedReplication {
            system: system.clone(),
            consistency: config.consistency_mode,
        };
        let gc_config = GcConfig::with_delay(std::time::Duration::from_secs(
            config.tombstone_gc_delay_secs,
        ));
        // The test kv table exists only with test_hooks (then on every node of the test cluster).
        let kv = if config.test_hooks {
            let kv = Table::new(KvSchema, sharded(), &system, &db)?;
            tasks.extend(kv.spawn_all(gc_config.clone()));
            Some(kv)
        } else {
            None
        };

        let workers = Registry::new();
        let BlockParts {
            block,
            block_ref,
            resync,
            scrub,
            tasks: block_tasks,
        } = crate::block::start::start(&config, &system, &db, &sharded, &gc_config, &workers)
            .await?;
        tasks.extend(block_tasks);
        let (model, model_tasks) = Model::start(
            &system,
            &db,
            &config,
            block.clone(),
            block_ref.clone(),
            gc_config,
        )?;
        tasks.extend(model_tasks);
        // Lifecycle rules and the sweep of stale uploads (issue 12).
        tasks.push(crate::model::lifecycle_worker::start(
            &model, &db, &workers,
        )?);
        let mut tables: Vec<Arc<dyn TableInfo>> = vec![];
        if let Some(kv) = &kv {
            tables.push(kv.clone());
        }
        tables.push(block_ref.clone());
        tables.extend(model.tables());
        workers.add_worker(Arc::new(TableWorkers(tables.clone())));

        // Layout transitions: a version counts as synced on this node once every table completed a full
        // anti-entropy pass with the replicas of all active versions.
        let sync_tables = tables.clone();
        let sync_pass: SyncPass = Arc::new(move |_version| {
            let tables = sync_tables.clone();
            Box::pin(async move {
                let mut ok = true;
                for t in &tables {
                    ok &= t.sync_now().await;
                }
                ok
            })
        });
        tasks.push(layout.spawn_transitions(sync_pass));
        let node_kv = kv.clone();
        let node_block_ref = block_ref.clone();

        let admin_state = Arc::new(admin::AdminState {
            system: system.clone(),
            kv,
            tables,
            block: block.clone(),
            block_ref,
            resync,
            scrub,
            workers: workers.clone(),
            model: model.clone(),
            block_size: config.block_size,
            admin_token: config.admin.admin_token.clone(),
            metrics_token: config.admin.metrics_token.clone(),
            test_hooks: config.test_hooks,
        });
        let admin_limits = HttpLimits::from_config(
            "admin API",
            "admin",
            &config.admin.http,
            default_max_connections(nofile, 16, 1024),
        );
        let drain = Drain::new();
        tasks.push(
            admin::serve(
                config.admin.api_bind_addr,
                admin_limits,
                admin_state,
                drain.clone(),
            )
            .await?,
        );
        tasks.push(serve_s3(&config, nofile, &model, drain.clone()).await?);
        if let Some(web) = &config.s3_web {
            tasks.push(serve_web(&config, web, nofile, &model, drain.clone()).await?);
        }

        tracing::info!(
            "node {} started: rpc {}, S3 http://{}, admin http://{}",
            net.id.short(),
            config.rpc_bind_addr,
            config.s3_api.api_bind_addr,
            config.admin.api_bind_addr
        );
        Ok(Node {
            config,
            db,
            net,
            peering,
            layout,
            system,
            kv: node_kv,
            block,
            block_ref: node_block_ref,
            workers,
            model,
            drain,
            tasks,
        })
    }

    /// Run until SIGINT or SIGTERM.
    pub async fn run_until_signal(self) {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => (),
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => (),
        }
        let grace = Duration::from_secs(self.config.shutdown_grace_secs);
        tracing::info!(
            "shutting down: no new connections; requests in progress have {} s to finish",
            grace.as_secs()
        );
        self.drain.start();
        match self.drain.wait_idle(grace).await {
            0 => tracing::info!("every connection closed"),
            n => tracing::warn!(
                "{n} connections still open after {} s: closing them",
                grace.as_secs()
            ),
        }
        self.stop();
    }

    pub fn stop(self) {
        for t in self.tasks {
            t.abort();
        }
        if let Err(e) = self.db.flush() {
            tracing::error!("flushing the metadata database: {e}");
        }
    }
}

/// Create the private directories (metadata and writable data dirs 0700), and with `test_hooks` warn
/// and enable the test clock offset.
fn prepare(config: &Config) -> Result<(), ServerError> {
    private_dir("metadata directory", &config.metadata_dir)?;
    for d in &config.data_dir {
        if d.read_only {
            std::fs::create_dir_all(&d.path)
                .map_err(|e| ServerError::Io(d.path.display().to_string(), e))?;
        } else {
            private_dir("data directory", &d.path)?;
        }
    }
    if config.test_hooks {
        tracing::warn!(
            "test_hooks = true: endpoints that destroy data (/v1/debug/*, the kv table) and the test \
             clock offset are enabled; this is for the test suite only, never for a real node"
        );
        if let Some(ms) = crate::util::time::enable_test_clock_offset() {
            tracing::warn!("test clock offset: {ms} ms");
        }
    }
    Ok(())
}

/// Serve the S3 API (`[s3_api]`); its default connection cap derives from the open-file limit `nofile`.
async fn serve_s3(
    config: &Config,
    nofile: u64,
    model: &Arc<Model>,
    drain: Drain,
) -> Result<tokio::task::JoinHandle<()>, ServerError> {
    let s3_state = Arc::new(crate::s3::ctx::S3State {
        model: model.clone(),
        region: config.s3_api.s3_region.clone(),
        root_domain: config.s3_api.root_domain.clone(),
        xml_body_max: usize::try_from(config.s3_api.xml_body_max).unwrap_or(usize::MAX),
    });
    let s3_addr = config.s3_api.api_bind_addr;
    let s3_limits = HttpLimits::from_config(
        "S3 API",
        "s3_api",
        &config.s3_api.http,
        default_max_connections(nofile, 4, 16384),
    );
    crate::s3::server::serve(s3_addr, s3_limits, s3_state, drain)
        .await
        .map_err(|e| ServerError::Io(format!("S3 API on {s3_addr}"), e))
}

/// Serve the static website endpoint (`[s3_web]`), with the S3 API's XML limit for its state.
async fn serve_web(
    config: &Config,
    web: &crate::util::config::S3WebConfig,
    nofile: u64,
    model: &Arc<Model>,
    drain: Drain,
) -> Result<tokio::task::JoinHandle<()>, ServerError> {
    let state = Arc::new(crate::s3::web::WebState {
        s3: Arc::new(crate::s3::ctx::S3State {
            model: model.clone(),
            region: config.s3_api.s3_region.clone(),
            root_domain: config.s3_api.root_domain.clone(),
            xml_body_max: usize::try_from(config.s3_api.xml_body_max).unwrap_or(usize::MAX),
        }),
        root_domain: web.root_domain.clone(),
    });
    let limits = HttpLimits::from_config(
        "website endpoint",
        "s3_web",
        &web.http,
        default_max_connections(nofile, 4, 16384),
    );
    crate::s3::web::serve(web.bind_addr, limits, state, drain)
        .await
        .map_err(|e| ServerError::Io(format!("website endpoint on {}", web.bind_addr), e))
}

/// Create `dir` mode 0700, or set an existing one open to other users to 0700 (logged).
fn private_dir(what: &str, dir: &std::path::Path) -> Result<(), ServerError> {
    let fixed = crate::util::fs::create_private_dir(dir)
        .map_err(|e| ServerError::Io(dir.display().to_string(), e))?;
    if let Some(old) = fixed {
        tracing::warn!(
            "{what} {} was mode {old:04o} (open to other users); set it to 0700",
            dir.display()
        );
    }
    Ok(())
}

/// Raise the open-file limit to the hard limit (every HTTP connection, RPC socket and open block file
/// takes a descriptor) and return the new soft limit, which the default HTTP connection caps derive from.
fn raise_nofile_limit() -> u64 {
    match crate::util::rlimit::raise_nofile_limit() {
        Ok(l) if l.after > l.before => {
            tracing::info!("open-file limit raised from {} to {}", l.before, l.after);
            l.after
        }
        Ok(l) => {
            tracing::info!(
                "open-file limit: {} (the hard limit is {})",
                l.after,
                l.hard
            );
            l.after
        }
        Err(e) => {
            let now = crate::util::rlimit::nofile_limit().unwrap_or(1024);
            tracing::warn!("cannot raise the open-file limit (now {now}): {e}");
            now
        }
    }
}

#[cfg(test)]
mod tests {
    //! Whole nodes in one process: tests that need every layer, so they live at the top one.

    use std::time::Duration;

    use serde_bytes::ByteBuf;

    use super::Node;
    use crate::crdt::Lww;
    use crate::db::Db;
    use crate::table::TableData;
    use crate::table::kv::{KvEntry, KvSchema};
    use crate::test_support::{NodeConfig, start_node, wait_until};
    use crate::util::hash::blake2sum;

    fn entry(key: &str, ts: u64, value: Option<&[u8]>) -> KvEntry {
        KvEntry {
            partition: "p".into(),
            key: key.into(),
            value: Lww::raw(ts, value.map(|v| ByteBuf::from(v.to_vec()))),
        }
    }

    fn kv(
        n: &Node,
    ) -> &std::sync::Arc<crate::table::Table<KvSchema, crate::table::ShardedReplication>> {
        n.kv.as_ref().expect("test_hooks is on")
    }

    fn put(d: &TableData<KvSchema>, e: &KvEntry) {
        d.update_entry(&TableData::<KvSchema>::encode(e).unwrap())
            .unwrap();
    }

    /// Three nodes in this process on loopback (real TLS mesh, real redb), rf 3 over three zones. Node 2
    /// holds an old live value and is down while the entry is deleted: GC must wait for it, and once it is
    /// back, remove the tombstone everywhere without the old value coming back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn collects_only_once_every_replica_has_the_tombstone() {
        use crate::layout::NodeRole;
        use crate::net::{NodeId, NodeKey};
        use crate::table::gc::{GcConfig, TableGc, current_tombstone};

        let root = tempfile::tempdir().unwrap();
        let a = 10 + (std::process::id() % 200) as u8;
        let ips: Vec<String> = (1..=3).map(|i| format!("127.{a}.253.{i}")).collect();
        let config = |i: usize, boot: Option<&str>| {
            NodeConfig::new(&ips[i])
                .bootstrap(boot)
                .write(&root.path().join(format!("n{i}")))
        };
        const T: Duration = Duration::from_secs(30);
        let meta = |i: usize| root.path().join(format!("n{i}/meta"));
        let ids: Vec<NodeId> = (0..3)
            .map(|i| NodeKey::load_or_create(&meta(i)).unwrap().id())
            .collect();
        let boot = format!("{}@{}:3901", ids[0], ips[0]);
        let gc_config = GcConfig {
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(200),
            rpc_timeout: Duration::from_secs(5),
            ..GcConfig::with_delay(Duration::from_millis(200))
        };
        let gc_of = |n: &Node| {
            TableGc::new(
                kv(n).data.clone(),
                kv(n).replication.clone(),
                n.system.clone(),
                gc_config.clone(),
            )
        };

        // Node 2 stored a live value before going down.
        let live = entry("doomed", 10, Some(b"old"));
        let key = TableData::<KvSchema>::key_of(&live);
        {
            let db = Db::open_redb(&meta(2).join("db.redb"), false).unwrap();
            let d = TableData::new(KvSchema, &db).unwrap();
            put(&d, &live);
            db.flush().unwrap();
        }
        let n0 = start_node(config(0, None)).await;
        let n1 = start_node(config(1, Some(&boot))).await;
        let (gc0, gc1) = (gc_of(&n0), gc_of(&n1));
        n0.layout
            .update(|h| {
                for (id, z) in ids.iter().zip(["a", "b", "c"]) {
                    h.stage_role(
                        *id,
                        Some(NodeRole {
                            zone: z.into(),
                            capacity: Some(10 << 30),
                            tags: vec![],
                        }),
                    );
                }
                h.apply(None)
            })
            .unwrap();
        wait_until("layout on node 1", T, || {
            n1.layout.version() == 1 && n0.system.is_up(&ids[1])
        })
        .await;

        // Deleted while node 2 is down: a quorum (nodes 0 and 1) has the tombstone.
        kv(&n0).insert(&entry("doomed", 20, None)).await.unwrap();
        for n in [&n0, &n1] {
            assert!(
                current_tombstone(
                    &kv(n).data,
                    &key,
                    &blake2sum(&kv(n).data.read_entry(&key).unwrap().unwrap())
                )
                .unwrap()
                .is_some()
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = gc0.round(&mut None).await.unwrap();
        assert_eq!((r.due, r.collected, r.deferred), (1, 0, 1), "{r:?}");
        assert!(
            kv(&n0).data.read_entry(&key).unwrap().is_some(),
            "tombstone kept"
        );
        assert!(
            kv(&n1).data.read_entry(&key).unwrap().is_some(),
            "tombstone kept"
        );
        assert_eq!(kv(&n0).data.gc_todo.len().unwrap(), 1);
        let m = gc0.metrics().unwrap();
        assert_eq!((m.pending, m.failed_batches, m.nodes_backed_off), (1, 1, 1));
        // In backoff: the next round does not even try.
        let r = gc0.round(&mut None).await.unwrap();
        assert_eq!((r.collected, r.deferred), (0, 1));
        assert_eq!(gc0.metrics().unwrap().failed_batches, 1);

        // Node 2 comes back with its old value; once it is reachable and the backoff expired, GC pushes
        // the tombstone to it and removes it everywhere.
        let n2 = start_node(config(2, Some(&boot))).await;
        let gc2 = gc_of(&n2);
        wait_until("node 2 up", T, || n0.system.is_up(&ids[2])).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
        let r = gc0.round(&mut None).await.unwrap();
        assert_eq!((r.collected, r.deferred), (1, 0), "{r:?}");
        for n in [&n0, &n1, &n2] {
            assert!(
                kv(n).data.read_entry(&key).unwrap().is_none(),
                "removed everywhere"
            );
        }
        assert!(kv(&n0).data.gc_todo.is_empty().unwrap());
        assert_eq!(
            kv(&n0)
                .get(&"p".to_string(), &"doomed".to_string())
                .await
                .unwrap(),
            None
        );
        assert_eq!(gc0.metrics().unwrap().collected, 1);

        // The other replicas' to-dos for the same tombstone are dropped as stale by their own workers.
        let tasks = [gc1.spawn(), gc2.spawn()];
        wait_until("other to-dos dropped", T, || {
            kv(&n1).data.gc_todo.is_empty().unwrap() && kv(&n2).data.gc_todo.is_empty().unwrap()
        })
        .await;
        assert_eq!(gc1.metrics().unwrap().stale_dropped, 1);
        for n in [&n0, &n1, &n2] {
            assert!(
                kv(n).data.read_entry(&key).unwrap().is_none(),
                "never came back"
            );
        }
        for t in tasks {
            t.abort();
        }
        for n in [n0, n1, n2] {
            n.stop();
        }
    }
}
