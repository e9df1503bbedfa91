//! `Content-Encoding: aws-chunked` request bodies, decoded as they stream.
//!
//! The framing is HTTP/1.1 chunked encoding inside the body:
//!
//! ```text
//! <hex size>;chunk-signature=<sig>\r\n<data>\r\n      (signed modes; unsigned: <hex size>\r\n<data>\r\n)
//! ...
//! 0;chunk-signature=<sig>\r\n                         (unsigned: 0\r\n)
//! x-amz-checksum-crc32:<base64>\r\n                   (trailer modes)
//! x-amz-trailer-signature:<sig>\r\n                   (signed trailer mode)
//! \r\n
//! ```
//!
//! Each chunk signature chains on the previous one, starting from the request's own signature (the
//! seed), so chunks can be neither altered, reordered, dropped nor added. The AWS documentation's
//! trailer example puts an empty line between the final chunk and the trailers, and omits the last
//! empty line; both forms are accepted.
//!
//! Memory stays bounded: data is passed through as it arrives (no chunk is buffered), lines are at
//! most [`MAX_LINE`] bytes, chunks at most [`MAX_CHUNK_SIZE`], trailers at most [`MAX_TRAILERS`].
//!
//! **Verification and delivery.** Payload bytes of a chunk are yielded before that chunk's signature
//! is checked, except the last piece of every chunk, which is held back until its signature is
//! verified; the last piece of the body is only yielded once everything (final chunk, trailers and
//! their signature, the end of the input) is verified. So a consumer that received every byte has
//! a fully verified body, and one that gets an error must discard what it read.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use futures::Stream;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::s3::checksum::{Checksum, ChecksumAlgorithm};
use crate::s3::error::{S3Error, S3ErrorCode, err};
use crate::s3::sigv4::SigningContext;

/// Largest chunk accepted (SDKs send 64 KiB chunks; AWS recommends at least 8 KiB).
pub const MAX_CHUNK_SIZE: u64 = 16 << 20;
/// Longest chunk header or trailer line, without its CRLF.
pub const MAX_LINE: usize = 4096;
/// Most trailers accepted (S3 only uses one checksum, plus the trailer signature).
pub const MAX_TRAILERS: usize = 16;

const TRAILER_SIGNATURE: &str = "x-amz-trailer-signature";

/// Which aws-chunked variant the request's `x-amz-content-sha256` announced.
#[derive(Clone, Debug)]
pub enum StreamingMode {
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`: signed chunks, no trailers.
    Signed(SigningContext),
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`: signed chunks and signed trailers.
    SignedTrailer(SigningContext),
    /// `STREAMING-UNSIGNED-PAYLOAD-TRAILER`: plain chunks, unsigned trailers.
    UnsignedTrailer,
}

impl StreamingMode {
    fn context(&self) -> Option<&SigningContext> {
        match self {
            StreamingMode::Signed(c) | StreamingMode::SignedTrailer(c) => Some(c),
            StreamingMode::UnsignedTrailer => None,
        }
    }

    fn has_trailers(&self) -> bool {
        !matches!(self, StreamingMode::Signed(_))
    }
}

/// The trailers of a decoded body, shared so that they stay reachable once the decoder has been
/// boxed or moved into the consumer. Set only when the body was fully decoded and verified.
#[derive(Clone, Debug, Default)]
pub struct Trailers(Arc<OnceLock<Vec<(String, String)>>>);

impl Trailers {
    /// `(lowercase name, value)` pairs in the order received, without `x-amz-trailer-signature`.
    pub fn get(&self) -> Option<&[(String, String)]> {
        self.0.get().map(Vec::as_slice)
    }

