//! Cluster endpoints: node identity, status, layout; one function per route, typed with [`super::api`].

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Response, StatusCode};
use serde_json::Value;

use super::{AdminState, ApiError, api, parse_body, reply};
use crate::layout::NodeId;
use crate::layout::history::{HistoryEntry, LayoutHistory};
use crate::layout::system::HealthReport;
use crate::layout::{Health, LayoutError, LayoutParameters, NodeRole, ZoneRedundancy};

pub(super) async fn route(
    state: &AdminState,
    method: &Method,
    path: &str,
    body: Value,
) -> Result<Value, ApiError> {
    match (method, path) {
        (&Method::GET, "/v1/node") => reply(&node_identity(state)),
        (&Method::GET, "/v1/status") => reply(&status(state)),
        (&Method::POST, "/v1/node/connect") => reply(&connect(state, parse_body(body)?).await?),
        (&Method::GET, "/v1/layout") => reply(&layout_show(&state.system.layout.history())),
        (&Method::GET, "/v1/layout/history") => {
            reply(&layout_history(&state.system.layout.history()))
        }
        (&Method::POST, "/v1/layout/assign") => reply(&assign(state, parse_body(body)?)?),
        (&Method::POST, "/v1/layout/remove") => reply(&remove(state, parse_body(body)?)?),
        (&Method::POST, "/v1/layout/config") => reply(&config(state, parse_body(body)?)?),
        (&Method::POST, "/v1/layout/apply") => reply(&apply(state, parse_body(body)?)?),
        (&Method::POST, "/v1/layout/revert") => reply(&revert(state)?),
        (&Method::POST, "/v1/layout/skip-dead-nodes") => {
            reply(&skip_dead_nodes(state, parse_body(body)?)?)
        }
        _ => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no such admin endpoint: {method} {path}"),
        )),
    }
}

fn node_identity(state: &AdminState) -> api::NodeIdentity {
    let sys = &state.system;
    api::NodeIdentity {
        id: sys.id().to_hex(),
        addr: sys.net.public_addr().map(str::to_string),
    }
}

async fn connect(
    state: &AdminState,
    req: api::ConnectRequest,
) -> Result<api::ConnectResponse, ApiError> {
    let peer = required(req.peer, "peer")?;
    let (id, addr) = crate::util::config::parse_bootstrap_peer(&peer)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    state
        .system
        .peering
        .connect_to(NodeId(id), &addr)
        .await
        .map_err(|e| {
            ApiError(
                StatusCode::BAD_GATEWAY,
                format!("cannot connect to {addr}: {e}"),
            )
        })?;
    Ok(api::ConnectResponse {
        connected: NodeId(id).to_hex(),
    })
}

fn assign(state: &AdminState, req: api::AssignRequest) -> Result<api::AssignResponse, ApiError> {
    let node = resolve_node(state, &required(req.node, "node")?)?;
    let gateway = req.gateway.unwrap_or(false);
    let zone = required(req.zone, "zone")?;
    if zone.is_empty() {
        return Err(ApiError::bad_request("zone must not be empty"));
    }
    let capacity = if gateway {
        None
    } else {
        let c = req.capacity.ok_or_else(|| {
            ApiError::bad_request("capacity is required (bytes) unless the node is a gateway")
        })?;
        if c == 0 {
            return Err(ApiError::bad_request(
                "capacity must be above zero; use --gateway for a node that stores nothing",
            ));
        }
        Some(c)
    };
    let role = NodeRole {
        zone,
        capacity,
        tags: req.tags.unwrap_or_default(),
    };
    state.system.layout.update(|h| {
        h.stage_role(node, Some(role.clone()));
        Ok(())
    })?;
    Ok(api::AssignResponse {
        staged: node.to_hex(),
        role: role_api(&node, &role),
    })
}

