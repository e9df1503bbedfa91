//! `grenier-bench`: a load generator for any S3 endpoint (Grenier or another store, side by side).
//!
//! Signs its requests itself (Grenier's SigV4 client signer, `UNSIGNED-PAYLOAD`), keeps one HTTP/1.1
//! connection per in-flight request (`--concurrency`), runs a weighted mix of PUT, GET, HEAD, DELETE,
//! LIST and multipart uploads for a duration or a count, and prints per operation: ops/s, MB/s, latency
//! p50/p90/p99/max, time to first byte of GETs, and errors (`--json` for a machine-readable report).
//! Every PUT writes a new key with its own bytes (so content-addressed stores cannot deduplicate).
//! See doc/performance.md.

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
use grenier::util::size::{format_size, parse_size};

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
    #[arg(long, env = "AWS_ACCESS_KEY_ID")]
    access_key: String,
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    secret_key: String,
    #[arg(long, env = "AWS_REGION", default_value = "garage")]
    region: String,
    /// Bucket to work in (created first when --create-bucket).
    #[arg(long, default_value = "bench")]
    bucket: String,
    #[arg(long)]
    create_bucket: bool,
    /// Operation mix as op=weight pairs; ops: put, get, head, delete, list, mpu.
    /// e.g. `put=1` (only PUTs), `get=9,put=1`.
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
    /// Objects written before the run for GET/HEAD/DELETE (default: 4 × concurrency when the mix
    /// reads or deletes, else 0). Not counted in the results.
    #[arg(long)]
    prefill: Option<u64>,
    /// Key prefix (a random suffix keeps runs apart).
    #[arg(long, default_value = "bench")]
    prefix: String,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// No progress line on stderr.
    #[arg(long, short = 'q')]
    quiet: bool,
    /// Send virtual-hosted-style requests (bucket in the Host header, for stores that need it).
    #[arg(long)]
    virtual_host: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
enum Op {
    Put,
    Get,
    Head,
    Delete,
    List,
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
            "mpu" => Op::Mpu,
            _ => bail!("unknown operation {s:?} (put, get, head, delete, list, mpu)"),
        })
    }
    fn name(self) -> &'static str {
        match self {
            Op::Put => "PUT",
            Op::Get => "GET",
            Op::Head => "HEAD",
            Op::Delete => "DELETE",
            Op::List => "LIST",
            Op::Mpu => "MPU",
        }
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
        let p = |x: &str| parse_size(x.trim()).map_err(|e| anyhow!("size {x:?}: {e}"));
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
    op: Op,
    ops: u64,
    ops_per_sec: f64,
    mb_per_sec: f64,
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

struct Shared {
    args: Args,
    creds: (String, String, String),
    authority: String,
    mix: Vec<(Op, u32)>,
    size: SizeSpec,
    part_size: u64,
    run_id: String,
    /// Keys written and not deleted, for GET/HEAD/DELETE.
    keys: Mutex<Vec<(String, u64)>>,
    next_key: AtomicU64,
    started_ops: AtomicU64,
    done_ops: AtomicU64,
    done_bytes: AtomicU64,
    stop: AtomicBool,
    stats: Mutex<BTreeMap<Op, OpStats>>,
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

impl Shared {
    fn creds(&self) -> Credentials<'_> {
        Credentials {
            access_key: &self.creds.0,
            secret_key: &self.creds.1,
            region: &self.creds.2,
        }
    }

    /// The path and host of `key` (or of the bucket when `key` is empty).
    fn target(&self, key: &str, query: &str) -> (String, String) {
        let key = grenier::util::url::uri_encode(key, false);
        let (host, path) = if self.args.virtual_host {
            (
                format!("{}.{}", self.args.bucket, self.authority),
                format!("/{key}"),
            )
        } else if key.is_empty() {
            (self.authority.clone(), format!("/{}", self.args.bucket))
        } else {
            (
                self.authority.clone(),
                format!("/{}/{key}", self.args.bucket),
            )
        };
        let pq = if query.is_empty() {
            path
        } else {
            format!("{path}?{query}")
        };
        (host, pq)
    }

