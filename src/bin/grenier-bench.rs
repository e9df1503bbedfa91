//! `grenier-bench`: a load generator for any S3 endpoint (Grenier or another store, side by side).
//!
//! Signs its requests itself (Grenier's SigV4 client signer, `UNSIGNED-PAYLOAD`), keeps one HTTP/1.1
//! connection per in-flight request (`--concurrency`), runs a weighted mix of PUT, GET, HEAD, DELETE,
//! LIST, CopyObject, CreateBucket and multipart uploads for a duration or a count, and prints per
//! operation: ops/s, MB/s, latency p50/p90/p99/max, time to first byte of GETs, and errors (`--json` for
//! a machine-readable report; multipart uploads are also reported step by step). Every PUT writes a new
//! key with its own bytes (so content-addressed stores cannot deduplicate); payloads are generated
//! before the clock starts. See doc/performance.md.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};
use hyper::body::Body;
use hyper::{HeaderMap, Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use serde::Serialize;

use grenier::s3::sigv4::{self, Credentials};
use grenier::util::size::parse_size;
use grenier::util::url::uri_encode;

/// Largest object or part this tool generates in memory (the S3 limit of a single PUT).
const MAX_OBJECT: u64 = 5 << 30;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "grenier-bench",
    about = "Load generator for any S3 endpoint: a mix of operations, sizes and concurrency, with \
             ops/s, MB/s and latency percentiles per operation."
)]
struct Args {
    /// The S3 endpoint, e.g. http://127.0.0.1:3900 (plain HTTP).
    #[arg(
        long,
        env = "AWS_ENDPOINT_URL",
        default_value = "http://127.0.0.1:3900"
    )]
    endpoint: String,
    #[arg(
        long,
        env = "AWS_ACCESS_KEY_ID",
        required_unless_present = "hash_speed"
    )]
    access_key: Option<String>,
    #[arg(
        long,
        env = "AWS_SECRET_ACCESS_KEY",
        hide_env_values = true,
        required_unless_present = "hash_speed"
    )]
    secret_key: Option<String>,
    #[arg(long, env = "AWS_REGION", default_value = "garage")]
    region: String,
    /// Bucket to work in (created first when --create-bucket).
    #[arg(long, default_value = "bench")]
    bucket: String,
    /// Create the bucket before the run (an existing bucket of this key is fine).
    #[arg(long)]
    create_bucket: bool,
    /// Operation mix as op=weight pairs; ops: put, get, head, delete, list, copy, create-bucket, mpu.
    /// e.g. `put=1` (only PUTs), `get=9,put=1`. `copy` copies an existing object to a new key;
    /// `create-bucket` creates a fresh bucket (timed) and deletes it (not timed); `mpu` is a whole
    /// multipart upload, also reported step by step (CreateMultipartUpload, UploadPart, Complete).
    #[arg(long, default_value = "put=1")]
    mix: String,
    /// Object size: `4KiB`, a uniform range `1KiB..1MiB`, or a choice `4KiB,1MiB`.
    #[arg(long, default_value = "4KiB")]
    size: String,
    /// Part size of multipart uploads (`mpu` operation; the object size is `--size`).
    #[arg(long, default_value = "5MiB")]
    part_size: String,
    /// Requests in flight (one connection each).
    #[arg(long, short = 'c', default_value_t = 32)]
    concurrency: usize,
    /// How long to run (e.g. 10s, 1m); ignored when --count is given.
    #[arg(long, short = 'd', default_value = "10s")]
    duration: String,
    /// Stop after this many operations instead of a duration.
    #[arg(long, short = 'n')]
    count: Option<u64>,
    /// Objects written before the run for GET/HEAD/DELETE/copy (default: 4 × concurrency when the
    /// mix has one of them, else 0). Not counted in the results. A DELETE or a read that finds no
    /// object left writes one first, untimed.
    #[arg(long)]
    prefill: Option<u64>,
    /// Key prefix (a random suffix keeps runs apart).
    #[arg(long, default_value = "bench")]
    prefix: String,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Only measure this machine's single-core MD5, SHA-256, BLAKE2b and CRC32C speeds (the crates
    /// the server uses; MD5 is the reference of the single-node PUT target), and exit.
    #[arg(long)]
    hash_speed: bool,
    /// No progress line on stderr.
    #[arg(long, short = 'q')]
    quiet: bool,
    /// Send virtual-hosted-style requests: `Host: <bucket>.<DOMAIN>[:port]` (DOMAIN is the store's
    /// S3 root domain; without a value, the endpoint's host). Connections still go to --endpoint.
    #[arg(long, value_name = "DOMAIN", num_args = 0..=1, default_missing_value = "")]
    virtual_host: Option<String>,
}

