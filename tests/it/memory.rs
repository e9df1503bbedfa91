//! Bounded memory under load (doc/guarantees.md): a node's RSS stays within its base plus its block memory
//! budget (`block_ram_buffer_max`) plus a small per-connection overhead, however many slow clients
//! read or write at once, and every client still gets exactly its bytes.
//!
//! One node, replication factor 1, `block_ram_buffer_max = 16MiB`, 1 MiB blocks. The server's RSS is
//! read from `/proc/<pid>/status` (VmRSS) every 20 ms throughout.
//!
//! Bound: `base + budget + connections × 96 KiB + 48 MiB`, where `base` is the RSS measured just before
//! the load starts, `budget` is `block_ram_buffer_max`, 96 KiB per connection covers hyper's read and
//! write buffers, the body-hashing queue and the socket's task, and the 48 MiB of slack cover
//! allocator fragmentation (blocks are freed by other threads than the ones that allocated them) and
//! the transient second copy of a block being (de)compressed or verified, one per blocking thread.
//! Before the budget covered reads, each GET held up to five blocks (the one being sent plus four read
//! ahead) without any reservation: 200 readers took the node from 32 MiB to 467 MiB; 100 slow uploads
//! (each buffering a block before reserving it) from 27 MiB to 154 MiB. The last test guards the
//! design against deadlock: concurrent copies on a budget of a few blocks all finish.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_s3::primitives::ByteStream;
use grenier::s3::sigv4::{self, Credentials};
use hyper::{HeaderMap, Method};
use serde_json::Value;

use crate::harness::*;

const MIB: u64 = 1 << 20;
const BUDGET: u64 = 16 * MIB;
const OBJECT: usize = 64 << 20;
const PER_CONNECTION: u64 = 96 << 10;
const SLACK: u64 = 48 * MIB;

/// A one-node cluster (rf 1) with a small memory budget, a key, a bucket, and an SDK client.
struct Node {
    proc: Proc,
    key_id: String,
    secret: String,
    rt: tokio::runtime::Runtime,
    client: aws_sdk_s3::Client,
}