fn remove(state: &AdminState, req: api::RemoveRequest) -> Result<api::RemoveResponse, ApiError> {
    let node = resolve_node(state, &required(req.node, "node")?)?;
    state.system.layout.update(|h| {
        h.stage_role(node, None);
        Ok(())
    })?;
    Ok(api::RemoveResponse {
        staged_removal: node.to_hex(),
    })
}

fn config(
    state: &AdminState,
    req: api::LayoutConfigRequest,
) -> Result<api::LayoutConfigResponse, ApiError> {
    let zr = match req.zone_redundancy {
        Some(api::ZoneRedundancyArg::Text(s)) if s == "max" => ZoneRedundancy::Max,
        Some(api::ZoneRedundancyArg::Text(s)) => ZoneRedundancy::AtLeast(
            s.parse()
                .map_err(|_| ApiError::bad_request("zone_redundancy is a number or \"max\""))?,
        ),
        Some(api::ZoneRedundancyArg::Number(n)) => {
            ZoneRedundancy::AtLeast(n.as_u64().unwrap_or(0) as usize)
        }
        None => {
            return Err(ApiError::bad_request(
                "zone_redundancy is required: a number or \"max\"",
            ));
        }
    };
    let rf = state.system.layout.history().current().replication_factor;
    if let ZoneRedundancy::AtLeast(n) = zr
        && (n == 0 || n > rf)
    {
        return Err(ApiError::bad_request(format!(
            "zone_redundancy must be between 1 and the replication factor ({rf}), or max"
        )));
    }
    state.system.layout.update(|h| {
        h.stage_parameters(LayoutParameters {
            zone_redundancy: zr,
        });
        Ok(())
    })?;
    Ok(api::LayoutConfigResponse {
        staged_zone_redundancy: zr.to_string(),
    })
}

fn apply(state: &AdminState, req: api::ApplyRequest) -> Result<api::ApplyResponse, ApiError> {
    let report = state.system.layout.update(|h| h.apply(req.version))?;
    Ok(api::ApplyResponse {
        version: report.version,
        moved: report.moved,
        partition_size: report.partition_size,
        usable_capacity: report.usable_capacity,
        zone_redundancy: report.zone_redundancy,
        nodes: report
            .nodes
            .iter()
            .map(|(id, zone, before, after)| api::ApplyNode {
                id: id.to_hex(),
                zone: zone.clone(),
                partitions_before: *before,
                partitions_after: *after,
            })
            .collect(),
    })
}

fn revert(state: &AdminState) -> Result<api::RevertResponse, ApiError> {
    state.system.layout.update(|h| {
        h.revert();
        Ok(())
    })?;
    Ok(api::RevertResponse { reverted: true })
}

/// Nodes with a role in an active layout version that this node sees down are declared done with
/// the transition (`layout skip-dead-nodes`), under the safety check of
/// [`crate::layout::history::LayoutHistory::skip_dead`].
fn skip_dead_nodes(
    state: &AdminState,
    req: api::SkipDeadRequest,
) -> Result<api::SkipDeadResponse, ApiError> {
    let sys = &state.system;
    let h = sys.layout.history();
    let dead: std::collections::BTreeSet<NodeId> = h
        .all_nodes()
        .into_iter()
        .filter(|n| *n != sys.id() && !sys.is_up(n))
        .collect();
    let quorum = sys.write_quorum(h.current().replication_factor);
    let skipped = sys
        .layout
        .update(|h| h.skip_dead(&dead, quorum, req.allow_missing_data))?;
    let h = sys.layout.history();
    Ok(api::SkipDeadResponse {
        version: h.current().version,
        skipped: skipped.iter().map(|n| n.to_hex()).collect(),
        in_transition: h.in_transition(),
    })
}

/// A required request field, with the answer clients have always had when it is missing.
fn required(v: Option<String>, name: &str) -> Result<String, ApiError> {
    v.ok_or_else(|| ApiError::bad_request(format!("field `{name}` is required")))
}

