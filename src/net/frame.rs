//! Wire framing of a connection (inside TLS).
//!
//! Every frame is a 10-byte header followed by at most [`MAX_FRAME`] bytes of payload:
//!
//! ```text
//! | len: u32 BE | id: u32 BE | kind: u8 | flags: u8 | payload (len bytes) |
//! ```
//!
//! `id` names a request; it is allocated by the requester. The `ORIGIN_SENDER` flag says that the id was
//! allocated by the frame's sender (so the two sides' id spaces never collide). A request is
//! `Request` frames (the last one flagged `LAST`), optionally followed by `RequestStream` frames (an empty
//! `LAST` frame ends the stream); the answer is `Response` frames then optionally `ResponseStream` frames.
//! `Window` frames return flow-control credit for a stream, `StreamCancel` says a stream's receiver went
//! away, `Cancel` says the requester dropped the request. Frames of different requests interleave, so a
//! big transfer never holds back a small request beyond one 64 KiB frame.

use bytes::{BufMut, Bytes, BytesMut};

/// Largest payload of one frame.
pub const MAX_FRAME: usize = 64 * 1024;
pub const HEADER_LEN: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Request = 1,
    RequestStream = 2,
    Response = 3,
    ResponseStream = 4,
    Cancel = 5,
    Window = 6,
    StreamCancel = 7,
}

impl Kind {
    pub fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::Request,
            2 => Kind::RequestStream,
            3 => Kind::Response,
            4 => Kind::ResponseStream,
            5 => Kind::Cancel,
            6 => Kind::Window,
            7 => Kind::StreamCancel,
            _ => return None,
        })
    }
}

pub mod flags {
    /// Last frame of a message or of a stream.
    pub const LAST: u8 = 1;
    /// The message is followed by an attached byte stream.
    pub const HAS_STREAM: u8 = 2;
    /// Stream frame carrying an error message instead of data (ends the stream).
    pub const ERROR: u8 = 4;
    /// The id was allocated by the sender of this frame.
    pub const ORIGIN_SENDER: u8 = 8;
    /// Priority class, two bits.
    pub const PRIO_SHIFT: u8 = 4;
    pub const PRIO_MASK: u8 = 0b11 << PRIO_SHIFT;
}

/// Priority classes: frames of a higher class are always written first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Prio {
    /// Pings, peer exchange, flow control.
    Control = 0,
    /// Metadata requests.
    Normal = 1,
    /// Block transfers.
    Bulk = 2,
}

impl Prio {
    pub fn from_flags(f: u8) -> Prio {
        match (f & flags::PRIO_MASK) >> flags::PRIO_SHIFT {
            0 => Prio::Control,
            1 => Prio::Normal,
            _ => Prio::Bulk,
        }
    }
    pub fn flags(self) -> u8 {
        (self as u8) << flags::PRIO_SHIFT
    }
}

#[derive(Clone, Debug)]
pub struct Frame {
    pub id: u32,
    pub kind: Kind,
    pub flags: u8,
    pub payload: Bytes,
}

impl Frame {
    pub fn write_header(&self, out: &mut BytesMut) {
        debug_assert!(self.payload.len() <= MAX_FRAME);
        out.put_u32(self.payload.len() as u32);
        out.put_u32(self.id);
        out.put_u8(self.kind as u8);
        out.put_u8(self.flags);
    }
}

/// Parsed header: (payload length, id, kind, flags).
pub fn parse_header(h: &[u8; HEADER_LEN]) -> Result<(usize, u32, Kind, u8), String> {
    let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
    let id = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
    let kind = Kind::from_u8(h[8]).ok_or_else(|| format!("unknown frame kind {}", h[8]))?;
    if len > MAX_FRAME {
        return Err(format!(
            "frame of {len} bytes exceeds the {MAX_FRAME}-byte limit"
        ));
    }
    Ok((len, id, kind, h[9]))
}

/// Split a message into frame payloads of at most [`MAX_FRAME`] bytes (at least one, possibly empty).
pub fn split_message(msg: Bytes) -> Vec<Bytes> {
    if msg.is_empty() {
        return vec![msg];
    }
    let mut out = Vec::with_capacity(msg.len().div_ceil(MAX_FRAME));
    let mut rest = msg;
    while !rest.is_empty() {
        let n = rest.len().min(MAX_FRAME);
        out.push(rest.split_to(n));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip_and_limits() {
        let f = Frame {
            id: 77,
            kind: Kind::Response,
            flags: flags::LAST | Prio::Bulk.flags(),
            payload: Bytes::from_static(b"abc"),
        };
        let mut b = BytesMut::new();
        f.write_header(&mut b);
        let h: [u8; HEADER_LEN] = b[..].try_into().unwrap();
        let (len, id, kind, fl) = parse_header(&h).unwrap();
        assert_eq!((len, id, kind), (3, 77, Kind::Response));
        assert_eq!(Prio::from_flags(fl), Prio::Bulk);
        let mut bad = h;
        bad[0..4].copy_from_slice(&((MAX_FRAME as u32) + 1).to_be_bytes());
        assert!(parse_header(&bad).is_err());
        bad = h;
        bad[8] = 99;
        assert!(parse_header(&bad).is_err());
    }

    #[test]
    fn split() {
        assert_eq!(split_message(Bytes::new()).len(), 1);
        let parts = split_message(Bytes::from(vec![0u8; MAX_FRAME * 2 + 1]));
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            vec![MAX_FRAME, MAX_FRAME, 1]
        );
    }
}

/// Property-based fuzzing of the frame decoder and of a connection's reader fed arbitrary bytes
/// (case count: `PROPTEST_CASES`, default 256; `script/fuzz` runs them for a given time).
#[cfg(test)]
mod fuzz {
    use std::sync::Arc;
    use std::time::Duration;

