//! The block store, end to end: real nodes, blocks written and read with `grenier debug block-*`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

/// Write `count` blocks of `size` bytes through `p`; returns their hashes.
fn gen_blocks(p: &Proc, count: u64, size: u64, seed: u64) -> Vec<String> {
    let out = p
        .cli(&[
            "debug",
            "block-gen",
            "--count",
            &count.to_string(),
            "--size",
            &size.to_string(),
            "--seed",
            &seed.to_string(),
        ])
        .unwrap_or_else(|e| panic!("block-gen via {}: {e}", p.spec.ip));
    hashes_of(&out)
}

/// The `"blocks"` list of hashes of a `grenier debug block-*` JSON answer.
fn hashes_of<C: FromIterator<String>>(out: &str) -> C {
    let v: Value = serde_json::from_str(out).unwrap();
    v["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_string())
        .collect()
}

/// Read a block through `p`; panics unless the node returned exactly the block's content.
fn get_block(p: &Proc, hash: &str) -> Value {
    let out = p
        .cli(&["debug", "block-get", hash])
        .unwrap_or_else(|e| panic!("block-get {hash} via {}: {e}", p.spec.ip));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["blake2"], hash, "wrong content for block {hash}: {v}");
    v
}

pub fn local_blocks(p: &Proc) -> BTreeSet<String> {
    let Ok(out) = p.cli(&["debug", "block-local"]) else {
        return BTreeSet::new();
    };
    hashes_of(&out)
}

pub fn block_file(p: &Proc, hash: &str) -> PathBuf {
    p.spec
        .dir
        .join("data")
        .join(&hash[..2])
        .join(&hash[2..4])
        .join(hash)
}

fn worker(p: &Proc, name: &str) -> Value {
    let v = p.cli_json(&["worker", "list"]);
    v.as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == name)
        .unwrap_or_else(|| panic!("no worker {name} in {v}"))
        .clone()
}

/// Every file under `dir` (recursively).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A byte flipped in a block file: a read through that node still returns the right bytes (from a
/// replica), and scrub finds another corrupted file and repairs it.
#[test]
fn corrupted_blocks_are_read_from_replicas_and_repaired_by_scrub() {
    let procs = three_zone_cluster_with("");
    let hashes = gen_blocks(&procs[0], 8, 64 << 10, 1);
    let p = &procs[0];
    let flip = |hash: &str| -> Vec<u8> {
        let path = block_file(p, hash);
        let original = std::fs::read(&path).unwrap();
        let mut bad = original.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x40;
        std::fs::write(&path, &bad).unwrap();
        original
    };

    // Read path: the corrupted local copy is detected and a replica serves the read.
    flip(&hashes[0]);
    let v = get_block(p, &hashes[0]);
    assert_ne!(
        v["served_by"], p.spec.id,
        "a corrupted copy must not be served"
    );

    // Scrub: detects the corrupted file, moves it aside, and resync puts the right bytes back.
    let original = flip(&hashes[1]);
    p.cli(&["repair", "scrub"]).unwrap();
    wait_for(
        "scrub to find the corrupted block",
        Duration::from_secs(60),
        || {
            let w = worker(p, "block scrub");
            (w["errors"].as_u64() >= Some(1)).then_some(())
        },
    );
    for (h, expected) in [(&hashes[1], Some(original)), (&hashes[0], None)] {
        wait_for(
            "the corrupted block file to be repaired",
            Duration::from_secs(60),
            || {
                let now = std::fs::read(block_file(p, h)).ok()?;
                match &expected {
                    Some(e) => (&now == e).then_some(()),
                    None => Some(()),
                }
            },
        );
    }
    // Both repaired copies are served locally again, with the right content.
    for h in &hashes[..2] {
        let v = get_block(p, h);
        assert_eq!(v["served_by"], p.spec.id);
    }
    let corrupted_aside = files_under(&p.spec.dir.join("data"))
        .into_iter()
        .filter(|f| f.to_string_lossy().ends_with(".corrupted"))
        .count();
    assert_eq!(corrupted_aside, 2, "corrupted copies are kept aside");
}

