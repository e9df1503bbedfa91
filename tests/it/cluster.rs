//! Cluster foundation, end to end: real processes, real CLI.

use std::time::Duration;

use crate::block::{block_file, local_blocks};
use crate::harness::*;

fn assign_and_apply(admin: &Proc, nodes: &[&Proc], zones: &[&str], capacity: &str) -> String {
    for (p, z) in nodes.iter().zip(zones) {
        admin
            .cli(&[
                "layout",
                "assign",
                &p.spec.id[..12],
                "-z",
                z,
                "-c",
                capacity,
            ])
            .expect("layout assign");
    }
    admin.cli(&["layout", "apply"]).expect("layout apply")
}

/// Six nodes, two per zone, rf 3; they find each other through one bootstrap peer; a layout applied
/// through the CLI reaches every node; losing a whole zone degrades health, which recovers on restart; a
/// node restarted from its persisted peer list (no bootstrap peers) rejoins and catches up with a layout
/// version it missed; a node with another rpc_secret never shows up.
#[test]
fn six_nodes_three_zones_survive_a_zone_outage() {
    let mut plan = plan(6, 3, SECRET);
    let boot = plan.specs[0].peer_string();
    for s in plan.specs.iter_mut().skip(1) {
        s.bootstrap = vec![boot.clone()];
    }
    let mut procs: Vec<Proc> = plan.specs.drain(..).map(Proc::start).collect();
    let ids: Vec<String> = procs.iter().map(|p| p.spec.id.clone()).collect();

    // Full mesh through the single bootstrap peer.
    for p in &procs {
        wait_for(
            &format!("{} to see 6 nodes up", p.spec.ip),
            Duration::from_secs(60),
            || {
                let st = p.status()?;
                let up = up_ids(&st);
                ids.iter().all(|id| up.contains(id)).then_some(())
            },
        );
    }

    // Layout through the CLI on node 0.
    let zones = ["paris", "paris", "lyon", "lyon", "nantes", "nantes"];
    let refs: Vec<&Proc> = procs.iter().collect();
    let out = assign_and_apply(&procs[0], &refs, &zones, "100G");
    assert!(
        out.contains("Applied layout version 1"),
        "apply output: {out}"
    );

    // Every node converges on the same layout, with each partition in 3 distinct zones.
    let reference = procs[0].cli_json(&["layout", "show"]);
    assert_eq!(reference["version"], 1);
    assert_eq!(reference["partitions"].as_array().unwrap().len(), 256);
    for part in reference["partitions"].as_array().unwrap() {
        let nodes = part["nodes"].as_array().unwrap();
        let mut zs: Vec<&str> = nodes
            .iter()
            .map(|n| zones[ids.iter().position(|i| i == n.as_str().unwrap()).unwrap()])
            .collect();
        zs.sort();
        zs.dedup();
        assert_eq!(
            zs.len(),
            3,
            "partition {} not on 3 zones: {nodes:?}",
            part["partition"]
        );
    }
    for p in &procs {
        wait_for(
            &format!("{} to get layout version 1", p.spec.ip),
            Duration::from_secs(30),
            || {
                let l = p.cli_json(&["layout", "show"]);
                (l["partitions"] == reference["partitions"]).then_some(())
            },
        );
    }
    let st = procs[0].status().unwrap();
    assert_eq!(st["health"], "healthy");
    assert_eq!(st["layout_version"], 1);
    assert_eq!(up_ids(&st).len(), 6);
    // Human output names the health and every node.
    let human = procs[0].cli(&["status"]).unwrap();
    assert!(human.contains("healthy"), "{human}");
    for id in &ids {
        assert!(human.contains(&id[..16]), "{human}");
    }

    // SIGKILL both nodes of zone `nantes`: seen down within 30 s, health degraded.
    procs[4].kill();
    procs[5].kill();
    wait_for(
        "nantes nodes down and health degraded",
        Duration::from_secs(30),
        || {
            let st = procs[0].status()?;
            let up = up_ids(&st);
            (!up.contains(&ids[4])
                && !up.contains(&ids[5])
                && up.len() == 4
                && st["health"] == "degraded")
                .then_some(())
        },
    );

    // While they are down, a new layout version is applied (a tag on node 1).
    procs[0]
        .cli(&[
            "layout",
            "assign",
            &ids[1][..12],
            "-z",
            "paris",
            "-c",
            "100G",
            "-t",
            "rack2",
        ])
        .unwrap();
    let out = procs[0]
        .cli(&["layout", "apply", "--version", "2"])
        .unwrap();
    assert!(out.contains("version 2"), "{out}");

    // Node 5 restarts with no bootstrap peers: it finds the cluster from its persisted peer list.
    procs[5].spec.bootstrap.clear();
    procs[4].restart();
    procs[5].restart();
    for p in &procs {
        wait_for(
            &format!("{} healthy with 6 nodes up", p.spec.ip),
            Duration::from_secs(60),
            || {
                let st = p.status()?;
                (st["health"] == "healthy" && up_ids(&st).len() == 6 && st["layout_version"] == 2)
                    .then_some(())
            },
        );
    }

    // A node with a different rpc_secret is refused and never appears.
    let base = procs[0].spec.ip.rsplit_once('.').unwrap().0.to_string();
    let other_secret = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    let mut rogue_spec = node_spec(plan.root.path(), &format!("{base}.7"), 3, other_secret, 7);
    rogue_spec.bootstrap = vec![boot.clone()];
    let rogue_id = rogue_spec.id.clone();
    let rogue = Proc::start(rogue_spec);
    wait_for(
        "node 0 to refuse the rogue node",
        Duration::from_secs(30),
        || {
            procs[0]
                .log_text()
                .contains("refused incoming connection")
                .then_some(())
        },
    );
    let st = procs[0].status().unwrap();
    let all: Vec<&str> = st["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert!(
        !all.contains(&rogue_id.as_str()),
        "rogue node appears in status"
    );
    assert_eq!(all.len(), 6);
    let rst = rogue.status().unwrap();
    assert!(!up_ids(&rst).contains(&ids[0]), "rogue sees node 0 up");
}

