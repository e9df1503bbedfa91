//! Request bodies: framing (plain or aws-chunked), and the digests S3 checks (MD5 for the ETag and
//! Content-MD5, SHA-256 for a signed payload hash, the requested `x-amz-checksum-*`), computed on one
//! dedicated blocking thread while the body streams to the block store, so hashing never stalls the
//! async threads and MD5 (the slowest) runs on its own core.

use bytes::Bytes;
use futures::{Stream, StreamExt};
use md5::Digest as _;
use tokio::sync::mpsc;

use super::checksum::{Checksum, ChecksumAlgorithm, Checksummer};
use super::error::{S3Error, S3ErrorCode, err};

/// Digests of a whole body.
#[derive(Clone, Debug)]
pub struct Digests {
    pub md5: [u8; 16],
    pub sha256: Option<[u8; 32]>,
    pub checksum: Option<Checksum>,
    pub len: u64,
}

/// Which digests to compute.
#[derive(Clone, Copy, Debug, Default)]
pub struct Wanted {
    pub sha256: bool,
    pub checksum: Option<ChecksumAlgorithm>,
}

/// Feeds chunks to a hashing thread; `finish` returns the digests.
pub struct Digester {
    tx: Option<mpsc::Sender<Bytes>>,
    handle: tokio::task::JoinHandle<Digests>,
}

impl Digester {
    pub fn start(wanted: Wanted) -> Digester {
        let (tx, mut rx) = mpsc::channel::<Bytes>(8);
        let handle = tokio::task::spawn_blocking(move || {
            let mut md5 = md5::Md5::new();
            let mut sha = wanted.sha256.then(sha2::Sha256::new);
            let mut ck = wanted.checksum.map(Checksummer::new);
            let mut len = 0u64;
            while let Some(chunk) = rx.blocking_recv() {
                len += chunk.len() as u64;
                md5.update(&chunk);
                if let Some(s) = sha.as_mut() {
                    sha2::Digest::update(s, &chunk);
                }
                if let Some(c) = ck.as_mut() {
                    c.update(&chunk);
                }
            }
            Digests {
                md5: md5.finalize().into(),
                sha256: sha.map(|s| sha2::Digest::finalize(s).into()),
                checksum: ck.map(Checksummer::finalize),
                len,
            }
        });
        Digester {
            tx: Some(tx),
            handle,
        }
    }

    pub fn sender(&self) -> mpsc::Sender<Bytes> {
        self.tx.clone().expect("not finished")
    }

    pub async fn finish(mut self) -> Result<Digests, S3Error> {
        self.tx = None;
        self.handle.await.map_err(|e| {
            S3Error::internal(S3ErrorCode::InternalError, format!("hashing task: {e}"))
        })
    }
}

/// Tee a body into a digester, with a size limit (`EntityTooLarge` past `max_len`). The stream's errors
/// stay `S3Error`s: the model's write hands them back inside `ModelError::Body` (see
/// `object::store_stream`).
pub fn digesting<S>(
    body: S,
    digest: mpsc::Sender<Bytes>,
    max_len: u64,
) -> impl Stream<Item = Result<Bytes, S3Error>> + Send + Unpin
where
    S: Stream<Item = Result<Bytes, S3Error>> + Send + Unpin + 'static,
{
    let mut seen = 0u64;
    Box::pin(body.then(move |chunk| {
        let digest = digest.clone();
        let chunk = chunk.and_then(|c| {
            seen += c.len() as u64;
            if seen > max_len {
                Err(err(
                    S3ErrorCode::EntityTooLarge,
                    "Your proposed upload exceeds the maximum allowed size.",
                ))
            } else {
                Ok(c)
            }
        });
        async move {
            if let Ok(c) = &chunk {
                let _ = digest.send(c.clone()).await;
            }
            chunk
        }
    }))
}

/// Read a small body (XML documents) into memory, refusing more than `max` bytes.
pub async fn collect_small<S>(mut body: S, max: usize) -> Result<Bytes, S3Error>
where
    S: Stream<Item = Result<Bytes, S3Error>> + Unpin,
{
    let mut out = bytes::BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        if out.len() + chunk.len() > max {
            return Err(err(
                S3ErrorCode::MaxMessageLengthExceeded,
                "Your request was too big.",
            ));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}
