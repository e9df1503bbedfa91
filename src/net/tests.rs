//! In-process tests of the mesh on loopback: two or three `NetApp`s in one runtime.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::*;
use crate::test_support::wait_until;

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Echo(Vec<u8>);
impl Message for Echo {
    type Response = Echo;
}

async fn node(secret: [u8; 32]) -> (Arc<NetApp>, SocketAddr) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let net = NetApp::new(&NodeKey::generate(), secret, Some(addr.to_string()), None).unwrap();
    net.listen(addr).await.unwrap();
    (net, addr)
}

const T: Duration = Duration::from_secs(10);

fn echo_endpoint(net: &Arc<NetApp>) -> Endpoint<Echo> {
    let ep = Endpoint::new(net, "test/echo/v1");
    ep.set_handler(|_, msg: Echo, stream: Option<ByteStream>| async move {
        // Echo the message, and stream back whatever stream came in.
        Ok((msg, stream))
    });
    ep
}

#[tokio::test]
async fn call_message_and_stream_roundtrip() {
    let (a, _) = node([7; 32]).await;
    let (b, baddr) = node([7; 32]).await;
    let _eb = echo_endpoint(&b);
    let ea = echo_endpoint(&a);
    a.connect(b.id, &baddr.to_string()).await.unwrap();
    assert!(a.is_connected(&b.id));

    // Small and multi-frame messages.
    for size in [0usize, 10, 64 * 1024, 200_000, 3 << 20] {
        let v: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let r = ea
            .call(&b.id, &Echo(v.clone()), Prio::Normal, T)
            .await
            .unwrap();
        assert_eq!(r.0, v);
    }
    // A 20 MiB stream goes through the 4 MiB flow-control window and comes back intact.
    let data: Vec<u8> = (0..20 << 20).map(|i: usize| (i % 253) as u8).collect();
    let chunks: Vec<Result<Bytes, std::io::Error>> = data
        .chunks(100_000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let s: ByteStream = Box::pin(futures::stream::iter(chunks));
    let (_, back) = ea
        .call_streaming(&b.id, &Echo(vec![]), Some(s), Prio::Bulk, T)
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut back = back.expect("stream comes back");
    while let Some(c) = back.next().await {
        got.extend_from_slice(&c.unwrap());
    }
    assert_eq!(got.len(), data.len());
    assert!(got == data);
    // Local calls skip the network.
    let r = ea
        .call(&a.id, &Echo(vec![1, 2]), Prio::Normal, T)
        .await
        .unwrap();
    assert_eq!(r.0, vec![1, 2]);
}

#[tokio::test]
async fn stream_error_reaches_the_receiver() {
    let (a, _) = node([1; 32]).await;
    let (b, baddr) = node([1; 32]).await;
    let _eb = echo_endpoint(&b);
    let ea = echo_endpoint(&a);
    a.connect(b.id, &baddr.to_string()).await.unwrap();
    let items = vec![
        Ok(Bytes::from_static(b"abc")),
        Err(std::io::Error::other("disk on fire")),
    ];
    let s: ByteStream = Box::pin(futures::stream::iter(items));
    let (_, back) = ea
        .call_streaming(&b.id, &Echo(vec![]), Some(s), Prio::Bulk, T)
        .await
        .unwrap();
    let items: Vec<_> = back.unwrap().collect().await;
    assert_eq!(items[0].as_ref().unwrap().as_ref(), b"abc");
    assert!(
        items[1]
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("disk on fire")
    );
}

#[tokio::test]
async fn dropping_a_call_cancels_the_remote_handler() {
    let (a, _) = node([2; 32]).await;
    let (b, baddr) = node([2; 32]).await;
    let finished = Arc::new(AtomicBool::new(false));
    let ep_b: Endpoint<Echo> = Endpoint::new(&b, "test/slow/v1");
    let f2 = finished.clone();
    ep_b.set_simple_handler(move |_, m: Echo| {
        let f2 = f2.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            f2.store(true, Ordering::SeqCst);
            Ok(m)
        }
    });
    let ep_a: Endpoint<Echo> = Endpoint::new(&a, "test/slow/v1");
    a.connect(b.id, &baddr.to_string()).await.unwrap();
    let r = ep_a
        .call(
            &b.id,
            &Echo(vec![]),
            Prio::Normal,
            Duration::from_millis(200),
        )
        .await;
    assert!(matches!(r, Err(NetError::Timeout)));
    // The handler was aborted by the Cancel frame: it never finishes.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!finished.load(Ordering::SeqCst));
    // Unknown endpoint gives a clear error.
    let ep_x: Endpoint<Echo> = Endpoint::new(&a, "test/nope/v1");
    let r = ep_x.call(&b.id, &Echo(vec![]), Prio::Normal, T).await;
    assert!(matches!(r, Err(NetError::Remote(m)) if m.contains("no handler")));
}