/// An operation of the mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Put,
    Get,
    Head,
    Delete,
    List,
    Copy,
    CreateBucket,
    Mpu,
}

impl Op {
    fn parse(s: &str) -> Result<Op> {
        Ok(match s {
            "put" => Op::Put,
            "get" => Op::Get,
            "head" => Op::Head,
            "delete" => Op::Delete,
            "list" => Op::List,
            "copy" => Op::Copy,
            "create-bucket" => Op::CreateBucket,
            "mpu" => Op::Mpu,
            _ => bail!(
                "unknown operation {s:?} (put, get, head, delete, list, copy, create-bucket, mpu)"
            ),
        })
    }
    /// Where its latency is recorded.
    fn stat(self) -> Stat {
        match self {
            Op::Put => Stat::Put,
            Op::Get => Stat::Get,
            Op::Head => Stat::Head,
            Op::Delete => Stat::Delete,
            Op::List => Stat::List,
            Op::Copy => Stat::Copy,
            Op::CreateBucket => Stat::CreateBucket,
            Op::Mpu => Stat::Mpu,
        }
    }
    /// Needs existing objects.
    fn reads(self) -> bool {
        matches!(self, Op::Get | Op::Head | Op::Delete | Op::Copy)
    }
}

/// What a latency is recorded under: an operation of the mix, or a step of a multipart upload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Stat {
    Put,
    Get,
    Head,
    Delete,
    List,
    Copy,
    CreateBucket,
    Mpu,
    MpuCreate,
    MpuPart,
    MpuComplete,
}

impl Stat {
    /// The name in `--json` (the mix's name for operations of the mix).
    fn key(self) -> &'static str {
        match self {
            Stat::Put => "put",
            Stat::Get => "get",
            Stat::Head => "head",
            Stat::Delete => "delete",
            Stat::List => "list",
            Stat::Copy => "copy",
            Stat::CreateBucket => "create-bucket",
            Stat::Mpu => "mpu",
            Stat::MpuCreate => "mpu-create",
            Stat::MpuPart => "mpu-part",
            Stat::MpuComplete => "mpu-complete",
        }
    }
    /// The name in the table.
    fn name(self) -> &'static str {
        match self {
            Stat::Put => "PUT",
            Stat::Get => "GET",
            Stat::Head => "HEAD",
            Stat::Delete => "DELETE",
            Stat::List => "LIST",
            Stat::Copy => "CopyObject",
            Stat::CreateBucket => "CreateBucket",
            Stat::Mpu => "MPU",
            Stat::MpuCreate => "  Create",
            Stat::MpuPart => "  UploadPart",
            Stat::MpuComplete => "  Complete",
        }
    }
    /// A step of another operation (not counted in the totals).
    fn part_of(self) -> Option<&'static str> {
        matches!(self, Stat::MpuCreate | Stat::MpuPart | Stat::MpuComplete).then_some("mpu")
    }
}

#[derive(Clone, Debug)]
enum SizeSpec {
    Fixed(u64),
    Range(u64, u64),
    Choice(Vec<u64>),
}

impl SizeSpec {
    fn parse(s: &str) -> Result<SizeSpec> {
        let p = |x: &str| -> Result<u64> {
            let n = parse_size(x.trim()).map_err(|e| anyhow!("size {x:?}: {e}"))?;
            if n > MAX_OBJECT {
                bail!("size {x:?}: at most 5 GiB");
            }
            Ok(n)
        };
        if let Some((a, b)) = s.split_once("..") {
            let (a, b) = (p(a)?, p(b)?);
            if a > b {
                bail!("size range {s:?} is empty");
            }
            Ok(SizeSpec::Range(a, b))
        } else if s.contains(',') {
            Ok(SizeSpec::Choice(
                s.split(',').map(p).collect::<Result<_>>()?,
            ))
        } else {
            Ok(SizeSpec::Fixed(p(s)?))
        }
    }
    fn pick(&self, rng: &mut Rng) -> u64 {
        match self {
            SizeSpec::Fixed(n) => *n,
            SizeSpec::Range(a, b) => a + rng.next() % (b - a + 1),
            SizeSpec::Choice(v) => v[(rng.next() % v.len() as u64) as usize],
        }
    }
}

/// xorshift64*: fast, good enough for payloads and choices.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// `len` fresh pseudo-random bytes.
    fn bytes(&mut self, len: u64) -> Bytes {
        let mut v = Vec::with_capacity(len as usize + 8);
        while (v.len() as u64) < len {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(len as usize);
        Bytes::from(v)
    }
}

/// Latencies of one operation, in microseconds.
#[derive(Default)]
struct OpStats {
    lat: Vec<u32>,
    ttfb: Vec<u32>,
    bytes: u64,
    errors: u64,
    first_error: Option<String>,
}

