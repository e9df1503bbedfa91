//! Test harness: real `grenier server` processes, each on its own loopback address (127.A.B.n) with the
//! standard ports, in temp dirs; driven through the real `grenier` CLI. Every process is SIGKILLed when its
//! `Proc` is dropped (also when a test fails), and dies with the test thread (PR_SET_PDEATHSIG).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use grenier::net::NodeKey;
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_grenier");
pub const ADMIN_TOKEN: &str = "integration-test-admin-token";

static NEXT_NET: AtomicU32 = AtomicU32::new(0);

/// A fresh 127.A.B.0/24 block for one test (A from the process id so reruns don't collide).
fn fresh_net() -> (u8, u8) {
    let n = NEXT_NET.fetch_add(1, Ordering::SeqCst);
    let a = 10 + (std::process::id() % 200) as u8;
    (a, (n % 250) as u8 + 1)
}

/// Poll `f` until it returns Some, or panic with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub struct NodeSpec {
    pub dir: PathBuf,
    pub ip: String,
    pub id: String,
    pub secret: String,
    pub bootstrap: Vec<String>,
    pub rf: usize,
    /// Extra top-level configuration lines.
    pub extra: String,
    /// Extra environment variables of the server process.
    pub env: Vec<(String, String)>,
    /// Extra lines of the `[s3_api]` section.
    pub s3_api_extra: String,
    /// A network namespace (`ip netns` name) to run the server in (see `netns.rs`); None: the test's own.
    pub netns: Option<String>,
}

impl NodeSpec {
    pub fn rpc_addr(&self) -> String {
        format!("{}:3901", self.ip)
    }
    pub fn admin_url(&self) -> String {
        format!("http://{}:3903", self.ip)
    }
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("grenier.toml")
    }
    pub fn peer_string(&self) -> String {
        format!("{}@{}", self.id, self.rpc_addr())
    }
    pub fn write_config(&self) {
        let boot: Vec<String> = self.bootstrap.iter().map(|b| format!("\"{b}\"")).collect();
        // `extra` may bring its own `[[data_dir]]` entries (they must come last among top-level keys).
        let data_dir = if self.extra.contains("data_dir") {
            ""
        } else {
            "data_dir = \"data\""
        };
        // The suite drives the test endpoints (kv table, debug blocks) and the test clock: on unless a
        // test sets `test_hooks` itself.
        let test_hooks = if self.extra.contains("test_hooks") {
            ""
        } else {
            "test_hooks = true"
        };
        let text = format!(
            r#"metadata_dir = "meta"
{data_dir}
replication_factor = {rf}
rpc_bind_addr = "{ip}:3901"
rpc_public_addr = "{ip}:3901"
rpc_bind_outgoing = true
rpc_secret = "{secret}"
bootstrap_peers = [{boot}]
{test_hooks}
{extra}

[s3_api]
api_bind_addr = "{ip}:3900"
{s3_api_extra}

[s3_web]
bind_addr = "{ip}:3902"
root_domain = ".web.localhost"

[admin]
api_bind_addr = "{ip}:3903"
admin_token = "{token}"
"#,
            rf = self.rf,
            ip = self.ip,
            secret = self.secret,
            boot = boot.join(", "),
            extra = self.extra,
            token = ADMIN_TOKEN,
            s3_api_extra = self.s3_api_extra,
        );
        // Inline secrets: the node refuses a config file other users can read.
        let path = self.config_path();
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(
            &path,
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
        )
        .unwrap();
    }
}

/// A running node process.
pub struct Proc {
    pub spec: NodeSpec,
    child: Option<Child>,
    log: PathBuf,
    /// The temporary directory holding the node's files (shared by a cluster's nodes): removed when the
    /// last node using it is dropped, after its process is killed (fields drop after `Drop::drop`).
    dir: Option<std::sync::Arc<tempfile::TempDir>>,
}