/// A node whose whole data directory is lost is refilled by resync after a restart.
#[test]
fn wiped_data_directory_is_refilled() {
    let mut procs = three_zone_cluster_with("");
    let hashes: BTreeSet<String> = gen_blocks(&procs[0], 40, 32 << 10, 2).into_iter().collect();
    wait_for(
        "node 1 to hold every block",
        Duration::from_secs(30),
        || (local_blocks(&procs[1]) == hashes).then_some(()),
    );
    procs[1].kill();
    std::fs::remove_dir_all(procs[1].spec.dir.join("data")).unwrap();
    procs[1].restart();
    procs[1]
        .cli(&["worker", "set", "resync-tranquility", "0"])
        .unwrap();
    wait_for(
        "resync to refill the wiped data directory",
        Duration::from_secs(90),
        || (local_blocks(&procs[1]) == hashes).then_some(()),
    );
    for h in hashes.iter().take(5) {
        assert_eq!(get_block(&procs[1], h)["served_by"], procs[1].spec.id);
    }
}

/// A node added in zone a takes over part of zone a's partitions: the blocks move to it, and the
/// former owner deletes its copies only after the new owner has them.
#[test]
fn layout_change_moves_blocks_and_deletes_only_after() {
    let procs = start_cluster(4, "");
    // Zones b and c are larger, so zone a limits the usable capacity and a second node there changes
    // the assignment.
    assign_and_apply(&procs, &[(0, "a"), (1, "b:20G"), (2, "c:20G")]);
    let hashes = gen_blocks(&procs[0], 60, 16 << 10, 3);
    wait_for(
        "node 0 to hold every block",
        Duration::from_secs(30),
        || (local_blocks(&procs[0]).len() == hashes.len()).then_some(()),
    );
    for p in &procs {
        p.cli(&["worker", "set", "resync-tranquility", "0"])
            .unwrap();
    }
    assign_and_apply(&procs, &[(3, "a")]);
    let layout = procs[0].cli_json(&["layout", "show"]);
    let (old, new) = (&procs[0].spec.id, &procs[3].spec.id);
    let owner_in_a = |hash: &str| -> String {
        let part = usize::from_str_radix(&hash[..2], 16).unwrap();
        let nodes = layout["partitions"][part]["nodes"].as_array().unwrap();
        let a: Vec<&str> = nodes
            .iter()
            .map(|n| n.as_str().unwrap())
            .filter(|n| *n == old || *n == new)
            .collect();
        assert_eq!(a.len(), 1, "one replica per zone");
        a[0].to_string()
    };
    let moved: BTreeSet<&String> = hashes.iter().filter(|h| owner_in_a(h) == *new).collect();
    assert!(
        !moved.is_empty() && moved.len() < hashes.len(),
        "the new node should take some blocks: {} of {}",
        moved.len(),
        hashes.len()
    );
    wait_for(
        "blocks to move to the new node and leave the old one",
        Duration::from_secs(180),
        || {
            // Former owner first: a block it no longer has must already be on the new owner.
            let on_old = local_blocks(&procs[0]);
            let on_new = local_blocks(&procs[3]);
            for h in &hashes {
                assert!(
                    on_old.contains(h) || on_new.contains(h),
                    "block {h} is on neither zone-a node"
                );
            }
            let done = hashes.iter().all(|h| {
                let moved = moved.contains(h);
                on_new.contains(h) == moved && on_old.contains(h) != moved
            });
            done.then_some(())
        },
    );
}

