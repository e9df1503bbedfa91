//! Shared by the benchmarks that start nodes in-process: their configuration, and waiting on a
//! condition.

use std::time::{Duration, Instant};

use grenier::util::config::Config;

const SECRET: &str = "5b1c1e7a9f4d2c6b8a0e5f7d9c1b3a5e7f9d1c3b5a7e9f1d3c5b7a9e1f3d5c7b";

/// Write `root/dir/grenier.toml` for a node on `ip` (RPC 3901, S3 3900, admin 3903) and load it.
pub fn config(
    root: &std::path::Path,
    dir: &str,
    ip: &str,
    rf: usize,
    boot: Option<&str>,
) -> Config {
    let dir = root.join(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let boot = boot
        .map(|b| format!("bootstrap_peers = [\"{b}\"]"))
        .unwrap_or_default();
    let text = format!(
        "metadata_dir = \"meta\"\ndata_dir = \"data\"\nreplication_factor = {rf}\nrpc_bind_addr = \"{ip}:3901\"\n\
         rpc_public_addr = \"{ip}:3901\"\nrpc_bind_outgoing = true\nrpc_secret = \"{SECRET}\"\n{boot}\n\
         test_hooks = true\n\
         [s3_api]\napi_bind_addr = \"{ip}:3900\"\ns3_region = \"garage\"\n\
         [admin]\napi_bind_addr = \"{ip}:3903\"\nadmin_token = \"bench\"\n"
    );
    let path = dir.join("grenier.toml");
    std::fs::write(&path, text).unwrap();
    // Inline secrets: a node refuses a config file other users can read.
    std::fs::set_permissions(
        &path,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
    )
    .unwrap();
    Config::load(&path).unwrap()
}

/// Poll `f` until it holds (panics after two minutes).
pub async fn wait(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
