//! Block store benchmark: BLAKE2b and zstd speed on this machine, then three nodes in one process on
//! 127.0.0.x (real TLS mesh, real files, data_fsync off), rf 3 over three zones: replicated writes of
//! 1 MiB blocks (hashing included), reads from the local copy, and reads from a remote replica.
//! Run: `cargo bench --bench block` (or `script/bench block`).

mod common;
use common::{config, wait};

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use grenier::layout::NodeRole;
use grenier::net::NodeKey;
use grenier::server::Node;
use grenier::util::hash::blake2sum;
use rand::RngCore;

const MIB: usize = 1 << 20;

/// MB/s of `f` over 1 MiB inputs, run for about a second on one core.
fn speed(what: &str, data: &[u8], mut f: impl FnMut(&[u8])) {
    let t = Instant::now();
    let mut n = 0;
    while t.elapsed() < Duration::from_secs(1) {
        f(data);
        n += 1;
    }
    let mbs = (n * data.len()) as f64 / t.elapsed().as_secs_f64() / 1e6;
    println!("{what}: {mbs:.0} MB/s (one core)");
}

/// The disk's own speed for what a replica does per block: create a new 1 MiB file (and read it back),
/// in the directory the nodes use, one thread. Three nodes on one disk write three copies per block.
fn disk_ceiling(data: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let n = 256;
    let t = Instant::now();
    for i in 0..n {
        std::fs::write(dir.path().join(format!("f{i}")), data).unwrap();
    }
    let w = (n * data.len()) as f64 / t.elapsed().as_secs_f64() / 1e6;
    let t = Instant::now();
    for i in 0..n {
        std::hint::black_box(std::fs::read(dir.path().join(format!("f{i}"))).unwrap());
    }
    let r = (n * data.len()) as f64 / t.elapsed().as_secs_f64() / 1e6;
    println!(
        "this disk, one thread: new 1 MiB files written at {w:.0} MB/s, read back at {r:.0} MB/s"
    );
}

fn main() {
    let mut random = vec![0u8; MIB];
    rand::thread_rng().fill_bytes(&mut random);
    let text: Vec<u8> = (0..MIB)
        .map(|i| b"grenier block store "[i % 20] ^ (i / 4096) as u8)
        .collect();
    speed("BLAKE2b, 1 MiB", &random, |d| {
        std::hint::black_box(blake2sum(d));
    });
    speed("zstd level 1 compress, random 1 MiB", &random, |d| {
        std::hint::black_box(zstd::bulk::compress(d, 1).unwrap());
    });
    speed("zstd level 1 compress, repetitive 1 MiB", &text, |d| {
        std::hint::black_box(zstd::bulk::compress(d, 1).unwrap());
    });

    disk_ceiling(&random);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let root = tempfile::tempdir().unwrap();
        let base = format!("127.0.{}", 100 + std::process::id() % 100);
        let ips: Vec<String> = (1..=3).map(|i| format!("{base}.{i}")).collect();
        let ids: Vec<_> = (0..3)
            .map(|i| NodeKey::load_or_create(&root.path().join(format!("n{i}/meta"))).unwrap().id())
            .collect();
        let boot = format!("{}@{}:3901", ids[0], ips[0]);
        let mut nodes = vec![Node::start(config(root.path(), "n0", &ips[0], 3, None)).await.unwrap()];
        for (i, ip) in ips.iter().enumerate().skip(1) {
            nodes.push(Node::start(config(root.path(), &format!("n{i}"), ip, 3, Some(&boot))).await.unwrap());
        }
        nodes[0]
            .layout
            .update(|h| {
                for (id, z) in ids.iter().zip(["a", "b", "c"]) {
                    h.stage_role(*id, Some(NodeRole { zone: z.into(), capacity: Some(10 << 30), tags: vec![] }));
                }
                h.apply(None)
            })
            .unwrap();
        wait("layout and mesh everywhere", || {
            nodes.iter().all(|n| n.layout.version() == 1 && ids.iter().all(|i| n.system.is_up(i)))
        })
        .await;

        let count = 512;
        let blocks: Vec<Bytes> = (0..count)
            .map(|_| {
                let mut b = vec![0u8; MIB];
                rand::thread_rng().fill_bytes(&mut b);
                Bytes::from(b)
            })
            .collect();
        for in_flight in [1, 8] {
            let t = Instant::now();
            let hashes: Vec<_> = futures::stream::iter(blocks.iter().cloned())
                .map(|b| {
                    let m = nodes[0].block.clone();
                    async move {
                        let h = tokio::task::spawn_blocking({
                            let b = b.clone();
                            move || blake2sum(&b)
                        })
                        .await
                        .unwrap();
                        m.put_block(h, b).await.unwrap();
                        h
                    }
                })
                .buffered(in_flight)
                .collect()
                .await;
            let el = t.elapsed().as_secs_f64();
            println!(
                "replicated writes, 1 MiB random blocks, rf 3, W=2, {in_flight} in flight: {:.0} MB/s ({count} blocks in {el:.2} s)",
                (count * MIB) as f64 / el / 1e6
            );
            for (what, remote) in [("from the local copy", false), ("from a remote replica", true)] {
                let t = Instant::now();
                let m = nodes[1].block.clone();
                futures::stream::iter(hashes.iter().copied())
                    .for_each_concurrent(in_flight, |h| {
                        let m = m.clone();
                        async move {
                            if remote {
                                m.fetch_remote(&h).await.unwrap();
                            } else {
                                m.get_block(&h).await.unwrap();
                            }
                        }
                    })
                    .await;
                let el = t.elapsed().as_secs_f64();
                println!(
                    "verified reads {what}, {in_flight} in flight: {:.0} MB/s",
                    (count * MIB) as f64 / el / 1e6
                );
            }
        }
        for n in nodes {
            n.stop();
        }
    });
}
