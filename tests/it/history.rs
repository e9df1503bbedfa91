//! A history checker for the fault-injection suite (issue 14): S3 clients record every operation they
//! run (invocation time, completion time, what they saw) while faults happen, and [`check`] then judges
//! the whole history.
//!
//! **Values.** Every write gets a unique write id. A PUT or multipart upload stores a body that starts
//! with a header line naming its id and goes on with pseudo-random bytes seeded by it, and the id also
//! rides in the user metadata `x-amz-meta-w`; the recorder keeps each write's full size, SHA-256 and
//! ETag (MD5 of the body, or `"<md5 of the part md5s>-N"`). A GET is mapped to its write through the
//! metadata and its whole body is checked against that write's content (partial visibility); a LIST
//! entry is mapped through its ETag (unique per body). A CopyObject copies the source's metadata and
//! ETag, so its value is the source write's id: known from the copy's answer (its ETag), or, if the
//! copy's outcome is unknown, any write at all.
//!
//! **Rule (per key; a value is a write id or ABSENT).** A read `R` that returns the value of write `W`
//! is a violation if no such `W` (PUT, CompleteMultipartUpload, CopyObject to that key, or — for
//! ABSENT — the initial state or a DELETE) was invoked before `R` completed, or if every such `W` is
//! stale: there is an acknowledged write `W2` to the key with `W.complete < W2.invoke` and
//! `W2.complete < R.invoke`. Writes with an unknown outcome (timeout, 5xx, connection error) may appear
//! at any later time and never make another write stale; failed writes (4xx) must never be read. A
//! LIST judges every key under its prefix the same way; final reads, after faults healed, check that
//! every acknowledged write is still there (none lost, no delete undone).
//!
//! Times are microseconds since the recorder's origin ([`Instant`]-based, monotonic, shared by all
//! clients), so the order judged is real time, whatever the nodes' clocks say.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use md5::{Digest as _, Md5};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::Sha256;

/// A write's unique id (also in its body and its `x-amz-meta-w` metadata).
pub type WriteId = u64;

/// What a client learned about an operation's effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// Acknowledged (2xx).
    Ok,
    /// Definitely not applied (a 4xx answer, or a multipart upload never completed).
    Fail,
    /// Maybe applied, maybe later: timeout, 5xx, connection error.
    Unknown,
}

/// The full content of a PUT or multipart write, recorded before it is sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Content {
    pub key: String,
    pub size: u64,
    pub sha256: [u8; 32],
    /// The S3 ETag, without quotes.
    pub etag: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WriteKind {
    Put,
    Mpu,
    Copy,
    Delete,
}

/// The value a write puts under its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteValue {
    /// A DELETE.
    Absent,
    /// A PUT or a completed multipart upload: its own id.
    Id(WriteId),
    /// A CopyObject: the value of some write of the source, identified by the ETag the copy answered
    /// (`None` when the copy's outcome is unknown: any write).
    CopyOf { src: String, etag: Option<String> },
}

#[derive(Clone, Debug)]
pub struct WriteRec {
    pub key: String,
    pub kind: WriteKind,
    pub value: WriteValue,
    /// When the client sent it (for a multipart upload: CompleteMultipartUpload).
    pub invoke: u64,
    /// When the client saw the answer or gave up.
    pub complete: u64,
    pub outcome: Outcome,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReadKind {
    Get,
    List,
    /// The source side of a CopyObject (the version it copied, or a 404).
    CopySource,
    /// A read after the faults healed.
    Final,
}

/// What a read saw under one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    Absent,
    Object {
        /// The write id from `x-amz-meta-w` (GET); `None` when only the ETag is known (LIST, copy).
        id: Option<WriteId>,
        etag: String,
        size: Option<u64>,
        /// SHA-256 of the whole body received (GET).
        sha256: Option<[u8; 32]>,
    },
}

#[derive(Clone, Debug)]
pub struct ReadRec {
    pub key: String,
    pub kind: ReadKind,
    pub invoke: u64,
    pub complete: u64,
    pub seen: Seen,
}

/// A LIST of a prefix: every key under it is a read (present with this ETag, or absent).
#[derive(Clone, Debug)]
pub struct ListRec {
    pub prefix: String,
    pub invoke: u64,
    pub complete: u64,
    /// (key, etag without quotes, size)
    pub entries: Vec<(String, String, u64)>,
    pub final_read: bool,
}

#[derive(Default)]
struct Inner {
    writes: Vec<WriteRec>,
    reads: Vec<ReadRec>,
    lists: Vec<ListRec>,
    contents: HashMap<WriteId, Content>,
    /// (operation, outcome) → count, every attempt included.
    counts: BTreeMap<(String, Outcome), u64>,
    notes: Vec<String>,
    /// "op <why>" → count, for failed calls.
    errors: BTreeMap<String, u64>,
}

