//! S3 API benchmark, driven by the official AWS SDK for Rust (`aws-sdk-s3`, default checksum and
//! signing behaviour) on the same multi-thread tokio runtime as the nodes, in one process, over plain
//! HTTP on 127.0.x.y (real TLS mesh between nodes, real files, data_fsync off, metadata_fsync on).
//! 1. One node (rf 1, its layout applied like `grenier dev`): single-core MD5 (and SHA-256) speed,
//!    then PUT and GET of 64 MiB objects, one at a time and 4 at a time (doc/guarantees.md: PUT ≥ 70% of MD5,
//!    GET ≥ 1 GB/s from the page cache). One extra PUT line without payload signing shows what the
//!    SHA-256 of a signed payload costs.
//! 2. Three nodes, rf 3 over three zones: 4 KiB objects, PUT then GET with 32 requests in flight
//!    spread over the three nodes: ops/s and latency percentiles.
//!
//! Over plain HTTP the SDK signs the payload (x-amz-content-sha256 is the body's SHA-256, which the
//! server checks) and sends the CRC32 of in-memory bodies as a header; the output shows the headers.
//!
//! Run: `cargo bench --bench s3` (or `script/bench s3`).

mod common;
use common::{config, wait};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_s3::config::{
    ConfigBag, Credentials, Intercept, Region, RequestChecksumCalculation,
    ResponseChecksumValidation, RuntimeComponents,
};
use aws_sdk_s3::error::BoxError;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use futures::StreamExt;
use grenier::layout::NodeRole;
use grenier::net::NodeKey;
use grenier::server::Node;
use md5::{Digest, Md5};
use rand::RngCore;
use sha2::Sha256;

const MIB: usize = 1 << 20;
const BIG: usize = 64 * MIB;
const BIG_COUNT: usize = 8;
const SMALL: usize = 8192;
const SMALL_IN_FLIGHT: usize = 32;
const SMALL_MIN_OBJECTS: usize = 2000;
const PHASE: Duration = Duration::from_secs(3);
const BUCKET: &str = "bench";
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Stage a role for each node (zones a, b, c...) and apply the layout, from `node`.
fn apply_layout(node: &Node, ids: &[grenier::net::NodeId]) {
    node.layout
        .update(|h| {
            for (i, id) in ids.iter().enumerate() {
                let zone = ((b'a' + i as u8) as char).to_string();
                h.stage_role(
                    *id,
                    Some(NodeRole {
                        zone,
                        capacity: Some(10 << 30),
                        tags: vec![],
                    }),
                );
            }
            h.apply(None)
        })
        .unwrap();
}

/// An access key allowed to create buckets, and the bench bucket it owns, created on `node`.
async fn key_and_bucket(node: &Node) -> (String, String) {
    let key = node.model.create_key("bench").await.unwrap();
    node.model
        .set_key_permissions(&key.id, None, Some(true))
        .await
        .unwrap();
    node.model
        .create_bucket(BUCKET, Some(&key.id))
        .await
        .unwrap();
    let secret = key.params().unwrap().secret.clone();
    (key.id, secret)
}

/// The SDK's checksum behaviour, stated rather than implied: these are its defaults (PUT computes a
/// CRC32 of the body and sends it; GET asks for the stored checksum and verifies it while the body
/// is read).
fn client(ip: &str, id: &str, secret: &str) -> Client {
    let conf = aws_sdk_s3::Config::builder()
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .behavior_version_latest()
        .region(Region::new("garage"))
        .endpoint_url(format!("http://{ip}:3900"))
        .credentials_provider(Credentials::new(id, secret, None, None, "bench"))
        .force_path_style(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenSupported)
        .response_checksum_validation(ResponseChecksumValidation::WhenSupported)
        .build();
    Client::from_conf(conf)
}

/// Records the checksum-related headers of the requests it sees, to print what the SDK really sends.
#[derive(Debug, Default, Clone)]
struct HeaderProbe(Arc<Mutex<Vec<String>>>);

impl Intercept for HeaderProbe {
    fn name(&self) -> &'static str {
        "bench-header-probe"
    }

    fn read_before_transmit(
        &self,
        ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let r = ctx.request();
        let mut seen: Vec<String> = [
            "x-amz-content-sha256",
            "content-encoding",
            "x-amz-trailer",
            "x-amz-sdk-checksum-algorithm",
            "x-amz-checksum-crc32",
            "x-amz-checksum-mode",
            "content-md5",
        ]
        .iter()
        .filter_map(|h| {
            r.headers().get(*h).map(|v| match v.len() {
                _ if v == EMPTY_SHA256 => format!("{h}: <SHA-256 of the empty body>"),
                64 if *h == "x-amz-content-sha256" => format!("{h}: <SHA-256 of the body>"),
                _ => format!("{h}: {v}"),
            })
        })
        .collect();
        seen.insert(0, r.method().to_string());
        self.0.lock().unwrap().push(seen.join(", "));
        Ok(())
    }
}