#[tokio::test]
async fn small_requests_are_not_delayed_by_a_bulk_stream() {
    let (a, _) = node([3; 32]).await;
    let (b, baddr) = node([3; 32]).await;
    let _eb = echo_endpoint(&b);
    let ea = echo_endpoint(&a);
    a.connect(b.id, &baddr.to_string()).await.unwrap();
    // An endless bulk stream that the remote echoes back and we never read: it is held by flow control.
    let s: ByteStream = Box::pin(futures::stream::repeat_with(|| {
        Ok(Bytes::from(vec![0u8; 65536]))
    }));
    let (_, _held) = ea
        .call_streaming(&b.id, &Echo(vec![]), Some(s), Prio::Bulk, T)
        .await
        .unwrap();
    let start = Instant::now();
    for _ in 0..20 {
        ea.call(&b.id, &Echo(vec![1; 100]), Prio::Normal, T)
            .await
            .unwrap();
    }
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "metadata calls stalled: {:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn wrong_secret_or_wrong_id_is_refused() {
    let (a, _) = node([4; 32]).await;
    let (b, baddr) = node([5; 32]).await;
    let r = a.connect(b.id, &baddr.to_string()).await;
    assert!(r.is_err(), "connected despite different secrets");
    assert!(!a.is_connected(&b.id));
    assert!(!b.is_connected(&a.id));
    // Right secret, but the dialer expects another node id at that address.
    let (c, caddr) = node([4; 32]).await;
    let other = NodeKey::generate().id();
    assert!(a.connect(other, &caddr.to_string()).await.is_err());
    assert!(!c.is_connected(&a.id));
}

#[tokio::test]
async fn simultaneous_dials_keep_one_connection_and_peering_meshes() {
    let (a, aaddr) = node([6; 32]).await;
    let (b, baddr) = node([6; 32]).await;
    let (c, _) = node([6; 32]).await;
    let ea = echo_endpoint(&a);
    let _eb = echo_endpoint(&b);
    let _ec = echo_endpoint(&c);
    let (bs, as_) = (baddr.to_string(), aaddr.to_string());
    let (r1, r2) = tokio::join!(a.connect(b.id, &bs), b.connect(a.id, &as_));
    r1.unwrap();
    r2.unwrap();
    ea.call(&b.id, &Echo(vec![9]), Prio::Normal, T)
        .await
        .unwrap();
    // Peering: c only knows a; it learns b through peer exchange and connects to it.
    let pa = peering::Peering::new(&a, vec![], None);
    let pb = peering::Peering::new(&b, vec![], None);
    let pc = peering::Peering::new(&c, vec![(a.id, aaddr.to_string())], None);
    let tasks = [pa.spawn(), pb.spawn(), pc.spawn()];
    wait_until("c to mesh with b", Duration::from_secs(30), || {
        c.is_connected(&b.id) && pc.rtt(&b.id).is_some()
    })
    .await;
    assert!(pc.peers().iter().all(|p| p.up));
    for t in tasks {
        t.abort();
    }
}