/// The shared record of a run: cheap to clone, usable from any task or thread.
#[derive(Clone)]
pub struct Recorder {
    origin: Instant,
    next_id: Arc<AtomicU64>,
    inner: Arc<Mutex<Inner>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            origin: Instant::now(),
            next_id: Arc::new(AtomicU64::new(1)),
            inner: Arc::new(Mutex::new(Inner::default())),
        }
    }

    /// Microseconds since the origin (monotonic).
    pub fn now(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64
    }

    pub fn new_write_id(&self) -> WriteId {
        self.next_id.fetch_add(1, Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn content(&self, id: WriteId, c: Content) {
        self.lock().contents.insert(id, c);
    }

    pub fn write(&self, w: WriteRec) {
        self.lock().writes.push(w);
    }

    pub fn read(&self, r: ReadRec) {
        self.lock().reads.push(r);
    }

    pub fn list(&self, l: ListRec) {
        self.lock().lists.push(l);
    }

    /// Count one attempt of operation `op` (for the report's op counts).
    pub fn count(&self, op: &str, outcome: Outcome) {
        *self
            .lock()
            .counts
            .entry((op.to_string(), outcome))
            .or_default() += 1;
    }

    /// Classify a failed call of operation `op` and remember why it failed (for the report).
    pub fn error<E: ProvideErrorMetadata, R: HttpStatus>(
        &self,
        op: &str,
        e: &SdkError<E, R>,
    ) -> Outcome {
        self.error_via(op, None, e)
    }

    /// [`Recorder::error`], an answer's status and code also saying which endpoint gave it.
    pub fn error_via<E: ProvideErrorMetadata, R: HttpStatus>(
        &self,
        op: &str,
        cl: Option<&Client>,
        e: &SdkError<E, R>,
    ) -> Outcome {
        let mut detail = format!("{op} {}", error_detail(e));
        // `client` names its endpoint in the app name (`history-<ip>_<port>`).
        let via = cl
            .and_then(|c| c.config().app_name())
            .and_then(|a| a.as_ref().strip_prefix("history-").map(str::to_string));
        if let (SdkError::ServiceError(_), Some(via)) = (e, via) {
            detail = format!("{detail} via {}", via.replace('_', ":"));
        }
        *self.lock().errors.entry(detail).or_default() += 1;
        classify(e).0
    }

    /// A violation seen outside the history rules (e.g. a scenario's own check); reported by [`check`].
    pub fn violation(&self, what: String) {
        self.lock().notes.push(what);
    }

    /// Number of operations counted so far.
    pub fn ops(&self) -> u64 {
        self.lock().counts.values().sum()
    }

    /// Number of acknowledged operations counted so far.
    pub fn ok_ops(&self) -> u64 {
        self.lock()
            .counts
            .iter()
            .filter(|((_, o), _)| *o == Outcome::Ok)
            .map(|(_, n)| n)
            .sum()
    }
}

/// The checker's verdict.
#[derive(Debug, Default)]
pub struct Report {
    /// Operations counted (every attempt, every kind, final reads included).
    pub ops: usize,
    pub ok: usize,
    pub failed: usize,
    pub unknown: usize,
    pub writes: usize,
    /// Key reads judged (GETs, copy sources, each key of each LIST, final reads).
    pub reads_checked: usize,
    pub violations: Vec<String>,
    /// `op outcome=n` counts.
    pub counts: String,
    /// `op why=n` for the failed calls.
    pub errors: String,
}

impl Report {
    pub fn summary(&self) -> String {
        format!(
            "{} ops ({} ok, {} failed, {} unknown), {} writes, {} reads checked, {} violations\n  counts: {}\n  errors: {}",
            self.ops,
            self.ok,
            self.failed,
            self.unknown,
            self.writes,
            self.reads_checked,
            self.violations.len(),
            self.counts,
            self.errors
        )
    }

    /// Panic with the violations (the first 30) and the seed that replays the run.
    pub fn assert_ok(&self, seed: u64) {
        eprintln!("history (seed {seed}): {}", self.summary());
        if !self.violations.is_empty() {
            let shown: Vec<&str> = self
                .violations
                .iter()
                .take(30)
                .map(String::as_str)
                .collect();
            panic!(
                "history check failed with {} violations (seed {seed}; replay with GRENIER_SEED={seed}):\n  {}",
                self.violations.len(),
                shown.join("\n  ")
            );
        }
    }
}

/// The candidate values of a read: `None` = ABSENT.
type Candidates = Vec<Option<WriteId>>;

/// Judge a history. See the module documentation for the rule.
pub fn check(rec: &Recorder) -> Report {
    let inner = rec.lock();
    let mut report = Report {
        counts: inner
            .counts
            .iter()
            .map(|((op, o), n)| format!("{op} {o:?}={n}"))
            .collect::<Vec<_>>()
            .join(", "),
        errors: inner
            .errors
            .iter()
            .map(|(why, n)| format!("{why}={n}"))
            .collect::<Vec<_>>()
            .join(", "),
        writes: inner.writes.len(),
        ..Report::default()
    };
    for ((_, o), n) in &inner.counts {
        let n = *n as usize;
        report.ops += n;
        match o {
            Outcome::Ok => report.ok += n,
            Outcome::Fail => report.failed += n,
            Outcome::Unknown => report.unknown += n,
        }
    }
    report.violations.extend(inner.notes.iter().cloned());

    let mut by_etag: HashMap<&str, Vec<WriteId>> = HashMap::new();
    for (id, c) in &inner.contents {
        by_etag.entry(c.etag.as_str()).or_default().push(*id);
    }
    let mut writes_of: HashMap<&str, Vec<&WriteRec>> = HashMap::new();
    for w in &inner.writes {
        writes_of.entry(w.key.as_str()).or_default().push(w);
    }

    // Every read as (key, kind, interval, seen).
    let mut reads: Vec<ReadRec> = inner.reads.clone();
    for l in &inner.lists {
        let listed: HashMap<&str, (&str, u64)> = l
            .entries
            .iter()
            .map(|(k, e, s)| (k.as_str(), (e.as_str(), *s)))
            .collect();
        let mut keys: Vec<&str> = writes_of
            .keys()
            .copied()
            .filter(|k| k.starts_with(&l.prefix))
            .collect();
        keys.extend(listed.keys().filter(|k| !writes_of.contains_key(*k)));
        for k in keys {
            let seen = match listed.get(k) {
                Some((etag, size)) => Seen::Object {
                    id: None,
                    etag: etag.to_string(),
                    size: Some(*size),
                    sha256: None,
                },
                None => Seen::Absent,
            };
            reads.push(ReadRec {
                key: k.to_string(),
                kind: if l.final_read {
                    ReadKind::Final
                } else {
                    ReadKind::List
                },
                invoke: l.invoke,
                complete: l.complete,
                seen,
            });
        }
    }

    let no_writes = vec![];
    for r in &reads {
        report.reads_checked += 1;
        let what = format!(
            "key {}: {:?} [{}..{}] saw {}",
            r.key,
            r.kind,
            r.invoke,
            r.complete,
            describe(&r.seen)
        );
        // The values the read may stand for, and the content checks (partial visibility).
        let cands: Candidates = match &r.seen {
            Seen::Absent => vec![None],
            Seen::Object {
                id: Some(id),
                etag,
                size,
                sha256,
            } => {
                let Some(c) = inner.contents.get(id) else {
                    report
                        .violations
                        .push(format!("{what}: write id {id} was never written"));
                    continue;
                };
                let mut bad = vec![];
                if etag.trim_matches('"') != c.etag {
                    bad.push(format!("ETag {etag} != {}", c.etag));
                }
                if size.is_some_and(|s| s != c.size) {
                    bad.push(format!("size {size:?} != {}", c.size));
                }
                if sha256.is_some_and(|h| h != c.sha256) {
                    bad.push("SHA-256 of the body differs".to_string());
                }
                if !bad.is_empty() {
                    report.violations.push(format!(
                        "{what}: content is not write {id}'s (partial or mixed object): {}",
                        bad.join("; ")
                    ));
                    continue;
                }
                vec![Some(*id)]
            }
            Seen::Object {
                id: None,
                etag,
                size,
                ..
            } => {
                let ids: Candidates = by_etag
                    .get(etag.trim_matches('"'))
                    .map(|v| {
                        v.iter()
                            .filter(|i| size.is_none_or(|s| inner.contents[*i].size == s))
                            .map(|i| Some(*i))
                            .collect()
                    })
                    .unwrap_or_default();
                if ids.is_empty() {
                    report.violations.push(format!(
                        "{what}: no write has this ETag and size (partial or foreign object)"
                    ));
                    continue;
                }
                ids
            }
        };
        let ws = writes_of.get(r.key.as_str()).unwrap_or(&no_writes);
        if let Err(v) = judge(r, &cands, ws, &inner.contents) {
            report.violations.push(format!("{what}: {v}"));
        }
    }
    report
}

fn describe(s: &Seen) -> String {
    match s {
        Seen::Absent => "ABSENT".to_string(),
        Seen::Object { id: Some(id), .. } => format!("write {id}"),
        Seen::Object { id: None, etag, .. } => format!("ETag {etag}"),
    }
}

/// Whether write `w` can have put value `v` (`None` = ABSENT) under its key.
fn produces(w: &WriteRec, v: Option<WriteId>, contents: &HashMap<WriteId, Content>) -> bool {
    match (&w.value, v) {
        (WriteValue::Absent, None) => true,
        (WriteValue::Id(id), Some(x)) => *id == x,
        (WriteValue::CopyOf { etag: None, .. }, Some(_)) => true,
        (WriteValue::CopyOf { etag: Some(e), .. }, Some(x)) => contents
            .get(&x)
            .is_some_and(|c| c.etag == e.trim_matches('"')),
        _ => false,
    }
}

/// Ok if some write that may have produced one of `cands` was invoked before the read completed and
/// is not stale at the read.
fn judge(
    r: &ReadRec,
    cands: &Candidates,
    ws: &[&WriteRec],
    contents: &HashMap<WriteId, Content>,
) -> Result<(), String> {
    // The latest invocation of an acknowledged write that completed before the read began: a candidate
    // that completed before it is stale.
    let newest = ws
        .iter()
        .filter(|w| w.outcome == Outcome::Ok && w.complete < r.invoke)
        .max_by_key(|w| w.invoke);
    let fresh = |complete: u64, outcome: Outcome| {
        outcome == Outcome::Unknown || newest.is_none_or(|n| n.invoke <= complete)
    };
    let mut seen_any = false;
    for v in cands {
        // The initial state: absent, "completed" at time 0.
        if v.is_none() {
            seen_any = true;
            if fresh(0, Outcome::Ok) {
                return Ok(());
            }
        }
        for w in ws
            .iter()
            .filter(|w| w.outcome != Outcome::Fail && w.invoke < r.complete)
        {
            if produces(w, *v, contents) {
                seen_any = true;
                if fresh(w.complete, w.outcome) {
                    return Ok(());
                }
            }
        }
    }
    let newest = newest
        .map(|n| {
            format!(
                "{:?} {:?} [{}..{}] acknowledged",
                n.kind, n.value, n.invoke, n.complete
            )
        })
        .unwrap_or_default();
    if !seen_any {
        let failed = ws
            .iter()
            .any(|w| w.outcome == Outcome::Fail && cands.iter().any(|v| produces(w, *v, contents)));
        return Err(if failed {
            "the value of a FAILED write (4xx or never completed)".to_string()
        } else {
            format!(
                "no write of this value to this key was invoked before the read completed (latest acknowledged: {newest})"
            )
        });
    }
    Err(format!(
        "stale: {newest} entirely after every write of this value, before the read"
    ))
}

// ---------------------------------------------------------------------------------------------------
// Bodies

const MIB: usize = 1024 * 1024;

/// Deterministic body bytes of write `id`: a header line naming the write, then pseudo-random bytes
/// (xorshift seeded by the id and `part`); `len` bytes from `offset` of that stream.
pub fn body(id: WriteId, key: &str, part: u32, len: usize) -> Bytes {
    let mut out = Vec::with_capacity(len + 8);
    if part <= 1 {
        out.extend_from_slice(format!("grenier-history w={id} key={key}\n").as_bytes());
    }
    let mut x = id
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(part as u64 + 1)
        | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

fn sha256_of(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn md5_hex(b: &[u8]) -> String {
    hex::encode(Md5::digest(b))
}

/// The ETag of a multipart object made of `parts`.
pub fn multipart_etag(parts: &[&[u8]]) -> String {
    let mut h = Md5::new();
    for p in parts {
        h.update(Md5::digest(p));
    }
    format!("{}-{}", hex::encode(h.finalize()), parts.len())
}

// ---------------------------------------------------------------------------------------------------
// Workload

#[derive(Clone, Debug)]
pub struct WorkloadConfig {
    pub seed: u64,
    /// Number of keys (`{prefix}{i:04}`).
    pub keys: usize,
    pub prefix: String,
    /// Concurrent clients; client `c`'s `n`-th operation goes to endpoint `(c + n) % endpoints`.
    pub clients: usize,
    /// Stop after this many operations in all (counted when started).
    pub ops: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Largest single PUT body (bodies above 1 MiB span several blocks).
    pub max_size: usize,
    /// Mix weights.
    pub w_put: u32,
    pub w_get: u32,
    pub w_delete: u32,
    pub w_list: u32,
    pub w_copy: u32,
    /// Multipart uploads (2-3 parts of `mpu_part_size`, the last one small).
    pub w_mpu: u32,
    pub mpu_part_size: usize,
    /// Each S3 call's timeout (no retries: the history records what the client saw).
    pub op_timeout: Duration,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            seed: 1,
            keys: 24,
            prefix: "h/".to_string(),
            clients: 4,
            ops: Some(300),
            duration: None,
            max_size: 3 * MIB,
            w_put: 30,
            w_get: 35,
            w_delete: 8,
            w_list: 10,
            w_copy: 6,
            w_mpu: 1,
            mpu_part_size: 5 * MIB,
            op_timeout: Duration::from_secs(10),
        }
    }
}

impl WorkloadConfig {
    pub fn key(&self, i: usize) -> String {
        format!("{}{i:04}", self.prefix)
    }
}

/// A seed: `GRENIER_SEED` if set, else from the clock; printed with `what`, so a failure replays.
pub fn seed(what: &str) -> u64 {
    let s = std::env::var("GRENIER_SEED")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                % 1_000_000_000
        });
    eprintln!("{what}: seed {s} (replay with GRENIER_SEED={s})");
    s
}