/// Reads through a gateway while the replica it reads from first is frozen (SIGSTOP): they complete,
/// and the frozen node adds at most about a second.
#[test]
fn frozen_nearest_replica_adds_bounded_latency() {
    let procs = start_cluster(4, "");
    assign_and_apply(&procs, &[(0, "a"), (1, "b"), (2, "c"), (3, "gateway")]);
    let gw = &procs[3];
    let hashes = gen_blocks(gw, 12, 64 << 10, 4);
    // The gateway orders replicas by measured RTT, which on one loaded machine can change between
    // learning which one it asks first and the next read: then no read waits for the frozen one and
    // the round proves nothing, so it is tried again (a few rounds at most).
    let mut waited = vec![];
    for _round in 0..5 {
        // Learn which replica the gateway reads from first.
        let first = get_block(gw, &hashes[0])["served_by"]
            .as_str()
            .unwrap()
            .to_string();
        let frozen = procs.iter().find(|p| p.spec.id == first).unwrap();
        frozen.signal(libc::SIGSTOP);
        let mut worst: f64 = 0.0;
        for h in &hashes[1..] {
            let v = get_block(gw, h);
            assert_ne!(v["served_by"], first.as_str());
            worst = worst.max(v["elapsed_ms"].as_f64().unwrap());
        }
        frozen.signal(libc::SIGCONT);
        // No read waited much more than a second.
        assert!(worst < 1500.0, "a read took {worst} ms");
        waited.push(worst);
        if worst >= 40.0 {
            return;
        }
    }
    panic!("no read waited for the frozen replica in 5 rounds (worst per round, ms: {waited:?})");
}

