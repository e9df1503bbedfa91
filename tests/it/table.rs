//! Replicated metadata, end to end, on the test key-value table (`grenier debug kv-*`).

use std::time::Duration;

use crate::harness::*;

fn kv_entries(p: &Proc) -> Option<u64> {
    let st = p.cli(&["stats", "--json"]).ok()?;
    let v: serde_json::Value = serde_json::from_str(&st).ok()?;
    v["tables"]
        .as_array()?
        .iter()
        .find(|t| t["table"] == "kv")?["entries"]
        .as_u64()
}

fn three_zone_cluster() -> Vec<Proc> {
    three_zone_cluster_with("")
}

fn put(p: &Proc, k: &str, v: &str) {
    p.cli(&["debug", "kv-put", "bucket", k, v])
        .unwrap_or_else(|e| panic!("put {k} via {}: {e}", p.spec.ip));
}

fn get(p: &Proc, k: &str) -> Option<String> {
    p.cli(&["debug", "kv-get", "bucket", k])
        .ok()
        .map(|s| s.trim().to_string())
}

fn list(p: &Proc, extra: &[&str]) -> Vec<(String, String)> {
    let mut args = vec!["debug", "kv-list", "bucket"];
    args.extend_from_slice(extra);
    let out = p
        .cli(&args)
        .unwrap_or_else(|e| panic!("list via {}: {e}", p.spec.ip));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["key"].as_str().unwrap().to_string(),
                e["value"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Write through one node, read through another; lose a zone and keep working; the revived node
/// converges by itself; deletions stay deleted; a frozen node catches up after it thaws.
#[test]
fn kv_table_read_after_write_through_zone_outage_and_convergence() {
    let mut procs = three_zone_cluster();

    // Read-after-write and list-after-write across nodes.
    for i in 0..30 {
        let k = format!("k{i:03}");
        put(&procs[i % 3], &k, &format!("v{i}"));
        assert_eq!(
            get(&procs[(i + 1) % 3], &k).as_deref(),
            Some(format!("v{i}").as_str()),
            "read-after-write of {k}"
        );
    }
    let all = list(&procs[2], &[]);
    assert_eq!(all.len(), 30);
    assert!(
        all.windows(2).all(|w| w[0].0 < w[1].0),
        "listing is ordered"
    );
    let page = list(&procs[1], &["--start", "k010", "--limit", "5"]);
    assert_eq!(
        page.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
        ["k010", "k011", "k012", "k013", "k014"]
    );
    let rev = list(&procs[0], &["--start", "k005", "--limit", "3", "--reverse"]);
    assert_eq!(
        rev.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
        ["k005", "k004", "k003"]
    );

    // SIGKILL zone c: writes, reads, lists and deletes through the other zones all succeed.
    procs[2].kill();
    for i in 30..60 {
        let k = format!("k{i:03}");
        put(&procs[i % 2], &k, &format!("v{i}"));
        assert_eq!(
            get(&procs[(i + 1) % 2], &k).as_deref(),
            Some(format!("v{i}").as_str())
        );
    }
    for i in 0..5 {
        procs[0]
            .cli(&["debug", "kv-delete", "bucket", &format!("k{i:03}")])
            .unwrap();
        assert_eq!(
            get(&procs[1], &format!("k{i:03}")),
            None,
            "deleted entry still visible"
        );
    }
    assert_eq!(list(&procs[1], &[]).len(), 55);

    // Restart it: it converges without an operator (entries and tombstones), and deletions stay deleted.
    procs[2].restart();
    let target = kv_entries(&procs[0]).unwrap();
    assert_eq!(target, 60, "node 0 holds 55 entries and 5 tombstones");
    wait_for("revived node converges", Duration::from_secs(60), || {
        (kv_entries(&procs[2]) == Some(target)).then_some(())
    });
    for i in 0..5 {
        assert_eq!(
            get(&procs[2], &format!("k{i:03}")),
            None,
            "deleted entry came back"
        );
    }
    assert_eq!(get(&procs[2], "k059").as_deref(), Some("v59"));

    // A partition in time: freeze node 1 during writes, thaw it, and it converges.
    procs[1].signal(libc::SIGSTOP);
    for i in 60..80 {
        put(&procs[i % 2 * 2], &format!("k{i:03}"), &format!("v{i}"));
    }
    procs[1].signal(libc::SIGCONT);
    wait_for("thawed node converges", Duration::from_secs(90), || {
        (kv_entries(&procs[1]) == Some(80)
            && kv_entries(&procs[0]) == Some(80)
            && kv_entries(&procs[2]) == Some(80))
        .then_some(())
    });
    assert_eq!(list(&procs[1], &[]).len(), 75);
}

/// A node back from a freeze (its peers dropped its connections meanwhile) or from a restart serves
/// quorum writes at once: calls to a peer whose connection just closed wait for the redial instead
/// of failing with "not connected" (bug 4 of the resilience suite: about a second of 503s).
#[test]
fn a_node_back_from_a_freeze_or_a_restart_serves_writes_at_once() {
    let mut procs = three_zone_cluster();
    let frozen = procs[2].spec.id.clone();
    put(&procs[2], "before", "v");
    for round in 0..2 {
        procs[2].signal(libc::SIGSTOP);
        wait_for(
            "the peers to drop the frozen node",
            Duration::from_secs(60),
            || {
                procs[..2]
                    .iter()
                    .all(|p| p.status().is_some_and(|s| !up_ids(&s).contains(&frozen)))
                    .then_some(())
            },
        );
        procs[2].signal(libc::SIGCONT);
        // At once, and with no retry: the write needs a peer of the resumed node.
        put(&procs[2], &format!("thawed{round}"), "v");
    }
    procs[2].kill();
    procs[2].restart();
    put(&procs[2], "restarted", "v");
    for k in ["before", "thawed0", "thawed1", "restarted"] {
        assert_eq!(get(&procs[0], k).as_deref(), Some("v"), "{k}");
    }
}

/// A layout change under load: a checker writes keys and reads each back through another node while a
/// node joins zone c and the old zone-c node leaves. No read-after-write violation, every acknowledged
/// write readable at the end, and the transition completes (one active version left).
#[test]
fn layout_change_under_load_keeps_read_after_write() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let mut procs = three_zone_cluster();
    // A fourth node, known to the cluster but without a role yet.
    let spec = {
        let base = procs[0].spec.ip.rsplit_once('.').unwrap().0.to_string();
        let root = procs[0].spec.dir.parent().unwrap().to_path_buf();
        let mut s = node_spec(&root, &format!("{base}.4"), 3, SECRET, 3);
        s.bootstrap = vec![procs[0].spec.peer_string()];
        s
    };
    procs.push(Proc::start(spec));
    wait_for("4 nodes up", Duration::from_secs(60), || {
        procs
            .iter()
            .all(|p| p.status().is_some_and(|s| up_ids(&s).len() == 4))
            .then_some(())
    });
    let urls: Vec<String> = procs.iter().map(|p| p.spec.admin_url()).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let checker = {
        let (stop, urls) = (stop.clone(), urls.clone());
        std::thread::spawn(move || {
            let mut acked: Vec<String> = vec![];
            let mut violations: Vec<String> = vec![];
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) || i < 40 {
                let k = format!("load{i:05}");
                let v = format!("value{i}");
                let w = &urls[i % urls.len()];
                let r = &urls[(i + 1) % urls.len()];
                if cli_raw(w, &["debug", "kv-put", "bucket", &k, &v]).is_ok() {
                    acked.push(k.clone());
                    match cli_raw(r, &["debug", "kv-get", "bucket", &k]) {
                        Ok(got) if got.trim() == v => (),
                        other => {
                            violations.push(format!("{k} written via {w}, read via {r}: {other:?}"))
                        }
                    }
                } else {
                    violations.push(format!("write of {k} via {w} failed"));
                }
                i += 1;
            }
            (acked, violations)
        })
    };

    // Wait for some load, then change the layout: node 3 joins zone c, node 2 leaves.
    wait_for("the checker is writing", Duration::from_secs(30), || {
        (kv_entries(&procs[0]).unwrap_or(0) >= 5).then_some(())
    });
    procs[0]
        .cli(&[
            "layout",
            "assign",
            &procs[3].spec.id[..12],
            "-z",
            "c",
            "-c",
            "10G",
        ])
        .unwrap();
    procs[0]
        .cli(&["layout", "remove", &procs[2].spec.id[..12]])
        .unwrap();
    procs[0].cli(&["layout", "apply"]).unwrap();
    for p in &procs {
        wait_for(
            "transition to version 2 completes",
            Duration::from_secs(120),
            || {
                let l = p.cli_json(&["layout", "show"]);
                (l["transition"]["active_versions"] == serde_json::json!([2])).then_some(())
            },
        );
    }
    stop.store(true, Ordering::SeqCst);
    let (acked, violations) = checker.join().unwrap();
    assert!(
        violations.is_empty(),
        "{} violations, e.g. {:?}",
        violations.len(),
        &violations[..violations.len().min(5)]
    );
    assert!(acked.len() >= 40, "checker made {} writes", acked.len());
    // Every acknowledged write is readable through the new layout (node 2 no longer holds data).
    let all = list(&procs[3], &["--limit", "100000"]);
    let keys: std::collections::HashSet<&str> = all.iter().map(|e| e.0.as_str()).collect();
    for k in &acked {
        assert!(keys.contains(k.as_str()), "acknowledged write {k} lost");
    }
    // The node that left hands its entries off and drops them; the others keep everything.
    wait_for(
        "the removed node drops its entries",
        Duration::from_secs(60),
        || (kv_entries(&procs[2]) == Some(0)).then_some(()),
    );
    let n = kv_entries(&procs[0]).unwrap();
    assert!(
        n as usize >= acked.len(),
        "node 0 holds {n} entries for {} acknowledged writes",
        acked.len()
    );
    assert_eq!(kv_entries(&procs[3]), Some(n));
}