#[derive(Serialize)]
struct OpReport {
    op: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    part_of: Option<&'static str>,
    ops: u64,
    ops_per_sec: f64,
    mb_per_sec: f64,
    mean_ms: f64,
    min_ms: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    ttfb_p50_ms: Option<f64>,
    ttfb_p99_ms: Option<f64>,
    errors: u64,
    first_error: Option<String>,
}

#[derive(Serialize)]
struct Report {
    endpoint: String,
    mix: String,
    size: String,
    concurrency: usize,
    seconds: f64,
    total_ops: u64,
    total_errors: u64,
    ops: Vec<OpReport>,
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i.min(sorted.len() - 1)]) / 1000.0
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u128::from(u32::MAX)) as u32
}

struct Shared {
    args: Args,
    creds: (String, String, String),
    /// Where connections go (`host:port` of --endpoint).
    authority: String,
    mix: Vec<(Op, u32)>,
    size: SizeSpec,
    part_size: u64,
    run_id: String,
    /// Keys written and not deleted, for GET/HEAD/DELETE/copy.
    keys: Mutex<Vec<(String, u64)>>,
    next_key: AtomicU64,
    started_ops: AtomicU64,
    done_ops: AtomicU64,
    done_bytes: AtomicU64,
    stop: AtomicBool,
    stats: Mutex<BTreeMap<Stat, OpStats>>,
}

type ReqBody = BoxBody<Bytes, std::convert::Infallible>;

/// One HTTP/1.1 connection, reopened after an error or a `Connection: close`.
struct Conn {
    sender: Option<hyper::client::conn::http1::SendRequest<ReqBody>>,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    ttfb: Duration,
}

impl Answer {
    /// An error naming the S3 error code unless the status is a success (or a 200 with an `<Error>`
    /// body, which CopyObject and CompleteMultipartUpload may send).
    fn check(&self, what: &str) -> Result<()> {
        let text = String::from_utf8_lossy(&self.body);
        let code = text
            .split("<Code>")
            .nth(1)
            .and_then(|c| c.split("</Code>").next())
            .unwrap_or("");
        if !self.status.is_success() {
            bail!("{what}: HTTP {} {code}", self.status.as_u16());
        }
        if text.contains("<Error>") {
            bail!("{what}: error {code} in a {} answer", self.status.as_u16());
        }
        Ok(())
    }
}

/// What a request sends.
struct Req<'a> {
    method: Method,
    bucket: &'a str,
    key: &'a str,
    query: &'a str,
    headers: &'a [(&'static str, String)],
    body: Bytes,
    /// Keep the body of a successful answer (error bodies are always kept).
    read_body: bool,
}

impl<'a> Req<'a> {
    fn new(method: Method, bucket: &'a str, key: &'a str) -> Req<'a> {
        Req {
            method,
            bucket,
            key,
            query: "",
            headers: &[],
            body: Bytes::new(),
            read_body: false,
        }
    }
}

