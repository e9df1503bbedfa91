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
