//! In-process tests of the mesh on loopback: two or three `NetApp`s in one runtime.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::*;

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
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(c.is_connected(&b.id) && pc.rtt(&b.id).is_some()) {
        assert!(Instant::now() < deadline, "c never meshed with b");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(pc.peers().iter().all(|p| p.up));
    for t in tasks {
        t.abort();
    }
}