impl Shared {
    fn creds(&self) -> Credentials<'_> {
        Credentials {
            access_key: &self.creds.0,
            secret_key: &self.creds.1,
            region: &self.creds.2,
        }
    }

    /// The Host header and the path (with query) of `key` in `bucket` (of the bucket when `key` is
    /// empty).
    fn target(&self, bucket: &str, key: &str, query: &str) -> (String, String) {
        let key = uri_encode(key, false);
        let (host, path) = match &self.args.virtual_host {
            Some(domain) => {
                let domain = domain.trim_matches('.');
                let host = if domain.is_empty() {
                    self.authority.clone()
                } else {
                    match self.authority.rsplit_once(':') {
                        Some((_, port)) if !domain.contains(':') => format!("{domain}:{port}"),
                        _ => domain.to_string(),
                    }
                };
                (format!("{bucket}.{host}"), format!("/{key}"))
            }
            None if key.is_empty() => (self.authority.clone(), format!("/{bucket}")),
            None => (self.authority.clone(), format!("/{bucket}/{key}")),
        };
        let pq = if query.is_empty() {
            path
        } else {
            format!("{path}?{query}")
        };
        (host, pq)
    }

    async fn send(&self, conn: &mut Conn, r: Req<'_>) -> Result<Answer> {
        let (host, pq) = self.target(r.bucket, r.key, r.query);
        let uri: Uri = format!("http://{host}{pq}").parse()?;
        let mut headers = HeaderMap::new();
        headers.insert("host", host.parse()?);
        for (k, v) in r.headers {
            headers.insert(*k, v.parse()?);
        }
        if !r.body.is_empty() || r.method == Method::PUT || r.method == Method::POST {
            headers.insert("content-length", r.body.len().to_string().parse()?);
        }
        sigv4::sign(
            &r.method,
            &uri,
            &mut headers,
            &self.creds(),
            SystemTime::now(),
        );
        let mut req = Request::builder().method(r.method).uri(pq);
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        let body: ReqBody = if r.body.is_empty() {
            Empty::new().boxed()
        } else {
            Full::new(r.body).boxed()
        };
        let req = req.body(body)?;
        if conn.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let tcp = tokio::net::TcpStream::connect(&self.authority)
                .await
                .with_context(|| format!("connect to {}", self.authority))?;
            tcp.set_nodelay(true)?;
            let (sender, c) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
            tokio::spawn(c);
            conn.sender = Some(sender);
        }
        let sender = conn.sender.as_mut().expect("connected above");
        if let Err(e) = sender.ready().await {
            conn.sender = None;
            return Err(e.into());
        }
        let t0 = Instant::now();
        let resp = match sender.send_request(req).await {
            Ok(r) => r,
            Err(e) => {
                conn.sender = None;
                return Err(e.into());
            }
        };
        let ttfb = t0.elapsed();
        let (parts, mut body) = resp.into_parts();
        let mut out = Vec::new();
        let mut ttfb_body = None;
        while let Some(frame) = body.frame().await {
            let frame = match frame {
                Ok(f) => f,
                Err(e) => {
                    conn.sender = None;
                    return Err(e.into());
                }
            };
            if let Ok(d) = frame.into_data() {
                if ttfb_body.is_none() && !d.is_empty() {
                    ttfb_body = Some(t0.elapsed());
                }
                if r.read_body || !parts.status.is_success() {
                    out.extend_from_slice(&d);
                }
            }
        }
        if body.is_end_stream()
            && parts
                .headers
                .get("connection")
                .is_some_and(|v| v == "close")
        {
            conn.sender = None;
        }
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body: Bytes::from(out),
            ttfb: ttfb_body.unwrap_or(ttfb),
        })
    }

    fn new_key(&self) -> String {
        let n = self.next_key.fetch_add(1, Ordering::Relaxed);
        format!("{}/{}/{n:010}", self.args.prefix, self.run_id)
    }

    fn pick_key(&self, rng: &mut Rng, remove: bool) -> Option<(String, u64)> {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if keys.is_empty() {
            return None;
        }
        let i = (rng.next() % keys.len() as u64) as usize;
        Some(if remove {
            keys.swap_remove(i)
        } else {
            keys[i].clone()
        })
    }

    fn add_key(&self, key: String, size: u64) {
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((key, size));
    }

    /// An existing object (removed from the list when `remove`); when none is left, one is written
    /// first, untimed.
    async fn existing_key(
        &self,
        conn: &mut Conn,
        rng: &mut Rng,
        remove: bool,
    ) -> Result<(String, u64)> {
        if let Some(k) = self.pick_key(rng, remove) {
            return Ok(k);
        }
        let size = self.size.pick(rng);
        let key = self.new_key();
        let mut req = Req::new(Method::PUT, &self.args.bucket, &key);
        req.body = rng.bytes(size);
        self.send(conn, req).await?.check("PUT (untimed)")?;
        if !remove {
            self.add_key(key.clone(), size);
        }
        Ok((key, size))
    }

    fn pick_op(&self, rng: &mut Rng) -> Op {
        let total: u32 = self.mix.iter().map(|(_, w)| w).sum();
        let mut r = (rng.next() % u64::from(total)) as u32;
        for (op, w) in &self.mix {
            if r < *w {
                return *op;
            }
            r -= w;
        }
        self.mix[0].0
    }

    /// Runs one operation and records its latency (only the requests are timed: payloads are
    /// generated and untimed set-up requests are sent before the clock starts).
    async fn run_op(&self, conn: &mut Conn, rng: &mut Rng, op: Op) -> Result<()> {
        let bucket = self.args.bucket.as_str();
        match op {
            Op::Put => {
                let size = self.size.pick(rng);
                let key = self.new_key();
                let mut req = Req::new(Method::PUT, bucket, &key);
                req.body = rng.bytes(size);
                let t0 = Instant::now();
                self.send(conn, req).await?.check("PUT")?;
                self.record(Stat::Put, t0.elapsed(), size, None);
                self.add_key(key, size);
            }
            Op::Get | Op::Head => {
                let (key, size) = self.existing_key(conn, rng, false).await?;
                let method = if op == Op::Get {
                    Method::GET
                } else {
                    Method::HEAD
                };
                let t0 = Instant::now();
                let a = self.send(conn, Req::new(method, bucket, &key)).await?;
                let lat = t0.elapsed();
                a.check(op.stat().name())?;
                let len: u64 = a
                    .headers
                    .get("content-length")
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .unwrap_or(0);
                if len != size {
                    bail!(
                        "{}: content-length {len}, expected {size}",
                        op.stat().name()
                    );
                }
                if op == Op::Get {
                    self.record(Stat::Get, lat, size, Some(a.ttfb));
                } else {
                    self.record(Stat::Head, lat, 0, None);
                }
            }
            Op::Delete => {
                let (key, _) = self.existing_key(conn, rng, true).await?;
                let t0 = Instant::now();
                let a = self
                    .send(conn, Req::new(Method::DELETE, bucket, &key))
                    .await?;
                let lat = t0.elapsed();
                a.check("DELETE")?;
                self.record(Stat::Delete, lat, 0, None);
            }
            Op::List => {
                let q = format!(
                    "list-type=2&max-keys=100&prefix={}",
                    uri_encode(&format!("{}/{}/", self.args.prefix, self.run_id), true)
                );
                let mut req = Req::new(Method::GET, bucket, "");
                req.query = &q;
                req.read_body = true;
                let t0 = Instant::now();
                let a = self.send(conn, req).await?;
                let lat = t0.elapsed();
                a.check("LIST")?;
                if !String::from_utf8_lossy(&a.body).contains("<ListBucketResult") {
                    bail!("LIST: no ListBucketResult in the answer");
                }
                self.record(Stat::List, lat, a.body.len() as u64, None);
            }
            Op::Copy => {
                let (src, size) = self.existing_key(conn, rng, false).await?;
                let key = self.new_key();
                let headers = [(
                    "x-amz-copy-source",
                    format!("/{bucket}/{}", uri_encode(&src, false)),
                )];
                let mut req = Req::new(Method::PUT, bucket, &key);
                req.headers = &headers;
                req.read_body = true;
                let t0 = Instant::now();
                let a = self.send(conn, req).await?;
                let lat = t0.elapsed();
                a.check("CopyObject")?;
                self.record(Stat::Copy, lat, size, None);
                self.add_key(key, size);
            }
            Op::CreateBucket => {
                let n = self.next_key.fetch_add(1, Ordering::Relaxed);
                let name = format!("{}-{}-{n}", self.bucket_prefix(), self.run_id);
                let mut req = Req::new(Method::PUT, &name, "");
                req.read_body = true;
                let t0 = Instant::now();
                let a = self.send(conn, req).await?;
                let lat = t0.elapsed();
                a.check("CreateBucket")?;
                self.record(Stat::CreateBucket, lat, 0, None);
                let a = self.send(conn, Req::new(Method::DELETE, &name, "")).await?;
                a.check("DeleteBucket (untimed)")?;
            }
            Op::Mpu => {
                let size = self.size.pick(rng);
                let key = self.new_key();
                let mut req = Req::new(Method::POST, bucket, &key);
                req.query = "uploads";
                req.read_body = true;
                let t0 = Instant::now();
                let a = self.send(conn, req).await?;
                let mut total = t0.elapsed();
                a.check("CreateMultipartUpload")?;
                self.record(Stat::MpuCreate, total, 0, None);
                let text = String::from_utf8_lossy(&a.body);
                let id = text
                    .split("<UploadId>")
                    .nth(1)
                    .and_then(|s| s.split("</UploadId>").next())
                    .ok_or_else(|| anyhow!("CreateMultipartUpload: no UploadId"))?
                    .to_string();
                let id_q = uri_encode(&id, true);
                let mut xml = String::from("<CompleteMultipartUpload>");
                let (mut off, mut n) = (0u64, 1u32);
                while off < size || n == 1 {
                    let len = self.part_size.min(size - off);
                    let q = format!("partNumber={n}&uploadId={id_q}");
                    let mut req = Req::new(Method::PUT, bucket, &key);
                    req.query = &q;
                    req.body = rng.bytes(len);
                    let t0 = Instant::now();
                    let a = self.send(conn, req).await?;
                    let lat = t0.elapsed();
                    a.check("UploadPart")?;
                    self.record(Stat::MpuPart, lat, len, None);
                    total += lat;
                    let etag = a
                        .headers
                        .get("etag")
                        .and_then(|v| v.to_str().ok())
                        .ok_or_else(|| anyhow!("UploadPart: no ETag"))?
                        .to_string();
                    xml.push_str(&format!(
                        "<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>"
                    ));
                    off += len;
                    n += 1;
                }
                xml.push_str("</CompleteMultipartUpload>");
                let q = format!("uploadId={id_q}");
                let mut req = Req::new(Method::POST, bucket, &key);
                req.query = &q;
                req.body = Bytes::from(xml);
                req.read_body = true;
                let t0 = Instant::now();
                let a = self.send(conn, req).await?;
                let lat = t0.elapsed();
                a.check("CompleteMultipartUpload")?;
                self.record(Stat::MpuComplete, lat, 0, None);
                total += lat;
                self.record(Stat::Mpu, total, size, None);
                self.add_key(key, size);
            }
        }
        Ok(())
    }

    /// `--prefix` made a valid start of a bucket name.
    fn bucket_prefix(&self) -> String {
        let p: String = self
            .args
            .prefix
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(40)
            .collect();
        let p = p.trim_matches('-');
        if p.is_empty() {
            "bench".into()
        } else {
            p.into()
        }
    }

    fn record(&self, stat: Stat, lat: Duration, bytes: u64, ttfb: Option<Duration>) {
        let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        let s = stats.entry(stat).or_default();
        s.lat.push(micros(lat));
        if let Some(t) = ttfb {
            s.ttfb.push(micros(t));
        }
        s.bytes += bytes;
        if stat.part_of().is_none() {
            self.done_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    fn record_error(&self, stat: Stat, e: &anyhow::Error) {
        let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        let s = stats.entry(stat).or_default();
        s.errors += 1;
        if s.first_error.is_none() {
            s.first_error = Some(format!("{e:#}"));
        }
    }
}

async fn worker(shared: Arc<Shared>, id: u64, count: Option<u64>) {
    let mut conn = Conn { sender: None };
    let mut rng = Rng::new(
        id.wrapping_add(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
        ),
    );
    while !shared.stop.load(Ordering::Relaxed) {
        if let Some(c) = count
            && shared.started_ops.fetch_add(1, Ordering::Relaxed) >= c
        {
            break;
        }
        let op = shared.pick_op(&mut rng);
        if let Err(e) = shared.run_op(&mut conn, &mut rng, op).await {
            shared.record_error(op.stat(), &e);
        }
        shared.done_ops.fetch_add(1, Ordering::Relaxed);
    }
}

fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().with_context(|| format!("duration {s:?}"))?;
    let secs = match unit {
        "" | "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        _ => bail!("duration {s:?}: use s, m or h"),
    };
    secs.map(Duration::from_secs)
        .ok_or_else(|| anyhow!("duration {s:?} is too long"))
}