    async fn send(
        &self,
        conn: &mut Conn,
        method: Method,
        key: &str,
        query: &str,
        body: Bytes,
        read_body: bool,
    ) -> Result<Answer> {
        let (host, pq) = self.target(key, query);
        let uri: Uri = format!("http://{host}{pq}").parse()?;
        let mut headers = HeaderMap::new();
        headers.insert("host", host.parse()?);
        if !body.is_empty() || method == Method::PUT || method == Method::POST {
            headers.insert("content-length", body.len().to_string().parse()?);
        }
        sigv4::sign(
            &method,
            &uri,
            &mut headers,
            &self.creds(),
            SystemTime::now(),
        );
        let mut req = Request::builder().method(method).uri(pq);
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        let body: ReqBody = if body.is_empty() {
            Empty::new().boxed()
        } else {
            Full::new(body).boxed()
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
        sender.ready().await?;
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
            let frame = frame?;
            if let Ok(d) = frame.into_data() {
                if ttfb_body.is_none() && !d.is_empty() {
                    ttfb_body = Some(t0.elapsed());
                }
                if read_body || !parts.status.is_success() {
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

    /// Runs one operation; returns (bytes moved, time to first byte for GETs).
    async fn run_op(
        &self,
        conn: &mut Conn,
        rng: &mut Rng,
        op: Op,
    ) -> Result<(u64, Option<Duration>)> {
        let ok = |a: &Answer, what: &str| -> Result<()> {
            if a.status.is_success() {
                Ok(())
            } else {
                let text = String::from_utf8_lossy(&a.body);
                let code = text
                    .split("<Code>")
                    .nth(1)
                    .and_then(|c| c.split("</Code>").next())
                    .unwrap_or("");
                Err(anyhow!("{what}: HTTP {} {code}", a.status.as_u16()))
            }
        };
        match op {
            Op::Put => {
                let size = self.size.pick(rng);
                let key = self.new_key();
                let a = self
                    .send(conn, Method::PUT, &key, "", rng.bytes(size), false)
                    .await?;
                ok(&a, "PUT")?;
                self.keys
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((key, size));
                Ok((size, None))
            }
            Op::Get | Op::Head => {
                let (key, size) = self
                    .pick_key(rng, false)
                    .ok_or_else(|| anyhow!("no object to read: use --prefill"))?;
                let method = if op == Op::Get {
                    Method::GET
                } else {
                    Method::HEAD
                };
                let a = self
                    .send(conn, method, &key, "", Bytes::new(), false)
                    .await?;
                ok(&a, op.name())?;
                let len: u64 = a
                    .headers
                    .get("content-length")
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .unwrap_or(0);
                if len != size {
                    bail!("{}: content-length {len}, expected {size}", op.name());
                }
                Ok(if op == Op::Get {
                    (size, Some(a.ttfb))
                } else {
                    (0, None)
                })
            }
            Op::Delete => {
                let (key, _) = self
                    .pick_key(rng, true)
                    .ok_or_else(|| anyhow!("no object to delete: use --prefill"))?;
                let a = self
                    .send(conn, Method::DELETE, &key, "", Bytes::new(), false)
                    .await?;
                ok(&a, "DELETE")?;
                Ok((0, None))
            }
            Op::List => {
                let q = format!(
                    "list-type=2&max-keys=100&prefix={}",
                    grenier::util::url::uri_encode(
                        &format!("{}/{}/", self.args.prefix, self.run_id),
                        true
                    )
                );
                let a = self
                    .send(conn, Method::GET, "", &q, Bytes::new(), true)
                    .await?;
                ok(&a, "LIST")?;
                Ok((a.body.len() as u64, None))
            }
            Op::Mpu => {
                let size = self.size.pick(rng);
                let key = self.new_key();
                let a = self
                    .send(conn, Method::POST, &key, "uploads", Bytes::new(), true)
                    .await?;
                ok(&a, "CreateMultipartUpload")?;
                let text = String::from_utf8_lossy(&a.body);
                let id = text
                    .split("<UploadId>")
                    .nth(1)
                    .and_then(|s| s.split("</UploadId>").next())
                    .ok_or_else(|| anyhow!("CreateMultipartUpload: no UploadId"))?
                    .to_string();
                let id_q = grenier::util::url::uri_encode(&id, true);
                let mut xml = String::from("<CompleteMultipartUpload>");
                let (mut off, mut n) = (0u64, 1u32);
                while off < size || n == 1 {
                    let len = self.part_size.min(size - off);
                    let q = format!("partNumber={n}&uploadId={id_q}");
                    let a = self
                        .send(conn, Method::PUT, &key, &q, rng.bytes(len), false)
                        .await?;
                    ok(&a, "UploadPart")?;
                    let etag = a
                        .headers
                        .get("etag")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    xml.push_str(&format!(
                        "<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>"
                    ));
                    off += len;
                    n += 1;
                }
                xml.push_str("</CompleteMultipartUpload>");
                let q = format!("uploadId={id_q}");
                let a = self
                    .send(conn, Method::POST, &key, &q, Bytes::from(xml), true)
                    .await?;
                ok(&a, "CompleteMultipartUpload")?;
                if String::from_utf8_lossy(&a.body).contains("<Error>") {
                    bail!("CompleteMultipartUpload: error in a 200 answer");
                }
                self.keys
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((key, size));
                Ok((size, None))
            }
        }
    }

    fn record(&self, op: Op, lat: Duration, r: &Result<(u64, Option<Duration>)>) {
        let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        let s = stats.entry(op).or_default();
        match r {
            Ok((bytes, ttfb)) => {
                s.lat.push(lat.as_micros().min(u32::MAX as u128) as u32);
                if let Some(t) = ttfb {
                    s.ttfb.push(t.as_micros().min(u32::MAX as u128) as u32);
                }
                s.bytes += bytes;
                self.done_bytes.fetch_add(*bytes, Ordering::Relaxed);
            }
            Err(e) => {
                s.errors += 1;
                if s.first_error.is_none() {
                    s.first_error = Some(format!("{e:#}"));
                }
            }
        }
        self.done_ops.fetch_add(1, Ordering::Relaxed);
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
        let t0 = Instant::now();
        let r = shared.run_op(&mut conn, &mut rng, op).await;
        shared.record(op, t0.elapsed(), &r);
    }
}

fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().with_context(|| format!("duration {s:?}"))?;
    Ok(Duration::from_secs(match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => bail!("duration {s:?}: use s, m or h"),
    }))
}

fn parse_mix(s: &str) -> Result<Vec<(Op, u32)>> {
    let mut mix = vec![];
    for part in s.split(',') {
        let (op, w) = part.split_once('=').unwrap_or((part, "1"));
        let w: u32 = w
            .trim()
            .parse()
            .with_context(|| format!("mix weight {part:?}"))?;
        if w > 0 {
            mix.push((Op::parse(op.trim())?, w));
        }
    }
    if mix.is_empty() {
        bail!("the mix {s:?} has no operation");
    }
    Ok(mix)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let uri: Uri = args.endpoint.parse().context("--endpoint")?;
    if uri.scheme_str() != Some("http") {
        bail!("--endpoint must be http:// (put a TLS proxy's plain side here)");
    }
    let authority = uri
        .authority()
        .ok_or_else(|| anyhow!("--endpoint has no host"))?
        .to_string();
    let mix = parse_mix(&args.mix)?;
    let size = SizeSpec::parse(&args.size)?;
    let part_size = parse_size(&args.part_size).map_err(|e| anyhow!("--part-size: {e}"))?;
    if part_size == 0 {
        bail!("--part-size must be positive");
    }
    let reads = mix
        .iter()
        .any(|(o, _)| matches!(o, Op::Get | Op::Head | Op::Delete));
    let prefill = args.prefill.unwrap_or(if reads {
        4 * args.concurrency as u64
    } else {
        0
    });
    let run_id = format!("{:08x}", Rng::new(std::process::id() as u64).next() as u32);
    let shared = Arc::new(Shared {
        creds: (
            args.access_key.clone(),
            args.secret_key.clone(),
            args.region.clone(),
        ),
        authority,
        mix: mix.clone(),
        size: size.clone(),
        part_size,
        run_id,
        keys: Mutex::new(vec![]),
        next_key: AtomicU64::new(0),
        started_ops: AtomicU64::new(0),
        done_ops: AtomicU64::new(0),
        done_bytes: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        stats: Mutex::new(BTreeMap::new()),
        args: args.clone(),
    });
    let mut conn = Conn { sender: None };
    if args.create_bucket {
        let a = shared
            .send(&mut conn, Method::PUT, "", "", Bytes::new(), true)
            .await?;
        let body = String::from_utf8_lossy(&a.body);
        if !a.status.is_success() && !body.contains("BucketAlreadyOwnedByYou") {
            bail!("CreateBucket {}: HTTP {} {body}", args.bucket, a.status);
        }
    }
    if prefill > 0 {
        if !args.quiet {
            eprintln!("prefill: {prefill} objects of {}", args.size);
        }
        let pre = Arc::new(Shared {
            mix: vec![(Op::Put, 1)],
            keys: Mutex::new(vec![]),
            stats: Mutex::new(BTreeMap::new()),
            started_ops: AtomicU64::new(0),
            done_ops: AtomicU64::new(0),
            done_bytes: AtomicU64::new(0),
            next_key: AtomicU64::new(1 << 40),
            stop: AtomicBool::new(false),
            creds: shared.creds.clone(),
            authority: shared.authority.clone(),
            size: size.clone(),
            part_size,
            run_id: shared.run_id.clone(),
            args: args.clone(),
        });
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
    let duration = parse_duration(&args.duration)?;
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
    for (op, s) in stats.iter_mut() {
        s.lat.sort_unstable();
        s.ttfb.sort_unstable();
        let n = s.lat.len() as u64;
        ops.push(OpReport {
            op: *op,
            ops: n,
            ops_per_sec: n as f64 / secs,
            mb_per_sec: s.bytes as f64 / secs / 1e6,
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
    let report = Report {
        endpoint: args.endpoint.clone(),
        mix: args.mix.clone(),
        size: args.size.clone(),
        concurrency: args.concurrency,
        seconds: secs,
        total_ops: ops.iter().map(|o| o.ops).sum(),
        total_errors: ops.iter().map(|o| o.errors).sum(),
        ops,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report, &size);
    }
    if report.total_ops == 0 && report.total_errors > 0 {
        bail!("every operation failed");
    }
    Ok(())
}

fn print_table(r: &Report, size: &SizeSpec) {
    let size = match size {
        SizeSpec::Fixed(n) => format_size(*n),
        _ => r.size.clone(),
    };
    println!(
        "{} — mix {}, size {size}, {} in flight, {:.1} s",
        r.endpoint, r.mix, r.concurrency, r.seconds
    );
    println!(
        "{:<7} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>7}",
        "op", "ops", "ops/s", "MB/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "ttfb p50", "errors"
    );
    for o in &r.ops {
        println!(
            "{:<7} {:>8} {:>9.1} {:>8.1} {:>8.2} {:>8.2} {:>8.2} {:>8.1} {:>9} {:>7}",
            o.op.name(),
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
            println!("        first error: {e}");
        }
    }
}
