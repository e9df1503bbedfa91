//! Hand-off: a node drops the entries of partitions it no longer holds in any active layout version,
//! after pushing them to the partition's current replicas.
//!
//! Why this is safe: a partition leaves this node's active versions only when the layout version in which
//! it held the partition is retired, and a version is retired only after every node completed a full sync
//! pass for the newer one (see `doc/layout.md`). The push before deleting is a last safety net: every
//! current replica must acknowledge the batch, and an entry is deleted only if it did not change meanwhile.
//!
//! Cost: one scan of the entries of partitions not held (none in a stable cluster), then, per batch of
//! [`BATCH`] entries, one update to each replica and one local transaction per entry.

use std::collections::HashSet;
use std::ops::Bound::{Excluded, Included, Unbounded};
use std::sync::Arc;
use std::time::Duration;

use serde_bytes::ByteBuf;

use super::replication::TableReplication;
use super::schema::TableSchema;
use super::{Table, TableError, TableRpc, quorum};
use crate::layout::solver::NB_PARTITIONS;

/// Entries pushed then dropped per round trip.
const BATCH: usize = 256;
const INTERVAL: Duration = Duration::from_secs(10);
const TIMEOUT: Duration = Duration::from_secs(30);

impl<F: TableSchema, R: TableReplication> Table<F, R> {
    /// Hand off and drop every entry of partitions this node no longer holds; returns how many were
    /// dropped.
    pub async fn handoff_once(&self) -> Result<usize, TableError> {
        if self.system.layout.history().in_transition() {
            return Ok(0); // wait until old versions are retired
        }
        let held: HashSet<usize> = self
            .replication
            .sync_partitions()
            .iter()
            .map(|p| p.partition)
            .collect();
        let mut dropped = 0;
        for p in (0..NB_PARTITIONS).filter(|p| !held.contains(p)) {
            loop {
                let start = Included(vec![p as u8]);
                let end = if p + 1 < NB_PARTITIONS {
                    Excluded(vec![p as u8 + 1])
                } else {
                    Unbounded
                };
                let batch: Vec<(Vec<u8>, Vec<u8>)> = self
                    .data
                    .store
                    .range((start, end))?
                    .take(BATCH)
                    .collect::<Result<_, _>>()?;
                if batch.is_empty() {
                    break;
                }
                let mut first = [0u8; 32];
                first[0] = p as u8;
                let owners = self.replication.storage_nodes(&first);
                if owners.is_empty() || owners.contains(&self.system.id()) {
                    break; // no layout yet, or the partition came back to us
                }
                let msg = Arc::new(TableRpc::Update(
                    batch
                        .iter()
                        .map(|(_, v)| ByteBuf::from(v.clone()))
                        .collect(),
                ));
                // Every current replica must have the entries before they leave this node.
                let n = owners.len();
                quorum::write_quorum(&self.endpoint, &[owners], n, msg, TIMEOUT).await?;
                for (k, v) in &batch {
                    if self.data.delete_if_equal(k, v)? {
                        dropped += 1;
                    }
                }
            }
        }
        if dropped > 0 {
            tracing::info!(
                "table {}: handed off and dropped {dropped} entries",
                F::TABLE_NAME
            );
        }
        Ok(dropped)
    }

    /// Run [`Table::handoff_once`] periodically and after layout changes.
    pub fn spawn_handoff(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let t = self.clone();
        tokio::spawn(async move {
            let mut changes = t.system.layout.subscribe();
            loop {
                if let Err(e) = t.handoff_once().await {
                    tracing::debug!("table {}: hand-off will be retried: {e}", F::TABLE_NAME);
                }
                tokio::select! {
                    _ = changes.changed() => (),
                    _ = tokio::time::sleep(INTERVAL) => (),
                }
            }
        })
    }
}
