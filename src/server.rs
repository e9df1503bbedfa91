//! Wiring: builds every layer of a node from its [`Config`] and runs it.
//!
//! Start order: node key → metadata database → RPC listener and peering → layout manager → status gossip
//! → admin API. Shutdown (SIGINT/SIGTERM) aborts the background tasks; every persisted state was written
//! with write-then-rename, so there is nothing to flush beyond the database.

use std::net::IpAddr;
use std::sync::Arc;

use crate::admin;
use crate::db::Db;
use crate::layout::manager::SyncPass;
use crate::layout::{LayoutManager, System};
use crate::net::peering::Peering;
use crate::net::{NetApp, NodeId, NodeKey};
use crate::table::gc::{GcConfig, TableGc};
use crate::table::kv::KvSchema;
use crate::table::{ShardedReplication, Table, TableInfo};
use crate::util::config::Config;

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
    pub kv: Arc<Table<KvSchema, ShardedReplication>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Node {
    pub async fn start(config: Config) -> Result<Node, ServerError> {
        let meta = config.metadata_dir.clone();
        std::fs::create_dir_all(&meta)
            .map_err(|e| ServerError::Io(meta.display().to_string(), e))?;
        for d in &config.data_dir {
            std::fs::create_dir_all(&d.path)
                .map_err(|e| ServerError::Io(d.path.display().to_string(), e))?;
        }
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

        let kv = Table::new(
            KvSchema,
            ShardedReplication {
                system: system.clone(),
                consistency: config.consistency_mode,
            },
            &system,
            &db,
        )?;
        tasks.extend(kv.spawn_workers());
        tasks.push(kv.spawn_handoff());
        let gc_delay = std::time::Duration::from_secs(config.tombstone_gc_delay_secs);
        let kv_gc = TableGc::new(
            kv.data.clone(),
            kv.replication.clone(),
            system.clone(),
            GcConfig::with_delay(gc_delay),
        );
        tasks.push(kv_gc.spawn());
        let tables: Vec<Arc<dyn TableInfo>> = vec![kv.clone()];

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

        let admin_state = Arc::new(admin::AdminState {
            system: system.clone(),
            kv,
            tables,
            admin_token: config.admin.admin_token.clone(),
            metrics_token: config.admin.metrics_token.clone(),
        });
        tasks.push(admin::serve(config.admin.api_bind_addr, admin_state).await?);

        tracing::info!(
            "node {} started: rpc {}, admin http://{}",
            net.id.short(),
            config.rpc_bind_addr,
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
        tracing::info!("shutting down");
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