    use futures::StreamExt;
    use futures::future::BoxFuture;
    use proptest::prelude::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::net::NetError;
    use crate::net::conn::{ByteStream, Conn, Dispatch, Reply};
    use crate::net::identity::NodeId;

    /// Answers every request with its body, after reading its stream to the end.
    struct Echo;

    impl Dispatch for Echo {
        fn dispatch(
            &self,
            _from: NodeId,
            _endpoint: &str,
            body: Bytes,
            stream: Option<ByteStream>,
        ) -> BoxFuture<'static, Reply> {
            Box::pin(async move {
                if let Some(mut s) = stream {
                    while s.next().await.is_some() {}
                }
                Ok((body, None))
            })
        }
    }

    /// Runs a connection whose peer sends `input` (then ends its side unless `keep_open`); returns
    /// why the connection ended. Panics if it does not end within 20 s.
    fn run_conn(input: Vec<u8>, keep_open: bool) -> NetError {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (ours, theirs) = tokio::io::duplex(64 << 10);
            let (conn, queues) = Conn::new(NodeId([7; 32]), "127.0.0.1:1".parse().unwrap(), false);
            let run = tokio::spawn(async move { conn.run(ours, queues, Arc::new(Echo)).await });
            let (mut rd, mut wr) = tokio::io::split(theirs);
            let drain = tokio::spawn(async move {
                let mut buf = vec![0; 64 << 10];
                while rd.read(&mut buf).await.is_ok_and(|n| n > 0) {}
            });
            let feed = tokio::spawn(async move {
                let _ = wr.write_all(&input).await;
                if keep_open {
                    std::future::pending::<()>().await;
                }
                let _ = wr.shutdown().await;
            });
            let ended = tokio::time::timeout(Duration::from_secs(20), run).await;
            feed.abort();
            drain.abort();
            ended.expect("the connection ends").expect("no panic")
        })
    }

    /// One frame as a peer could send it: header fields and payload arbitrary, the length
    /// sometimes lying.
    fn frame() -> impl Strategy<Value = Vec<u8>> {
        (
            prop::option::of(prop_oneof![
                Just(u32::MAX),
                Just(MAX_FRAME as u32 + 1),
                0u32..200
            ]),
            0u32..4,
            prop_oneof![4 => 1u8..=7, 1 => any::<u8>()],
            any::<u8>(),
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..64),
                // A well-formed request header: endpoint name length, name, body.
                ("[a-z/]{0,12}", prop::collection::vec(any::<u8>(), 0..16)).prop_map(
                    |(name, body)| {
                        let mut m = (name.len() as u16).to_be_bytes().to_vec();
                        m.extend_from_slice(name.as_bytes());
                        m.extend_from_slice(&body);
                        m
                    }
                ),
                // Reply-shaped and window-shaped payloads.
                prop::collection::vec(any::<u8>(), 4..5),
                Just(vec![0u8]),
                Just(vec![1u8, b'x']),
            ],
        )
            .prop_map(|(len, id, kind, flags, payload)| {
                let len = len.unwrap_or(payload.len() as u32);
                let mut out = len.to_be_bytes().to_vec();
                out.extend_from_slice(&id.to_be_bytes());
                out.push(kind);
                out.push(flags);
                out.extend_from_slice(&payload);
                out
            })
    }

    /// The connection has ended for a reason a peer's bytes can cause.
    fn acceptable(e: &NetError) -> bool {
        matches!(
            e,
            NetError::Protocol(_) | NetError::Disconnected | NetError::Io(_)
        )
    }

    proptest! {
        /// Any 10 bytes: a header within the limits, or an error; never a panic.
        #[test]
        fn headers(h in any::<[u8; HEADER_LEN]>()) {
            if let Ok((len, id, kind, fl)) = parse_header(&h) {
                prop_assert!(len <= MAX_FRAME);
                let mut out = BytesMut::new();
                Frame { id, kind, flags: fl, payload: Bytes::from(vec![0; len]) }.write_header(&mut out);
                prop_assert_eq!(&out[..], &h[..]);
            }
        }

        /// Splitting a message gives frames within the limit whose concatenation is the message.
        #[test]
        fn split_then_join(len in 0usize..3 * MAX_FRAME) {
            let msg: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let parts = split_message(Bytes::from(msg.clone()));
            prop_assert!(parts.iter().all(|p| p.len() <= MAX_FRAME));
            prop_assert_eq!(parts.concat(), msg);
        }

        /// A connection fed arbitrary frames (lying lengths, unknown kinds, reused ids, streams
        /// without requests…) or raw garbage ends with an error, never a panic or a hang.
        #[test]
        fn connection_survives_any_input(
            frames in prop::collection::vec(frame(), 0..24),
            garbage in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut input = frames.concat();
            input.extend_from_slice(&garbage);
            let e = run_conn(input, false);
            prop_assert!(acceptable(&e), "{:?}", e);
        }
    }

    /// A 4 GiB length prefix is refused from the header alone: the connection ends at once (its
    /// peer still connected and sending nothing more), nothing is allocated for the payload.
    #[test]
    fn huge_length_prefix_is_refused_before_reading() {
        for len in [u32::MAX, MAX_FRAME as u32 + 1] {
            let mut input = len.to_be_bytes().to_vec();
            input.extend_from_slice(&[0, 0, 0, 1, Kind::Request as u8, flags::LAST]);
            let e = run_conn(input, true);
            assert!(
                matches!(&e, NetError::Protocol(m) if m.contains("exceeds")),
                "{e:?}"
            );
        }
    }
}
