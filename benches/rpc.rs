//! RPC mesh benchmark on loopback: small request round trip and attached-stream throughput, over the real
//! TLS + framing stack. Run with `cargo bench --bench rpc` (or `script/bench rpc`).
//! Targets (issue "Cluster foundation"): round trip ≤ 60 µs, stream ≥ 1.5 GB/s.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use grenier::net::{ByteStream, Endpoint, Message, NetApp, NodeKey, Prio};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Req(#[serde(with = "serde_bytes")] Vec<u8>);
impl Message for Req {
    type Response = Req;
}

async fn node() -> (Arc<NetApp>, SocketAddr) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let net = NetApp::new(&NodeKey::generate(), [9; 32], Some(addr.to_string()), None).unwrap();
    net.listen(addr).await.unwrap();
    (net, addr)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (a, _) = node().await;
        let (b, baddr) = node().await;
        let eb: Endpoint<Req> = Endpoint::new(&b, "bench/echo/v1");
        eb.set_handler(|_, m: Req, s: Option<ByteStream>| async move {
            // Drain an incoming stream (a block upload) and answer with its size.
            let mut n = 0usize;
            if let Some(mut s) = s {
                while let Some(c) = s.next().await {
                    n += c.unwrap().len();
                }
                return Ok((Req(n.to_le_bytes().to_vec()), None));
            }
            Ok((m, None))
        });
        let ea: Endpoint<Req> = Endpoint::new(&a, "bench/echo/v1");
        a.connect(b.id, &baddr.to_string()).await.unwrap();
        let t = Duration::from_secs(30);

        // Reference floor: a plain TCP ping-pong (64 bytes, TCP_NODELAY, no TLS, no framing) on the same
        // runtime, so the RPC number can be read against what this machine's loopback costs.
        {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            tokio::spawn(async move {
                let (mut s, _) = l.accept().await.unwrap();
                s.set_nodelay(true).unwrap();
                let mut b = [0u8; 64];
                while s.read_exact(&mut b).await.is_ok() {
                    s.write_all(&b).await.unwrap();
                }
            });
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            c.set_nodelay(true).unwrap();
            let mut b = [0u8; 64];
            let n = 20_000;
            let start = Instant::now();
            for _ in 0..n {
                c.write_all(&b).await.unwrap();
                c.read_exact(&mut b).await.unwrap();
            }
            println!(
                "reference: plain TCP ping-pong (64 B, loopback, no TLS): mean {:.1} µs",
                start.elapsed().as_secs_f64() * 1e6 / n as f64
            );
        }

        // Small RPC round trip, sequential.
        for _ in 0..2000 {
            ea.call(&b.id, &Req(vec![0; 64]), Prio::Normal, t).await.unwrap();
        }
        let n = 20_000;
        let mut lat: Vec<Duration> = Vec::with_capacity(n);
        for _ in 0..n {
            let s = Instant::now();
            ea.call(&b.id, &Req(vec![0; 64]), Prio::Normal, t).await.unwrap();
            lat.push(s.elapsed());
        }
        lat.sort();
        let mean = lat.iter().sum::<Duration>() / n as u32;
        println!(
            "small rpc round trip (64 B, sequential, {n} calls): mean {:.1} µs, p50 {:.1} µs, p99 {:.1} µs",
            mean.as_secs_f64() * 1e6,
            lat[n / 2].as_secs_f64() * 1e6,
            lat[n * 99 / 100].as_secs_f64() * 1e6
        );

        // Reference floor: 1 GiB over plain loopback TCP (no TLS, no framing), 1 MiB writes.
        {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let reader = tokio::spawn(async move {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = vec![0u8; 1 << 20];
                let mut n = 0usize;
                loop {
                    match s.read(&mut buf).await.unwrap() {
                        0 => return n,
                        k => n += k,
                    }
                }
            });
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            let chunk = vec![0x5au8; 1 << 20];
            let start = Instant::now();
            for _ in 0..1024 {
                c.write_all(&chunk).await.unwrap();
            }
            drop(c);
            assert_eq!(reader.await.unwrap(), 1 << 30);
            println!(
                "reference: plain TCP stream (1 GiB, loopback, no TLS): {:.2} GB/s",
                (1u64 << 30) as f64 / start.elapsed().as_secs_f64() / 1e9
            );
        }

        // Stream throughput: 1 GiB in 1 MiB chunks as one attached stream.
        let total: usize = 1 << 30;
        let chunk = Bytes::from(vec![0x5au8; 1 << 20]);
        let chunks = total / chunk.len();
        let s: ByteStream = Box::pin(futures::stream::iter((0..chunks).map(move |_| Ok(chunk.clone()))));
        let start = Instant::now();
        let (r, _) = ea.call_streaming(&b.id, &Req(vec![]), Some(s), Prio::Bulk, t).await.unwrap();
        let el = start.elapsed();
        assert_eq!(usize::from_le_bytes(r.0.try_into().unwrap()), total);
        println!(
            "stream throughput (1 GiB, one stream, TLS 1.3 AES-GCM): {:.2} GB/s ({:.2} s)",
            total as f64 / el.as_secs_f64() / 1e9,
            el.as_secs_f64()
        );
    });
}
