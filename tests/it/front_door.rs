//! The S3 front door under abuse: more idle sockets than the connection cap, a slowloris head, a body
//! that stalls, a client that never reads its response. One node with small limits set in `[s3_api]`;
//! every close is measured against the configured timeout, and an authenticated client keeps working.

use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

const MAX_CONNECTIONS: usize = 6;
const HEADER_SECS: u64 = 2;
const IDLE_SECS: u64 = 3;
const BODY_STALL_SECS: u64 = 2;
const SEND_STALL_SECS: u64 = 2;
/// How late a close may come after its timeout (scheduling on a loaded test machine).
const SLACK: Duration = Duration::from_secs(2);

struct Door {
    proc: Proc,
    key_id: String,
    secret: String,
    rt: tokio::runtime::Runtime,
}

impl Door {
    fn start() -> Door {
        let mut plan = plan(1, 1, SECRET);
        let mut spec = plan.specs.remove(0);
        spec.s3_api_extra = format!(
            "max_connections = {MAX_CONNECTIONS}\nheader_read_timeout_secs = {HEADER_SECS}\n\
             idle_timeout_secs = {IDLE_SECS}\nbody_stall_timeout_secs = {BODY_STALL_SECS}\n\
             send_stall_timeout_secs = {SEND_STALL_SECS}\n"
        );
        let mut procs = vec![Proc::start(spec)];
        procs[0].keep_dir(&std::sync::Arc::new(plan.root));
        assign_and_apply(&procs, &[(0, "a")]);
        let proc = procs.into_iter().next().unwrap();
        let out = proc.cli(&["key", "create", "door", "--json"]).unwrap();
        let k: Value = serde_json::from_str(&out).unwrap();
        let key_id = k["id"].as_str().unwrap().to_string();
        let secret = k["secret"].as_str().unwrap().to_string();
        proc.cli(&["key", "allow", "door", "--create-bucket"])
            .unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        Door {
            proc,
            key_id,
            secret,
            rt,
        }
    }

    fn addr(&self) -> String {
        format!("{}:3900", self.proc.spec.ip)
    }

    /// A new SDK client (its own connection pool).
    fn client(&self) -> Client {
        crate::harness::sdk_client(&self.addr(), "garage", &self.key_id, &self.secret)
    }
}