impl Proc {
    pub fn start(spec: NodeSpec) -> Proc {
        let log = spec.dir.join("server.log");
        let mut p = Proc {
            spec,
            child: None,
            log,
            dir: None,
        };
        p.restart();
        p
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "node already running");
        self.spec.write_config();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(BIN);
        cmd.arg("-c")
            .arg(self.spec.config_path())
            .arg("server")
            .env("RUST_LOG", "grenier=info")
            .envs(self.spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // Opened here (close-on-exec), entered in the child before exec.
        let netns = self.spec.netns.as_ref().map(|ns| {
            std::fs::File::open(format!("/var/run/netns/{ns}"))
                .unwrap_or_else(|e| panic!("open network namespace {ns}: {e}"))
        });
        let netns_fd = netns.as_ref().map(std::os::fd::AsRawFd::as_raw_fd);
        // SAFETY: prctl and setns are async-signal-safe system calls; the first only asks the kernel to
        // SIGKILL the child with its parent, the second moves the child into the namespace held by a
        // descriptor the parent keeps open until spawn returns.
        unsafe {
            cmd.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if let Some(fd) = netns_fd
                    && libc::setns(fd, libc::CLONE_NEWNET) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        self.child = Some(cmd.spawn().expect("spawn grenier server"));
        drop(netns);
        let url = self.spec.admin_url();
        wait_for(
            &format!("admin API of {} to answer", self.spec.ip),
            Duration::from_secs(30),
            || {
                if let Some(c) = self.child.as_mut()
                    && let Ok(Some(status)) = c.try_wait()
                {
                    panic!(
                        "grenier server exited with {status}; log:\n{}",
                        self.log_text()
                    );
                }
                cli_raw(&url, &["status", "--json"]).ok()
            },
        );
    }

    /// Keep `dir` (the temporary directory of this node's files) until this node is dropped.
    pub fn keep_dir(&mut self, dir: &std::sync::Arc<tempfile::TempDir>) {
        self.dir = Some(dir.clone());
    }

    /// Start a new node (a fresh identity, node number `n`, address `ip`) in this node's cluster
    /// directory, with its configuration, bootstrapping from it: a new machine joining the cluster.
    pub fn start_new_peer(&self, n: usize, ip: &str) -> Proc {
        let root = self
            .spec
            .dir
            .parent()
            .expect("a node's directory has a parent");
        let mut spec = node_spec(root, ip, self.spec.rf, &self.spec.secret, n);
        assert_ne!(spec.dir, self.spec.dir, "node number {n} is taken");
        spec.extra = self.spec.extra.clone();
        spec.bootstrap = vec![self.spec.peer_string()];
        let mut p = Proc::start(spec);
        p.dir = self.dir.clone();
        p
    }

    /// Wait until the process has exited (it may be a zombie not yet reaped), at most `timeout`.
    pub fn wait_exited(&self, what: &str, timeout: Duration) {
        let pid = self.pid();
        wait_for(what, timeout, || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // The state follows the parenthesised command name; a zombie has exited.
            let state = stat.rsplit_once(") ").and_then(|(_, s)| s.chars().next());
            matches!(state, None | Some('Z') | Some('X')).then_some(())
        });
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Run a CLI command against this node; stdout on success, stderr on failure.
    pub fn cli(&self, args: &[&str]) -> Result<String, String> {
        cli_raw(&self.spec.admin_url(), args)
    }

    pub fn cli_json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self
            .cli(&a)
            .unwrap_or_else(|e| panic!("grenier {args:?} failed: {e}"));
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("grenier {args:?} printed invalid JSON ({e}): {out}"))
    }

    /// Create an access key `name` allowed to create buckets; its (id, secret).
    pub fn s3_key(&self, name: &str) -> (String, String) {
        let k = self.cli_json(&["key", "create", name]);
        self.cli(&["key", "allow", name, "--create-bucket"])
            .unwrap();
        (
            k["id"].as_str().unwrap().to_string(),
            k["secret"].as_str().unwrap().to_string(),
        )
    }

    pub fn status(&self) -> Option<Value> {
        let out = self.cli(&["status", "--json"]).ok()?;
        serde_json::from_str(&out).ok()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            // SAFETY: our child; SIGCONT first in case a test left it stopped.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGCONT);
            }
        }
        self.kill();
    }
}