/// 64 MiB of random bytes, and a variant of it per object: each 1 MiB block stamped with the
/// object's number, so that no two blocks are equal (blocks are content-addressed).
fn big_object(base: &[u8], n: usize) -> Bytes {
    let mut v = base.to_vec();
    for block in v.chunks_mut(MIB) {
        block[..8].copy_from_slice(&(n as u64).to_le_bytes());
    }
    Bytes::from(v)
}
/// PUT an in-memory body; `unsigned` sends UNSIGNED-PAYLOAD instead of the body's SHA-256.
async fn put(c: &Client, key: String, body: Bytes, unsigned: bool) {
    let op = c
        .put_object()
        .bucket(BUCKET)
        .key(key)
        .body(ByteStream::from(body))
        .customize();
    let op = if unsigned {
        op.disable_payload_signing()
    } else {
        op
    };
    op.send().await.unwrap();
}

/// GET the whole object, reading the body to its end (the SDK verifies the checksum at the end).
async fn get(c: &Client, key: String) -> usize {
    let mut body = c
        .get_object()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .unwrap()
        .body;
    let mut n = 0;
    while let Some(chunk) = body.next().await {
        n += chunk.unwrap().len();
    }
    n
}

fn mbs(bytes: usize, el: Duration) -> f64 {
    bytes as f64 / el.as_secs_f64() / 1e6
}

/// MB/s of `f` over a 64 MiB buffer of random bytes, run for about a second on one core.
fn hash_speed(mut f: impl FnMut(&[u8])) -> f64 {
    let mut data = vec![0u8; BIG];
    rand::thread_rng().fill_bytes(&mut data);
    let t = Instant::now();
    let mut n = 0;
    while t.elapsed() < Duration::from_secs(1) {
        f(&data);
        n += 1;
    }
    mbs(n * data.len(), t.elapsed())
}

/// PUT `BIG_COUNT` 64 MiB objects (numbers `first..`), `in_flight` at a time, one client; MB/s.
async fn put_big(c: &Client, base: &[u8], first: usize, in_flight: usize, unsigned: bool) -> f64 {
    let objects: Vec<Bytes> = (first..first + BIG_COUNT)
        .map(|n| big_object(base, n))
        .collect();
    let t = Instant::now();
    futures::stream::iter(objects.into_iter().zip(first..))
        .for_each_concurrent(in_flight, |(o, n)| {
            let c = c.clone();
            async move {
                tokio::spawn(async move { put(&c, format!("big/{n}"), o, unsigned).await })
                    .await
                    .unwrap();
            }
        })
        .await;
    mbs(BIG_COUNT * BIG, t.elapsed())
}

/// GET objects `big/0..count`, `in_flight` at a time, bodies read to their end; MB/s.
async fn get_big(c: &Client, count: usize, in_flight: usize) -> f64 {
    let t = Instant::now();
    futures::stream::iter(0..count)
        .for_each_concurrent(in_flight, |n| {
            let c = c.clone();
            async move {
                let len = tokio::spawn(async move { get(&c, format!("big/{n}")).await })
                    .await
                    .unwrap();
                assert_eq!(len, BIG);
            }
        })
        .await;
    mbs(count * BIG, t.elapsed())
}

/// One probe PUT and GET (not measured), to print what the SDK puts on the wire.
async fn show_client_behaviour(c: &Client, base: &[u8]) {
    let probe = HeaderProbe::default();
    let out = c
        .put_object()
        .bucket(BUCKET)
        .key("probe")
        .body(ByteStream::from(big_object(base, 999)))
        .customize()
        .interceptor(probe.clone())
        .send()
        .await
        .unwrap();
    let put_crc = out.checksum_crc32().map(str::to_string);
    let got = c
        .get_object()
        .bucket(BUCKET)
        .key("probe")
        .customize()
        .interceptor(probe.clone())
        .send()
        .await
        .unwrap();
    let get_crc = got.checksum_crc32().map(str::to_string);
    assert_eq!(got.body.collect().await.unwrap().into_bytes().len(), BIG);
    println!(
        "client: aws-sdk-s3 on the same tokio runtime (multi-thread, {} workers), over plain HTTP, with \
         its default checksum behaviour",
        tokio::runtime::Handle::current().metrics().num_workers()
    );
    println!(
        "  (request_checksum_calculation = response_checksum_validation = WhenSupported): a PUT computes \
         the body's CRC32 and, over HTTP, signs the payload (SHA-256 of the body, checked by the server); \
         a GET asks for the stored checksum and verifies it while the body is read. Seen on the wire:"
    );
    for line in probe.0.lock().unwrap().iter() {
        println!("    {line}");
    }
    println!(
        "    PUT response x-amz-checksum-crc32: {}, GET response x-amz-checksum-crc32: {}",
        put_crc.as_deref().unwrap_or("none"),
        get_crc
            .as_deref()
            .unwrap_or("none (nothing for the SDK to verify)")
    );
}