/// Staging, revert, apply --version, history, gateway, `node connect`, and errors that say what to do.
#[test]
fn layout_cli_stages_reverts_and_applies() {
    let plan = plan(4, 3, SECRET);
    let procs: Vec<Proc> = plan.specs.into_iter().map(Proc::start).collect();
    let ids: Vec<String> = procs.iter().map(|p| p.spec.id.clone()).collect();
    // Nodes join through `grenier node connect` only.
    for p in &procs[1..] {
        let out = procs[0]
            .cli(&["node", "connect", &p.spec.peer_string()])
            .expect("node connect");
        assert!(out.contains(&p.spec.id), "{out}");
    }
    wait_for("4 nodes up everywhere", Duration::from_secs(60), || {
        procs
            .iter()
            .all(|p| p.status().is_some_and(|s| up_ids(&s).len() == 4))
            .then_some(())
    });
    let id_out = procs[1].cli(&["node", "id"]).unwrap();
    assert_eq!(id_out.trim(), procs[1].spec.peer_string());
    let idj = procs[1].cli_json(&["node", "id"]);
    assert_eq!(idj["id"], ids[1]);

    // Errors are clear.
    let e = procs[0].cli(&["layout", "apply"]).unwrap_err();
    assert!(e.contains("no staged changes"), "{e}");
    let e = procs[0]
        .cli(&["layout", "assign", "zzzz", "-z", "a", "-c", "1G"])
        .unwrap_err();
    assert!(e.contains("no known node id starts with"), "{e}");
    let e = procs[0]
        .cli(&[
            "layout",
            "assign",
            &ids[0][..8],
            "-z",
            "a",
            "-c",
            "12 parsecs",
        ])
        .unwrap_err();
    assert!(e.contains("invalid size"), "{e}");
    let e = cli_raw(
        &procs[0].spec.admin_url(),
        &["--admin-token", "wrong", "status"],
    )
    .unwrap_err();
    assert!(e.contains("wrong admin token"), "{e}");

    // Stage on one node, see it staged on another (staging is gossiped), revert everywhere.
    procs[0]
        .cli(&["layout", "assign", &ids[0][..10], "-z", "a", "-c", "10G"])
        .unwrap();
    wait_for("staged change gossiped", Duration::from_secs(30), || {
        let l = procs[2].cli_json(&["layout", "show"]);
        (l["staged"].as_array().unwrap().len() == 1).then_some(())
    });
    procs[2].cli(&["layout", "revert"]).unwrap();
    wait_for("revert gossiped", Duration::from_secs(30), || {
        let l = procs[0].cli_json(&["layout", "show"]);
        l["staged"].as_array().unwrap().is_empty().then_some(())
    });

    // Three zones + one gateway; rf 3 needs 3 storage nodes.
    for (i, z) in ["a", "b", "c"].iter().enumerate() {
        procs[0]
            .cli(&["layout", "assign", &ids[i][..10], "-z", z, "-c", "10G"])
            .unwrap();
    }
    procs[0]
        .cli(&["layout", "assign", &ids[3][..10], "-z", "c", "--gateway"])
        .unwrap();
    let e = procs[0]
        .cli(&["layout", "apply", "--version", "3"])
        .unwrap_err();
    assert!(e.contains("apply --version 1"), "{e}");
    let out = procs[0]
        .cli(&["layout", "apply", "--version", "1"])
        .unwrap();
    assert!(out.contains("Applied layout version 1"), "{out}");
    let l = procs[0].cli_json(&["layout", "show"]);
    assert_eq!(l["roles"].as_array().unwrap().len(), 4);
    let gw = l["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == ids[3])
        .unwrap();
    assert_eq!(gw["gateway"], true);
    assert!(gw["capacity"].is_null());
    for part in l["partitions"].as_array().unwrap() {
        assert!(
            !part["nodes"]
                .as_array()
                .unwrap()
                .contains(&serde_json::json!(ids[3])),
            "gateway holds data"
        );
    }
    // Three 10 GB nodes in three zones with rf 3: each holds every partition, 10 GB usable.
    assert_eq!(
        l["usable_capacity"].as_u64(),
        Some(10_000_000_000),
        "usable capacity"
    );

    // Remove a storage node: rf 3 cannot be placed on 2 nodes, and the error says so.
    procs[0].cli(&["layout", "remove", &ids[2][..10]]).unwrap();
    let e = procs[0].cli(&["layout", "apply"]).unwrap_err();
    assert!(e.to_lowercase().contains("node"), "{e}");
    procs[0].cli(&["layout", "revert"]).unwrap();

    // zone redundancy 2, then history lists both versions.
    procs[0]
        .cli(&["layout", "config", "--zone-redundancy", "2"])
        .unwrap();
    procs[0].cli(&["layout", "apply"]).unwrap();
    let h = procs[0].cli_json(&["layout", "history"]);
    let versions: Vec<u64> = h["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, vec![1, 2]);
    let human = procs[0].cli(&["layout", "history"]).unwrap();
    assert!(human.contains("current"), "{human}");
    wait_for("layout v2 on node 3", Duration::from_secs(30), || {
        (procs[3].cli_json(&["layout", "show"])["version"] == 2).then_some(())
    });

    // A frozen (SIGSTOPped) storage node keeps its sockets open: missed pings must mark it down.
    procs[2].signal(libc::SIGSTOP);
    wait_for(
        "frozen node seen down, health degraded",
        Duration::from_secs(40),
        || {
            let st = procs[0].status()?;
            (!up_ids(&st).contains(&ids[2]) && st["health"] == "degraded").then_some(())
        },
    );
    procs[2].signal(libc::SIGCONT);
    wait_for(
        "thawed node back up, healthy",
        Duration::from_secs(60),
        || {
            let st = procs[0].status()?;
            (up_ids(&st).contains(&ids[2]) && st["health"] == "healthy").then_some(())
        },
    );
}

/// Regression: retiring a live node in favour of a new one in its zone hands its partitions off;
/// the hand-off once released the versions of every object it moved, cluster-wide, so every object
/// larger than one block became unreadable (`the version's block list is missing`) within seconds.
#[test]
fn retiring_a_node_keeps_every_object_readable() {
    use aws_sdk_s3::primitives::ByteStream;
    let procs = start_cluster(4, "");
    crate::harness::assign_and_apply(&procs, &[(0, "a"), (1, "b"), (2, "c")]);
    let k = procs[0].cli_json(&["key", "create", "retire"]);
    procs[0]
        .cli(&["key", "allow", "retire", "--create-bucket"])
        .unwrap();
    let (id, secret) = (k["id"].as_str().unwrap(), k["secret"].as_str().unwrap());
    let client = |i: usize| sdk_client(&format!("{}:3900", procs[i].spec.ip), "garage", id, secret);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let big: Vec<u8> = (0..(3 << 20) + 5).map(|i: u32| (i % 251) as u8).collect();
    let c0 = client(0);
    rt.block_on(async {
        c0.create_bucket().bucket("keep").send().await.unwrap();
        for key in ["big-1", "big-2"] {
            c0.put_object()
                .bucket("keep")
                .key(key)
                .body(ByteStream::from(big.clone()))
                .send()
                .await
                .unwrap();
        }
        c0.put_object()
            .bucket("keep")
            .key("small")
            .body(ByteStream::from_static(b"small"))
            .send()
            .await
            .unwrap();
    });
    // Node 3 replaces node 2 in zone c.
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
    wait_for(
        "the old layout version retired",
        Duration::from_secs(90),
        || {
            let h = procs[0].cli_json(&["layout", "history"]);
            let active = h["versions"]
                .as_array()?
                .iter()
                .filter(|v| v["status"].as_str() != Some("historical"))
                .count();
            (active == 1).then_some(())
        },
    );
    // The retired node hands its object table off (its local copy empties).
    wait_for("hand-off done", Duration::from_secs(60), || {
        let s = procs[2].cli_json(&["stats"]);
        let objects = s["tables"]
            .as_array()?
            .iter()
            .find(|t| t["table"] == "object")?["entries"]
            .as_u64()?;
        (objects == 0).then_some(())
    });
    // Cascades of a wrong release take a moment to spread: read on every remaining node, then
    // once more after the queues had time to run (a check that something does not happen).
    for round in 0..2 {
        if round == 1 {
            std::thread::sleep(Duration::from_secs(3));
        }
        for i in [0, 1, 3] {
            let c = client(i);
            rt.block_on(async {
                for key in ["big-1", "big-2"] {
                    let got = c
                        .get_object()
                        .bucket("keep")
                        .key(key)
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("GET {key} on node {i}: {e:?}"));
                    let body = got.body.collect().await.unwrap().into_bytes();
                    assert!(body.as_ref() == big.as_slice(), "{key} on node {i}");
                }
                let small = c.get_object().bucket("keep").key("small").send().await;
                let body = small.unwrap().body.collect().await.unwrap().into_bytes();
                assert_eq!(body.as_ref(), b"small");
            });
        }
    }
}

/// A storage node that will never come back: the admin removes it from the layout, and
/// `layout skip-dead-nodes` lets the transition complete without it (refused while it is up, and when
/// there is no transition); the data stays readable and writable throughout.
#[test]
fn a_dead_node_is_skipped_and_the_transition_completes() {
    use aws_sdk_s3::primitives::ByteStream;
    let mut procs = start_cluster(4, "");
    crate::harness::assign_and_apply(&procs, &[(0, "a"), (1, "b"), (2, "c")]);
    let (id, secret) = procs[0].s3_key("gone");
    let ips: Vec<String> = procs.iter().map(|p| p.spec.ip.clone()).collect();
    let client = |i: usize| sdk_client(&format!("{}:3900", ips[i]), "garage", &id, &secret);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let big: Vec<u8> = (0..(2 << 20) + 7).map(|i: u32| (i % 249) as u8).collect();
    rt.block_on(async {
        let c = client(0);
        c.create_bucket().bucket("stay").send().await.unwrap();
        c.put_object()
            .bucket("stay")
            .key("big")
            .body(ByteStream::from(big.clone()))
            .send()
            .await
            .unwrap();
    });
    let e = procs[0].cli(&["layout", "skip-dead-nodes"]).unwrap_err();
    assert!(e.contains("no layout transition"), "{e}");

    // Node 2 dies for good; node 3 takes its place in zone c.
    let dead = procs[2].spec.id.clone();
    procs[2].kill();
    wait_for("node 2 seen down", Duration::from_secs(60), || {
        let st = procs[0].status()?;
        (!up_ids(&st).contains(&dead)).then_some(())
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
    procs[0].cli(&["layout", "remove", &dead[..12]]).unwrap();
    procs[0].cli(&["layout", "apply"]).unwrap();
    let active = |p: &Proc| {
        let h = p.cli_json(&["layout", "history"]);
        h["versions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["status"].as_str() != Some("historical"))
            .count()
    };
    assert_eq!(
        active(&procs[0]),
        2,
        "the transition waits for the dead node"
    );
    let out = procs[0].cli_json(&["layout", "skip-dead-nodes"]);
    assert_eq!(out["skipped"], serde_json::json!([dead]), "{out}");
    for i in [0, 1, 3] {
        wait_for(
            "the old layout version retired",
            Duration::from_secs(90),
            || (active(&procs[i]) == 1).then_some(()),
        );
    }
    rt.block_on(async {
        for i in [0, 1, 3] {
            let c = client(i);
            let got = c.get_object().bucket("stay").key("big").send().await;
            let body = got.unwrap().body.collect().await.unwrap().into_bytes();
            assert!(body.as_ref() == big.as_slice(), "big on node {i}");
            c.put_object()
                .bucket("stay")
                .key(format!("after-{i}"))
                .body(ByteStream::from_static(b"after"))
                .send()
                .await
                .unwrap();
        }
    });
}

/// An UploadPart answers once its blocks are stored, having recorded the part as pending in parallel
/// with its last blocks; the confirmation follows the answer. A node that reads a part still pending
/// (its confirmation not arrived, or never to arrive) checks the part's blocks with their nodes: all
/// stored on a quorum, the part is listed and completes; not, it is neither listed nor completable.
/// Node 0 here never confirms (test hook), and the other nodes read.
#[test]
fn pending_parts_are_settled_by_checking_their_blocks() {
    use aws_sdk_s3::primitives::ByteStream;
    use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
    let mut procs = start_cluster(3, "");
    crate::harness::assign_and_apply(&procs, &[(0, "a"), (1, "b"), (2, "c")]);
    procs[0].kill();
    procs[0].spec.env = vec![(
        grenier::model::multipart::SKIP_PART_CONFIRMATIONS_ENV.to_string(),
        "1".to_string(),
    )];
    procs[0].restart();
    wait_for("node 0 back", Duration::from_secs(60), || {
        procs[1]
            .status()
            .is_some_and(|s| up_ids(&s).len() == 3)
            .then_some(())
    });
    let (id, secret) = procs[1].s3_key("parts");
    let ips: Vec<String> = procs.iter().map(|p| p.spec.ip.clone()).collect();
    let client = |i: usize| sdk_client(&format!("{}:3900", ips[i]), "garage", &id, &secret);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let part1: Vec<u8> = (0..(5 << 20) + 3).map(|i: u32| (i % 251) as u8).collect();
    let part2 = b"the last part".to_vec();
    // Upload A: two parts through node 0, which never confirms them.
    let (a, etags) = rt.block_on(async {
        let c0 = client(0);
        c0.create_bucket().bucket("mpu").send().await.unwrap();
        let a = c0
            .create_multipart_upload()
            .bucket("mpu")
            .key("a")
            .send()
            .await
            .unwrap()
            .upload_id
            .unwrap();
        let mut etags = vec![];
        for (n, body) in [(1, &part1), (2, &part2)] {
            let r = c0
                .upload_part()
                .bucket("mpu")
                .key("a")
                .upload_id(&a)
                .part_number(n)
                .body(ByteStream::from(body.clone()))
                .send()
                .await
                .unwrap();
            etags.push(r.e_tag.unwrap());
        }
        (a, etags)
    });
    // Upload B: one part through node 0, whose blocks are then lost on every node.
    let before = local_blocks(&procs[0]);
    let b = rt.block_on(async {
        let c0 = client(0);
        let b = c0
            .create_multipart_upload()
            .bucket("mpu")
            .key("b")
            .send()
            .await
            .unwrap()
            .upload_id
            .unwrap();
        let lost: Vec<u8> = (0..(5 << 20) + 9).map(|i: u32| (i % 241) as u8).collect();
        let r = c0
            .upload_part()
            .bucket("mpu")
            .key("b")
            .upload_id(&b)
            .part_number(1)
            .body(ByteStream::from(lost))
            .send()
            .await
            .unwrap();
        (b, r.e_tag.unwrap())
    });
    let lost: Vec<String> = local_blocks(&procs[0])
        .difference(&before)
        .cloned()
        .collect();
    assert_eq!(lost.len(), 6, "the 5 MiB part's blocks: {lost:?}");
    for p in &procs {
        for h in &lost {
            let f = block_file(p, h);
            std::fs::remove_file(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        }
    }
    rt.block_on(async {
        for i in [1, 2] {
            let c = client(i);
            // A: both parts are stored, so listed (settled by asking the nodes).
            let l = c
                .list_parts()
                .bucket("mpu")
                .key("a")
                .upload_id(&a)
                .send()
                .await
                .unwrap();
            let listed: Vec<(i32, String)> = l
                .parts()
                .iter()
                .map(|p| (p.part_number.unwrap(), p.e_tag.clone().unwrap()))
                .collect();
            assert_eq!(
                listed,
                vec![(1, etags[0].clone()), (2, etags[1].clone())],
                "upload A's parts via node {i}"
            );
            // B: its part's blocks are gone, so it is no part.
            let l = c
                .list_parts()
                .bucket("mpu")
                .key("b")
                .upload_id(&b.0)
                .send()
                .await
                .unwrap();
            assert!(
                l.parts().is_empty(),
                "upload B lists {:?} via node {i}",
                l.parts()
            );
            let e = c
                .complete_multipart_upload()
                .bucket("mpu")
                .key("b")
                .upload_id(&b.0)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .parts(CompletedPart::builder().part_number(1).e_tag(&b.1).build())
                        .build(),
                )
                .send()
                .await
                .unwrap_err();
            let code = e
                .as_service_error()
                .and_then(|s| s.meta().code())
                .map(String::from);
            assert_eq!(code.as_deref(), Some("InvalidPart"), "{e:?}");
        }
        // A completes through node 2 and reads whole through node 1.
        let parts: Vec<CompletedPart> = etags
            .iter()
            .enumerate()
            .map(|(i, e)| {
                CompletedPart::builder()
                    .part_number(i as i32 + 1)
                    .e_tag(e)
                    .build()
            })
            .collect();
        client(2)
            .complete_multipart_upload()
            .bucket("mpu")
            .key("a")
            .upload_id(&a)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let got = client(1)
            .get_object()
            .bucket("mpu")
            .key("a")
            .send()
            .await
            .unwrap();
        let body = got.body.collect().await.unwrap().into_bytes();
        let mut want = part1.clone();
        want.extend_from_slice(&part2);
        assert!(body.as_ref() == want.as_slice(), "upload A's object");
    });
}
