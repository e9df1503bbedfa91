//! Replicated table benchmark: three nodes in one process on 127.0.0.x (real TLS mesh, real redb with
//! metadata_fsync on), rf 3 over three zones, consistent quorums (R = W = 2).
//! Measures quorum writes and reads of 200-byte entries, then the time for a node that missed 10,000
//! writes to converge by anti-entropy once it starts. Run: `cargo bench --bench table` (or
//! `script/bench table`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use grenier::layout::NodeRole;
use grenier::net::NodeKey;
use grenier::server::Node;
use grenier::table::kv::KvEntry;
use grenier::util::config::Config;

const SECRET: &str = "5b1c1e7a9f4d2c6b8a0e5f7d9c1b3a5e7f9d1c3b5a7e9f1d3c5b7a9e1f3d5c7b";

fn config(root: &std::path::Path, i: usize, ip: &str, bootstrap: Option<String>) -> Config {
    let dir = root.join(format!("n{i}"));
    std::fs::create_dir_all(&dir).unwrap();
    let boot = bootstrap
        .map(|b| format!("bootstrap_peers = [\"{b}\"]"))
        .unwrap_or_default();
    let text = format!(
        "metadata_dir = \"meta\"\ndata_dir = \"data\"\nreplication_factor = 3\nrpc_bind_addr = \"{ip}:3901\"\n\
         rpc_public_addr = \"{ip}:3901\"\nrpc_bind_outgoing = true\nrpc_secret = \"{SECRET}\"\n{boot}\n\
         [s3_api]\napi_bind_addr = \"{ip}:3900\"\n[admin]\napi_bind_addr = \"{ip}:3903\"\nadmin_token = \"bench\"\n"
    );
    let path = dir.join("grenier.toml");
    std::fs::write(&path, text).unwrap();
    Config::load(&path).unwrap()
}

async fn wait(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

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
        let n0 = Node::start(config(root.path(), 0, &ips[0], None)).await.unwrap();
        let n1 = Node::start(config(root.path(), 1, &ips[1], Some(boot.clone()))).await.unwrap();
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
                let (kv, value) = (n0.kv.clone(), value.clone());
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
        let n2 = Node::start(config(root.path(), 2, &ips[2], Some(boot))).await.unwrap();
        let n2 = Arc::new(n2);
        wait("node 2 converges", || n2.kv.metrics().map(|m| m.entries).unwrap_or(0) >= writes).await;
        println!(
            "convergence of a node that missed {writes} writes (from its start): {:.2} s",
            t.elapsed().as_secs_f64()
        );

        // Phase 3, all three up: quorum writes, then quorum reads through another node.
        let n = 10_000;
        let t = Instant::now();
        futures::stream::iter(0..n)
            .for_each_concurrent(64, |i| {
                let (kv, value) = (n0.kv.clone(), value.clone());
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
                let (kv, p) = (n1.kv.clone(), p.clone());
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
