//! Cluster endpoints: node identity, status, layout.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Response, StatusCode};
use serde_json::{Value, json};

use super::{AdminState, ApiError};
use crate::layout::NodeId;
use crate::layout::history::LayoutHistory;
use crate::layout::{LayoutError, LayoutParameters, NodeRole, ZoneRedundancy};

pub(super) async fn route(
    state: &AdminState,
    method: &Method,
    path: &str,
    body: Value,
) -> Result<Value, ApiError> {
    let sys = &state.system;
    match (method, path) {
        (&Method::GET, "/v1/node") => {
            Ok(json!({"id": sys.id().to_hex(), "addr": sys.net.public_addr()}))
        }
        (&Method::GET, "/v1/status") => Ok(status(state)),
        (&Method::POST, "/v1/node/connect") => {
            let peer = str_field(&body, "peer")?;
            let (id, addr) = crate::util::config::parse_bootstrap_peer(peer)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            sys.peering
                .connect_to(NodeId(id), &addr)
                .await
                .map_err(|e| {
                    ApiError(
                        StatusCode::BAD_GATEWAY,
                        format!("cannot connect to {addr}: {e}"),
                    )
                })?;
            Ok(json!({"connected": NodeId(id).to_hex()}))
        }
        (&Method::GET, "/v1/layout") => Ok(layout_json(&sys.layout.history())),
        (&Method::GET, "/v1/layout/history") => Ok(history_json(&sys.layout.history())),
        (&Method::POST, "/v1/layout/assign") => {
            let node = resolve_node(state, str_field(&body, "node")?)?;
            let gateway = body
                .get("gateway")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let zone = str_field(&body, "zone")?.to_string();
            if zone.is_empty() {
                return Err(ApiError::bad_request("zone must not be empty"));
            }
            let capacity = if gateway {
                None
            } else {
                let c = body
                    .get("capacity")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "capacity is required (bytes) unless the node is a gateway",
                        )
                    })?;
                if c == 0 {
                    return Err(ApiError::bad_request(
                        "capacity must be above zero; use --gateway for a node that stores nothing",
                    ));
                }
                Some(c)
            };
            let tags: Vec<String> = body
                .get("tags")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|t| t.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let role = NodeRole {
                zone,
                capacity,
                tags,
            };
            sys.layout.update(|h| {
                h.stage_role(node, Some(role.clone()));
                Ok(())
            })?;
            Ok(json!({"staged": node.to_hex(), "role": role_json(&node, &role)}))
        }
        (&Method::POST, "/v1/layout/remove") => {
            let node = resolve_node(state, str_field(&body, "node")?)?;
            sys.layout.update(|h| {
                h.stage_role(node, None);
                Ok(())
            })?;
            Ok(json!({"staged_removal": node.to_hex()}))
        }
        (&Method::POST, "/v1/layout/config") => {
            let zr = match body.get("zone_redundancy") {
                Some(Value::String(s)) if s == "max" => ZoneRedundancy::Max,
                Some(Value::String(s)) => ZoneRedundancy::AtLeast(s.parse().map_err(|_| {
                    ApiError::bad_request("zone_redundancy is a number or \"max\"")
                })?),
                Some(Value::Number(n)) => ZoneRedundancy::AtLeast(n.as_u64().unwrap_or(0) as usize),
                _ => {
                    return Err(ApiError::bad_request(
                        "zone_redundancy is required: a number or \"max\"",
                    ));
                }
            };
            let h = sys.layout.history();
            let rf = h.current().replication_factor;
            if let ZoneRedundancy::AtLeast(n) = zr
                && (n == 0 || n > rf)
            {
                return Err(ApiError::bad_request(format!(
                    "zone_redundancy must be between 1 and the replication factor ({rf}), or max"
                )));
            }
            sys.layout.update(|h| {
                h.stage_parameters(LayoutParameters {
                    zone_redundancy: zr,
                });
                Ok(())
            })?;
            Ok(json!({"staged_zone_redundancy": zr.to_string()}))
        }
        (&Method::POST, "/v1/layout/apply") => {
            let expected = body.get("version").and_then(Value::as_u64);
            let report = sys.layout.update(|h| h.apply(expected))?;
            Ok(json!({
                "version": report.version,
                "moved": report.moved,
                "partition_size": report.partition_size,
                "usable_capacity": report.usable_capacity,
                "zone_redundancy": report.zone_redundancy,
                "nodes": report.nodes.iter().map(|(id, zone, before, after)| json!({
                    "id": id.to_hex(), "zone": zone, "partitions_before": before, "partitions_after": after,
                })).collect::<Vec<_>>(),
            }))
        }
        (&Method::POST, "/v1/layout/revert") => {
            sys.layout.update(|h| {
                h.revert();
                Ok(())
            })?;
            Ok(json!({"reverted": true}))
        }
        _ => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no such admin endpoint: {method} {path}"),
        )),
    }
}

fn str_field<'a>(body: &'a Value, name: &str) -> Result<&'a str, ApiError> {
    body.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request(format!("field `{name}` is required")))
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