/// An SDK client of `endpoint` with `timeout` per call and no retries.
pub fn client(endpoint: &str, creds: (&str, &str), timeout: Duration) -> Client {
    let base = crate::harness::sdk_client(endpoint, "garage", creds.0, creds.1);
    let conf = base
        .config()
        .to_builder()
        .app_name(
            aws_sdk_s3::config::AppName::new(format!("history-{}", endpoint.replace(':', "_")))
                .expect("an ip:port is a valid app name"),
        )
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_timeout(timeout)
                .operation_attempt_timeout(timeout)
                .build(),
        )
        .build();
    Client::from_conf(conf)
}

/// The outcome of a failed SDK call: a 4xx is a definite failure, anything else is unknown.
pub fn classify<E, R: HttpStatus>(e: &SdkError<E, R>) -> (Outcome, Option<u16>) {
    match e.raw_response().map(|r| r.status_code()) {
        Some(s) if (400..500).contains(&s) => (Outcome::Fail, Some(s)),
        s => (Outcome::Unknown, s),
    }
}

/// A short description of a failed SDK call: `"<status> <code>"`, `timeout`, `dispatch` (connection),
/// `response` (unreadable answer) or `construction`.
pub fn error_detail<E: ProvideErrorMetadata, R: HttpStatus>(e: &SdkError<E, R>) -> String {
    match e {
        SdkError::ServiceError(_) => format!(
            "{} {}",
            e.raw_response().map_or(0, |r| r.status_code()),
            e.code().unwrap_or("?")
        ),
        SdkError::TimeoutError(_) => "timeout".to_string(),
        SdkError::DispatchFailure(_) => "dispatch".to_string(),
        SdkError::ResponseError(_) => "response".to_string(),
        _ => "construction".to_string(),
    }
}