/// Read until the server closes the connection (EOF or reset) and return everything read, or panic
/// after `deadline`.
async fn read_until_closed(
    s: &mut (impl AsyncReadExt + Unpin),
    deadline: Duration,
    what: &str,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    let end = tokio::time::Instant::now() + deadline;
    loop {
        match tokio::time::timeout_at(end, s.read(&mut buf)).await {
            Err(_) => panic!("{what}: the server did not close the connection within {deadline:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return out,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

fn assert_within(what: &str, elapsed: Duration, timeout_secs: u64) {
    let timeout = Duration::from_secs(timeout_secs);
    assert!(
        elapsed + Duration::from_millis(300) >= timeout && elapsed <= timeout + SLACK,
        "{what}: closed after {elapsed:?}, expected the {timeout:?} timeout"
    );
}

/// `METHOD path-and-query` and `host` of a presigned URL.
fn target(uri: &str) -> (String, String) {
    let rest = uri.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    (host.to_string(), path.to_string())
}

/// Send a request head one byte a second, never finishing it; returns how long after the first byte
/// the server closed the connection, and what it sent.
async fn slowloris(addr: String) -> (Duration, Vec<u8>) {
    let s = TcpStream::connect(&addr).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let head =
        b"GET /door/big HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let t0 = Instant::now();
    let writer = tokio::spawn(async move {
        for b in head {
            if w.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        std::future::pending::<()>().await;
    });
    let got = read_until_closed(&mut r, Duration::from_secs(40), "slowloris").await;
    writer.abort();
    (t0.elapsed(), got)
}

/// Send the head of the presigned PUT `uri` and 10 of the 1000 bytes it announces, then nothing;
/// checks the answer is `400 RequestTimeout` closing the connection and returns how long it took.
async fn stalled_put(addr: String, uri: String) -> Duration {
    let (host, path) = target(&uri);
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let head = format!("PUT {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 1000\r\n\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(b"0123456789").await.unwrap();
    let t0 = Instant::now();
    let got = read_until_closed(&mut s, Duration::from_secs(40), "stalled body").await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("<Code>RequestTimeout</Code>"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    t0.elapsed()
}

#[test]
fn slow_clients_are_cut_off_at_the_configured_timeouts() {
    let door = Door::start();
    let c = door.client();
    let addr = door.addr();
    let big = vec![7u8; 16 << 20];
    door.rt.block_on(async {
        c.create_bucket().bucket("door").send().await.unwrap();
        c.put_object()
            .bucket("door")
            .key("big")
            .body(ByteStream::from(big.clone()))
            .send()
            .await
            .unwrap();
        let conf = PresigningConfig::expires_in(Duration::from_secs(600)).unwrap();
        let put = c
            .put_object()
            .bucket("door")
            .key("stalled")
            .presigned(conf.clone())
            .await
            .unwrap();
        let get = c
            .get_object()
            .bucket("door")
            .key("big")
            .presigned(conf)
            .await
            .unwrap();

        // An idle connection: nothing sent at all.
        let idle = tokio::spawn({
            let addr = addr.clone();
            async move {
                let mut s = TcpStream::connect(&addr).await.unwrap();
                let t0 = Instant::now();
                let got = read_until_closed(&mut s, Duration::from_secs(30), "idle").await;
                assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
                assert_within("idle connection", t0.elapsed(), IDLE_SECS);
            }
        });

        // Slowloris: a request head, one byte a second, never finished.
        let slowloris = tokio::spawn(slowloris(addr.clone()));
        let slowloris = async move {
            let (elapsed, got) = slowloris.await.unwrap();
            assert!(!String::from_utf8_lossy(&got).contains(" 200 "));
            assert_within("slowloris", elapsed, HEADER_SECS);
        };

        // A signed PUT whose body stops after a few bytes: 400 RequestTimeout, connection closed.
        let stall = tokio::spawn(stalled_put(addr.clone(), put.uri().to_string()));
        let stall = async move {
            let elapsed = stall.await.unwrap();
            assert_within("stalled body", elapsed, BODY_STALL_SECS);
        };

        // A GET whose client never reads: cut once the socket accepted nothing for the send stall
        // timeout. A small receive buffer makes the kernel buffers fill quickly.
        let slow_reader = tokio::spawn({
            let (host, path) = target(get.uri());
            let addr = addr.clone();
            async move {
                let sock = tokio::net::TcpSocket::new_v4().unwrap();
                sock.set_recv_buffer_size(4096).unwrap();
                let mut s = sock.connect(addr.parse().unwrap()).await.unwrap();
                let head = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
                s.write_all(head.as_bytes()).await.unwrap();
                // The scenario itself: a client that does not read for a while.
                tokio::time::sleep(Duration::from_secs(SEND_STALL_SECS) + SLACK).await;
                let got = read_until_closed(&mut s, Duration::from_secs(30), "slow reader").await;
                assert!(
                    got.len() < 16 << 20,
                    "the whole object was sent ({} bytes): the server waited for the reader",
                    got.len()
                );
            }
        });

        let (idle, (), (), slow_reader) = tokio::join!(idle, slowloris, stall, slow_reader);
        idle.unwrap();
        slow_reader.unwrap();

        // Nothing of the stalled upload was stored; the server still serves.
        let e = c
            .head_object()
            .bucket("door")
            .key("stalled")
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            e.raw_response().map(|r| r.status().as_u16()),
            Some(404),
            "{e:?}"
        );
        let got = c
            .get_object()
            .bucket("door")
            .key("big")
            .send()
            .await
            .unwrap();
        assert!(got.body.collect().await.unwrap().into_bytes()[..] == big[..]);
    });
}

#[test]
fn a_flood_of_idle_connections_does_not_lock_out_clients() {
    let door = Door::start();
    let c = door.client();
    let addr = door.addr();
    door.rt.block_on(async {
        c.create_bucket().bucket("door").send().await.unwrap();
        c.put_object()
            .bucket("door")
            .key("before")
            .body(ByteStream::from_static(b"before"))
            .send()
            .await
            .unwrap();

        // More idle sockets than the cap: the kernel completes every handshake, the server accepts
        // MAX_CONNECTIONS at a time and closes each after the idle timeout.
        let flood = MAX_CONNECTIONS + 4;
        let mut idle = Vec::new();
        for i in 0..flood {
            let mut s = TcpStream::connect(&addr).await.unwrap();
            idle.push(tokio::spawn(async move {
                let t0 = Instant::now();
                let got = read_until_closed(&mut s, Duration::from_secs(60), "flood").await;
                assert!(got.is_empty(), "{i}: {}", String::from_utf8_lossy(&got));
                t0.elapsed()
            }));
        }

        // A slowloris and a stalled upload queued behind them: cut within their own timeouts of
        // being accepted.
        let put = c
            .put_object()
            .bucket("door")
            .key("stalled")
            .presigned(PresigningConfig::expires_in(Duration::from_secs(600)).unwrap())
            .await
            .unwrap();
        let slow = tokio::spawn(slowloris(addr.clone()));
        let stall = tokio::spawn(stalled_put(addr.clone(), put.uri().to_string()));

        // An authenticated client, on a fresh connection, during the flood: it waits in the listen
        // backlog until idle sockets are closed, then is served.
        let during = door.client();
        let t0 = Instant::now();
        during
            .put_object()
            .bucket("door")
            .key("during")
            .body(ByteStream::from_static(b"during the flood"))
            .send()
            .await
            .unwrap();
        let got = during
            .get_object()
            .bucket("door")
            .key("during")
            .send()
            .await
            .unwrap();
        assert_eq!(
            &got.body.collect().await.unwrap().into_bytes()[..],
            b"during the flood"
        );
        let served = t0.elapsed();

        // Every idle socket was closed: those accepted at once after IDLE_SECS, those queued behind
        // them one idle period later (the client's own pooled connections take slots too).
        let bound = Duration::from_secs(IDLE_SECS * (flood.div_ceil(MAX_CONNECTIONS) as u64 + 1));
        for (i, t) in idle.into_iter().enumerate() {
            let elapsed = t.await.unwrap();
            assert!(
                elapsed <= bound + SLACK,
                "idle socket {i} closed after {elapsed:?}, expected within {bound:?}"
            );
        }
        assert!(
            served <= bound + SLACK,
            "the client was served after {served:?}"
        );
        let (slow, _) = slow.await.unwrap();
        assert!(
            slow <= bound + Duration::from_secs(HEADER_SECS) + SLACK,
            "slowloris closed after {slow:?}"
        );
        let stall = stall.await.unwrap();
        assert!(
            stall <= bound + Duration::from_secs(BODY_STALL_SECS) + SLACK,
            "stalled body answered after {stall:?}"
        );
        let e = c
            .head_object()
            .bucket("door")
            .key("stalled")
            .send()
            .await
            .unwrap_err();
        assert_eq!(e.raw_response().map(|r| r.status().as_u16()), Some(404));

        // And after the flood.
        let got = c
            .get_object()
            .bucket("door")
            .key("before")
            .send()
            .await
            .unwrap();
        assert_eq!(
            &got.body.collect().await.unwrap().into_bytes()[..],
            b"before"
        );
    });
    let log = door.proc.log_text();
    let ip = &door.proc.spec.ip;
    assert!(
        log.contains(&format!(
            "connection limit {MAX_CONNECTIONS} reached on S3 API {ip}:3900"
        )),
        "{log}"
    );
}

/// SIGTERM while a PUT is in progress (its body half sent): the node stops accepting connections, the
/// PUT still completes (200, then the connection closes), the process exits by itself, and after a
/// restart the object is there, whole. Before the drain, a stop aborted the node's tasks under the
/// request (a 500 or a reset connection).
#[test]
fn sigterm_lets_a_put_in_progress_finish() {
    let mut door = Door::start();
    let c = door.client();
    let addr = door.addr();
    // Three blocks and a half: the PUT needs the block store and the metadata tables to the end.
    let len = (3 << 20) + 12345;
    let body: Vec<u8> = (0..len as u32).map(|i| (i % 251) as u8).collect();
    let uri = door.rt.block_on(async {
        c.create_bucket().bucket("door").send().await.unwrap();
        let conf = PresigningConfig::expires_in(Duration::from_secs(600)).unwrap();
        c.put_object()
            .bucket("door")
            .key("in-flight")
            .presigned(conf)
            .await
            .unwrap()
            .uri()
            .to_string()
    });
    let (host, path) = target(&uri);
    let resp = door.rt.block_on(async {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        let head = format!("PUT {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len}\r\n\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(&body[..len / 2]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        door.proc.signal(libc::SIGTERM);
        // The listener goes away: new connections are refused.
        let deadline = Instant::now() + Duration::from_secs(BODY_STALL_SECS);
        while TcpStream::connect(&addr).await.is_ok() {
            assert!(Instant::now() < deadline, "still accepting after SIGTERM");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        s.write_all(&body[len / 2..]).await.unwrap();
        String::from_utf8_lossy(
            &read_until_closed(&mut s, Duration::from_secs(20), "PUT during the drain").await,
        )
        .into_owned()
    });
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    door.proc
        .wait_exited("the node to exit on SIGTERM", Duration::from_secs(30));
    door.proc.kill();
    door.proc.restart();
    let got = door.rt.block_on(async {
        let c = door.client();
        let o = c
            .get_object()
            .bucket("door")
            .key("in-flight")
            .send()
            .await
            .unwrap();
        o.body.collect().await.unwrap().into_bytes()
    });
    assert_eq!(&got[..], &body[..]);
    let log = door.proc.log_text();
    assert!(log.contains("every connection closed"), "{log}");
}