/// Tombstones are collected only once every replica holds them: delete while a replica is down, wait well
/// past the GC delay, bring the replica back (it still holds the old value): the entry stays deleted, and
/// the tombstone is then collected everywhere.
#[test]
fn deleted_entry_never_comes_back_from_a_node_that_was_offline() {
    let mut procs = three_zone_cluster_with("tombstone_gc_delay_secs = 1");
    put(&procs[0], "doomed", "old value");
    put(&procs[0], "kept", "still here");
    wait_for(
        "all replicas hold both entries",
        Duration::from_secs(30),
        || procs.iter().all(|p| kv_entries(p) == Some(2)).then_some(()),
    );
    procs[2].kill();
    procs[0]
        .cli(&["debug", "kv-delete", "bucket", "doomed"])
        .unwrap();
    let e = procs[0].cli(&["repair", "tables"]).unwrap_err();
    assert!(e.contains("could not reach every replica"), "{e}");
    // Well past the 1 s delay, the tombstone must still be there: one replica has not confirmed it.
    let gc_todo = |p: &Proc| {
        let v: serde_json::Value = serde_json::from_str(&p.cli(&["stats", "--json"]).ok()?).ok()?;
        v["tables"]
            .as_array()?
            .iter()
            .find(|t| t["table"] == "kv")?["gc_todo"]
            .as_u64()
    };
    wait_for(
        "tombstone waiting for GC on the live nodes",
        Duration::from_secs(30),
        || (gc_todo(&procs[0]) == Some(1)).then_some(()),
    );
    // Asserting that something does NOT happen needs a wait: GC would have run three times by now.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        kv_entries(&procs[0]),
        Some(2),
        "tombstone collected while a replica was down"
    );
    // The replica comes back with the old value; anti-entropy and GC run; the entry stays deleted.
    procs[2].restart();
    wait_for(
        "tombstone collected on every node",
        Duration::from_secs(60),
        || procs.iter().all(|p| kv_entries(p) == Some(1)).then_some(()),
    );
    for p in &procs {
        assert_eq!(
            get(p, "doomed"),
            None,
            "deleted entry came back through {}",
            p.spec.ip
        );
        assert_eq!(get(p, "kept").as_deref(), Some("still here"));
    }
    assert_eq!(list(&procs[2], &[]).len(), 1);
    let out = procs[1].cli(&["repair", "tables"]).unwrap();
    assert!(out.contains("table kv: in sync"), "{out}");
    let stats = procs[1].cli_json(&["stats"]);
    let kv = stats["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "kv")
        .unwrap();
    assert_eq!(kv["last_full_sync"]["complete"], true, "{kv}");
    assert_eq!(kv["gc_todo"], 0);
}