/// The status of a raw response (to classify SDK errors).
pub trait HttpStatus {
    fn status_code(&self) -> u16;
}

impl HttpStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Put,
    Get,
    Delete,
    List,
    Copy,
    Mpu,
}

struct Worker {
    clients: Vec<Client>,
    bucket: String,
    cfg: WorkloadConfig,
    rec: Recorder,
}

/// Run `cfg.clients` clients against `endpoints` (`ip:port`) until `cfg.ops` operations were started,
/// `cfg.duration` passed, or `stop` is set (whichever first; at least one should be given). Returns the
/// number of operations started.
pub async fn run_workload(
    endpoints: &[String],
    bucket: &str,
    creds: (&str, &str),
    cfg: &WorkloadConfig,
    rec: &Recorder,
    stop: Option<Arc<AtomicBool>>,
) -> u64 {
    let started = Arc::new(AtomicU64::new(0));
    let deadline = cfg.duration.map(|d| Instant::now() + d);
    let limit = match (cfg.ops, cfg.duration, &stop) {
        (None, None, None) => Some(100),
        (o, _, _) => o,
    };
    let mut tasks = vec![];
    for c in 0..cfg.clients {
        let w = Worker {
            clients: endpoints
                .iter()
                .map(|e| client(e, creds, cfg.op_timeout))
                .collect(),
            bucket: bucket.to_string(),
            cfg: cfg.clone(),
            rec: rec.clone(),
        };
        let (started, stop) = (started.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(
                w.cfg
                    .seed
                    .wrapping_mul(0x2545_F491_4F6C_DD1D)
                    .wrapping_add(c as u64),
            );
            let mut n = 0usize;
            loop {
                if stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst))
                    || deadline.is_some_and(|d| Instant::now() >= d)
                {
                    break;
                }
                let nth = started.fetch_add(1, Ordering::SeqCst);
                if limit.is_some_and(|l| nth >= l) {
                    break;
                }
                let cl = &w.clients[(c + n) % w.clients.len()];
                n += 1;
                w.one(cl, &mut rng).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("workload client panicked");
    }
    started
        .load(Ordering::SeqCst)
        .min(limit.unwrap_or(u64::MAX))
}

impl Worker {
    fn pick(&self, rng: &mut StdRng) -> Op {
        let c = &self.cfg;
        let table = [
            (c.w_put, Op::Put),
            (c.w_get, Op::Get),
            (c.w_delete, Op::Delete),
            (c.w_list, Op::List),
            (c.w_copy, Op::Copy),
            (c.w_mpu, Op::Mpu),
        ];
        let total: u32 = table.iter().map(|t| t.0).sum();
        let mut x = rng.gen_range(0..total.max(1));
        for (w, op) in table {
            if x < w {
                return op;
            }
            x -= w;
        }
        Op::Get
    }

    fn size(&self, rng: &mut StdRng) -> usize {
        let r: f64 = rng.r#gen();
        let s = if r < 0.04 {
            0
        } else if r < 0.6 {
            rng.gen_range(1..=4096)
        } else if r < 0.9 {
            rng.gen_range(4097..=256 * 1024)
        } else {
            rng.gen_range(MIB + 1..=(3 * MIB).max(MIB + 2))
        };
        s.min(self.cfg.max_size)
    }

