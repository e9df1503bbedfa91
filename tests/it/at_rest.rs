//! State at rest and production hooks, on real `grenier server` processes: the node's files are private
//! whatever the umask, a world-readable config holding secrets is refused, and the test-only hooks
//! (destructive debug endpoints, the kv table, the test clock) exist only with `test_hooks = true`.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::harness::*;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// One node, replication factor 1, nothing started.
fn one_node_spec() -> (tempfile::TempDir, NodeSpec) {
    let mut plan = plan(1, 1, SECRET);
    let spec = plan.specs.remove(0);
    (plan.root, spec)
}

/// Status line of a raw admin request (`Authorization` with the test token).
fn admin_status(spec: &NodeSpec, method: &str, path: &str, body: &str) -> u16 {
    let mut s = std::net::TcpStream::connect(format!("{}:3903", spec.ip)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {ip}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n{body}",
        ip = spec.ip,
        len = body.len()
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {out:?}"))
}

fn now_msec() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// `applied_msec` of the newest layout version after assigning the node `capacity` and applying.
fn apply_layout(p: &Proc, capacity: &str) -> u64 {
    let id = &p.spec.id[..12];
    p.cli(&["layout", "assign", id, "-z", "a", "-c", capacity])
        .unwrap();
    p.cli(&["layout", "apply"]).unwrap();
    let h = p.cli_json(&["layout", "history"]);
    h["versions"]
        .as_array()
        .and_then(|v| v.iter().filter_map(|v| v["applied_msec"].as_u64()).max())
        .unwrap_or_else(|| panic!("no applied version in {h}"))
}

/// Metadata dir, database, data dir and node key are private on a started node, also when the
/// directories existed with open modes before the first start (which the log reports).
#[test]
fn node_state_is_private_on_disk() {
    let (_root, spec) = one_node_spec();
    let (meta, data) = (spec.dir.join("meta"), spec.dir.join("data"));
    // As left by an install script with umask 022.
    std::fs::create_dir_all(&data).unwrap();
    chmod(&meta, 0o755);
    chmod(&data, 0o755);
    let p = Proc::start(spec);
    let db = meta.join("db.redb");
    wait_for("the database file", Duration::from_secs(30), || {
        db.exists().then_some(())
    });
    assert_eq!(mode(&meta), 0o700, "metadata dir");
    assert_eq!(mode(&db), 0o600, "database file");
    assert_eq!(mode(&data), 0o700, "data dir");
    assert_eq!(mode(&meta.join("node_key")), 0o600, "node key");
    assert_eq!(
        mode(&p.spec.config_path()),
        0o600,
        "config written by the harness"
    );
    let log = p.log_text();
    assert!(
        log.contains("was mode 0755") && log.contains("set it to 0700"),
        "the fix is logged:\n{log}"
    );
}

/// A config file that every user can read and that holds an inline secret: the server refuses to start
/// and says what to do.
#[test]
fn world_readable_config_with_inline_secret_is_refused() {
    let (_root, spec) = one_node_spec();
    spec.write_config();
    let path = spec.config_path();
    chmod(&path, 0o644);
    let mut child = Command::new(BIN)
        .arg("-c")
        .arg(&path)
        .arg("server")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server started with a world-readable config holding secrets");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success());
    assert!(
        err.contains("rpc_secret") && err.contains(&format!("chmod 600 {}", path.display())),
        "{err}"
    );
    assert!(!err.contains(SECRET), "the secret is not printed: {err}");
}

/// Without `test_hooks`, the destructive debug endpoints and the kv table answer 404 and the test clock
/// variable is ignored, while the operator endpoints work; with it, all of them work.
#[test]
fn test_hooks_are_off_unless_configured() {
    const DAY_MS: u64 = 86_400_000;
    let (_root, mut spec) = one_node_spec();
    spec.extra = "test_hooks = false".into();
    spec.env = vec![(
        grenier::util::time::CLOCK_OFFSET_ENV.to_string(),
        (10 * DAY_MS).to_string(),
    )];
    let mut p = Proc::start(spec);

    // The clock offset is ignored: the layout is stamped with the real time.
    let before = now_msec();
    let applied = apply_layout(&p, "10G");
    assert!(
        applied >= before.saturating_sub(60_000) && applied <= now_msec() + 60_000,
        "applied_msec {applied} is not now ({before})"
    );
    for (method, path, body) in [
        (
            "POST",
            "/v1/debug/blocks/generate",
            r#"{"count": 1, "size": 4096}"#,
        ),
        (
            "POST",
            "/v1/debug/blocks/unref",
            r#"{"ref": "debug", "hashes": []}"#,
        ),
        ("PUT", "/v1/debug/kv/p/k", r#"{"value": "v"}"#),
        ("GET", "/v1/debug/kv/p/k", ""),
        ("GET", "/v1/debug/kv/p", ""),
        ("DELETE", "/v1/debug/kv/p/k", ""),
    ] {
        assert_eq!(
            admin_status(&p.spec, method, path, body),
            404,
            "{method} {path}"
        );
    }
    let e = p.cli(&["debug", "kv-put", "p", "k", "v"]).unwrap_err();
    assert!(e.contains("test_hooks"), "{e}");
    let stats = p.cli_json(&["stats"]);
    let tables: Vec<&str> = stats["tables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["table"].as_str())
        .collect();
    assert!(!tables.contains(&"kv"), "no kv table: {tables:?}");
    assert!(tables.contains(&"block_ref"), "{tables:?}");
    assert_eq!(
        admin_status(&p.spec, "POST", "/v1/repair/tables", "{}"),
        200
    );
    assert_eq!(
        admin_status(&p.spec, "GET", "/v1/debug/blocks/local", ""),
        200
    );
    assert!(!p.log_text().contains("endpoints that destroy data"));

    // Same node with the hooks on: everything is there, the clock is 10 days ahead.
    p.kill();
    p.spec.extra = String::new(); // the harness default: test_hooks = true
    p.restart();
    assert!(
        p.log_text().contains("endpoints that destroy data"),
        "warned at start"
    );
    p.cli(&["debug", "kv-put", "p", "k", "v"]).unwrap();
    assert_eq!(p.cli(&["debug", "kv-get", "p", "k"]).unwrap().trim(), "v");
    assert_eq!(
        admin_status(
            &p.spec,
            "POST",
            "/v1/debug/blocks/generate",
            r#"{"count": 1, "size": 4096}"#
        ),
        200
    );
    let applied = apply_layout(&p, "20G");
    assert!(
        applied >= now_msec() + 9 * DAY_MS,
        "the clock offset applies with test_hooks: applied_msec {applied}"
    );
}