fn parse_mix(s: &str) -> Result<Vec<(Op, u32)>> {
    let mut mix: Vec<(Op, u32)> = vec![];
    for part in s.split(',') {
        let (op, w) = part.split_once('=').unwrap_or((part, "1"));
        let w: u32 = w
            .trim()
            .parse()
            .with_context(|| format!("mix weight {part:?}"))?;
        if w > 1_000_000 {
            bail!("mix weight {part:?}: at most 1000000");
        }
        let op = Op::parse(op.trim())?;
        if w > 0 {
            mix.push((op, w));
        }
    }
    if mix.is_empty() {
        bail!("the mix {s:?} has no operation");
    }
    Ok(mix)
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("grenier-bench: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("grenier-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Best of three single-thread passes over 256 MiB of MD5, SHA-256, BLAKE2b and CRC32C (the last two
/// per 1 MiB block), in MB/s.
fn hash_speed(json: bool) -> Result<()> {
    use sha2::Digest as _;
    let buf = Rng::new(7).bytes(64 << 20);
    let best = |f: &dyn Fn(&[u8])| {
        (0..3)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..4 {
                    f(&buf);
                }
                4.0 * buf.len() as f64 / t.elapsed().as_secs_f64() / 1e6
            })
            .fold(0.0, f64::max)
    };
    let md5 = best(&|b| {
        std::hint::black_box(md5::Md5::digest(b));
    });
    let sha256 = best(&|b| {
        std::hint::black_box(sha2::Sha256::digest(b));
    });
    // What the block layer hashes with: BLAKE2b (every block written, every block received from
    // another node), CRC32C (block files, checked when a local block is served).
    let blake2b = best(&|b| {
        for block in b.chunks(1 << 20) {
            std::hint::black_box(grenier::util::hash::blake2sum(block));
        }
    });
    let crc32c = best(&|b| {
        for block in b.chunks(1 << 20) {
            std::hint::black_box(crc_fast::checksum(
                crc_fast::CrcAlgorithm::Crc32Iscsi,
                block,
            ));
        }
    });
    if json {
        println!(
            "{}",
            serde_json::json!({"md5_mb_per_sec": md5, "sha256_mb_per_sec": sha256,
                "blake2b_mb_per_sec": blake2b, "crc32c_mb_per_sec": crc32c})
        );
    } else {
        println!(
            "one core: MD5 {md5:.0} MB/s, SHA-256 {sha256:.0} MB/s, BLAKE2b {blake2b:.0} MB/s \
             (1 MiB blocks), CRC32C {crc32c:.0} MB/s (1 MiB blocks)"
        );
    }
    Ok(())
}

async fn run(args: Args) -> Result<()> {
    if args.hash_speed {
        return hash_speed(args.json);
    }
    let uri: Uri = args.endpoint.parse().context("--endpoint")?;
    if uri.scheme_str() != Some("http") {
        bail!("--endpoint must be http:// (put a TLS proxy's plain side here)");
    }
    let authority = uri
        .authority()
        .ok_or_else(|| anyhow!("--endpoint has no host"))?;
    let authority = if authority.port().is_some() {
        authority.to_string()
    } else {
        format!("{}:80", authority.host())
    };
    if args.concurrency == 0 || args.concurrency > 10_000 {
        bail!("--concurrency must be between 1 and 10000");
    }
    let (Some(access_key), Some(secret_key)) = (&args.access_key, &args.secret_key) else {
        bail!("--access-key and --secret-key are required");
    };
    let mix = parse_mix(&args.mix)?;
    let size = SizeSpec::parse(&args.size)?;
    let part_size = parse_size(&args.part_size).map_err(|e| anyhow!("--part-size: {e}"))?;
    if part_size == 0 || part_size > MAX_OBJECT {
        bail!("--part-size must be between 1 byte and 5 GiB");
    }
    let duration = parse_duration(&args.duration)?;
    let reads = mix.iter().any(|(o, _)| o.reads());
    let prefill = args.prefill.unwrap_or(if reads {
        4 * args.concurrency as u64
    } else {
        0
    });
    let run_id = format!(
        "{:08x}",
        Rng::new(
            u64::from(std::process::id())
                ^ SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64)
        )
        .next() as u32
    );
    let new_shared = |mix: Vec<(Op, u32)>, first_key: u64| Shared {
        creds: (access_key.clone(), secret_key.clone(), args.region.clone()),
        authority: authority.clone(),
        mix,
        size: size.clone(),
        part_size,
        run_id: run_id.clone(),
        keys: Mutex::new(vec![]),
        next_key: AtomicU64::new(first_key),
        started_ops: AtomicU64::new(0),
        done_ops: AtomicU64::new(0),
        done_bytes: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        stats: Mutex::new(BTreeMap::new()),
        args: args.clone(),
    };
    let shared = Arc::new(new_shared(mix, 0));
    if args.create_bucket {
        let mut conn = Conn { sender: None };
        let mut req = Req::new(Method::PUT, &args.bucket, "");
        req.read_body = true;
        let a = shared.send(&mut conn, req).await?;
        let body = String::from_utf8_lossy(&a.body);
        if !a.status.is_success() && !body.contains("BucketAlreadyOwnedByYou") {
            // a key that may not create buckets can still use an existing one
            let head = shared
                .send(&mut conn, Req::new(Method::HEAD, &args.bucket, ""))
                .await?;
            if !head.status.is_success() {
                bail!("CreateBucket {}: HTTP {} {body}", args.bucket, a.status);
            }
        }
    }
    if prefill > 0 {
        if !args.quiet {
            eprintln!("prefill: {prefill} objects of {}", args.size);
        }
        let pre = Arc::new(new_shared(vec![(Op::Put, 1)], 1 << 40));
        let tasks: Vec<_> = (0..args.concurrency as u64)
            .map(|i| tokio::spawn(worker(pre.clone(), 1000 + i, Some(prefill))))
            .collect();
        for t in tasks {
            t.await?;
        }
        let stats = pre.stats.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = stats.values().find_map(|s| s.first_error.clone()) {
            bail!("prefill failed: {e}");
        }
        *shared.keys.lock().unwrap_or_else(|p| p.into_inner()) =
            std::mem::take(&mut *pre.keys.lock().unwrap_or_else(|p| p.into_inner()));
    }
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..args.concurrency as u64)
        .map(|i| tokio::spawn(worker(shared.clone(), i, args.count)))
        .collect();
    let progress = {
        let shared = shared.clone();
        let quiet = args.quiet;
        tokio::spawn(async move {
            let mut last = (0, 0, Instant::now());
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let (ops, bytes) = (
                    shared.done_ops.load(Ordering::Relaxed),
                    shared.done_bytes.load(Ordering::Relaxed),
                );
                let dt = last.2.elapsed().as_secs_f64();
                if !quiet {
                    eprint!(
                        "\r{:>5.0}s  {ops} ops  {:.0} ops/s  {:.1} MB/s      ",
                        t0.elapsed().as_secs_f64(),
                        (ops - last.0) as f64 / dt,
                        (bytes - last.1) as f64 / dt / 1e6
                    );
                }
                last = (ops, bytes, Instant::now());
            }
        })
    };
    if args.count.is_none() {
        tokio::time::sleep(duration).await;
        shared.stop.store(true, Ordering::Relaxed);
    }
    for t in tasks {
        t.await?;
    }
    progress.abort();
    let secs = t0.elapsed().as_secs_f64();
    if !args.quiet {
        eprintln!();
    }
    let mut stats = shared.stats.lock().unwrap_or_else(|p| p.into_inner());
    let mut ops = vec![];
    for (stat, s) in stats.iter_mut() {
        s.lat.sort_unstable();
        s.ttfb.sort_unstable();
        let n = s.lat.len() as u64;
        let sum: u64 = s.lat.iter().map(|&l| u64::from(l)).sum();
        ops.push(OpReport {
            op: stat.key(),
            part_of: stat.part_of(),
            ops: n,
            ops_per_sec: n as f64 / secs,
            mb_per_sec: s.bytes as f64 / secs / 1e6,
            mean_ms: if n == 0 {
                0.0
            } else {
                sum as f64 / n as f64 / 1000.0
            },
            min_ms: s.lat.first().map_or(0.0, |m| f64::from(*m) / 1000.0),
            p50_ms: percentile(&s.lat, 0.5),
            p90_ms: percentile(&s.lat, 0.9),
            p99_ms: percentile(&s.lat, 0.99),
            max_ms: s.lat.last().map_or(0.0, |m| f64::from(*m) / 1000.0),
            ttfb_p50_ms: (!s.ttfb.is_empty()).then(|| percentile(&s.ttfb, 0.5)),
            ttfb_p99_ms: (!s.ttfb.is_empty()).then(|| percentile(&s.ttfb, 0.99)),
            errors: s.errors,
            first_error: s.first_error.clone(),
        });
    }
    let main_ops = || ops.iter().filter(|o| o.part_of.is_none());
    let report = Report {
        endpoint: args.endpoint.clone(),
        mix: args.mix.clone(),
        size: args.size.clone(),
        concurrency: args.concurrency,
        seconds: secs,
        total_ops: main_ops().map(|o| o.ops).sum(),
        total_errors: main_ops().map(|o| o.errors).sum(),
        ops,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    if report.total_ops == 0 && report.total_errors > 0 {
        bail!("every operation failed");
    }
    Ok(())
}