pub fn cli_raw(admin_url: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(BIN)
        .args(args)
        .env("GRENIER_ADMIN_URL", admin_url)
        .env("GRENIER_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("GRENIER_CONFIG", "/nonexistent/grenier.toml")
        .output()
        .expect("run grenier CLI");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Specs for `n` nodes in a fresh address block, node keys created up front so ids are known.
pub struct ClusterPlan {
    pub root: tempfile::TempDir,
    pub specs: Vec<NodeSpec>,
}

pub fn plan(n: usize, rf: usize, secret: &str) -> ClusterPlan {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = fresh_net();
    let specs = (0..n)
        .map(|i| {
            node_spec(
                root.path(),
                &format!("127.{a}.{b}.{}", i + 1),
                rf,
                secret,
                i,
            )
        })
        .collect();
    ClusterPlan { root, specs }
}

pub fn node_spec(root: &Path, ip: &str, rf: usize, secret: &str, i: usize) -> NodeSpec {
    let dir = root.join(format!("node{i}"));
    let key = NodeKey::load_or_create(&dir.join("meta")).unwrap();
    NodeSpec {
        dir,
        ip: ip.to_string(),
        id: key.id().to_hex(),
        secret: secret.to_string(),
        bootstrap: vec![],
        rf,
        extra: String::new(),
        env: vec![],
        s3_api_extra: String::new(),
        netns: None,
    }
}

pub const SECRET: &str = "3b1c1e7a9f4d2c6b8a0e5f7d9c1b3a5e7f9d1c3b5a7e9f1d3c5b7a9e1f3d5c7b";

/// Nodes `up` as seen in a status document.
pub fn up_ids(status: &Value) -> Vec<String> {
    status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["up"].as_bool() == Some(true))
        .map(|n| n["id"].as_str().unwrap().to_string())
        .collect()
}

/// Start `n` nodes (the others bootstrap from the first) with `extra` configuration lines, and wait
/// until each sees all of them up. No layout yet.
pub fn start_cluster(n: usize, extra: &str) -> Vec<Proc> {
    let mut plan = plan(n, 3, SECRET);
    let boot = plan.specs[0].peer_string();
    for s in plan.specs.iter_mut() {
        s.extra = extra.to_string();
    }
    for s in plan.specs.iter_mut().skip(1) {
        s.bootstrap = vec![boot.clone()];
    }
    let root = std::sync::Arc::new(plan.root);
    let mut procs: Vec<Proc> = plan.specs.drain(..).map(Proc::start).collect();
    for p in &mut procs {
        p.keep_dir(&root);
    }
    wait_for(&format!("{n} nodes up"), Duration::from_secs(60), || {
        procs
            .iter()
            .all(|p| p.status().is_some_and(|s| up_ids(&s).len() == n))
            .then_some(())
    });
    procs
}

/// Give node `i` a role for each `(i, role)` of `roles`, apply, and wait until every node of `procs`
/// reports a healthy cluster. A role is `"zone"` (10G in that zone), `"zone:CAPACITY"`, or `"gateway"`.
pub fn assign_and_apply(procs: &[Proc], roles: &[(usize, &str)]) {
    for (i, role) in roles {
        let id = &procs[*i].spec.id[..12];
        let (zone, capacity) = role.split_once(':').unwrap_or((role, "10G"));
        let args: Vec<&str> = match *role {
            "gateway" => vec!["layout", "assign", id, "-z", "gw", "--gateway"],
            _ => vec!["layout", "assign", id, "-z", zone, "-c", capacity],
        };
        procs[0].cli(&args).unwrap();
    }
    procs[0].cli(&["layout", "apply"]).unwrap();
    for p in procs {
        wait_for(
            "layout everywhere, healthy",
            Duration::from_secs(30),
            || {
                p.status()
                    .is_some_and(|s| s["health"] == "healthy")
                    .then_some(())
            },
        );
    }
}

/// Three nodes, one per zone (a, b, c), replication factor 3, layout applied.
pub fn three_zone_cluster_with(extra: &str) -> Vec<Proc> {
    let procs = start_cluster(3, extra);
    assign_and_apply(&procs, &[(0, "a"), (1, "b"), (2, "c")]);
    procs
}

/// A `/proc/<pid>/status` memory field (`VmRSS`, `VmHWM`, ...) of a process, in bytes.
pub fn proc_memory(pid: i32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib << 10)
}

/// An `aws-sdk-s3` client of the S3 API at `authority` (`ip:port`, plain HTTP, path style) in
/// `region`, with the key `id`/`secret` (its own connection pool).
pub fn sdk_client(authority: &str, region: &str, id: &str, secret: &str) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::Config::builder()
        .http_client(sdk_http())
        .behavior_version_latest()
        .region(aws_sdk_s3::config::Region::new(region.to_string()))
        .endpoint_url(format!("http://{authority}"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            id, secret, None, None, "test",
        ))
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// The HTTP client for `aws-sdk-s3` configs (`.http_client(harness::sdk_http())`): the SDK is built
/// without its TLS stack (see Cargo.toml), so it has no default client; tests talk plain HTTP.
pub fn sdk_http() -> aws_sdk_s3::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new().build_http()
}
