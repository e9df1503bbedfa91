//! Replicated table benchmark: three nodes in one process on 127.0.0.x (real TLS mesh, real redb with
//! metadata_fsync on), rf 3 over three zones, consistent quorums (R = W = 2).
//! Measures quorum writes and reads of 200-byte entries, then the time for a node that missed 10,000
//! writes to converge by anti-entropy once it starts. Run: `cargo bench --bench table` (or
//! `script/bench table`).

mod common;
use common::{config, wait};

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use grenier::layout::NodeRole;
use grenier::net::NodeKey;
use grenier::server::Node;
use grenier::table::kv::KvEntry;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let root = tempfile::tempdir().unwrap();
        let base = format!("127.0.{}", 100 + std::process::id() % 100);
        let ips: Vec<String> = (1..=3).map(|i| format!("{base}.{i}")).collect();
        let ids: Vec<_> =
            (0..3).map(|i| NodeKey::load_or_create(&root.path().join(format!("n{i}/meta"))).unwrap().id()).collect();
        let boot = format!("{}@{}:3901", ids[0], ips[0]);
        let n0 = Node::start(config(root.path(), "n0", &ips[0], 3, None)).await.unwrap();
        let n1 = Node::start(config(root.path(), "n1", &ips[1], 3, Some(&boot))).await.unwrap();
        n0.layout
            .update(|h| {
                for (id, z) in ids.iter().zip(["a", "b", "c"]) {
                    h.stage_role(*id, Some(NodeRole { zone: z.into(), capacity: Some(10 << 30), tags: vec![] }));
                }
                h.apply(None)
            })
            .unwrap();
        wait("layout on node 1", || n1.layout.version() == 1 && n0.system.is_up(&ids[1])).await;

        // Phase 1, with node 2 absent (it "misses" these writes): 10,000 quorum writes through node 0.
        let value = vec![b'x'; 200];
        let writes = 10_000;
        let t = Instant::now();
        futures::stream::iter(0..writes)
            .for_each_concurrent(64, |i| {
                let (kv, value) = (n0.kv.clone().expect("test_hooks is on"), value.clone());
                async move { kv.insert(&KvEntry::new("bench", &format!("key{i:06}"), Some(value))).await.unwrap() }
            })
            .await;
        let el = t.elapsed();
        println!(
            "quorum writes, 200 B entries, 64 in flight, W=2 of rf 3 (third replica down): {:.0} entries/s ({writes} in {:.2} s)",
            writes as f64 / el.as_secs_f64(),
            el.as_secs_f64()
        );

        // Phase 2: node 2 starts, having missed all of them; time until anti-entropy gave it every entry.
        let t = Instant::now();
        let n2 = Node::start(config(root.path(), "n2", &ips[2], 3, Some(&boot))).await.unwrap();
        let n2 = Arc::new(n2);
        wait("node 2 converges", || n2.kv.as_ref().expect("test_hooks is on").metrics().map(|m| m.entries).unwrap_or(0) >= writes).await;
        println!(
            "convergence of a node that missed {writes} writes (from its start): {:.2} s",
            t.elapsed().as_secs_f64()
        );

        // Phase 3, all three up: quorum writes, then quorum reads through another node.
        let n = 10_000;
        let t = Instant::now();
        futures::stream::iter(0..n)
            .for_each_concurrent(64, |i| {
                let (kv, value) = (n0.kv.clone().expect("test_hooks is on"), value.clone());
                async move { kv.insert(&KvEntry::new("bench2", &format!("key{i:06}"), Some(value))).await.unwrap() }
            })
            .await;
        let el = t.elapsed();
        println!(
            "quorum writes, 200 B entries, 64 in flight, all 3 replicas up: {:.0} entries/s",
            n as f64 / el.as_secs_f64()
        );
        let t = Instant::now();
        let p = "bench2".to_string();
        futures::stream::iter(0..n)
            .for_each_concurrent(64, |i| {
                let (kv, p) = (n1.kv.clone().expect("test_hooks is on"), p.clone());
                async move {
                    let e = kv.get(&p, &format!("key{i:06}")).await.unwrap();
                    assert!(e.is_some());
                }
            })
            .await;
        let el = t.elapsed();
        println!("quorum reads (R=2), 64 in flight, through another node: {:.0} entries/s", n as f64 / el.as_secs_f64());
        for node in [n0, n1] {
            node.stop();
        }
        if let Ok(n2) = Arc::try_unwrap(n2) {
            n2.stop();
        }
    });
}