fn print_table(r: &Report) {
    println!(
        "{} — mix {}, size {}, {} in flight, {:.1} s",
        r.endpoint, r.mix, r.size, r.concurrency, r.seconds
    );
    println!(
        "{:<14} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>7}",
        "op", "ops", "ops/s", "MB/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "ttfb p50", "errors"
    );
    for o in &r.ops {
        let name = [
            Stat::Put,
            Stat::Get,
            Stat::Head,
            Stat::Delete,
            Stat::List,
            Stat::Copy,
            Stat::CreateBucket,
            Stat::Mpu,
            Stat::MpuCreate,
            Stat::MpuPart,
            Stat::MpuComplete,
        ]
        .into_iter()
        .find(|s| s.key() == o.op)
        .map_or(o.op, Stat::name);
        println!(
            "{:<14} {:>8} {:>9.1} {:>8.1} {:>8.2} {:>8.2} {:>8.2} {:>8.1} {:>9} {:>7}",
            name,
            o.ops,
            o.ops_per_sec,
            o.mb_per_sec,
            o.p50_ms,
            o.p90_ms,
            o.p99_ms,
            o.max_ms,
            o.ttfb_p50_ms.map_or("-".into(), |t| format!("{t:.2}")),
            o.errors
        );
        if let Some(e) = &o.first_error {
            println!("               first error: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_mixes_parse() {
        assert!(matches!(
            SizeSpec::parse("4KiB").unwrap(),
            SizeSpec::Fixed(4096)
        ));
        assert!(matches!(
            SizeSpec::parse("1KiB..2KiB").unwrap(),
            SizeSpec::Range(1024, 2048)
        ));
        assert!(
            matches!(SizeSpec::parse("1KiB,1MiB").unwrap(), SizeSpec::Choice(v) if v.len() == 2)
        );
        assert!(SizeSpec::parse("2KiB..1KiB").is_err());
        assert!(SizeSpec::parse("6GiB").is_err());
        assert!(SizeSpec::parse("x").is_err());
        let mut rng = Rng::new(1);
        let r = SizeSpec::parse("0..0").unwrap();
        assert_eq!(r.pick(&mut rng), 0);
        let m = parse_mix("get=9,put=1,create-bucket,mpu=0").unwrap();
        assert_eq!(m, vec![(Op::Get, 9), (Op::Put, 1), (Op::CreateBucket, 1)]);
        assert!(parse_mix("mpu=0").is_err());
        assert!(parse_mix("frob=1").is_err());
        assert!(parse_mix("put=x").is_err());
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("99999999999999999999h").is_err());
    }

    #[test]
    fn percentiles() {
        let v: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile(&v, 0.5), 51.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