async fn single_node(root: &std::path::Path, ip: &str, md5: f64, sha256: f64) {
    let id = NodeKey::load_or_create(&root.join("single/meta"))
        .unwrap()
        .id();
    let node = Node::start(config(root, "single", ip, 1, None))
        .await
        .unwrap();
    apply_layout(&node, &[id]);
    let (key_id, secret) = key_and_bucket(&node).await;
    let c = client(ip, &key_id, &secret);
    let mut base = vec![0u8; BIG];
    rand::thread_rng().fill_bytes(&mut base);
    show_client_behaviour(&c, &base).await;

    println!(
        "single node (rf 1, layout applied), {} MiB objects of random bytes, {BIG_COUNT} per PUT run:",
        BIG / MIB
    );
    println!("  MD5, one core, 64 MiB buffer: {md5:.0} MB/s (SHA-256: {sha256:.0} MB/s)");
    for (what, first, in_flight, unsigned) in [
        ("sequential, one client", 0, 1, false),
        ("4 concurrent, one client", BIG_COUNT, 4, false),
        (
            "sequential, UNSIGNED-PAYLOAD (not the default; no SHA-256 on either side)",
            2 * BIG_COUNT,
            1,
            true,
        ),
    ] {
        let r = put_big(&c, &base, first, in_flight, unsigned).await;
        println!(
            "  PUT, {what}: {r:.0} MB/s = {:.0}% of MD5 (target ≥ 70%)",
            100.0 * r / md5
        );
    }
    drop(base);

    let count = 2 * BIG_COUNT;
    // Read every object once first, so the measured reads come from the page cache.
    get_big(&c, count, 1).await;
    for (what, in_flight) in [("sequential", 1), ("4 concurrent", 4)] {
        let r = get_big(&c, count, in_flight).await;
        println!(
            "  GET, {what}, page cache warm, bodies read to their end ({count} objects): {r:.0} MB/s \
             (target ≥ 1000)"
        );
    }
    node.stop();
}

/// Latency percentile (`p` in 0..=100) of sorted durations, in ms.
fn pct(sorted: &[Duration], p: usize) -> f64 {
    let i = ((sorted.len() * p) / 100).min(sorted.len() - 1);
    sorted[i].as_secs_f64() * 1e3
}

