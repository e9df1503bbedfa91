//! Admin HTTP API (hyper 1, JSON): what the `grenier` CLI talks to.
//!
//! Every endpoint requires `Authorization: Bearer <admin_token>` except `GET /health` (no token, for load
//! balancers and probes) and `GET /metrics` (open unless `metrics_token` is set). Without an
//! `admin_token` in the configuration, the token-protected endpoints answer 403.
//! Errors are JSON `{"error": "<what went wrong and what to do>"}` with a 4xx/5xx status.
//!
//! The test endpoints that write or delete data (`/v1/debug/kv/*`, `POST /v1/debug/blocks/generate` and
//! `.../unref`) answer 404 unless the configuration says `test_hooks = true` (test clusters only). The
//! read-only operator endpoints (`/v1/stats`, `/v1/repair/*`, `/v1/workers`, `GET /v1/debug/blocks/*`)
//! are always there.
//!
//! Request and response bodies are typed in [`api`], shared with the CLI; requests are parsed with
//! [`parse_body`], answers encoded with [`reply`], errors as [`api::ErrorBody`].
//!
//! **Invariant:** `admin` never talks RPC itself; it calls the layers' public APIs (`layout::System`, ...).

pub mod api;
mod blocks;
mod cluster;
mod debug;
mod keys;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::Value;
use subtle::ConstantTimeEq;

use crate::layout::System;
use crate::util::http::RequestBody as Incoming;

/// Largest request body accepted.
const MAX_BODY: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}

/// An error answer: HTTP status and message.
#[derive(Debug)]
pub(crate) struct ApiError(pub StatusCode, pub String);

impl ApiError {
    pub fn bad_request(m: impl Into<String>) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, m.into())
    }
}

impl From<crate::table::TableError> for ApiError {
    fn from(e: crate::table::TableError) -> ApiError {
        use crate::table::TableError as E;
        let status = match &e {
            E::Quorum { .. } | E::NoLayout => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

impl From<crate::layout::LayoutError> for ApiError {
    fn from(e: crate::layout::LayoutError) -> ApiError {
        use crate::layout::LayoutError as E;
        let status = match &e {
            E::UnknownNode(_) => StatusCode::NOT_FOUND,
            E::WrongVersion { .. } => StatusCode::CONFLICT,
            E::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError(status, e.to_string())
    }
}

pub struct AdminState {
    pub system: Arc<System>,
    /// The test key-value table (`/v1/debug/kv/...`): only with `test_hooks`.
    pub kv: Option<
        Arc<crate::table::Table<crate::table::kv::KvSchema, crate::table::ShardedReplication>>,
    >,
    pub tables: Vec<Arc<dyn crate::table::TableInfo>>,
    pub block: Arc<crate::block::BlockManager>,
    /// The block-reference table (debug tools add and delete references).
    pub block_ref: Arc<
        crate::table::Table<crate::block::refs::BlockRefSchema, crate::table::ShardedReplication>,
    >,
    pub resync: Arc<crate::block::resync::Resync>,
    pub scrub: Arc<crate::block::scrub::Scrub>,
    pub workers: Arc<crate::util::background::Registry>,
    pub model: Arc<crate::model::Model>,
    pub block_size: u64,
    pub admin_token: Option<String>,
    pub metrics_token: Option<String>,
    /// Config `test_hooks`: the test endpoints that destroy data answer 404 without it.
    pub test_hooks: bool,
}

/// Test endpoints that write or delete data: they exist only with `test_hooks = true`.
fn is_test_hook(method: &Method, path: &str) -> bool {
    path.starts_with("/v1/debug/kv/")
        || (method == Method::POST
            && (path == "/v1/debug/blocks/generate" || path == "/v1/debug/blocks/unref"))
}

/// Serve the admin API on `addr` until the returned task is aborted or `drain` starts.
pub async fn serve(
    addr: SocketAddr,
    limits: crate::util::http::HttpLimits,
    state: Arc<AdminState>,
    drain: crate::util::http::Drain,
) -> Result<tokio::task::JoinHandle<()>, AdminError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| AdminError::Bind(addr, e))?;
    Ok(crate::util::http::serve_http1(
        listener,
        limits,
        64 << 10,
        state,
        |state, req| async move { handle(&state, req).await },
        drain,
    ))
}

/// Parse a request body into its typed form: an empty body is the default request (every field
/// missing), so handlers answer "field `x` is required" as before; a body of the wrong shape is a 400.
pub(crate) fn parse_body<T: serde::de::DeserializeOwned + Default>(
    body: Value,
) -> Result<T, ApiError> {
    if body.is_null() {
        return Ok(T::default());
    }
    serde_json::from_value(body).map_err(|e| ApiError::bad_request(format!("invalid request: {e}")))
}

/// A typed answer as the JSON document the dispatcher sends.
pub(crate) fn reply<T: serde::Serialize>(v: &T) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(|e| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the answer: {e}"),
        )
    })
}