/// Resolve a node id prefix among the nodes this node knows (itself, peers, layout roles).
fn resolve_node(state: &AdminState, prefix: &str) -> Result<NodeId, ApiError> {
    let prefix = prefix.trim().to_lowercase();
    let prefix = prefix.split('@').next().unwrap_or("");
    if prefix.is_empty() {
        return Err(LayoutError::UnknownNode(String::new()).into());
    }
    let mut ids: Vec<NodeId> = state.system.nodes().into_iter().map(|n| n.id).collect();
    ids.extend(
        state
            .system
            .layout
            .history()
            .staging
            .roles
            .iter()
            .map(|(id, _)| *id),
    );
    ids.sort();
    ids.dedup();
    let matches: Vec<NodeId> = ids
        .into_iter()
        .filter(|id| id.to_hex().starts_with(prefix))
        .collect();
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => Err(LayoutError::UnknownNode(prefix.to_string()).into()),
        _ => Err(LayoutError::AmbiguousNode(prefix.to_string()).into()),
    }
}

fn status(state: &AdminState) -> api::ClusterStatus {
    let sys = &state.system;
    let h = sys.health();
    let nodes = sys
        .nodes()
        .into_iter()
        .map(|n| api::NodeStatus {
            id: n.id.to_hex(),
            hostname: n.hostname,
            addr: n.addr,
            zone: n.zone,
            capacity: n.capacity,
            gateway: n.gateway,
            up: n.up,
            last_seen_msec: n.last_seen_msec,
            rtt_ms: n.rtt.map(|d| d.as_secs_f64() * 1000.0),
            release: n.release,
            layout_version: n.layout_version,
            data_avail: n.data_disk.map(|d| d.avail),
            data_total: n.data_disk.map(|d| d.total),
            meta_avail: n.meta_disk.map(|d| d.avail),
        })
        .collect();
    api::ClusterStatus {
        report: health_report(&h),
        layout_version: sys.layout.version(),
        nodes,
    }
}

/// `GET /health`, and the top of `GET /v1/status`.
pub(super) fn health_report(h: &HealthReport) -> api::HealthReport {
    api::HealthReport {
        health: health_api(h.health),
        partitions: h.partitions,
        partitions_all_replicas_up: h.partitions_all_replicas_up,
        partitions_quorum_up: h.partitions_quorum_up,
        partitions_unavailable: h.partitions_unavailable,
        storage_nodes: h.storage_nodes,
        storage_nodes_up: h.storage_nodes_up,
    }
}

pub(super) fn health_api(h: Health) -> api::Health {
    match h {
        Health::Healthy => api::Health::Healthy,
        Health::Degraded => api::Health::Degraded,
        Health::Unavailable => api::Health::Unavailable,
    }
}

fn role_api(id: &NodeId, r: &NodeRole) -> api::Role {
    api::Role {
        id: id.to_hex(),
        zone: r.zone.clone(),
        capacity: r.capacity,
        gateway: r.capacity.is_none(),
        tags: r.tags.clone(),
    }
}