fn start_node() -> Node {
    let mut plan = plan(1, 1, SECRET);
    plan.specs[0].extra = format!("block_ram_buffer_max = \"{}MiB\"", BUDGET / MIB);
    let spec = plan.specs.remove(0);
    let mut proc = Proc::start(spec);
    proc.keep_dir(&std::sync::Arc::new(plan.root));
    wait_for("node up", Duration::from_secs(60), || {
        proc.status()
            .is_some_and(|s| up_ids(&s).len() == 1)
            .then_some(())
    });
    let procs = vec![proc];
    assign_and_apply(&procs, &[(0, "a")]);
    let proc = procs.into_iter().next().unwrap();
    let out = proc.cli(&["key", "create", "mem", "--json"]).unwrap();
    let k: Value = serde_json::from_str(&out).unwrap();
    proc.cli(&["key", "allow", "mem", "--create-bucket"])
        .unwrap();
    let (key_id, secret) = (
        k["id"].as_str().unwrap().to_string(),
        k["secret"].as_str().unwrap().to_string(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = crate::harness::sdk_client(
        &format!("{}:3900", proc.spec.ip),
        "garage",
        &key_id,
        &secret,
    );
    rt.block_on(async { client.create_bucket().bucket("mem").send().await.unwrap() });
    Node {
        proc,
        key_id,
        secret,
        rt,
        client,
    }
}

impl Node {
    fn ip(&self) -> String {
        self.proc.spec.ip.clone()
    }

    /// A presigned URL's path and query for `method` on `key` (what a web app hands out).
    fn presigned(&self, method: Method, key: &str) -> String {
        let ip = self.ip();
        let uri: hyper::Uri = format!("http://{ip}:3900/mem/{key}").parse().unwrap();
        let creds = Credentials {
            access_key: &self.key_id,
            secret_key: &self.secret,
            region: "garage",
        };
        let mut h = HeaderMap::new();
        h.insert("host", format!("{ip}:3900").parse().unwrap());
        let q = sigv4::presign(&method, &uri, &h, &creds, SystemTime::now(), 3600);
        format!("/mem/{key}?{q}")
    }
}

/// Print the RSS figures of a run and fail if the maximum went above the bound.
fn check_rss(what: &str, base: u64, max: u64, bound: u64, elapsed: Duration) {
    eprintln!(
        "{what}: base RSS {} MiB, max {} MiB, bound {} MiB, {:.1} s",
        base / MIB,
        max / MIB,
        bound / MIB,
        elapsed.as_secs_f64()
    );
    assert!(
        max <= bound,
        "{what}: RSS reached {} MiB, above the bound of {} MiB (base {} MiB)",
        max / MIB,
        bound / MIB,
        base / MIB
    );
}

fn rss(pid: i32) -> Option<u64> {
    proc_memory(pid, "VmRSS")
}

/// Samples a process's RSS every 20 ms until stopped; returns the maximum seen.
struct Sampler {
    stop: Arc<AtomicBool>,
    max: Arc<AtomicU64>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(pid: i32) -> Sampler {
        let (stop, max) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let (s, m) = (stop.clone(), max.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(r) = rss(pid) {
                    m.fetch_max(r, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Sampler {
            stop,
            max,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join().unwrap();
        }
        self.max.load(Ordering::Relaxed)
    }
}

/// A client socket with a small receive buffer, so that a slow reader leaves the bytes in the
/// server (as a reader across the internet would), not in the loopback's kernel buffers.
fn connect(ip: &str, rcvbuf: Option<usize>, sndbuf: Option<usize>) -> TcpStream {
    let addr: std::net::SocketAddr = format!("{ip}:3900").parse().unwrap();
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    if let Some(n) = rcvbuf {
        s.set_recv_buffer_size(n).unwrap();
    }
    if let Some(n) = sndbuf {
        s.set_send_buffer_size(n).unwrap();
    }
    s.connect(&addr.into()).unwrap();
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s
}

/// Read an HTTP/1.1 response head; returns (status, content-length) and any body bytes already read.
fn read_head(s: &mut TcpStream) -> (u16, usize, Vec<u8>) {
    let mut buf = vec![];
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed before the response head");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let status = head[9..12].parse().unwrap();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            return (status, len, buf[end + 4..].to_vec());
        }
    }
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[2] ^ seed ^ (i >> 20) as u8)
        .collect()
}

/// 200 slow readers of a 64 MiB object through one presigned URL: each asks for the whole object or
/// a 4 MiB range of it, reads a few KiB at a time with pauses for a while, then reads the rest at
/// full speed. The node's RSS stays under the bound, and every reader gets exactly its bytes.
#[test]
fn slow_readers_stay_within_the_memory_budget() {
    const READERS: usize = 200;
    const SLOW_PHASE: Duration = Duration::from_secs(4);
    let node = start_node();
    let body = Arc::new(data(OBJECT, 3));
    node.rt.block_on(async {
        node.client
            .put_object()
            .bucket("mem")
            .key("big")
            .body(ByteStream::from(body.to_vec()))
            .send()
            .await
            .unwrap();
    });
    let url = Arc::new(node.presigned(Method::GET, "big"));
    let pid = node.proc.pid();
    std::thread::sleep(Duration::from_millis(500)); // let the upload's buffers go before measuring
    let base = rss(pid).unwrap();
    let sampler = Sampler::start(pid);
    let start = Instant::now();
    let barrier = Arc::new(Barrier::new(READERS));
    let readers: Vec<_> = (0..READERS)
        .map(|i| {
            let (ip, url, body, barrier) = (node.ip(), url.clone(), body.clone(), barrier.clone());
            std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn(move || {
                    // Every 50th reader takes the whole object, the others a 4 MiB range at an
                    // offset that is not block-aligned (so it spans 5 blocks).
                    let whole = i % 50 == 0;
                    let (from, to) = if whole {
                        (0, OBJECT)
                    } else {
                        let from = (i * 331_777) % (OBJECT - (4 << 20));
                        (from, from + (4 << 20))
                    };
                    let mut s = connect(&ip, Some(16 << 10), None);
                    barrier.wait();
                    let range = if whole {
                        String::new()
                    } else {
                        format!("Range: bytes={from}-{}\r\n", to - 1)
                    };
                    write!(
                        s,
                        "GET {url} HTTP/1.1\r\nHost: {ip}:3900\r\n{range}Connection: close\r\n\r\n"
                    )
                    .unwrap();
                    let (status, len, first) = read_head(&mut s);
                    assert!(
                        status == 200 || status == 206,
                        "reader {i}: status {status}"
                    );
                    assert_eq!(len, to - from, "reader {i}: content-length");
                    // Compare as the bytes come (the test itself must not hold 1 GB either).
                    let expected = &body[from..to];
                    let mut pos = first.len();
                    assert!(first[..] == expected[..pos], "reader {i}: wrong bytes");
                    let mut chunk = vec![0u8; 64 << 10];
                    loop {
                        let slow = start.elapsed() < SLOW_PHASE;
                        let want = if slow { 4096 } else { chunk.len() };
                        let n = s.read(&mut chunk[..want]).unwrap();
                        if n == 0 {
                            break;
                        }
                        assert!(pos + n <= len, "reader {i}: too many bytes");
                        assert!(
                            chunk[..n] == expected[pos..pos + n],
                            "reader {i}: wrong bytes"
                        );
                        pos += n;
                        if slow {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                    assert_eq!(pos, len, "reader {i}: body length");
                })
                .unwrap()
        })
        .collect();
    for r in readers {
        r.join().unwrap();
    }
    let elapsed = start.elapsed();
    let max = sampler.finish();
    let bound = base + BUDGET + READERS as u64 * PER_CONNECTION + SLACK;
    check_rss("slow readers", base, max, bound, elapsed);
}

/// 100 concurrent slow uploads of 2 MiB each through one presigned PUT URL: the node reads their
/// sockets only as fast as its write budget allows, stays under the bound, and stores every object
/// exactly.
#[test]
fn slow_writers_stay_within_the_memory_budget() {
    const WRITERS: usize = 100;
    const SIZE: usize = 2 << 20;
    let node = start_node();
    let pid = node.proc.pid();
    let base = rss(pid).unwrap();
    let sampler = Sampler::start(pid);
    let start = Instant::now();
    let barrier = Arc::new(Barrier::new(WRITERS));
    let writers: Vec<_> = (0..WRITERS)
        .map(|i| {
            let (ip, barrier) = (node.ip(), barrier.clone());
            let url = node.presigned(Method::PUT, &format!("up{i}"));
            std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn(move || {
                    let body = data(SIZE, i as u8);
                    let mut s = connect(&ip, None, Some(64 << 10));
                    barrier.wait();
                    write!(
                        s,
                        "PUT {url} HTTP/1.1\r\nHost: {ip}:3900\r\nContent-Length: {SIZE}\r\n\
                         Connection: close\r\n\r\n"
                    )
                    .unwrap();
                    // Slowly at first (a few KiB, a pause), then the rest at once.
                    let mut sent = 0;
                    while sent < 256 << 10 {
                        s.write_all(&body[sent..sent + 16384]).unwrap();
                        sent += 16384;
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    s.write_all(&body[sent..]).unwrap();
                    let (status, _, _) = read_head(&mut s);
                    assert_eq!(status, 200, "writer {i}");
                })
                .unwrap()
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let elapsed = start.elapsed();
    let max = sampler.finish();
    let bound = base + BUDGET + WRITERS as u64 * PER_CONNECTION + SLACK;
    check_rss("slow writers", base, max, bound, elapsed);
    for i in [0usize, 37, 99] {
        let got = node.rt.block_on(async {
            let o = node
                .client
                .get_object()
                .bucket("mem")
                .key(format!("up{i}"))
                .send()
                .await
                .unwrap();
            o.body.collect().await.unwrap().into_bytes()
        });
        assert!(got[..] == data(SIZE, i as u8)[..], "object up{i}");
    }
}

/// 24 concurrent UploadPartCopy of unaligned 6 MiB ranges of one object, on a node whose pools hold
/// only a few blocks: copies hold write room while they wait for read room, never the reverse, so
/// they all finish (no deadlock), and the assembled object is exact.
#[test]
fn concurrent_copies_make_progress_with_a_small_budget() {
    use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
    const COPIES: usize = 24;
    const PART: usize = 6 << 20;
    let node = start_node();
    let src = data(16 << 20, 5);
    let c = node.client.clone();
    node.rt.block_on(async {
        c.put_object()
            .bucket("mem")
            .key("src")
            .body(ByteStream::from(src.clone()))
            .send()
            .await
            .unwrap();
        let id = c
            .create_multipart_upload()
            .bucket("mem")
            .key("assembled")
            .send()
            .await
            .unwrap()
            .upload_id()
            .unwrap()
            .to_string();
        let offsets: Vec<usize> = (0..COPIES)
            .map(|i| (i * 434_567) % (src.len() - PART))
            .collect();
        let copies = offsets.iter().enumerate().map(|(i, from)| {
            let (c, id) = (c.clone(), id.clone());
            async move {
                let r = c
                    .upload_part_copy()
                    .bucket("mem")
                    .key("assembled")
                    .upload_id(&id)
                    .part_number(i as i32 + 1)
                    .copy_source("mem/src")
                    .copy_source_range(format!("bytes={from}-{}", from + PART - 1))
                    .send()
                    .await
                    .unwrap();
                CompletedPart::builder()
                    .part_number(i as i32 + 1)
                    .e_tag(r.copy_part_result().unwrap().e_tag().unwrap())
                    .build()
            }
        });
        let parts =
            tokio::time::timeout(Duration::from_secs(90), futures::future::join_all(copies))
                .await
                .expect("the copies finish (no deadlock)");
        c.complete_multipart_upload()
            .bucket("mem")
            .key("assembled")
            .upload_id(&id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let got = c
            .get_object()
            .bucket("mem")
            .key("assembled")
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
        let mut want = vec![];
        for from in offsets {
            want.extend_from_slice(&src[from..from + PART]);
        }
        assert_eq!(got.len(), want.len());
        assert!(got[..] == want[..], "assembled object");
    });
}