fn status(state: &AdminState) -> Value {
    let sys = &state.system;
    let h = sys.health();
    let nodes: Vec<Value> = sys
        .nodes()
        .into_iter()
        .map(|n| {
            json!({
                "id": n.id.to_hex(),
                "hostname": n.hostname,
                "addr": n.addr,
                "zone": n.zone,
                "capacity": n.capacity,
                "gateway": n.gateway,
                "up": n.up,
                "last_seen_msec": n.last_seen_msec,
                "rtt_ms": n.rtt.map(|d| d.as_secs_f64() * 1000.0),
                "release": n.release,
                "layout_version": n.layout_version,
                "data_avail": n.data_disk.map(|d| d.avail),
                "data_total": n.data_disk.map(|d| d.total),
                "meta_avail": n.meta_disk.map(|d| d.avail),
            })
        })
        .collect();
    json!({
        "health": h.health,
        "layout_version": sys.layout.version(),
        "partitions": h.partitions,
        "partitions_all_replicas_up": h.partitions_all_replicas_up,
        "partitions_quorum_up": h.partitions_quorum_up,
        "partitions_unavailable": h.partitions_unavailable,
        "storage_nodes": h.storage_nodes,
        "storage_nodes_up": h.storage_nodes_up,
        "nodes": nodes,
    })
}

fn role_json(id: &NodeId, r: &NodeRole) -> Value {
    json!({"id": id.to_hex(), "zone": r.zone, "capacity": r.capacity, "gateway": r.capacity.is_none(), "tags": r.tags})
}

pub(super) fn layout_json(h: &LayoutHistory) -> Value {
    let v = h.current();
    let per_node = v.partitions_per_node();
    let mut zones: std::collections::BTreeMap<&str, (usize, u64)> = Default::default();
    let nodes_usage: Vec<Value> = per_node
        .iter()
        .map(|(id, parts)| {
            let zone = v.roles.get(id).map(|r| r.zone.as_str()).unwrap_or("");
            let usable = *parts as u64 * v.partition_size;
            let z = zones.entry(zone).or_default();
            z.0 += 1;
            z.1 += usable;
            json!({"id": id.to_hex(), "zone": zone, "partitions": parts, "usable_capacity": usable,
                   "capacity": v.roles.get(id).and_then(|r| r.capacity)})
        })
        .collect();
    let staged: Vec<Value> = h
        .staged_roles()
        .iter()
        .map(|(id, r)| match r {
            Some(r) => role_json(id, r),
            None => json!({"id": id.to_hex(), "remove": true}),
        })
        .collect();
    json!({
        "version": v.version,
        "transition": transition_json(h),
        "replication_factor": v.replication_factor,
        "zone_redundancy": v.parameters.zone_redundancy.to_string(),
        "effective_zone_redundancy": v.effective_zone_redundancy(),
        "partition_size": v.partition_size,
        "usable_capacity": v.usable_capacity(),
        "roles": v.roles.iter().map(|(id, r)| role_json(id, r)).collect::<Vec<_>>(),
        "staged": staged,
        "staged_parameters": h.staged_parameters().map(|p| json!({"zone_redundancy": p.zone_redundancy.to_string()})),
        "nodes_usage": nodes_usage,
        "zones": zones.iter().map(|(z, (n, u))| json!({"zone": z, "nodes": n, "usable_capacity": u})).collect::<Vec<_>>(),
        "partitions": (0..if v.ring.is_empty() { 0 } else { crate::layout::solver::NB_PARTITIONS })
            .map(|p| json!({"partition": p, "nodes": v.nodes_of(p).iter().map(|n| n.to_hex()).collect::<Vec<_>>()}))
            .collect::<Vec<_>>(),
    })
}

fn history_json(h: &LayoutHistory) -> Value {
    let mut versions: Vec<Value> = h
        .previous
        .iter()
        .map(|e| {
            json!({"version": e.version, "applied_msec": e.applied_msec, "storage_nodes": e.storage_nodes,
                   "gateways": e.gateways, "zones": e.zones, "usable_capacity": e.usable_capacity,
                   "moved": e.moved, "status": "historical"})
        })
        .collect();
    let cur = h.current().version;
    for v in h.versions.iter().filter(|v| v.version > 0) {
        let status = if v.version == cur {
            "current"
        } else {
            "active (transition in progress)"
        };
        versions.push(json!({"version": v.version, "applied_msec": v.applied_msec,
            "storage_nodes": v.storage_nodes.len(), "gateways": v.roles.len() - v.storage_nodes.len(),
            "zones": v.zones().len(), "usable_capacity": v.usable_capacity(), "moved": v.moved, "status": status}));
    }
    json!({"current_version": cur, "versions": versions, "transition": transition_json(h)})
}

/// Progress of the transition to the current version, per node.
fn transition_json(h: &LayoutHistory) -> Value {
    let t = &h.trackers;
    json!({
        "active_versions": h.versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        "read_version": h.read_version().version,
        "nodes": h.all_nodes().iter().map(|n| json!({
            "id": n.to_hex(), "ack": t.ack.get(n), "sync": t.sync.get(n), "sync_ack": t.sync_ack.get(n),
        })).collect::<Vec<_>>(),
    })
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