    async fn one(&self, cl: &Client, rng: &mut StdRng) {
        let key = self.cfg.key(rng.gen_range(0..self.cfg.keys));
        match self.pick(rng) {
            Op::Put => {
                let size = self.size(rng);
                put(cl, &self.bucket, &key, size, &self.rec).await;
            }
            Op::Get => {
                get(cl, &self.bucket, &key, ReadKind::Get, &self.rec).await;
            }
            Op::Delete => {
                delete(cl, &self.bucket, &key, &self.rec).await;
            }
            Op::List => {
                list(cl, &self.bucket, &self.cfg.prefix, false, &self.rec).await;
            }
            Op::Copy => {
                // Another key (a copy onto itself without a metadata change is an InvalidRequest).
                let src = loop {
                    let k = self.cfg.key(rng.gen_range(0..self.cfg.keys));
                    if k != key || self.cfg.keys < 2 {
                        break k;
                    }
                };
                copy(cl, &self.bucket, &src, &key, &self.rec).await;
            }
            Op::Mpu => {
                let parts = rng.gen_range(2..=3);
                let last = rng.gen_range(1..=64 * 1024);
                multipart(
                    cl,
                    &self.bucket,
                    &key,
                    parts,
                    self.cfg.mpu_part_size,
                    last,
                    &self.rec,
                )
                .await;
            }
        }
    }
}

/// PutObject of a fresh write of `size` bytes; returns its id and outcome.
pub async fn put(
    cl: &Client,
    bucket: &str,
    key: &str,
    size: usize,
    rec: &Recorder,
) -> (WriteId, Outcome) {
    let id = rec.new_write_id();
    let b = body(id, key, 0, size);
    rec.content(
        id,
        Content {
            key: key.to_string(),
            size: size as u64,
            sha256: sha256_of(&[&b]),
            etag: md5_hex(&b),
        },
    );
    let invoke = rec.now();
    let r = cl
        .put_object()
        .bucket(bucket)
        .key(key)
        .metadata("w", id.to_string())
        .body(ByteStream::from(b))
        .send()
        .await;
    let outcome = match &r {
        Ok(_) => Outcome::Ok,
        Err(e) => rec.error_via("put", Some(cl), e),
    };
    rec.count("put", outcome);
    rec.write(WriteRec {
        key: key.to_string(),
        kind: WriteKind::Put,
        value: WriteValue::Id(id),
        invoke,
        complete: rec.now(),
        outcome,
    });
    (id, outcome)
}

/// DeleteObject.
pub async fn delete(cl: &Client, bucket: &str, key: &str, rec: &Recorder) -> Outcome {
    let invoke = rec.now();
    let r = cl.delete_object().bucket(bucket).key(key).send().await;
    let outcome = match &r {
        Ok(_) => Outcome::Ok,
        Err(e) => rec.error_via("delete", Some(cl), e),
    };
    rec.count("delete", outcome);
    rec.write(WriteRec {
        key: key.to_string(),
        kind: WriteKind::Delete,
        value: WriteValue::Absent,
        invoke,
        complete: rec.now(),
        outcome,
    });
    outcome
}

/// GetObject, whole body; recorded as a read of `kind` unless the outcome is unknown (the returned
/// outcome then says so). `Fail` here means a 4xx other than 404.
pub async fn get(cl: &Client, bucket: &str, key: &str, kind: ReadKind, rec: &Recorder) -> Outcome {
    let op = if kind == ReadKind::Final {
        "final-get"
    } else {
        "get"
    };
    let invoke = rec.now();
    let r = cl.get_object().bucket(bucket).key(key).send().await;
    let seen = match r {
        Ok(resp) => {
            let id = resp
                .metadata()
                .and_then(|m| m.get("w"))
                .and_then(|v| v.parse().ok());
            let etag = resp.e_tag().unwrap_or("").trim_matches('"').to_string();
            // The operation timeout does not cover the body: bound it too.
            let collected =
                tokio::time::timeout(Duration::from_secs(30), resp.body.collect()).await;
            match collected {
                Ok(Ok(b)) => {
                    let b = b.into_bytes();
                    Seen::Object {
                        id: Some(id.unwrap_or(0)),
                        etag,
                        size: Some(b.len() as u64),
                        sha256: Some(sha256_of(&[&b])),
                    }
                }
                _ => {
                    rec.count(op, Outcome::Unknown);
                    return Outcome::Unknown;
                }
            }
        }
        Err(e) => {
            if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
                Seen::Absent
            } else {
                let outcome = rec.error_via(op, Some(cl), &e);
                rec.count(op, outcome);
                return outcome;
            }
        }
    };
    rec.count(op, Outcome::Ok);
    rec.read(ReadRec {
        key: key.to_string(),
        kind,
        invoke,
        complete: rec.now(),
        seen,
    });
    Outcome::Ok
}

/// ListObjectsV2 of `prefix` (every page).
pub async fn list(
    cl: &Client,
    bucket: &str,
    prefix: &str,
    final_read: bool,
    rec: &Recorder,
) -> Outcome {
    let op = if final_read { "final-list" } else { "list" };
    let invoke = rec.now();
    let mut entries = vec![];
    let mut token: Option<String> = None;
    loop {
        let r = cl
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token.clone())
            .send()
            .await;
        match r {
            Ok(page) => {
                for o in page.contents() {
                    entries.push((
                        o.key().unwrap_or("").to_string(),
                        o.e_tag().unwrap_or("").trim_matches('"').to_string(),
                        o.size().unwrap_or(-1) as u64,
                    ));
                }
                token = page.next_continuation_token().map(str::to_string);
                if !page.is_truncated().unwrap_or(false) || token.is_none() {
                    break;
                }
            }
            Err(e) => {
                let outcome = rec.error_via(op, Some(cl), &e);
                rec.count(op, outcome);
                return outcome;
            }
        }
    }
    rec.count(op, Outcome::Ok);
    rec.list(ListRec {
        prefix: prefix.to_string(),
        invoke,
        complete: rec.now(),
        entries,
        final_read,
    });
    Outcome::Ok
}

