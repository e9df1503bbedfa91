//! Request bodies: framing (plain or aws-chunked), and the digests S3 checks (MD5 for the ETag and
//! Content-MD5, SHA-256 for a signed payload hash, the requested `x-amz-checksum-*`), computed on one
//! dedicated blocking thread while the body streams to the block store, so hashing never stalls the
//! async threads and MD5 (the slowest) runs on its own core; past 1 MiB the other digests move to a
//! second thread.

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

/// Below this many bytes every digest runs on the MD5 thread; past it, SHA-256 and the checksum move
/// to a second thread, so that a large upload is bound by MD5 alone (the one digest that must run in
/// series over the whole body), not by the sum of them. Small bodies do not pay for a thread.
const PARALLEL_FROM: u64 = 1 << 20;

/// The digests other than MD5.
#[derive(Default)]
struct Others {
    sha: Option<sha2::Sha256>,
    ck: Option<Checksummer>,
}

impl Others {
    fn any(&self) -> bool {
        self.sha.is_some() || self.ck.is_some()
    }
    fn update(&mut self, chunk: &[u8]) {
        if let Some(s) = self.sha.as_mut() {
            sha2::Digest::update(s, chunk);
        }
        if let Some(c) = self.ck.as_mut() {
            c.update(chunk);
        }
    }
}

impl Digester {
    pub fn start(wanted: Wanted) -> Digester {
        // Chunks are up to `util::http::BODY_READ_BUF` (128 KiB): at most 512 KiB wait here.
        let (tx, mut rx) = mpsc::channel::<Bytes>(4);
        let handle = tokio::task::spawn_blocking(move || {
            let mut md5 = md5::Md5::new();
            let mut others = Others {
                sha: wanted.sha256.then(sha2::Sha256::new),
                ck: wanted.checksum.map(Checksummer::new),
            };
            let mut len = 0u64;
            std::thread::scope(|scope| {
                let mut helper = None;
                while let Some(chunk) = rx.blocking_recv() {
                    len += chunk.len() as u64;
                    if helper.is_none() && len > PARALLEL_FROM && others.any() {
                        let (htx, hrx) = std::sync::mpsc::sync_channel::<Bytes>(8);
                        let mut moved = std::mem::take(&mut others);
                        let joined = scope.spawn(move || {
                            for c in hrx {
                                moved.update(&c);
                            }
                            moved
                        });
                        helper = Some((htx, joined));
                    }
                    match &helper {
                        // A cheap clone (reference-counted bytes).
                        Some((htx, _)) => {
                            let _ = htx.send(chunk.clone());
                        }
                        None => others.update(&chunk),
                    }
                    md5.update(&chunk);
                }
                if let Some((htx, joined)) = helper {
                    drop(htx);
                    others = match joined.join() {
                        Ok(o) => o,
                        Err(panic) => std::panic::resume_unwind(panic),
                    };
                }
            });
            Digests {
                md5: md5.finalize().into(),
                sha256: others.sha.map(|s| sha2::Digest::finalize(s).into()),
                checksum: others.ck.map(Checksummer::finalize),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The digests are the same whether the body is small (one thread) or large (the other digests
    /// on a second thread from 1 MiB on), whatever the chunking.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn digests_match_a_one_shot_computation() {
        for (len, chunk) in [
            (1000usize, 7usize),
            (PARALLEL_FROM as usize, 4096),
            (3 << 20, 65_537),
        ] {
            let body: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            for alg in [ChecksumAlgorithm::Crc32, ChecksumAlgorithm::Sha256] {
                let d = Digester::start(Wanted {
                    sha256: true,
                    checksum: Some(alg),
                });
                let tx = d.sender();
                for c in body.chunks(chunk) {
                    tx.send(Bytes::copy_from_slice(c)).await.unwrap();
                }
                drop(tx);
                let got = d.finish().await.unwrap();
                let mut ck = Checksummer::new(alg);
                ck.update(&body);
                assert_eq!(got.len, len as u64);
                assert_eq!(got.md5, <[u8; 16]>::from(md5::Md5::digest(&body)));
                assert_eq!(
                    got.sha256,
                    Some(<[u8; 32]>::from(<sha2::Sha256 as sha2::Digest>::digest(
                        &body
                    )))
                );
                assert_eq!(got.checksum, Some(ck.finalize()), "{len} {alg:?}");
            }
        }
    }
}