fn layout_show(h: &LayoutHistory) -> api::LayoutShow {
    let v = h.current();
    let per_node = v.partitions_per_node();
    let mut zones: std::collections::BTreeMap<&str, (usize, u64)> = Default::default();
    let nodes_usage = per_node
        .iter()
        .map(|(id, parts)| {
            let zone = v.roles.get(id).map(|r| r.zone.as_str()).unwrap_or("");
            let usable = *parts as u64 * v.partition_size;
            let z = zones.entry(zone).or_default();
            z.0 += 1;
            z.1 += usable;
            api::NodeUsage {
                id: id.to_hex(),
                zone: zone.to_string(),
                partitions: *parts,
                usable_capacity: usable,
                capacity: v.roles.get(id).and_then(|r| r.capacity),
            }
        })
        .collect();
    let staged = h
        .staged_roles()
        .iter()
        .map(|(id, r)| match r {
            Some(r) => api::StagedRole::Role(role_api(id, r)),
            None => api::StagedRole::Remove {
                id: id.to_hex(),
                remove: true,
            },
        })
        .collect();
    let nb_partitions = if v.ring.is_empty() {
        0
    } else {
        crate::layout::solver::NB_PARTITIONS
    };
    api::LayoutShow {
        version: v.version,
        transition: transition(h),
        replication_factor: v.replication_factor,
        zone_redundancy: v.parameters.zone_redundancy.to_string(),
        effective_zone_redundancy: v.effective_zone_redundancy(),
        partition_size: v.partition_size,
        usable_capacity: v.usable_capacity(),
        roles: v.roles.iter().map(|(id, r)| role_api(id, r)).collect(),
        staged,
        staged_parameters: h.staged_parameters().map(|p| api::StagedParameters {
            zone_redundancy: p.zone_redundancy.to_string(),
        }),
        nodes_usage,
        zones: zones
            .iter()
            .map(|(z, (n, u))| api::ZoneUsage {
                zone: z.to_string(),
                nodes: *n,
                usable_capacity: *u,
            })
            .collect(),
        partitions: (0..nb_partitions)
            .map(|p| api::PartitionNodes {
                partition: p,
                nodes: v.nodes_of(p).iter().map(|n| n.to_hex()).collect(),
            })
            .collect(),
    }
}

fn layout_history(h: &LayoutHistory) -> api::LayoutHistory {
    let mut versions: Vec<api::HistoryVersion> = h
        .previous
        .iter()
        .map(|e| history_version(e, "historical"))
        .collect();
    let cur = h.current().version;
    for v in h.versions.iter().filter(|v| v.version > 0) {
        let status = if v.version == cur {
            "current"
        } else {
            "active (transition in progress)"
        };
        versions.push(history_version(&HistoryEntry::of(v), status));
    }
    api::LayoutHistory {
        current_version: cur,
        versions,
        transition: transition(h),
    }
}

fn history_version(e: &HistoryEntry, status: &str) -> api::HistoryVersion {
    api::HistoryVersion {
        entry: e.clone(),
        status: status.into(),
    }
}

/// Progress of the transition to the current version, per node.
fn transition(h: &LayoutHistory) -> api::Transition {
    let t = &h.trackers;
    api::Transition {
        active_versions: h.versions.iter().map(|v| v.version).collect(),
        read_version: h.read_version().version,
        nodes: h
            .all_nodes()
            .iter()
            .map(|n| api::TransitionNode {
                id: n.to_hex(),
                ack: t.ack.get(n),
                sync: t.sync.get(n),
                sync_ack: t.sync_ack.get(n),
            })
            .collect(),
    }
}

pub(super) fn metrics(state: &AdminState) -> Response<Full<Bytes>> {
    let sys = &state.system;
    let h = sys.health();
    let nodes = sys.nodes();
    let up = nodes.iter().filter(|n| n.up).count();
    let health = match h.health {
        crate::layout::Health::Healthy => 0,
        crate::layout::Health::Degraded => 1,
        crate::layout::Health::Unavailable => 2,
    };
    let text = format!(
        "# HELP grenier_cluster_health 0 healthy, 1 degraded, 2 unavailable\n# TYPE grenier_cluster_health gauge\n\
         grenier_cluster_health {health}\n\
         # TYPE grenier_layout_version gauge\ngrenier_layout_version {}\n\
         # TYPE grenier_known_nodes gauge\ngrenier_known_nodes {}\n\
         # TYPE grenier_nodes_up gauge\ngrenier_nodes_up {up}\n\
         # TYPE grenier_partitions_unavailable gauge\ngrenier_partitions_unavailable {}\n",
        sys.layout.version(),
        nodes.len(),
        h.partitions_unavailable
    );
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/plain; version=0.0.4")
        .body(Full::new(Bytes::from(text)))
        .expect("static response parts are valid")
}