/// CopyObject `src` → `dst` (same bucket, metadata copied).
pub async fn copy(cl: &Client, bucket: &str, src: &str, dst: &str, rec: &Recorder) -> Outcome {
    let invoke = rec.now();
    let r = cl
        .copy_object()
        .bucket(bucket)
        .key(dst)
        .copy_source(format!("{bucket}/{src}"))
        .send()
        .await;
    let complete = rec.now();
    let (outcome, etag) = match &r {
        Ok(o) => (
            Outcome::Ok,
            o.copy_object_result()
                .and_then(|c| c.e_tag())
                .map(|e| e.trim_matches('"').to_string()),
        ),
        Err(e) => {
            let o = rec.error_via("copy", Some(cl), e);
            if e.code() == Some("NoSuchKey") {
                // NoSuchKey: the source was absent (a read of it).
                rec.read(ReadRec {
                    key: src.to_string(),
                    kind: ReadKind::CopySource,
                    invoke,
                    complete,
                    seen: Seen::Absent,
                });
            }
            (o, None)
        }
    };
    rec.count("copy", outcome);
    if let Some(e) = &etag {
        rec.read(ReadRec {
            key: src.to_string(),
            kind: ReadKind::CopySource,
            invoke,
            complete,
            seen: Seen::Object {
                id: None,
                etag: e.clone(),
                size: None,
                sha256: None,
            },
        });
    }
    if outcome == Outcome::Ok && etag.is_none() {
        rec.violation(format!(
            "copy {src} -> {dst} [{invoke}..{complete}]: acknowledged without an ETag"
        ));
    }
    rec.write(WriteRec {
        key: dst.to_string(),
        kind: WriteKind::Copy,
        value: WriteValue::CopyOf {
            src: src.to_string(),
            etag,
        },
        invoke,
        complete,
        outcome,
    });
    outcome
}

/// The stages of a multipart write, for scenarios that interfere with one.
#[derive(Debug)]
pub struct Mpu {
    pub id: WriteId,
    pub key: String,
    pub upload_id: String,
    pub parts: Vec<Bytes>,
    pub etags: Vec<String>,
}

/// CreateMultipartUpload of a fresh write of `parts` parts (`part_size` bytes each, the last `last`),
/// content registered. `Err` = the outcome of a failed create.
pub async fn mpu_create(
    cl: &Client,
    bucket: &str,
    key: &str,
    parts: usize,
    part_size: usize,
    last: usize,
    rec: &Recorder,
) -> Result<Mpu, Outcome> {
    let id = rec.new_write_id();
    let bodies: Vec<Bytes> = (1..=parts)
        .map(|n| body(id, key, n as u32, if n == parts { last } else { part_size }))
        .collect();
    let refs: Vec<&[u8]> = bodies.iter().map(|b| &b[..]).collect();
    rec.content(
        id,
        Content {
            key: key.to_string(),
            size: refs.iter().map(|b| b.len() as u64).sum(),
            sha256: sha256_of(&refs),
            etag: multipart_etag(&refs),
        },
    );
    let r = cl
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .metadata("w", id.to_string())
        .send()
        .await;
    match r {
        Ok(o) => {
            rec.count("mpu-create", Outcome::Ok);
            Ok(Mpu {
                id,
                key: key.to_string(),
                upload_id: o.upload_id().unwrap_or("").to_string(),
                parts: bodies,
                etags: vec![],
            })
        }
        Err(e) => {
            let o = rec.error_via("mpu-create", Some(cl), &e);
            rec.count("mpu-create", o);
            Err(o)
        }
    }
}

/// UploadPart of part `n` (1-based).
pub async fn mpu_part(cl: &Client, bucket: &str, m: &mut Mpu, n: usize, rec: &Recorder) -> Outcome {
    let r = cl
        .upload_part()
        .bucket(bucket)
        .key(&m.key)
        .upload_id(&m.upload_id)
        .part_number(n as i32)
        .body(ByteStream::from(m.parts[n - 1].clone()))
        .send()
        .await;
    let o = match r {
        Ok(p) => {
            m.etags.resize(m.etags.len().max(n), String::new());
            m.etags[n - 1] = p.e_tag().unwrap_or("").to_string();
            Outcome::Ok
        }
        Err(e) => rec.error_via("mpu-part", Some(cl), &e),
    };
    rec.count("mpu-part", o);
    o
}

