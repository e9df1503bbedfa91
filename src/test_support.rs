//! Helpers shared by the unit tests (compiled only under `#[cfg(test)]`), so each is written once:
//!
//! - [`wait_until`]: poll a condition until it holds, panicking with what was awaited once a deadline
//!   passes. Tests synchronise with it, never with fixed sleeps.
//! - [`NodeConfig`]: the node TOML the in-process tests use (loopback addresses, a fixed test secret),
//!   with the fields they vary; [`NodeConfig::write`] saves it (mode 0600) and loads it as a `Config`.
//! - [`start_node`]: a full [`Node`] in this process from such a config.
//!
//! Layering: like `server.rs` this module may use every layer, and since it only exists in test builds,
//! every layer's tests may use it (see `src/layering.rs` and `doc/ARCHITECTURE.md`).
//! The integration tests (`tests/it`) are a separate crate with their own harness.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::server::Node;
use crate::util::config::Config;

/// The `rpc_secret` of every test node.
pub(crate) const TEST_SECRET: &str =
    "5b1c1e7a9f4d2c6b8a0e5f7d9c1b3a5e7f9d1c3b5a7e9f1d3c5b7a9e1f3d5c7b";

/// Polls `f` every 10 ms until it returns true and returns how long that took; panics with
/// `timed out waiting for {what}` once `timeout` has passed.
pub(crate) async fn wait_until(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> bool,
) -> Duration {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    t0.elapsed()
}

/// The TOML of one in-process test node: RPC on `ip:3901`, S3 on `ip:3900`, admin on `ip:3903`,
/// metadata and data under the directory the config is written to.
pub(crate) struct NodeConfig<'a> {
    /// The loopback address the node binds (e.g. `127.10.253.1`).
    pub ip: &'a str,
    pub replication_factor: usize,
    /// `id@ip:port` of a peer to join, if any.
    pub bootstrap: Option<&'a str>,
    pub test_hooks: bool,
}

impl<'a> NodeConfig<'a> {
    /// A node on `ip` with replication factor 3, no bootstrap peer and the test hooks on.
    pub(crate) fn new(ip: &'a str) -> Self {
        NodeConfig {
            ip,
            replication_factor: 3,
            bootstrap: None,
            test_hooks: true,
        }
    }

    pub(crate) fn bootstrap(mut self, peer: Option<&'a str>) -> Self {
        self.bootstrap = peer;
        self
    }

    /// The TOML text.
    pub(crate) fn toml(&self) -> String {
        let NodeConfig {
            ip,
            replication_factor,
            bootstrap,
            test_hooks,
        } = self;
        let boot = bootstrap
            .map(|b| format!("bootstrap_peers = [\"{b}\"]"))
            .unwrap_or_default();
        format!(
            "metadata_dir = \"meta\"\ndata_dir = \"data\"\nreplication_factor = {replication_factor}\n\
             rpc_bind_addr = \"{ip}:3901\"\nrpc_public_addr = \"{ip}:3901\"\n\
             rpc_bind_outgoing = true\nrpc_secret = \"{TEST_SECRET}\"\n{boot}\n\
             test_hooks = {test_hooks}\n\
             [s3_api]\napi_bind_addr = \"{ip}:3900\"\n[admin]\napi_bind_addr = \"{ip}:3903\"\nadmin_token = \"t\"\n"
        )
    }

    /// Writes the TOML to `dir/grenier.toml` (created, mode 0600) and loads it: relative directories
    /// resolve under `dir`.
    pub(crate) fn write(&self, dir: &Path) -> Config {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join("grenier.toml");
        std::fs::write(&path, self.toml()).unwrap();
        std::fs::set_permissions(
            &path,
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
        )
        .unwrap();
        Config::load(&path).unwrap()
    }
}

/// Starts a full node in this process (real TLS mesh, real redb).
pub(crate) async fn start_node(config: Config) -> Node {
    Node::start(config).await.unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wait_until_returns_once_the_condition_holds() {
        let mut n = 0;
        wait_until("three polls", Duration::from_secs(5), || {
            n += 1;
            n >= 3
        })
        .await;
        assert_eq!(n, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "timed out waiting for never")]
    async fn wait_until_names_what_it_waited_for() {
        wait_until("never", Duration::from_millis(30), || false).await;
    }

    #[test]
    fn node_config_is_a_valid_node() {
        let dir = tempfile::tempdir().unwrap();
        let peer = format!("{}@127.0.0.2:3901", "ab".repeat(32));
        let c = NodeConfig::new("127.0.0.1")
            .bootstrap(Some(&peer))
            .write(dir.path());
        assert_eq!(c.replication_factor, 3);
        assert!(c.metadata_dir.starts_with(dir.path()));
        assert_eq!(c.bootstrap_peers.len(), 1);
    }
}