/// Run `op(worker, n)` from `SMALL_IN_FLIGHT` spawned tasks, for at least `PHASE` and until
/// `min_ops` are done; returns the number of operations each worker did, the elapsed time and the
/// sorted latencies.
async fn load<F, Fut>(min_ops: usize, op: F) -> (Vec<usize>, Duration, Vec<Duration>)
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let done = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let max = Duration::from_secs(30);
    let tasks: Vec<_> = (0..SMALL_IN_FLIGHT)
        .map(|w| {
            let op = op.clone();
            let done = done.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                for n in 0.. {
                    let el = t.elapsed();
                    if el > max || (el >= PHASE && done.load(Ordering::Relaxed) >= min_ops) {
                        break;
                    }
                    let s = Instant::now();
                    op(w, n).await;
                    lat.push(s.elapsed());
                    done.fetch_add(1, Ordering::Relaxed);
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::new();
    let mut counts = Vec::new();
    for task in tasks {
        let l = task.await.unwrap();
        counts.push(l.len());
        lat.extend(l);
    }
    let el = t.elapsed();
    lat.sort();
    (counts, el, lat)
}

fn print_load(what: &str, el: Duration, lat: &[Duration]) {
    println!(
        "  {what}: {:.0} ops/s ({} requests in {:.2} s), latency p50 {:.1} ms, p99 {:.1} ms",
        lat.len() as f64 / el.as_secs_f64(),
        lat.len(),
        el.as_secs_f64(),
        pct(lat, 50),
        pct(lat, 99)
    );
}

async fn cluster(root: &std::path::Path, ips: &[String]) {
    let ids: Vec<_> = (0..3)
        .map(|i| {
            NodeKey::load_or_create(&root.join(format!("n{i}/meta")))
                .unwrap()
                .id()
        })
        .collect();
    let boot = format!("{}@{}:3901", ids[0], ips[0]);
    let mut nodes = vec![
        Node::start(config(root, "n0", &ips[0], 3, None))
            .await
            .unwrap(),
    ];
    for (i, ip) in ips.iter().enumerate().skip(1) {
        nodes.push(
            Node::start(config(root, &format!("n{i}"), ip, 3, Some(&boot)))
                .await
                .unwrap(),
        );
    }
    apply_layout(&nodes[0], &ids);
    wait("layout and mesh everywhere", || {
        nodes
            .iter()
            .all(|n| n.layout.version() == 1 && ids.iter().all(|i| n.system.is_up(i)))
    })
    .await;
    let (key_id, secret) = key_and_bucket(&nodes[0]).await;
    let clients: Vec<Client> = ips.iter().map(|ip| client(ip, &key_id, &secret)).collect();
    // The key and bucket reach every node's full copy of their tables.
    for c in &clients {
        let deadline = Instant::now() + Duration::from_secs(60);
        while c.head_bucket().bucket(BUCKET).send().await.is_err() {
            assert!(Instant::now() < deadline, "bucket not visible everywhere");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    println!(
        "3 nodes (rf 3, zones a/b/c, R = W = 2), {} KiB objects of random bytes (above the 4 KiB inline \
         limit: one block each), {SMALL_IN_FLIGHT} requests in flight, request i to node i mod 3:",
        SMALL / 1024
    );
    let mut base = vec![0u8; SMALL];
    rand::thread_rng().fill_bytes(&mut base);
    let base = Arc::new(base);
    let clients = Arc::new(clients);

    let (counts, el, lat) = load(SMALL_MIN_OBJECTS, {
        let (clients, base) = (clients.clone(), base.clone());
        move |w, n| {
            let clients = clients.clone();
            let mut body = base.to_vec();
            body[..8].copy_from_slice(&(w as u64).to_le_bytes());
            body[8..16].copy_from_slice(&(n as u64).to_le_bytes());
            async move {
                let c = &clients[(w + n) % 3];
                put(c, format!("small/{w}/{n}"), Bytes::from(body), false).await;
            }
        }
    })
    .await;
    print_load("PUT", el, &lat);
    // Worker w wrote small/w/0..counts[w].
    let written: Arc<Vec<String>> = Arc::new(
        counts
            .iter()
            .enumerate()
            .flat_map(|(w, &c)| (0..c).map(move |n| format!("small/{w}/{n}")))
            .collect(),
    );
    let (_, el, lat) = load(0, {
        let (clients, written) = (clients.clone(), written.clone());
        move |w, n| {
            let clients = clients.clone();
            let written = written.clone();
            async move {
                let i = (w * 7919 + n * 104_729) % written.len();
                let c = &clients[(w + n) % 3];
                assert_eq!(get(c, written[i].clone()).await, SMALL);
            }
        }
    })
    .await;
    print_load(&format!("GET (of the {} objects)", written.len()), el, &lat);
    for n in nodes {
        n.stop();
    }
}

fn main() {
    let t = Instant::now();
    let md5 = hash_speed(|d| {
        std::hint::black_box(Md5::digest(d));
    });
    let sha256 = hash_speed(|d| {
        std::hint::black_box(Sha256::digest(d));
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    rt.block_on(async {
        // 127.0.100-199.x like the other benches, hosts .21-.24 so they never share an address.
        let base = format!("127.0.{}", 100 + std::process::id() % 100);
        single_node(root.path(), &format!("{base}.21"), md5, sha256).await;
        let ips: Vec<String> = (22..=24).map(|i| format!("{base}.{i}")).collect();
        cluster(root.path(), &ips).await;
    });
    // Blocking tasks the stopped nodes may still run are not waited for beyond this.
    let s = Instant::now();
    rt.shutdown_timeout(Duration::from_secs(10));
    let shutdown = s.elapsed();
    drop(root);
    println!(
        "(whole bench: {:.0} s; runtime shutdown after the nodes stopped: {:.1} s)",
        t.elapsed().as_secs_f64(),
        shutdown.as_secs_f64()
    );
}