/// CompleteMultipartUpload: the write is recorded (interval of the complete call).
pub async fn mpu_complete(cl: &Client, bucket: &str, m: &Mpu, rec: &Recorder) -> Outcome {
    let parts: Vec<CompletedPart> = m
        .etags
        .iter()
        .enumerate()
        .map(|(i, e)| {
            CompletedPart::builder()
                .part_number(i as i32 + 1)
                .e_tag(e)
                .build()
        })
        .collect();
    let invoke = rec.now();
    let r = cl
        .complete_multipart_upload()
        .bucket(bucket)
        .key(&m.key)
        .upload_id(&m.upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await;
    let outcome = match &r {
        Ok(_) => Outcome::Ok,
        Err(e) => rec.error_via("mpu-complete", Some(cl), e),
    };
    rec.count("mpu-complete", outcome);
    rec.write(WriteRec {
        key: m.key.clone(),
        kind: WriteKind::Mpu,
        value: WriteValue::Id(m.id),
        invoke,
        complete: rec.now(),
        outcome,
    });
    outcome
}

/// Record a multipart write that was never completed (its value must never be seen).
pub fn mpu_abandoned(m: &Mpu, rec: &Recorder) {
    let t = rec.now();
    rec.write(WriteRec {
        key: m.key.clone(),
        kind: WriteKind::Mpu,
        value: WriteValue::Id(m.id),
        invoke: t,
        complete: t,
        outcome: Outcome::Fail,
    });
}

/// AbortMultipartUpload.
pub async fn mpu_abort(cl: &Client, bucket: &str, m: &Mpu, rec: &Recorder) -> Outcome {
    let r = cl
        .abort_multipart_upload()
        .bucket(bucket)
        .key(&m.key)
        .upload_id(&m.upload_id)
        .send()
        .await;
    let o = match &r {
        Ok(_) => Outcome::Ok,
        Err(e) => rec.error_via("mpu-abort", Some(cl), e),
    };
    rec.count("mpu-abort", o);
    o
}

/// A whole multipart write: create, parts, complete; on a failed part, abort (best effort) and record
/// the write as never completed.
pub async fn multipart(
    cl: &Client,
    bucket: &str,
    key: &str,
    parts: usize,
    part_size: usize,
    last: usize,
    rec: &Recorder,
) -> Outcome {
    let Ok(mut m) = mpu_create(cl, bucket, key, parts, part_size, last, rec).await else {
        return Outcome::Fail;
    };
    for n in 1..=parts {
        if mpu_part(cl, bucket, &mut m, n, rec).await != Outcome::Ok {
            mpu_abandoned(&m, rec);
            mpu_abort(cl, bucket, &m, rec).await;
            return Outcome::Fail;
        }
    }
    mpu_complete(cl, bucket, &m, rec).await
}

/// After the faults healed: read every key of `cfg` (GET) and list the prefix through `endpoint`,
/// retrying each until the cluster answers (up to `timeout` in all); a key never answered is a
/// violation. Returns the number of final reads recorded.
pub async fn final_reads(
    endpoint: &str,
    bucket: &str,
    creds: (&str, &str),
    cfg: &WorkloadConfig,
    rec: &Recorder,
    timeout: Duration,
) -> usize {
    let cl = client(endpoint, creds, cfg.op_timeout);
    let deadline = Instant::now() + timeout;
    let mut n = 0;
    for i in 0..cfg.keys {
        let key = cfg.key(i);
        loop {
            if get(&cl, bucket, &key, ReadKind::Final, rec).await == Outcome::Ok {
                n += 1;
                break;
            }
            if Instant::now() > deadline {
                rec.violation(format!(
                    "final read of {key} through {endpoint}: no answer within {timeout:?}"
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    loop {
        if list(&cl, bucket, &cfg.prefix, true, rec).await == Outcome::Ok {
            n += 1;
            break;
        }
        if Instant::now() > deadline {
            rec.violation(format!(
                "final list of {} through {endpoint}: no answer within {timeout:?}",
                cfg.prefix
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    n
}

// ---------------------------------------------------------------------------------------------------
// The checker's own tests: hand-made histories it must reject (and some it must accept).

#[cfg(test)]
mod tests {
    use super::*;

    fn content(rec: &Recorder, id: WriteId, key: &str, size: usize) -> Content {
        let b = body(id, key, 0, size);
        let c = Content {
            key: key.to_string(),
            size: size as u64,
            sha256: sha256_of(&[&b]),
            etag: md5_hex(&b),
        };
        rec.content(id, c.clone());
        c
    }

    fn w(rec: &Recorder, key: &str, value: WriteValue, t: (u64, u64), outcome: Outcome) {
        let kind = match value {
            WriteValue::Absent => WriteKind::Delete,
            WriteValue::Id(_) => WriteKind::Put,
            WriteValue::CopyOf { .. } => WriteKind::Copy,
        };
        rec.write(WriteRec {
            key: key.to_string(),
            kind,
            value,
            invoke: t.0,
            complete: t.1,
            outcome,
        });
        rec.count("put", outcome);
    }

    fn put_w(rec: &Recorder, key: &str, id: WriteId, t: (u64, u64), outcome: Outcome) {
        content(rec, id, key, 100 + id as usize);
        w(rec, key, WriteValue::Id(id), t, outcome);
    }

    fn get_r(rec: &Recorder, key: &str, id: Option<WriteId>, t: (u64, u64)) {
        let seen = match id {
            None => Seen::Absent,
            Some(id) => {
                let c = rec.lock().contents[&id].clone();
                Seen::Object {
                    id: Some(id),
                    etag: format!("\"{}\"", c.etag),
                    size: Some(c.size),
                    sha256: Some(c.sha256),
                }
            }
        };
        rec.read(ReadRec {
            key: key.to_string(),
            kind: ReadKind::Get,
            invoke: t.0,
            complete: t.1,
            seen,
        });
    }

    fn violations(rec: &Recorder) -> Vec<String> {
        let r = check(rec);
        assert!(r.reads_checked > 0);
        r.violations
    }

    #[test]
    fn a_fresh_read_passes_and_a_stale_read_is_caught() {
        let rec = Recorder::new();
        put_w(&rec, "k", 1, (10, 20), Outcome::Ok);
        put_w(&rec, "k", 2, (30, 40), Outcome::Ok);
        get_r(&rec, "k", Some(2), (50, 60));
        get_r(&rec, "k", None, (1, 5));
        assert!(violations(&rec).is_empty(), "{:?}", violations(&rec));
        get_r(&rec, "k", Some(1), (50, 60));
        let v = violations(&rec);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("stale"), "{v:?}");
        // Absent after an acknowledged write: a lost write.
        get_r(&rec, "k", None, (70, 80));
        assert_eq!(violations(&rec).len(), 2);
    }

    #[test]
    fn a_concurrent_write_may_be_read_either_way() {
        let rec = Recorder::new();
        put_w(&rec, "k", 1, (10, 20), Outcome::Ok);
        put_w(&rec, "k", 2, (15, 40), Outcome::Ok); // overlaps 1
        get_r(&rec, "k", Some(1), (50, 60));
        get_r(&rec, "k", Some(2), (50, 60));
        // A read overlapping a write may see the old or the new value.
        put_w(&rec, "k", 3, (70, 90), Outcome::Ok);
        get_r(&rec, "k", Some(2), (80, 95));
        get_r(&rec, "k", Some(3), (80, 95));
        assert!(violations(&rec).is_empty(), "{:?}", violations(&rec));
        // Not a value invoked after the read completed.
        put_w(&rec, "k", 4, (200, 210), Outcome::Ok);
        get_r(&rec, "k", Some(4), (100, 150));
        let v = violations(&rec);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("no write of this value"), "{v:?}");
    }

    #[test]
    fn a_resurrection_after_a_delete_is_caught() {
        let rec = Recorder::new();
        put_w(&rec, "k", 1, (10, 20), Outcome::Ok);
        w(&rec, "k", WriteValue::Absent, (30, 40), Outcome::Ok);
        get_r(&rec, "k", None, (50, 60));
        assert!(violations(&rec).is_empty());
        get_r(&rec, "k", Some(1), (70, 80));
        let v = violations(&rec);
        assert_eq!(v.len(), 1, "{v:?}");
        // In a listing too, and in the final reads.
        let c = rec.lock().contents[&1].clone();
        rec.list(ListRec {
            prefix: "k".to_string(),
            invoke: 90,
            complete: 95,
            entries: vec![("k".to_string(), c.etag.clone(), c.size)],
            final_read: true,
        });
        assert_eq!(violations(&rec).len(), 2);
    }

    #[test]
    fn a_listing_without_an_acknowledged_key_is_caught() {
        let rec = Recorder::new();
        put_w(&rec, "p/a", 1, (10, 20), Outcome::Ok);
        put_w(&rec, "p/b", 2, (10, 20), Outcome::Unknown);
        let c = rec.lock().contents[&1].clone();
        // Listed while being written: either way.
        for entries in [vec![], vec![("p/a".to_string(), c.etag.clone(), c.size)]] {
            rec.list(ListRec {
                prefix: "p/".to_string(),
                invoke: 15,
                complete: 25,
                entries,
                final_read: false,
            });
        }
        assert!(violations(&rec).is_empty(), "{:?}", violations(&rec));
        // After it: p/a must be there (p/b, of unknown outcome, may or may not).
        rec.list(ListRec {
            prefix: "p/".to_string(),
            invoke: 30,
            complete: 35,
            entries: vec![],
            final_read: false,
        });
        let v = violations(&rec);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("key p/a") && v[0].contains("stale"), "{v:?}");
    }

    #[test]
    fn a_partial_or_mixed_body_is_caught() {
        let rec = Recorder::new();
        put_w(&rec, "k", 1, (10, 20), Outcome::Ok);
        let c = rec.lock().contents[&1].clone();
        let b = body(1, "k", 0, c.size as usize);
        // Truncated body, right metadata and ETag.
        rec.read(ReadRec {
            key: "k".to_string(),
            kind: ReadKind::Get,
            invoke: 30,
            complete: 40,
            seen: Seen::Object {
                id: Some(1),
                etag: c.etag.clone(),
                size: Some(c.size - 1),
                sha256: Some(sha256_of(&[&b[..b.len() - 1]])),
            },
        });
        // Same size, one byte different.
        let mut flipped = b.to_vec();
        flipped[50] ^= 1;
        rec.read(ReadRec {
            key: "k".to_string(),
            kind: ReadKind::Get,
            invoke: 30,
            complete: 40,
            seen: Seen::Object {
                id: Some(1),
                etag: c.etag.clone(),
                size: Some(c.size),
                sha256: Some(sha256_of(&[&flipped])),
            },
        });
        // A listing with a size that no write has.
        rec.list(ListRec {
            prefix: "k".to_string(),
            invoke: 30,
            complete: 40,
            entries: vec![("k".to_string(), c.etag.clone(), c.size + 5)],
            final_read: false,
        });
        let v = violations(&rec);
        assert_eq!(v.len(), 3, "{v:?}");
        assert!(v.iter().take(2).all(|v| v.contains("partial")), "{v:?}");
    }

    #[test]
    fn unknown_writes_may_appear_late_and_failed_ones_never() {
        let rec = Recorder::new();
        put_w(&rec, "k", 1, (10, 20), Outcome::Unknown);
        put_w(&rec, "k", 2, (30, 40), Outcome::Ok);
        // The unknown write may land after 2 (a slow replica), and never makes 2 stale.
        get_r(&rec, "k", Some(1), (50, 60));
        get_r(&rec, "k", Some(2), (50, 60));
        assert!(violations(&rec).is_empty(), "{:?}", violations(&rec));
        put_w(&rec, "k", 3, (70, 80), Outcome::Fail);
        get_r(&rec, "k", Some(3), (90, 100));
        let v = violations(&rec);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("FAILED"), "{v:?}");
    }

    #[test]
    fn copies_carry_the_source_value() {
        let rec = Recorder::new();
        put_w(&rec, "src", 1, (10, 20), Outcome::Ok);
        let e1 = rec.lock().contents[&1].etag.clone();
        w(
            &rec,
            "dst",
            WriteValue::CopyOf {
                src: "src".to_string(),
                etag: Some(e1.clone()),
            },
            (30, 40),
            Outcome::Ok,
        );
        get_r(&rec, "dst", Some(1), (50, 60));
        assert!(violations(&rec).is_empty(), "{:?}", violations(&rec));
        // A value of the source that no copy produced is not a value of the destination.
        put_w(&rec, "src", 2, (70, 80), Outcome::Ok);
        get_r(&rec, "dst", Some(2), (90, 100));
        assert_eq!(violations(&rec).len(), 1);
        // A copy of unknown outcome may have copied anything, later.
        w(
            &rec,
            "dst",
            WriteValue::CopyOf {
                src: "src".to_string(),
                etag: None,
            },
            (85, 95),
            Outcome::Unknown,
        );
        assert!(violations(&rec).is_empty(), "{:?}", violations(&rec));
    }

    #[test]
    fn multipart_etags_and_bodies_are_deterministic() {
        let a = body(7, "k", 1, 5000);
        let b = body(7, "k", 2, 100);
        assert_eq!(a, body(7, "k", 1, 5000));
        assert_ne!(a, body(8, "k", 1, 5000));
        assert!(a.starts_with(b"grenier-history w=7 key=k\n"));
        let e = multipart_etag(&[&a, &b]);
        assert!(e.ends_with("-2"), "{e}");
        assert_eq!(e.len(), 34);
        assert_eq!(body(1, "k", 0, 0).len(), 0);
        assert_eq!(body(1, "k", 0, 3).len(), 3);
    }
}