/// Bug 4 of the resilience suite: a call made right after a peer's connection closed (the peer
/// dropped it while this node was frozen, or it restarted) waits for the redial instead of failing
/// with `NotConnected`; a call to a peer that is gone fails once the redial fails, without waiting
/// out `CONNECT_WAIT`.
#[tokio::test]
async fn a_call_waits_for_the_redial_of_a_peer_whose_connection_closed() {
    let (a, _) = node([5; 32]).await;
    let baddr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let b = NetApp::new(&NodeKey::generate(), [5; 32], Some(baddr.to_string()), None).unwrap();
    let b_listener = b.listen(baddr).await.unwrap();
    let ea = echo_endpoint(&a);
    let _eb = echo_endpoint(&b);
    let pa = peering::Peering::new(&a, vec![(b.id, baddr.to_string())], None);
    let pb = peering::Peering::new(&b, vec![], None);
    let tasks = [pa.spawn(), pb.spawn()];
    wait_until("a to connect to b", T, || a.is_connected(&b.id)).await;
    for round in 0..5 {
        a.disconnect(&b.id);
        let r = ea.call(&b.id, &Echo(vec![round]), Prio::Normal, T).await;
        assert_eq!(r.unwrap(), Echo(vec![round]), "round {round}");
    }
    // b goes away for good: no more listener, and its side of the connection closed.
    tasks[1].abort();
    b_listener.abort();
    let _ = b_listener.await;
    b.disconnect(&a.id);
    wait_until("a to see b gone", T, || !a.is_connected(&b.id)).await;
    let start = Instant::now();
    let r = ea.call(&b.id, &Echo(vec![]), Prio::Normal, T).await;
    assert!(matches!(r, Err(NetError::NotConnected(_))), "{r:?}");
    assert!(
        start.elapsed() < netapp::CONNECT_WAIT,
        "{:?}",
        start.elapsed()
    );
    tasks[0].abort();
}

// ---- caps on what a peer can make us hold (a peer speaking raw frames over an in-memory pipe) ----------

mod caps {
    use bytes::{Bytes, BytesMut};
    use futures::future::BoxFuture;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::super::conn::{self, Conn, Dispatch, Reply};
    use super::super::frame::{Frame, HEADER_LEN, Kind, flags, parse_header};
    use super::*;