/// [`parse_body`] for a body whose every error has one answer (a single-field request).
pub(crate) fn parse_body_or<T: serde::de::DeserializeOwned + Default>(
    body: Value,
    msg: &str,
) -> Result<T, ApiError> {
    parse_body(body).map_err(|_| ApiError::bad_request(msg))
}

/// An error answer, `{"error": msg}` ([`api::ErrorBody`]).
fn error_response(status: StatusCode, msg: impl Into<String>) -> Response<Full<Bytes>> {
    json_response(status, &api::ErrorBody { error: msg.into() })
}

/// A JSON answer, keys sorted (through a `Value`) as they always were.
fn json_response(status: StatusCode, v: &impl serde::Serialize) -> Response<Full<Bytes>> {
    let mut body = serde_json::to_value(v)
        .and_then(|v| serde_json::to_vec_pretty(&v))
        .unwrap_or_default();
    body.push(b'\n');
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

fn token_ok(req: &Request<Incoming>, token: &str) -> bool {
    let given = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    given.as_bytes().ct_eq(token.as_bytes()).into()
}

async fn handle(state: &AdminState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let req_query = req.uri().query().map(str::to_string);
    let method = req.method().clone();
    // Unauthenticated endpoints.
    if method == Method::GET && path == "/health" {
        let h = state.system.health();
        let status = if h.health == crate::layout::Health::Unavailable {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        };
        return json_response(status, &cluster::health_report(&h));
    }
    if method == Method::GET && path == "/metrics" {
        if let Some(t) = &state.metrics_token
            && !token_ok(&req, t)
        {
            return error_response(StatusCode::UNAUTHORIZED, "metrics_token required");
        }
        return cluster::metrics(state);
    }
    match &state.admin_token {
        None => {
            return error_response(
                StatusCode::FORBIDDEN,
                "the admin API is disabled: set admin_token in the [admin] section",
            );
        }
        Some(t) if !token_ok(&req, t) => {
            return error_response(
                StatusCode::UNAUTHORIZED,
                "missing or wrong admin token (Authorization: Bearer <admin_token>)",
            );
        }
        Some(_) => (),
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return error_response(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
        }
    };
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return error_response(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}"));
            }
        }
    };
    let res = if !state.test_hooks && is_test_hook(&method, &path) {
        Err(ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "no such admin endpoint: {method} {path} (test endpoints exist only with \
                 `test_hooks = true`, for test clusters)"
            ),
        ))
    } else if path.starts_with("/v1/keys") || path.starts_with("/v1/buckets") {
        keys::route(state, &method, &path, req_query.as_deref(), body).await
    } else if path.starts_with("/v1/debug/blocks/")
        || path.starts_with("/v1/workers")
        || path == "/v1/repair/scrub"
        || path == "/v1/repair/blocks"
    {
        blocks::route(state, &method, &path, body).await
    } else if path.starts_with("/v1/debug/") || path == "/v1/stats" || path == "/v1/repair/tables" {
        debug::route(state, &method, &path, req_query.as_deref(), body).await
    } else {
        cluster::route(state, &method, &path, body).await
    };
    match res {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(ApiError(status, msg)) => error_response(status, msg),
    }
}
