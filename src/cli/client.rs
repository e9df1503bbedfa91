//! Minimal HTTP/1.1 client for the admin API.

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::admin::api;

/// An answer of the admin API in its typed form ([`crate::admin::api`]).
fn typed<T: DeserializeOwned>(path: &str, v: Value) -> Result<T> {
    serde_json::from_value(v).with_context(|| {
        format!("the admin API's answer to {path} has an unexpected shape: is the node running the same grenier version?")
    })
}

pub struct AdminClient {
    /// `host:port`
    authority: String,
    token: Option<String>,
}

impl AdminClient {
    pub fn new(url: &str, token: Option<String>) -> Result<AdminClient> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            anyhow!("admin URL `{url}` must start with http:// (the admin API is served on loopback or a private network)")
        })?;
        let authority = rest.trim_end_matches('/').to_string();
        if authority.is_empty() || authority.contains('/') {
            bail!("admin URL `{url}` must look like http://127.0.0.1:3903");
        }
        Ok(AdminClient { authority, token })
    }

    /// GET an endpoint and parse its answer into the admin API's typed form.
    pub async fn get_as<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.request_as(Method::GET, path, None::<&api::Empty>)
            .await
    }

    /// POST a typed request and parse the typed answer.
    pub async fn post_as<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T> {
        self.request_as(Method::POST, path, Some(body)).await
    }

    /// Any method, an optional typed body, the typed answer.
    pub async fn request_as<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T> {
        let body = body.map(serde_json::to_vec).transpose()?;
        typed(path, self.call(method, path, body).await?)
    }

    async fn call(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Value> {
        let tcp = tokio::net::TcpStream::connect(&self.authority)
            .await
            .with_context(|| {
                format!(
                    "cannot reach the admin API at http://{}: is `grenier server` running there?",
                    self.authority
                )
            })?;
        tcp.set_nodelay(true)?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.authority);
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let body = body.map(Bytes::from).unwrap_or_default();
        let req = req
            .header("content-type", "application/json")
            .body(Full::new(body))?;
        let resp = sender
            .send_request(req)
            .await
            .context("admin API request failed")?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let v: Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("admin API answered {status} with a body that is not JSON"))?;
        if !status.is_success() {
            let msg = serde_json::from_value::<api::ErrorBody>(v)
                .map(|e| e.error)
                .unwrap_or_else(|_| "unknown error".into());
            if status == hyper::StatusCode::UNAUTHORIZED {
                bail!(
                    "{msg}\nhint: the token comes from [admin] admin_token in the config (-c), GRENIER_ADMIN_TOKEN or --admin-token"
                );
            }
            bail!("{msg}");
        }
        Ok(v)
    }
}