    /// Endpoint `hold` keeps the request (and its stream) forever; anything else is echoed.
    struct Handler;
    impl Dispatch for Handler {
        fn dispatch(
            &self,
            _from: NodeId,
            endpoint: &str,
            body: Bytes,
            stream: Option<ByteStream>,
        ) -> BoxFuture<'static, Reply> {
            let hold = endpoint == "hold";
            Box::pin(async move {
                if hold {
                    let _kept = stream;
                    std::future::pending::<()>().await;
                }
                Ok((body, None))
            })
        }
    }

    /// A connection served by `Handler`, and the peer's end of the pipe.
    fn raw_conn() -> (DuplexStream, tokio::task::JoinHandle<NetError>) {
        raw_conn_with(conn::Limits::default())
    }

    fn raw_conn_with(limits: conn::Limits) -> (DuplexStream, tokio::task::JoinHandle<NetError>) {
        let (ours, theirs) = tokio::io::duplex(8 << 20);
        let peer = NodeKey::generate().id();
        let (c, queues) = Conn::with_limits(peer, "127.0.0.1:1".parse().unwrap(), false, limits);
        let task = tokio::spawn(async move { c.run(ours, queues, Arc::new(Handler)).await });
        (theirs, task)
    }

    fn request(endpoint: &str, body: &[u8]) -> Vec<u8> {
        let mut m = (endpoint.len() as u16).to_be_bytes().to_vec();
        m.extend_from_slice(endpoint.as_bytes());
        m.extend_from_slice(body);
        m
    }

    async fn send(w: &mut DuplexStream, id: u32, kind: Kind, fl: u8, payload: &[u8]) {
        let f = Frame {
            id,
            kind,
            flags: fl | flags::ORIGIN_SENDER,
            payload: Bytes::copy_from_slice(payload),
        };
        let mut b = BytesMut::new();
        f.write_header(&mut b);
        b.extend_from_slice(payload);
        // The connection may already have hung up on us: that is what some tests wait for.
        let _ = w.write_all(&b).await;
    }

    /// The id of the next complete response (skipping anything else).
    async fn response_id(r: &mut DuplexStream) -> u32 {
        loop {
            let mut h = [0u8; HEADER_LEN];
            tokio::time::timeout(T, r.read_exact(&mut h))
                .await
                .expect("an answer in time")
                .unwrap();
            let (len, id, kind, fl) = parse_header(&h).unwrap();
            let mut p = vec![0u8; len];
            r.read_exact(&mut p).await.unwrap();
            if kind == Kind::Response && fl & flags::LAST != 0 {
                return id;
            }
        }
    }

    async fn closed_with(task: tokio::task::JoinHandle<NetError>, what: &str) {
        let e = tokio::time::timeout(T, task)
            .await
            .expect("the connection is closed")
            .unwrap();
        assert!(
            matches!(&e, NetError::Protocol(m) if m.contains(what)),
            "closed for another reason: {e}"
        );
    }

    #[tokio::test]
    async fn too_many_incomplete_requests_close_the_connection() {
        let (mut peer, task) = raw_conn();
        let first = request("echo", b"0123456789");
        // Up to the cap: accepted, and the connection still serves.
        for id in 1..=conn::MAX_PARTIAL_MESSAGES as u32 {
            send(&mut peer, id, Kind::Request, 0, &first[..4]).await;
        }
        send(&mut peer, 1, Kind::Request, flags::LAST, &first[4..]).await;
        assert_eq!(response_id(&mut peer).await, 1);
        // One completed, two more started: one over the cap.
        send(&mut peer, 100_000, Kind::Request, 0, &first[..4]).await;
        assert!(!task.is_finished());
        send(&mut peer, 100_001, Kind::Request, 0, &first[..4]).await;
        closed_with(task, "incomplete requests").await;
    }

    #[tokio::test]
    async fn too_many_incomplete_request_bytes_close_the_connection() {
        // The same check as with the real 256 MiB cap, on a 1 MiB one (cheaper to fill).
        let limits = conn::Limits {
            partial_bytes: 1 << 20,
            ..conn::Limits::default()
        };
        let (mut peer, task) = raw_conn_with(limits);
        let frame = vec![0u8; MAX_FRAME_LEN];
        let head = request("echo", b"");
        // Two incomplete requests of 8 and 7 full frames: just under 1 MiB together.
        send(&mut peer, 1, Kind::Request, 0, &head).await;
        for _ in 0..8 {
            send(&mut peer, 1, Kind::Request, 0, &frame).await;
        }
        send(&mut peer, 2, Kind::Request, 0, &head).await;
        for _ in 0..7 {
            send(&mut peer, 2, Kind::Request, 0, &frame).await;
        }
        // Completing a request releases its bytes.
        send(&mut peer, 1, Kind::Request, flags::LAST, b"").await;
        assert_eq!(response_id(&mut peer).await, 1);
        for _ in 0..8 {
            send(&mut peer, 2, Kind::Request, 0, &frame).await;
        }
        // 15 full frames (and a head) buffered: still serving; the 16th frame is over 1 MiB.
        still_serving(&mut peer, 3).await;
        send(&mut peer, 2, Kind::Request, 0, &frame).await;
        closed_with(task, "bytes of incomplete requests").await;
    }

    const MAX_FRAME_LEN: usize = super::super::frame::MAX_FRAME;

    /// An `echo` request with id `id` is still answered on the connection.
    async fn still_serving(peer: &mut DuplexStream, id: u32) {
        send(peer, id, Kind::Request, flags::LAST, &request("echo", b"x")).await;
        assert_eq!(response_id(peer).await, id);
    }

    #[tokio::test]
    async fn too_many_request_streams_close_the_connection() {
        let (mut peer, task) = raw_conn();
        let hold = request("hold", b"");
        for id in 1..=conn::MAX_INCOMING_STREAMS as u32 {
            send(
                &mut peer,
                id,
                Kind::Request,
                flags::LAST | flags::HAS_STREAM,
                &hold,
            )
            .await;
        }
        still_serving(&mut peer, 5000).await;
        send(
            &mut peer,
            5001,
            Kind::Request,
            flags::LAST | flags::HAS_STREAM,
            &hold,
        )
        .await;
        closed_with(task, "request streams").await;
    }

    #[tokio::test]
    async fn stream_data_beyond_the_window_closes_the_connection() {
        let (mut peer, task) = raw_conn();
        send(
            &mut peer,
            1,
            Kind::Request,
            flags::LAST | flags::HAS_STREAM,
            &request("hold", b""),
        )
        .await;
        // The receiver never reads: exactly one window is accepted, a byte more is not.
        let chunk = vec![0u8; MAX_FRAME_LEN];
        for _ in 0..conn::STREAM_WINDOW / MAX_FRAME_LEN {
            send(&mut peer, 1, Kind::RequestStream, 0, &chunk).await;
        }
        still_serving(&mut peer, 2).await;
        send(&mut peer, 1, Kind::RequestStream, 0, b"!").await;
        closed_with(task, "flow-control window").await;
    }
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Blob(serde_bytes::ByteBuf);
impl Message for Blob {
    type Response = Blob;
}