    /// The value of one trailer.
    pub fn value(&self, name: &str) -> Option<&str> {
        let trailers = self.get()?;
        trailers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `x-amz-checksum-<alg>` trailer, decoded (`InvalidRequest` if not valid base64 of the
    /// right length). `None` if the body is not finished or has no such trailer.
    pub fn checksum(&self, algorithm: ChecksumAlgorithm) -> Result<Option<Checksum>, S3Error> {
        self.value(algorithm.header_name())
            .map(|v| Checksum::from_base64(algorithm, v))
            .transpose()
    }
}

/// Where the parser is in the framing.
enum State {
    /// Expecting `<hex size>[;chunk-signature=<sig>]\r\n`.
    Header,
    /// Inside a chunk's data.
    Data {
        remaining: u64,
        signature: Option<String>,
    },
    /// Expecting the `\r\n` that closes a chunk's data.
    DataEnd { signature: Option<String> },
    /// After the final zero-size chunk: trailer lines up to an empty line.
    Trailers { blank_seen: bool },
    /// All framing parsed and verified: only the end of the input may follow.
    End,
    /// Finished, or failed.
    Done,
}

/// What one parsing step asks of the poll loop.
enum Step {
    Yield(Bytes),
    Continue,
    NeedInput,
    Finished,
}

/// Decodes an aws-chunked body, checking chunk and trailer signatures; yields the payload bytes.
pub struct ChunkedDecoder<S> {
    body: S,
    mode: StreamingMode,
    state: State,
    /// Received, not yet parsed.
    input: Bytes,
    /// A line being assembled across input pieces.
    line: BytesMut,
    eof: bool,
    /// SHA-256 of the current chunk's data (signed modes).
    hasher: Sha256,
    /// Signature of the previous chunk (the seed at first).
    previous: String,
    /// Last piece of the last chunk, held until it is verified.
    held: Option<Bytes>,
    pending_trailers: Vec<(String, String)>,
    trailer_signature: Option<String>,
    trailers: Trailers,
    decoded: u64,
    expected_len: Option<u64>,
}

impl<S> ChunkedDecoder<S> {
    pub fn new(body: S, mode: StreamingMode) -> Self {
        let previous = mode
            .context()
            .map(|c| c.seed_signature.clone())
            .unwrap_or_default();
        ChunkedDecoder {
            body,
            mode,
            state: State::Header,
            input: Bytes::new(),
            line: BytesMut::new(),
            eof: false,
            hasher: Sha256::new(),
            previous,
            held: None,
            pending_trailers: vec![],
            trailer_signature: None,
            trailers: Trailers::default(),
            decoded: 0,
            expected_len: None,
        }
    }

    /// Also checks the payload length (`x-amz-decoded-content-length`): more data is
    /// `InvalidRequest` as soon as it arrives, less is `IncompleteBody` at the end.
    pub fn with_decoded_length(mut self, len: u64) -> Self {
        self.expected_len = Some(len);
        self
    }

    /// The trailers, once the body is fully decoded.
    pub fn trailers(&self) -> Option<&[(String, String)]> {
        self.trailers.get()
    }

    /// A handle on the trailers that outlives the decoder.
    pub fn trailers_handle(&self) -> Trailers {
        self.trailers.clone()
    }

    /// Payload bytes decoded so far (including any held back).
    pub fn decoded_len(&self) -> u64 {
        self.decoded
    }

    /// One parsing step on the buffered input. Returns `NeedInput` only when `input` is empty.
    fn step(&mut self) -> Result<Step, S3Error> {
        match &mut self.state {
            State::Header => match self.read_line()? {
                Some(line) => self.on_header(&line),
                None => Ok(Step::NeedInput),
            },
            State::Data { .. } => self.on_data(),
            State::DataEnd { signature } => {
                let signature = signature.take();
                match self.read_line()? {
                    Some(line) => self.on_data_end(&line, signature),
                    None => {
                        self.state = State::DataEnd { signature };
                        Ok(Step::NeedInput)
                    }
                }
            }
            State::Trailers { blank_seen } => {
                let blank_seen = *blank_seen;
                self.on_trailers(blank_seen)
            }
            State::End => self.on_end(),
            State::Done => Ok(Step::Finished),
        }
    }

    /// `<hex size>[;ext]`: starts a chunk, or the final part after a zero-size one.
    fn on_header(&mut self, line: &[u8]) -> Result<Step, S3Error> {
        let text = std::str::from_utf8(line).map_err(|_| framing("a chunk header is not text"))?;
        let (size, ext) = match text.split_once(';') {
            Some((size, ext)) => (size, Some(ext)),
            None => (text, None),
        };
        let size = parse_size(size)?;
        let signature = match (&self.mode, ext) {
            (StreamingMode::UnsignedTrailer, _) => None,
            (_, Some(ext)) => match ext.strip_prefix("chunk-signature=") {
                Some(sig) if !sig.is_empty() => Some(sig.to_string()),
                _ => return Err(framing("a chunk header lacks its chunk-signature")),
            },
            (_, None) => return Err(framing("a chunk header lacks its chunk-signature")),
        };
        if size == 0 {
            self.check_chunk(signature.as_deref())?;
            self.state = State::Trailers { blank_seen: false };
            return Ok(Step::Continue);
        }
        self.state = State::Data {
            remaining: size,
            signature,
        };
        // The previous chunk is verified: its held piece can go.
        Ok(self.held.take().map_or(Step::Continue, Step::Yield))
    }

    /// Passes data through, hashing it; holds the chunk's last piece until the signature is checked.
    fn on_data(&mut self) -> Result<Step, S3Error> {
        let State::Data {
            remaining,
            signature,
        } = &mut self.state
        else {
            return Ok(Step::Continue);
        };
        if self.input.is_empty() {
            return if self.eof {
                Err(incomplete())
            } else {
                Ok(Step::NeedInput)
            };
        }
        let n = (*remaining).min(self.input.len() as u64) as usize;
        let piece = self.input.split_to(n);
        *remaining -= n as u64;
        self.decoded += n as u64;
        if self.expected_len.is_some_and(|l| self.decoded > l) {
            return Err(framing(
                "the body is longer than x-amz-decoded-content-length",
            ));
        }
        if self.mode.context().is_some() {
            self.hasher.update(&piece);
        }
        if *remaining > 0 {
            return Ok(Step::Yield(piece));
        }
        self.state = State::DataEnd {
            signature: signature.take(),
        };
        self.held = Some(piece);
        Ok(Step::Continue)
    }

    /// The CRLF after a chunk's data, then the chunk's signature.
    fn on_data_end(&mut self, line: &[u8], signature: Option<String>) -> Result<Step, S3Error> {
        if !line.is_empty() {
            return Err(framing("chunk data is longer than its declared size"));
        }
        self.check_chunk(signature.as_deref())?;
        self.state = State::Header;
        Ok(Step::Continue)
    }

    /// Checks the current chunk's signature (data hashed so far) and chains on it.
    fn check_chunk(&mut self, signature: Option<&str>) -> Result<(), S3Error> {
        let hash: [u8; 32] = self.hasher.finalize_reset().into();
        let (Some(ctx), Some(signature)) = (self.mode.context(), signature) else {
            return Ok(());
        };
        let expected = ctx.chunk_signature(&self.previous, &hash);
        if !bool::from(expected.as_bytes().ct_eq(signature.as_bytes())) {
            return Err(mismatch("chunk"));
        }
        self.previous = expected;
        Ok(())
    }

    /// Trailer lines after the final chunk, up to an empty line (or the end of the input once an
    /// empty line or some trailer was read: the AWS documentation example ends so).
    fn on_trailers(&mut self, blank_seen: bool) -> Result<Step, S3Error> {
        let nothing_buffered = self.input.is_empty() && self.line.is_empty();
        let any_trailer = !self.pending_trailers.is_empty() || self.trailer_signature.is_some();
        if self.eof && nothing_buffered && self.mode.has_trailers() && (any_trailer || blank_seen) {
            return self.close_trailers();
        }
        let Some(line) = self.read_line()? else {
            return Ok(Step::NeedInput);
        };
        if line.is_empty() {
            if self.mode.has_trailers() && !blank_seen && !any_trailer {
                self.state = State::Trailers { blank_seen: true };
                return Ok(Step::Continue);
            }
            return self.close_trailers();
        }
        if !self.mode.has_trailers() {
            return Err(framing(
                "trailers are only allowed with a *-TRAILER x-amz-content-sha256",
            ));
        }
        self.add_trailer(&line)?;
        Ok(Step::Continue)
    }

    /// `name:value` → a trailer (the signature kept apart).
    fn add_trailer(&mut self, line: &[u8]) -> Result<(), S3Error> {
        let text = std::str::from_utf8(line).map_err(|_| framing("a trailer is not text"))?;
        let (name, value) = text
            .split_once(':')
            .ok_or_else(|| framing("a trailer lacks ':'"))?;
        let name = name.trim().to_ascii_lowercase();
        if name.is_empty() {
            return Err(framing("a trailer has an empty name"));
        }
        let value = value.trim().to_string();
        let signed = matches!(self.mode, StreamingMode::SignedTrailer(_));
        if signed && name == TRAILER_SIGNATURE {
            if self.trailer_signature.replace(value).is_some() {
                return Err(framing("x-amz-trailer-signature appears twice"));
            }
        } else if self.pending_trailers.len() >= MAX_TRAILERS {
            return Err(framing("too many trailers"));
        } else {
            self.pending_trailers.push((name, value));
        }
        Ok(())
    }

    /// End of the trailer section: checks the trailer signature and the length, publishes trailers.
    fn close_trailers(&mut self) -> Result<Step, S3Error> {
        if let StreamingMode::SignedTrailer(ctx) = &self.mode {
            let mut canonical = Vec::new();
            for (name, value) in &self.pending_trailers {
                canonical.extend_from_slice(format!("{name}:{value}\n").as_bytes());
            }
            let expected =
                ctx.trailer_signature(&self.previous, &Sha256::digest(&canonical).into());
            let sent = self.trailer_signature.as_deref().unwrap_or("");
            if !bool::from(expected.as_bytes().ct_eq(sent.as_bytes())) {
                return Err(mismatch("trailer"));
            }
        }
        if self.expected_len.is_some_and(|l| l != self.decoded) {
            return Err(incomplete());
        }
        let _ = self
            .trailers
            .0
            .set(std::mem::take(&mut self.pending_trailers));
        self.state = State::End;
        Ok(Step::Continue)
    }

    /// Nothing may follow the body; once the input ends, the held piece is released.
    fn on_end(&mut self) -> Result<Step, S3Error> {
        if !self.input.is_empty() {
            return Err(framing("data follows the end of the aws-chunked body"));
        }
        if !self.eof {
            return Ok(Step::NeedInput);
        }
        self.state = State::Done;
        Ok(self.held.take().map_or(Step::Finished, Step::Yield))
    }

    /// Takes a CRLF-terminated line (without the CRLF) from the input, or `None` if more input is
    /// needed (then all input has been moved to the line buffer). Lines are bounded by `MAX_LINE`.
    fn read_line(&mut self) -> Result<Option<BytesMut>, S3Error> {
        let newline = self.input.iter().position(|&b| b == b'\n');
        let take = newline.map_or(self.input.len(), |i| i + 1);
        if self.line.len() + take > MAX_LINE + 2 {
            return Err(framing("a chunk header or trailer line is too long"));
        }
        self.line.extend_from_slice(&self.input[..take]);
        self.input.advance(take);
        if newline.is_none() {
            return if self.eof {
                Err(incomplete())
            } else {
                Ok(None)
            };
        }
        let mut line = std::mem::take(&mut self.line);
        if !line.ends_with(b"\r\n") {
            return Err(framing("lines must end with CRLF"));
        }
        line.truncate(line.len() - 2);
        Ok(Some(line))
    }
}

/// A chunk size: 1 to 16 hex digits, at most `MAX_CHUNK_SIZE`.
fn parse_size(s: &str) -> Result<u64, S3Error> {
    if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(framing("a chunk size is not hexadecimal"));
    }
    let size =
        u64::from_str_radix(s, 16).map_err(|_| framing("a chunk size is not hexadecimal"))?;
    if size > MAX_CHUNK_SIZE {
        return Err(framing("a chunk is larger than 16 MiB"));
    }
    Ok(size)
}

fn framing(detail: &str) -> S3Error {
    err(
        S3ErrorCode::InvalidRequest,
        format!("Malformed aws-chunked body: {detail}."),
    )
}

fn incomplete() -> S3Error {
    err(
        S3ErrorCode::IncompleteBody,
        "The request body ended before the end of its aws-chunked encoding.",
    )
}

fn mismatch(what: &str) -> S3Error {
    err(
        S3ErrorCode::SignatureDoesNotMatch,
        format!("The {what} signature we calculated does not match the signature you provided."),
    )
}

impl<S, E> Stream for ChunkedDecoder<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    type Item = Result<Bytes, S3Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match this.step() {
                Ok(Step::Yield(bytes)) => return Poll::Ready(Some(Ok(bytes))),
                Ok(Step::Continue) => continue,
                Ok(Step::Finished) => return Poll::Ready(None),
                Ok(Step::NeedInput) => {}
                Err(e) => {
                    this.state = State::Done;
                    this.held = None;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            match Pin::new(&mut this.body).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(bytes))) => this.input = bytes,
                Poll::Ready(None) => this.eof = true,
                Poll::Ready(Some(Err(e))) => {
                    this.state = State::Done;
                    this.held = None;
                    let msg = format!("The request body could not be read: {e}");
                    return Poll::Ready(Some(Err(err(S3ErrorCode::IncompleteBody, msg))));
                }
            }
        }
    }
}