/// A node SIGKILLed while receiving large blocks never shows a partial block under a final name, and
/// its leftover temporary files are removed when it restarts.
#[test]
fn killed_mid_transfer_leaves_no_partial_block() {
    let mut procs = three_zone_cluster_with("block_size = \"16MiB\"\ncompression_level = \"none\"");
    let data = procs[2].spec.dir.join("data");
    let writer = {
        let url = procs[0].spec.admin_url();
        std::thread::spawn(move || {
            cli_raw(
                &url,
                &["debug", "block-gen", "--count", "12", "--seed", "5"],
            )
        })
    };
    // Kill node 2 the moment it is writing a block (a temporary file exists), or after 20 s.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut saw_tmp = false;
    while Instant::now() < deadline {
        if files_under(&data)
            .iter()
            .any(|f| f.to_string_lossy().contains(".tmp."))
        {
            saw_tmp = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    procs[2].kill();
    let out = writer
        .join()
        .unwrap()
        .expect("writes succeed with one node down");
    let written: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(written["blocks"].as_array().unwrap().len(), 12);
    assert!(saw_tmp, "never caught node 2 writing a block");

    // Checks every block file under its final name; returns how many there were.
    let check = |files: &[PathBuf]| -> usize {
        let mut n = 0;
        for f in files {
            let name = f.file_name().unwrap().to_string_lossy().to_string();
            if name.len() != 64 {
                continue;
            }
            n += 1;
            // The file's own format (header with the payload's CRC32C), then the content's hash.
            let bytes = bytes::Bytes::from(std::fs::read(f).unwrap());
            let (block, crc) = grenier::block::data::DataBlock::decode(bytes)
                .unwrap_or_else(|e| panic!("{name}: not a block file: {e}"));
            assert!(crc.is_some(), "{name}: written in the current format");
            let hash: [u8; 32] = hex::decode(&name).unwrap().try_into().unwrap();
            let checked = block.clone().verify_stored(&hash, crc);
            assert!(
                checked.is_ok(),
                "{name}: a partial block under its final name"
            );
            assert!(
                block.verify(&hash).is_ok(),
                "{name}: a wrong block under its final name"
            );
        }
        n
    };
    // The check itself, on a node that was not killed: it holds all 12 blocks.
    assert_eq!(check(&files_under(&procs[1].spec.dir.join("data"))), 12);
    check(&files_under(&data));
    procs[2].restart();
    let files = files_under(&data);
    assert!(
        !files.iter().any(|f| f.to_string_lossy().contains(".tmp.")),
        "temporary files left after restart"
    );
    check(&files);
}

fn unref(p: &Proc, reference: &str, hashes: &[String]) {
    let mut args = vec!["debug", "block-unref", "--ref", reference];
    args.extend(hashes.iter().map(String::as_str));
    p.cli(&args).unwrap();
}

fn gen_with_ref(p: &Proc, count: u64, seed: u64, reference: &str) -> Vec<String> {
    let out = p
        .cli(&[
            "debug",
            "block-gen",
            "--count",
            &count.to_string(),
            "--size",
            "8192",
            "--seed",
            &seed.to_string(),
            "--ref",
            reference,
        ])
        .unwrap();
    hashes_of(&out)
}

/// A block is deleted from every node once its last reference is gone and the safety delay passed;
/// a block that still has a reference stays.
#[test]
fn unreferenced_blocks_are_deleted_everywhere() {
    let procs = three_zone_cluster_with("block_gc_delay_secs = 1");
    for p in &procs {
        p.cli(&["worker", "set", "resync-tranquility", "0"])
            .unwrap();
    }
    let shared = gen_with_ref(&procs[0], 5, 6, "x");
    assert_eq!(
        gen_with_ref(&procs[1], 5, 6, "y"),
        shared,
        "same content, same blocks"
    );
    let lone = gen_with_ref(&procs[0], 5, 7, "z");
    unref(&procs[0], "x", &shared);
    unref(&procs[2], "z", &lone);
    let held = |p: &Proc, hs: &[String]| {
        let local = local_blocks(p);
        hs.iter().filter(|h| local.contains(*h)).count()
    };
    wait_for(
        "unreferenced blocks deleted on every node",
        Duration::from_secs(60),
        || procs.iter().all(|p| held(p, &lone) == 0).then_some(()),
    );
    // The deletions above went through the same delay and checks: the still-referenced blocks stay.
    for p in &procs {
        assert_eq!(
            held(p, &shared),
            shared.len(),
            "a referenced block was deleted"
        );
    }
    unref(&procs[1], "y", &shared);
    wait_for(
        "blocks deleted once their last reference is gone",
        Duration::from_secs(60),
        || procs.iter().all(|p| held(p, &shared) == 0).then_some(()),
    );
}

/// Two data directories share a node's blocks; marking one read-only drains it into the other.
#[test]
fn read_only_data_directory_is_drained() {
    let dirs = |ro: bool| {
        format!(
            "[[data_dir]]\npath = \"d1\"\ncapacity = \"10G\"\n\
             [[data_dir]]\npath = \"d2\"\ncapacity = \"10G\"\nread_only = {ro}\n"
        )
    };
    let mut procs = start_cluster(3, "");
    procs[0].kill();
    procs[0].spec.extra = dirs(false);
    procs[0].restart();
    assign_and_apply(&procs, &[(0, "a"), (1, "b"), (2, "c")]);
    let hashes = gen_blocks(&procs[0], 40, 8192, 8);
    let dir0 = procs[0].spec.dir.clone();
    let count = |d: &str| {
        files_under(&dir0.join(d))
            .iter()
            .filter(|f| f.file_name().unwrap().len() == 64)
            .count()
    };
    assert_eq!(count("d1") + count("d2"), 40);
    assert!(count("d2") > 5, "blocks spread over both directories");

    procs[0].kill();
    procs[0].spec.extra = dirs(true);
    procs[0].restart();
    procs[0]
        .cli(&["worker", "set", "resync-tranquility", "0"])
        .unwrap();
    wait_for("d2 drained into d1", Duration::from_secs(60), || {
        (count("d2") == 0 && count("d1") == 40).then_some(())
    });
    for h in hashes.iter().take(5) {
        assert_eq!(get_block(&procs[0], h)["served_by"], procs[0].spec.id);
    }
}