/// Our own side stays under the caps above: many concurrent multi-frame requests with streams, more than
/// any cap, all succeed on one connection, which stays up.
#[tokio::test]
async fn many_concurrent_big_calls_stay_within_the_peer_caps() {
    let (a, _) = node([8; 32]).await;
    let (b, baddr) = node([8; 32]).await;
    let blob_endpoint = |net: &Arc<NetApp>| {
        let ep: Endpoint<Blob> = Endpoint::new(net, "test/blob/v1");
        ep.set_handler(|_, msg: Blob, stream: Option<ByteStream>| async move { Ok((msg, stream)) });
        ep
    };
    let _eb = blob_endpoint(&b);
    let ea = blob_endpoint(&a);
    a.connect(b.id, &baddr.to_string()).await.unwrap();
    let n = 2 * conn::MAX_INCOMING_STREAMS.max(conn::MAX_PARTIAL_MESSAGES);
    let calls = (0..n).map(|i| {
        let ea = ea.clone();
        let to = b.id;
        async move {
            // Three frames each, and a stream.
            let msg = Blob(serde_bytes::ByteBuf::from(vec![i as u8; 150_000]));
            let s: ByteStream = Box::pin(futures::stream::iter(vec![Ok(Bytes::from(vec![
                i as u8;
                100_000
            ]))]));
            let (r, back) = ea
                .call_streaming(&to, &msg, Some(s), Prio::Bulk, Duration::from_secs(60))
                .await
                .unwrap();
            assert_eq!(r, msg);
            let mut got = 0;
            let mut back = back.expect("stream comes back");
            while let Some(c) = back.next().await {
                got += c.unwrap().len();
            }
            assert_eq!(got, 100_000);
        }
    });
    futures::future::join_all(calls).await;
    assert!(a.is_connected(&b.id));
}

#[derive(Serialize, Deserialize)]
struct FakeGetPeers {}
impl Message for FakeGetPeers {
    type Response = Vec<(NodeId, String)>;
}

/// A peer answering the peer exchange with thousands of made-up nodes: at most `MAX_KNOWN_PEERS` are
/// remembered (and dialed).
#[tokio::test]
async fn peer_exchange_answers_are_bounded() {
    let (a, _) = node([9; 32]).await;
    let (b, baddr) = node([9; 32]).await;
    let liar: Endpoint<FakeGetPeers> = Endpoint::new(&b, "grenier/peering/peers/v1");
    liar.set_simple_handler(|_, _: FakeGetPeers| async {
        Ok((0..3 * peering::MAX_KNOWN_PEERS as u32)
            .map(|i| {
                let mut id = [0xab; 32];
                id[..4].copy_from_slice(&i.to_be_bytes());
                (NodeId(id), "127.0.0.1:9".to_string())
            })
            .collect())
    });
    let pa = peering::Peering::new(&a, vec![(b.id, baddr.to_string())], None);
    let task = pa.spawn();
    wait_until("the peer exchange", Duration::from_secs(30), || {
        pa.peers().len() >= peering::MAX_KNOWN_PEERS
    })
    .await;
    // One answer is applied at once, under the lock: what is there now is all of it.
    assert_eq!(pa.peers().len(), peering::MAX_KNOWN_PEERS);
    task.abort();
}