/// Encodes `data` as an aws-chunked body the way the AWS SDKs do (client side, for tests and
/// tools): `chunk_size`-byte chunks, the final empty chunk, then in trailer modes the `trailers`
/// (and their signature in signed-trailer mode), then an empty line.
pub fn encode(
    mode: &StreamingMode,
    data: &[u8],
    chunk_size: usize,
    trailers: &[(String, String)],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 256);
    let mut previous = mode
        .context()
        .map(|c| c.seed_signature.clone())
        .unwrap_or_default();
    let chunks = data
        .chunks(chunk_size.max(1))
        .chain(std::iter::once(&[][..]));
    for chunk in chunks {
        out.extend_from_slice(format!("{:x}", chunk.len()).as_bytes());
        if let Some(ctx) = mode.context() {
            previous = ctx.chunk_signature(&previous, &Sha256::digest(chunk).into());
            out.extend_from_slice(format!(";chunk-signature={previous}").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        if !chunk.is_empty() {
            out.extend_from_slice(chunk);
            out.extend_from_slice(b"\r\n");
        }
    }
    if mode.has_trailers() {
        let mut canonical = Vec::new();
        for (name, value) in trailers {
            out.extend_from_slice(format!("{name}:{value}\r\n").as_bytes());
            canonical.extend_from_slice(format!("{name}:{value}\n").as_bytes());
        }
        if let StreamingMode::SignedTrailer(ctx) = mode {
            let sig = ctx.trailer_signature(&previous, &Sha256::digest(&canonical).into());
            out.extend_from_slice(format!("{TRAILER_SIGNATURE}:{sig}\r\n").as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::sigv4::signing_key;
    use futures::StreamExt;
    use proptest::prelude::*;

    const SEED: &str = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
    const TRAILER_SEED: &str = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e";

    fn context(seed: &str) -> SigningContext {
        SigningContext {
            signing_key: signing_key(
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "20130524",
                "us-east-1",
                "s3",
            ),
            scope: "20130524/us-east-1/s3/aws4_request".into(),
            amz_date: "20130524T000000Z".into(),
            seed_signature: seed.into(),
        }
    }

    /// The body of AWS's "PUT Object in chunks" example: 64 KiB + 1 KiB of `a`.
    fn aws_signed_body() -> Vec<u8> {
        [
            &b"10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n"[..],
            &[b'a'; 65536],
            b"\r\n400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n",
            &[b'a'; 1024],
            b"\r\n0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n",
        ]
        .concat()
    }

    /// The same with a signed CRC32C trailer; `blank` adds the empty line the AWS example has after
    /// the final chunk, `end` the final empty line it lacks.
    fn aws_trailer_body(blank: bool, end: bool) -> Vec<u8> {
        [
            &b"10000;chunk-signature=b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2\r\n"[..],
            &[b'a'; 65536],
            b"\r\n400;chunk-signature=1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7\r\n",
            &[b'a'; 1024],
            b"\r\n0;chunk-signature=2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992\r\n",
            if blank { b"\r\n" } else { b"" },
            b"x-amz-checksum-crc32c:sOO8/Q==\r\n",
            b"x-amz-trailer-signature:d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435\r\n",
            if end { b"\r\n" } else { b"" },
        ]
        .concat()
    }

    type Decoded = (Vec<u8>, Vec<(String, String)>);

    /// Decodes `body` fed in pieces cut at `cuts`; returns the payload and trailers, or the error.
    fn decode(mode: StreamingMode, body: &[u8], cuts: &[usize]) -> Result<Decoded, S3Error> {
        let mut pieces = vec![];
        let mut start = 0;
        for &c in cuts.iter().chain(std::iter::once(&body.len())) {
            let c = c.clamp(start, body.len());
            pieces.push(Ok::<_, std::io::Error>(Bytes::copy_from_slice(
                &body[start..c],
            )));
            start = c;
        }
        let mut decoder = ChunkedDecoder::new(futures::stream::iter(pieces), mode);
        let handle = decoder.trailers_handle();
        let mut out = vec![];
        futures::executor::block_on(async {
            while let Some(piece) = decoder.next().await {
                out.extend_from_slice(&piece?);
            }
            assert_eq!(decoder.decoded_len(), out.len() as u64);
            Ok((out, handle.get().expect("trailers once finished").to_vec()))
        })
    }

    fn every_byte(len: usize) -> Vec<usize> {
        (1..len).collect()
    }

    #[test]
    fn aws_signed_example() {
        let body = aws_signed_body();
        for cuts in [
            vec![],
            every_byte(body.len()),
            vec![5, 90, 91, 65627, 65628, 65629, 66700],
        ] {
            let (data, trailers) =
                decode(StreamingMode::Signed(context(SEED)), &body, &cuts).unwrap();
            assert_eq!(data, vec![b'a'; 66560]);
            assert!(trailers.is_empty());
        }
    }

    #[test]
    fn aws_signed_trailer_example_in_every_framing() {
        for (blank, end) in [(false, true), (true, true), (true, false), (false, false)] {
            let body = aws_trailer_body(blank, end);
            for cuts in [vec![], every_byte(body.len())] {
                let mode = StreamingMode::SignedTrailer(context(TRAILER_SEED));
                let (data, trailers) = decode(mode, &body, &cuts).unwrap();
                assert_eq!(data, vec![b'a'; 66560]);
                assert_eq!(
                    trailers,
                    vec![("x-amz-checksum-crc32c".to_string(), "sOO8/Q==".to_string())]
                );
            }
        }
    }

    #[test]
    fn unsigned_trailer() {
        let body = b"b\r\nhello world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n";
        let mut decoder = ChunkedDecoder::new(
            futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(body))]),
            StreamingMode::UnsignedTrailer,
        );
        let handle = decoder.trailers_handle();
        let first = futures::executor::block_on(decoder.next())
            .unwrap()
            .unwrap();
        assert_eq!(first, "hello world");
        assert!(futures::executor::block_on(decoder.next()).is_none());
        let crc = handle.checksum(ChecksumAlgorithm::Crc32).unwrap().unwrap();
        assert_eq!(crc.to_base64(), "DUoRhQ==");
        assert_eq!(handle.checksum(ChecksumAlgorithm::Sha256).unwrap(), None);
        assert_eq!(decoder.trailers().unwrap().len(), 1);
    }

    #[test]
    fn truncated_bodies_are_incomplete() {
        let signed = aws_signed_body();
        // Every length around the framing, a sample inside the data (hashing is slow in debug).
        let interesting = |l: usize, total: usize| {
            l < 200 || l + 200 > total || l.is_multiple_of(211) || (65550..65750).contains(&l)
        };
        for len in (0..signed.len()).filter(|&l| interesting(l, signed.len())) {
            let e = decode(StreamingMode::Signed(context(SEED)), &signed[..len], &[]).unwrap_err();
            assert_eq!(e.code, S3ErrorCode::IncompleteBody, "{len}");
        }
        let trailer = aws_trailer_body(false, true);
        // Without the final empty line the body is complete (the AWS example ends so).
        for len in (0..trailer.len() - 2).filter(|&l| interesting(l, trailer.len())) {
            let e = decode(
                StreamingMode::SignedTrailer(context(TRAILER_SEED)),
                &trailer[..len],
                &[],
            )
            .unwrap_err();
            assert!(
                matches!(
                    e.code,
                    S3ErrorCode::IncompleteBody | S3ErrorCode::SignatureDoesNotMatch
                ),
                "{len}: {e}"
            );
        }
        let unsigned = b"5\r\nhello\r\n0\r\n";
        let e = decode(StreamingMode::UnsignedTrailer, unsigned, &[]).unwrap_err();
        assert_eq!(e.code, S3ErrorCode::IncompleteBody);
        // With no trailers at all, the final empty line ends the body.
        let (data, trailers) = decode(
            StreamingMode::UnsignedTrailer,
            b"5\r\nhello\r\n0\r\n\r\n",
            &[],
        )
        .unwrap();
        assert_eq!((data.as_slice(), trailers.len()), (&b"hello"[..], 0));
    }

    #[test]
    fn tampered_chunks_and_trailers_are_rejected() {
        let mut body = aws_signed_body();
        body[1000] = b'b';
        let e = decode(StreamingMode::Signed(context(SEED)), &body, &[]).unwrap_err();
        assert_eq!(e.code, S3ErrorCode::SignatureDoesNotMatch);
        let e = decode(
            StreamingMode::Signed(context(TRAILER_SEED)),
            &aws_signed_body(),
            &[],
        )
        .unwrap_err();
        assert_eq!(e.code, S3ErrorCode::SignatureDoesNotMatch);

        let trailer = aws_trailer_body(false, true);
        let cases = [
            ("sOO8/Q==", "sOO8/R=="),
            ("d81f82fc", "d81f82fd"),
            (
                "x-amz-trailer-signature:d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435\r\n",
                "",
            ),
        ];
        for (from, to) in cases {
            let body = String::from_utf8(trailer.clone())
                .unwrap()
                .replace(from, to);
            let e = decode(
                StreamingMode::SignedTrailer(context(TRAILER_SEED)),
                body.as_bytes(),
                &[],
            )
            .unwrap_err();
            assert_eq!(e.code, S3ErrorCode::SignatureDoesNotMatch, "{from}");
        }
    }

    #[test]
    fn only_the_verified_body_is_delivered_whole() {
        // The last chunk's signature is wrong: its data must not all come out before the error.
        let mut body = aws_signed_body();
        let at = body.len() - 10;
        body[at] = if body[at] == b'0' { b'1' } else { b'0' };
        let mut decoder = ChunkedDecoder::new(
            futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from(body))]),
            StreamingMode::Signed(context(SEED)),
        );
        let mut got = 0;
        futures::executor::block_on(async {
            while let Some(Ok(piece)) = decoder.next().await {
                got += piece.len();
            }
        });
        assert!(got < 66560);
    }

    #[test]
    fn malformed_framing_is_rejected() {
        let ctx = || StreamingMode::Signed(context(SEED));
        let cases: [(&[u8], StreamingMode); 9] = [
            (b"zz\r\n", StreamingMode::UnsignedTrailer),
            (b"5\r\nhello\r\n", ctx()),
            (b"5;chunk-signature=\r\nhello\r\n", ctx()),
            (b"5\nhello\r\n0\r\n\r\n", StreamingMode::UnsignedTrailer),
            (b"3\r\nhello\r\n0\r\n\r\n", StreamingMode::UnsignedTrailer),
            (b"1000001\r\n", StreamingMode::UnsignedTrailer),
            (b"0\r\nno-colon\r\n\r\n", StreamingMode::UnsignedTrailer),
            (b"0\r\nx:y\r\n\r\nextra", StreamingMode::UnsignedTrailer),
            (&[b'1'; MAX_LINE + 10], StreamingMode::UnsignedTrailer),
        ];
        for (body, mode) in cases {
            let e = decode(mode, body, &[]).unwrap_err();
            assert_eq!(
                e.code,
                S3ErrorCode::InvalidRequest,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let with_trailer = [
            &aws_signed_body()[..aws_signed_body().len() - 2],
            b"x:y\r\n\r\n",
        ]
        .concat();
        assert_eq!(
            decode(ctx(), &with_trailer, &[]).unwrap_err().code,
            S3ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn decoded_length_is_enforced() {
        let body = b"5\r\nhello\r\n0\r\n\r\n";
        let run = |len| {
            let stream = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(body))]);
            let mut d = ChunkedDecoder::new(stream, StreamingMode::UnsignedTrailer)
                .with_decoded_length(len);
            futures::executor::block_on(async {
                while let Some(piece) = d.next().await {
                    piece?;
                }
                Ok::<_, S3Error>(())
            })
        };
        run(5).unwrap();
        assert_eq!(run(6).unwrap_err().code, S3ErrorCode::IncompleteBody);
        assert_eq!(run(4).unwrap_err().code, S3ErrorCode::InvalidRequest);
    }

    #[test]
    fn body_errors_are_incomplete_body() {
        let stream =
            futures::stream::iter([Ok(Bytes::from_static(b"5\r\nhel")), Err("connection reset")]);
        let mut d = ChunkedDecoder::new(stream, StreamingMode::UnsignedTrailer);
        let e = futures::executor::block_on(async {
            loop {
                if let Err(e) = d.next().await.unwrap() {
                    return e;
                }
            }
        });
        assert_eq!(e.code, S3ErrorCode::IncompleteBody);
        assert!(futures::executor::block_on(d.next()).is_none());
    }

    fn any_mode() -> impl Strategy<Value = StreamingMode> {
        prop_oneof![
            Just(StreamingMode::Signed(context(SEED))),
            Just(StreamingMode::SignedTrailer(context(TRAILER_SEED))),
            Just(StreamingMode::UnsignedTrailer),
        ]
    }

    /// Property-based fuzzing of the decoder (case count: `PROPTEST_CASES`, default 256;
    /// `script/fuzz` runs them for a given time).
    mod fuzz {
        use super::*;

        proptest! {
            /// Whatever the chunk size and however the input is split, decoding gives back the data.
            #[test]
            fn encode_then_decode(mode in any_mode(), data in proptest::collection::vec(any::<u8>(), 0..3000),
                                  chunk in 1usize..700, cuts in proptest::collection::vec(any::<usize>(), 0..20)) {
                let trailers = vec![("x-amz-checksum-crc32".to_string(), "DUoRhQ==".to_string())];
                let body = encode(&mode, &data, chunk, &trailers);
                let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (body.len() + 1)).collect();
                cuts.sort();
                let expect_trailers = if mode.has_trailers() { trailers } else { vec![] };
                let (decoded, got) = decode(mode, &body, &cuts).unwrap();
                prop_assert_eq!(decoded, data);
                prop_assert_eq!(got, expect_trailers);
            }

            /// Arbitrary input never panics, in any mode.
            #[test]
            fn arbitrary_bytes_never_panic(mode in any_mode(), body in proptest::collection::vec(any::<u8>(), 0..600),
                                           cuts in proptest::collection::vec(any::<usize>(), 0..8)) {
                let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (body.len() + 1)).collect();
                cuts.sort();
                let _ = decode(mode, &body, &cuts);
            }

            /// Mostly-valid input with one byte changed: an error or the right data, never a panic.
            #[test]
            fn mutated_bodies_never_panic(mode in any_mode(), at in any::<usize>(), byte in any::<u8>()) {
                let mut body = encode(&mode, b"hello world, some payload", 7, &[("a".into(), "b".into())]);
                let at = at % body.len();
                body[at] = byte;
                let _ = decode(mode, &body, &[at]);
            }
        }

        /// Everything the decoder yields before it ends or fails, and the error if any.
        fn yielded(
            mode: StreamingMode,
            body: &[u8],
            cuts: &[usize],
            expected_len: Option<u64>,
        ) -> (Vec<u8>, Option<S3Error>) {
            let mut pieces = vec![];
            let mut start = 0;
            for &c in cuts.iter().chain(std::iter::once(&body.len())) {
                let c = c.clamp(start, body.len());
                pieces.push(Ok::<_, std::io::Error>(Bytes::copy_from_slice(
                    &body[start..c],
                )));
                start = c;
            }
            let mut decoder = ChunkedDecoder::new(futures::stream::iter(pieces), mode);
            if let Some(len) = expected_len {
                decoder = decoder.with_decoded_length(len);
            }
            let mut out = vec![];
            futures::executor::block_on(async {
                while let Some(piece) = decoder.next().await {
                    match piece {
                        Ok(b) => out.extend_from_slice(&b),
                        Err(e) => return (out, Some(e)),
                    }
                }
                (out, None)
            })
        }

        /// Chunked-looking garbage: sizes, extensions, CRLFs, trailers, data.
        fn chunkish() -> impl Strategy<Value = Vec<u8>> {
            let atoms = prop::sample::select(vec![
                "0",
                "1",
                "5",
                "a",
                "F",
                "10",
                "ffff",
                "1000000",
                "ffffffffffffffff",
                "10000000000000000",
                ";",
                "chunk-signature=",
                ";chunk-signature=00",
                "\r\n",
                "\r",
                "\n",
                ":",
                " ",
                "x-amz-checksum-crc32:",
                "DUoRhQ==",
                "x-amz-trailer-signature:",
                "hello",
                "\u{0}",
                "é",
            ]);
            prop::collection::vec(atoms, 0..40).prop_map(|v| v.concat().into_bytes())
        }

        fn sorted_cuts(cuts: Vec<usize>, len: usize) -> Vec<usize> {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (len + 1)).collect();
            cuts.sort();
            cuts
        }

        proptest! {
            /// Arbitrary or chunk-like input: never a panic, never more bytes than the input
            /// holds, nor than `x-amz-decoded-content-length` announces; success means the whole
            /// announced length was delivered.
            #[test]
            fn never_yields_more_than_announced(
                mode in any_mode(),
                body in prop_oneof![chunkish(), proptest::collection::vec(any::<u8>(), 0..300)],
                cuts in proptest::collection::vec(any::<usize>(), 0..8),
                announced in prop::option::of(0u64..40),
            ) {
                let cuts = sorted_cuts(cuts, body.len());
                let (out, error) = yielded(mode, &body, &cuts, announced);
                prop_assert!(out.len() <= body.len());
                if let Some(n) = announced {
                    prop_assert!(out.len() as u64 <= n);
                    if error.is_none() {
                        prop_assert_eq!(out.len() as u64, n);
                    }
                }
                if let Some(e) = error {
                    prop_assert!(e.status().is_client_error(), "{:?}", e);
                }
            }

            /// Every strict prefix of a valid body is an error, or (trailer modes, where the final
            /// empty line is optional) the whole payload: never a silently truncated one.
            #[test]
            fn prefixes_are_errors_or_complete(
                mode in any_mode(),
                data in proptest::collection::vec(any::<u8>(), 0..200),
                chunk in 1usize..64,
                cut in any::<usize>(),
            ) {
                let trailers = vec![("x-amz-checksum-crc32".to_string(), "DUoRhQ==".to_string())];
                let body = encode(&mode, &data, chunk, &trailers);
                let cut = cut % body.len();
                let (out, error) = yielded(mode, &body[..cut], &[], None);
                if error.is_none() {
                    prop_assert_eq!(out, data);
                }
            }

            /// Signed modes: however a valid body is edited, what decodes successfully is exactly
            /// the signed payload.
            #[test]
            fn signed_bodies_are_tamper_evident(
                signed_trailer in any::<bool>(),
                data in proptest::collection::vec(any::<u8>(), 0..200),
                chunk in 1usize..64,
                edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..4),
            ) {
                let mode = if signed_trailer {
                    StreamingMode::SignedTrailer(context(TRAILER_SEED))
                } else {
                    StreamingMode::Signed(context(SEED))
                };
                let trailers = vec![("x-amz-checksum-crc32".to_string(), "DUoRhQ==".to_string())];
                let mut body = encode(&mode, &data, chunk, &trailers);
                for (at, op, byte) in edits {
                    let at = at % (body.len() + 1);
                    match op % 3 {
                        0 if at < body.len() => body[at] = byte,
                        1 => body.insert(at, byte),
                        _ if at < body.len() => {
                            body.remove(at);
                        }
                        _ => {}
                    }
                }
                let (out, error) = yielded(mode, &body, &[], None);
                if error.is_none() {
                    prop_assert_eq!(out, data);
                }
            }
        }
    }
}
