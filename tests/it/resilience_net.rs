//! Resilience, part 2: network partitions between zones (network namespaces, see `netns.rs`) and full
//! disks (small tmpfs mounts), under a seeded workload of S3 clients.
//!
//! Every scenario prints its seed (`GRENIER_SEED=<n>` replays it: the fault schedule and every client's
//! choice of keys, sizes and operations come from it). Short forms (the default) last well under a
//! minute each; `GRENIER_RESILIENCE=long` runs the long forms (a 60 s partition, at least 10,000 ops).
//!
//! The workload: writers, each bound to one node's S3 endpoint and owning its own keys (so each key's
//! history is sequential), PUT (small inline bodies and multi-block ones), GET and DELETE at random.
//! Bodies carry their id and length and a pattern derived from the id, so a read names the write it
//! returns and a damaged body is seen. Per key, a read may return the last acknowledged write (or
//! "absent" after an acknowledged DELETE or before any write) or a write attempted since that failed
//! or timed out (it may or may not have landed); anything else — another value, a damaged body, an
//! unexpected 4xx — is a wrong answer, and every scenario asserts there is none.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::harness::*;
use crate::history;
use crate::netns::*;

/// The scenario's seed: `GRENIER_SEED` or a fresh one; printed either way.
pub fn seed(test: &str) -> u64 {
    let seed = match std::env::var("GRENIER_SEED") {
        Ok(s) => s.trim().parse().expect("GRENIER_SEED must be a u64"),
        Err(_) => rand::random(),
    };
    println!("{test}: seed {seed} (replay: GRENIER_SEED={seed} cargo test --test it {test})");
    eprintln!("{test}: seed {seed}");
    seed
}

pub fn long_form() -> bool {
    std::env::var("GRENIER_RESILIENCE").is_ok_and(|v| v == "long")
}

// ---------------------------------------------------------------------------------------------------
// Bodies that name themselves.

/// The body of write `id`: id, length, then `len` bytes of a pattern derived from the id.
pub fn body(id: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 12);
    v.extend(id.to_le_bytes());
    v.extend((len as u32).to_le_bytes());
    let mut x = id ^ 0x9E37_79B9_7F4A_7C15;
    for _ in 0..len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(x as u8);
    }
    v
}

/// The id of a body made by [`body`], or why it is not one.
pub fn body_id(b: &[u8]) -> Result<u64, String> {
    if b.len() < 12 {
        return Err(format!("body of {} bytes, too short", b.len()));
    }
    let id = u64::from_le_bytes(b[..8].try_into().unwrap());
    let len = u32::from_le_bytes(b[8..12].try_into().unwrap()) as usize;
    if b.len() != len + 12 || body(id, len) != b {
        return Err(format!(
            "damaged body: claims write {id:#x} of {len} bytes, has {} bytes",
            b.len() - 12
        ));
    }
    Ok(id)
}

// ---------------------------------------------------------------------------------------------------
// Clients and outcomes.

/// An SDK client of `authority` without retries (each op is one attempt, its outcome is what the server
/// did) and with short timeouts (a partitioned node's answer may never come).
pub fn client(authority: &str, key: &(String, String), op_timeout: Duration) -> Client {
    use aws_sdk_s3::config::retry::RetryConfig;
    use aws_sdk_s3::config::timeout::TimeoutConfig;
    let conf = aws_sdk_s3::Config::builder()
        .http_client(sdk_http())
        .behavior_version_latest()
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_timeout(op_timeout)
                .build(),
        )
        .region(aws_sdk_s3::config::Region::new("garage"))
        .endpoint_url(format!("http://{authority}"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            &key.0, &key.1, None, None, "test",
        ))
        .force_path_style(true)
        .build();
    Client::from_conf(conf)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done; for a GET, what it read (None: absent).
    Ok(Option<u64>),
    /// A clean refusal: a 5xx S3 error (status, code).
    Failed(u16, String),
    /// No answer (timeout, connection error): the op may or may not have happened.
    Unknown(String),
    /// A wrong answer (detail).
    Wrong(String),
}

impl Outcome {
    fn of_err<E: aws_sdk_s3::error::ProvideErrorMetadata + std::fmt::Debug>(
        e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
        not_found_ok: bool,
    ) -> Outcome {
        match &e {
            SdkError::ServiceError(se) => {
                let status = se.raw().status().as_u16();
                let code = se.err().code().unwrap_or("").to_string();
                if not_found_ok && status == 404 && code == "NoSuchKey" {
                    Outcome::Ok(None)
                } else if status >= 500 && !code.is_empty() {
                    Outcome::Failed(status, code)
                } else {
                    Outcome::Wrong(format!("status {status} code {code:?}: {e:?}"))
                }
            }
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => {
                Outcome::Unknown(format!("{e:?}").chars().take(120).collect())
            }
            // A response that did not parse: an error answer without its S3 XML, a cut body.
            SdkError::ResponseError(_) => {
                Outcome::Unknown(format!("{e:?}").chars().take(200).collect())
            }
            _ => Outcome::Wrong(format!("{e:?}")),
        }
    }
}

pub async fn put(c: &Client, bucket: &str, key: &str, b: Vec<u8>) -> Outcome {
    match c
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(b))
        .send()
        .await
    {
        Ok(_) => Outcome::Ok(None),
        Err(e) => Outcome::of_err(e, false),
    }
}

pub async fn get(c: &Client, bucket: &str, key: &str) -> Outcome {
    match c.get_object().bucket(bucket).key(key).send().await {
        Ok(r) => match r.body.collect().await {
            Ok(b) => match body_id(&b.into_bytes()) {
                Ok(id) => Outcome::Ok(Some(id)),
                Err(why) => Outcome::Wrong(why),
            },
            // The body stream broke after a 200: no answer, not a wrong one (the client sees the cut).
            Err(e) => Outcome::Unknown(format!("body: {e}")),
        },
        Err(e) => Outcome::of_err(e, true),
    }
}

pub async fn delete(c: &Client, bucket: &str, key: &str) -> Outcome {
    match c.delete_object().bucket(bucket).key(key).send().await {
        Ok(_) => Outcome::Ok(None),
        Err(e) => Outcome::of_err(e, false),
    }
}

// ---------------------------------------------------------------------------------------------------
// The workload and its history.

/// What a key may read as: the last acknowledged state, or one of the writes attempted since that
/// did not acknowledge.
#[derive(Clone, Debug, Default)]
pub struct KeyState {
    pub acked: Option<u64>,
    pub maybe: Vec<Option<u64>>,
}

impl KeyState {
    pub fn allows(&self, read: Option<u64>) -> bool {
        read == self.acked || self.maybe.contains(&read)
    }
    /// A write (`Some(id)`) or delete (`None`) with its outcome.
    fn record(&mut self, v: Option<u64>, o: &Outcome) {
        match o {
            Outcome::Ok(_) => {
                self.acked = v;
                self.maybe.clear();
            }
            _ => self.maybe.push(v),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Rec {
    pub node: usize,
    pub op: &'static str,
    pub key: String,
    pub start: Instant,
    pub end: Instant,
    pub outcome: Outcome,
}

pub struct WorkloadCfg {
    pub bucket: String,
    /// S3 endpoint of each node.
    pub endpoints: Vec<String>,
    pub key: (String, String),
    pub writers_per_node: usize,
    pub keys_per_writer: usize,
    /// Chance that a PUT's body spans several blocks (the rest are inline-sized).
    pub big_ratio: f64,
    pub op_timeout: Duration,
}

/// A running workload: writers on a runtime, a shared history.
pub struct Workload {
    pub rt: tokio::runtime::Runtime,
    pub stop: Arc<AtomicBool>,
    pub history: Arc<Mutex<Vec<Rec>>>,
    /// Per key: its state as its writer knows it (filled when the writers stop).
    pub keys: Arc<Mutex<BTreeMap<String, KeyState>>>,
    handles: Vec<tokio::task::JoinHandle<()>>,
    pub cfg: Arc<WorkloadCfg>,
    pub events: Mutex<Vec<(Instant, String)>>,
}

impl Workload {
    pub fn start(cfg: WorkloadCfg, seed: u64) -> Workload {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let cfg = Arc::new(cfg);
        let stop = Arc::new(AtomicBool::new(false));
        let history = Arc::new(Mutex::new(vec![]));
        let keys = Arc::new(Mutex::new(BTreeMap::new()));
        let mut handles = vec![];
        for node in 0..cfg.endpoints.len() {
            for w in 0..cfg.writers_per_node {
                let writer = (node * cfg.writers_per_node + w) as u64;
                let (cfg, stop, history, keys) =
                    (cfg.clone(), stop.clone(), history.clone(), keys.clone());
                let mut rng = StdRng::seed_from_u64(seed ^ (writer + 1).wrapping_mul(0x9E37_79B9));
                handles.push(rt.spawn(async move {
                    let c = client(&cfg.endpoints[node], &cfg.key, cfg.op_timeout);
                    let names: Vec<String> = (0..cfg.keys_per_writer)
                        .map(|k| format!("n{node}w{writer}/k{k}"))
                        .collect();
                    let mut mine: Vec<KeyState> = vec![KeyState::default(); names.len()];
                    let mut seq = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let k = rng.gen_range(0..names.len());
                        let name = &names[k];
                        let roll: f64 = rng.r#gen();
                        let start = Instant::now();
                        let (op, outcome) = if roll < 0.45 {
                            seq += 1;
                            let id = (writer << 40) | seq;
                            let len = if rng.gen_bool(cfg.big_ratio) {
                                rng.gen_range(100_000..600_000)
                            } else {
                                rng.gen_range(0..2000)
                            };
                            let o = put(&c, &cfg.bucket, name, body(id, len)).await;
                            mine[k].record(Some(id), &o);
                            ("put", o)
                        } else if roll < 0.85 {
                            let mut o = get(&c, &cfg.bucket, name).await;
                            if let Outcome::Ok(read) = o
                                && !mine[k].allows(read)
                            {
                                o = Outcome::Wrong(format!(
                                    "read {read:x?}, allowed {:x?} or one of {:x?}",
                                    mine[k].acked, mine[k].maybe
                                ));
                            }
                            ("get", o)
                        } else {
                            let o = delete(&c, &cfg.bucket, name).await;
                            mine[k].record(None, &o);
                            ("delete", o)
                        };
                        history.lock().unwrap().push(Rec {
                            node,
                            op,
                            key: name.clone(),
                            start,
                            end: Instant::now(),
                            outcome,
                        });
                    }
                    let mut keys = keys.lock().unwrap();
                    for (n, s) in names.into_iter().zip(mine) {
                        keys.insert(n, s);
                    }
                }));
            }
        }
        Workload {
            rt,
            stop,
            history,
            keys,
            handles,
            cfg,
            events: Mutex::new(vec![]),
        }
    }

    pub fn event(&self, what: &str) -> Instant {
        let now = Instant::now();
        let t0 = self.events.lock().unwrap().first().map_or(now, |e| e.0);
        println!("[+{:.1}s] {what}", (now - t0).as_secs_f64());
        self.events.lock().unwrap().push((now, what.to_string()));
        now
    }

    pub fn ops(&self) -> usize {
        self.history.lock().unwrap().len()
    }

    /// Stop the writers and wait for their last ops.
    pub fn finish(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.handles.drain(..) {
            self.rt.block_on(h).unwrap();
        }
    }

    /// Wrong answers in the history.
    pub fn wrong(&self) -> Vec<String> {
        self.history
            .lock()
            .unwrap()
            .iter()
            .filter_map(|r| match &r.outcome {
                Outcome::Wrong(w) => Some(format!("{} {} via node {}: {w}", r.op, r.key, r.node)),
                _ => None,
            })
            .collect()
    }

    /// Counts of outcomes of the ops via `nodes` that started in `[from, to)`: (ok, failed, unknown).
    pub fn counts(&self, nodes: &[usize], from: Instant, to: Instant) -> (usize, usize, usize) {
        let h = self.history.lock().unwrap();
        let mut c = (0, 0, 0);
        for r in h
            .iter()
            .filter(|r| nodes.contains(&r.node) && r.start >= from && r.start < to)
        {
            match r.outcome {
                Outcome::Ok(_) => c.0 += 1,
                Outcome::Failed(..) => c.1 += 1,
                Outcome::Unknown(_) => c.2 += 1,
                Outcome::Wrong(_) => {}
            }
        }
        c
    }

    /// The ops via `nodes` that started in `[from, to)` and did not succeed, for messages.
    pub fn failures(&self, nodes: &[usize], from: Instant, to: Instant) -> Vec<String> {
        let h = self.history.lock().unwrap();
        h.iter()
            .filter(|r| nodes.contains(&r.node) && r.start >= from && r.start < to)
            .filter(|r| !matches!(r.outcome, Outcome::Ok(_)))
            .map(|r| {
                format!(
                    "{} {} via node {} at +{:?} ({:?}): {:?}",
                    r.op,
                    r.key,
                    r.node,
                    r.start - from,
                    r.end - r.start,
                    r.outcome
                )
            })
            .collect()
    }

    /// The ops via `nodes` that started after `from`, ended before `to` and succeeded.
    pub fn successes_within(&self, nodes: &[usize], from: Instant, to: Instant) -> Vec<String> {
        let h = self.history.lock().unwrap();
        h.iter()
            .filter(|r| nodes.contains(&r.node) && r.start >= from && r.end < to)
            .filter(|r| matches!(r.outcome, Outcome::Ok(_)))
            .map(|r| {
                format!(
                    "{} {} via node {} at +{:?}",
                    r.op,
                    r.key,
                    r.node,
                    r.start - from
                )
            })
            .collect()
    }

    /// After the faults healed: every key reads, through every node, as its final state allows, and all
    /// nodes agree (waits up to `timeout` for convergence). Returns the number of keys checked.
    pub fn check_final(&self, timeout: Duration) -> usize {
        let keys = self.keys.lock().unwrap().clone();
        let clients: Vec<Client> = self
            .cfg
            .endpoints
            .iter()
            .map(|e| client(e, &self.cfg.key, Duration::from_secs(10)))
            .collect();
        let bucket = self.cfg.bucket.clone();
        let deadline = Instant::now() + timeout;
        let mut pending: Vec<String> = keys.keys().cloned().collect();
        loop {
            let mut still = vec![];
            let mut last_problem = String::new();
            for k in &pending {
                let reads: Vec<Outcome> = clients
                    .iter()
                    .map(|c| self.rt.block_on(get(c, &bucket, k)))
                    .collect();
                for (i, r) in reads.iter().enumerate() {
                    if let Outcome::Wrong(w) = r {
                        panic!("final read of {k} via node {i}: wrong answer: {w}");
                    }
                    if let Outcome::Ok(v) = r
                        && !keys[k].allows(*v)
                    {
                        panic!(
                            "final read of {k} via node {i}: read {v:x?}, allowed {:x?} or one of {:x?}",
                            keys[k].acked, keys[k].maybe
                        );
                    }
                }
                let agree = reads.iter().all(|r| matches!(r, Outcome::Ok(_)))
                    && reads.windows(2).all(|w| w[0] == w[1]);
                if !agree {
                    last_problem = format!("{k}: {reads:?}");
                    still.push(k.clone());
                }
            }
            if still.is_empty() {
                return keys.len();
            }
            if Instant::now() > deadline {
                panic!(
                    "{} keys did not converge within {timeout:?}, e.g. {last_problem}",
                    still.len()
                );
            }
            pending = still;
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The listing of the bucket through every node names exactly the keys whose final state is
    /// present (once converged; call after [`Workload::check_final`]).
    pub fn check_listing(&self, timeout: Duration) {
        let keys = self.keys.lock().unwrap().clone();
        let bucket = self.cfg.bucket.clone();
        for (i, e) in self.cfg.endpoints.iter().enumerate() {
            let c = client(e, &self.cfg.key, Duration::from_secs(10));
            wait_for(
                &format!("listing via node {i} to match the final reads"),
                timeout,
                || {
                    let listed = self.rt.block_on(list_all(&c, &bucket)).ok()?;
                    let present: Vec<String> = self.rt.block_on(async {
                        let mut v = vec![];
                        for k in keys.keys() {
                            if let Outcome::Ok(Some(_)) = get(&c, &bucket, k).await {
                                v.push(k.clone());
                            }
                        }
                        v
                    });
                    (listed == present).then_some(())
                },
            );
        }
    }
}

pub async fn list_all(c: &Client, bucket: &str) -> Result<Vec<String>, String> {
    let mut out = vec![];
    let mut token = None;
    loop {
        let r = c
            .list_objects_v2()
            .bucket(bucket)
            .set_continuation_token(token)
            .send()
            .await
            .map_err(|e| format!("{e:?}"))?;
        out.extend(
            r.contents()
                .iter()
                .filter_map(|o| o.key().map(String::from)),
        );
        token = r.next_continuation_token().map(String::from);
        if token.is_none() {
            return Ok(out);
        }
    }
}

/// A key allowed to create buckets, known on every node of `procs`, and a bucket made with it.
pub fn s3_setup(procs: &[Proc], bucket: &str, rt: &tokio::runtime::Runtime) -> (String, String) {
    let k = procs[0].cli_json(&["key", "create", "resil"]);
    procs[0]
        .cli(&["key", "allow", "resil", "--create-bucket"])
        .unwrap();
    let key = (
        k["id"].as_str().unwrap().to_string(),
        k["secret"].as_str().unwrap().to_string(),
    );
    for p in procs {
        wait_for("key known everywhere", Duration::from_secs(30), || {
            p.cli(&["key", "info", "resil"]).ok().map(|_| ())
        });
    }
    create_bucket(procs, &key, bucket, rt);
    key
}

/// Create `bucket` through the first node and wait until every node knows it.
pub fn create_bucket(
    procs: &[Proc],
    key: &(String, String),
    bucket: &str,
    rt: &tokio::runtime::Runtime,
) {
    let c = client(
        &format!("{}:3900", procs[0].spec.ip),
        key,
        Duration::from_secs(20),
    );
    rt.block_on(c.create_bucket().bucket(bucket).send())
        .expect("create bucket");
    for p in procs {
        let c = client(&format!("{}:3900", p.spec.ip), key, Duration::from_secs(20));
        wait_for("bucket known everywhere", Duration::from_secs(30), || {
            rt.block_on(c.head_bucket().bucket(bucket).send())
                .ok()
                .map(|_| ())
        });
    }
}

/// The history checker's workload (`history.rs`) running next to ours, on its own bucket: it judges
/// the same faults with its own rules (stale reads, lost writes, partial bodies, listings).
pub struct HistoryRun {
    pub rec: history::Recorder,
    pub cfg: history::WorkloadConfig,
    stop: Arc<AtomicBool>,
    handle: Option<tokio::task::JoinHandle<u64>>,
    endpoints: Vec<String>,
    key: (String, String),
}

pub const HISTORY_BUCKET: &str = "history";

impl HistoryRun {
    pub fn start(wl: &Workload, seed: u64) -> HistoryRun {
        let cfg = history::WorkloadConfig {
            seed,
            keys: 12,
            prefix: "h/".into(),
            clients: 3,
            ops: None,
            duration: None,
            max_size: 300_000,
            w_mpu: 0,
            op_timeout: Duration::from_secs(8),
            ..Default::default()
        };
        let rec = history::Recorder::new();
        let stop = Arc::new(AtomicBool::new(false));
        let endpoints = wl.cfg.endpoints.clone();
        let key = wl.cfg.key.clone();
        let handle = {
            let (eps, key, cfg, rec, stop) = (
                endpoints.clone(),
                key.clone(),
                cfg.clone(),
                rec.clone(),
                stop.clone(),
            );
            wl.rt.spawn(async move {
                history::run_workload(
                    &eps,
                    HISTORY_BUCKET,
                    (&key.0, &key.1),
                    &cfg,
                    &rec,
                    Some(stop),
                )
                .await
            })
        };
        HistoryRun {
            rec,
            cfg,
            stop,
            handle: Some(handle),
            endpoints,
            key,
        }
    }

    pub fn stop(&mut self, wl: &Workload) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        wl.rt.block_on(self.handle.take().unwrap()).unwrap()
    }

    /// After healing: final reads through every node, then the checker's verdict (panics on a
    /// violation, printing the seed).
    pub fn check(&self, wl: &Workload, seed: u64) {
        for ep in &self.endpoints {
            wl.rt.block_on(history::final_reads(
                ep,
                HISTORY_BUCKET,
                (&self.key.0, &self.key.1),
                &self.cfg,
                &self.rec,
                Duration::from_secs(60),
            ));
        }
        let report = history::check(&self.rec);
        println!("history checker: {}", report.summary());
        report.assert_ok(seed);
    }
}

fn wait_all_up(procs: &[Proc], timeout: Duration) {
    let n = procs.len();
    for p in procs {
        wait_for(
            &format!("{} to see {n} nodes up", p.spec.ip),
            timeout,
            || {
                p.status()
                    .is_some_and(|s| up_ids(&s).len() == n && s["health"] == "healthy")
                    .then_some(())
            },
        );
    }
}

/// The 500 answers the nodes logged (a 5xx during a fault should be a 503), for the test's output;
/// returns how many.
fn print_internal_errors(procs: &[Proc]) -> usize {
    let mut total = 0;
    for (i, p) in procs.iter().enumerate() {
        let log = p.log_text();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("InternalError"))
            .collect();
        total += lines.len();
        if !lines.is_empty() {
            println!("node {i}: {} InternalError answers, e.g.:", lines.len());
            for l in lines.iter().take(3) {
                println!("    {}", l.chars().take(600).collect::<String>());
            }
        }
    }
    total
}

fn assert_no_wrong(wl: &Workload) {
    let wrong = wl.wrong();
    assert!(
        wrong.is_empty(),
        "{} wrong answers, first: {:#?}",
        wrong.len(),
        &wrong[..wrong.len().min(20)]
    );
}

fn summary(wl: &Workload, label: &str, nodes: &[usize], from: Instant, to: Instant) {
    let (ok, failed, unknown) = wl.counts(nodes, from, to);
    println!(
        "{label}: nodes {nodes:?}: {ok} ok, {failed} failed (5xx), {unknown} no answer, over {:?}",
        to - from
    );
    for f in wl.failures(nodes, from, to).iter().take(4) {
        println!("    e.g. {f}");
    }
}

// ---------------------------------------------------------------------------------------------------
// Scenarios 1 and 2: cuts between zones under load.

/// A cut scenario's run, to judge: the cluster, the workload, its history, and when things happened.
struct CutRun {
    c: NetCluster,
    wl: Workload,
    hist: HistoryRun,
    seed: u64,
    t0: Instant,
    cut: Instant,
    healed: Instant,
    end: Instant,
}

/// Three nodes in three zones (rf 3), a bucket and writers through every node; after 3 s, `fault`
/// (drawn from the seed's generator: what to print, then the cut to make, which returns its
/// description) for ~15 s (long form: 60 s), then healing; the workload stops 4 s later (long form:
/// at 10,000 ops). None when network namespaces are impossible here (the test is skipped loudly).
fn cut_scenario<F: FnOnce(&NetCluster) -> String>(
    test: &str,
    bucket: &str,
    fault: impl FnOnce(&mut StdRng) -> (String, F),
) -> Option<CutRun> {
    let seed = seed(test);
    let mut rng = StdRng::seed_from_u64(seed);
    let c = NetCluster::start(test, &["z1", "z2", "z3"], &[1, 1, 1], 3, "")?;
    let long = long_form();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let key = s3_setup(&c.procs, bucket, &rt);
    create_bucket(&c.procs, &key, HISTORY_BUCKET, &rt);
    drop(rt);
    let (schedule, apply) = fault(&mut rng);
    let cut_for = if long {
        Duration::from_secs(60)
    } else {
        Duration::from_millis(rng.gen_range(13_000..17_000))
    };
    println!("schedule: {schedule} for {cut_for:?}");
    let mut wl = Workload::start(
        WorkloadCfg {
            bucket: bucket.into(),
            endpoints: (0..3).map(|i| c.s3_addr(i)).collect(),
            key,
            writers_per_node: 2,
            keys_per_writer: 6,
            big_ratio: 0.1,
            op_timeout: Duration::from_secs(8),
        },
        seed,
    );
    let mut hist = HistoryRun::start(&wl, seed);
    let t0 = wl.event("workload started");
    std::thread::sleep(Duration::from_secs(3));
    let what = apply(&c);
    let cut = wl.event(&format!("{what}: {}", c.net.describe()));
    std::thread::sleep(cut_for);
    c.net.heal();
    let healed = wl.event("healed");
    // Long form: keep going until 10,000 ops.
    let min_ops = if long { 10_000 } else { 0 };
    let after = Instant::now();
    while wl.ops() < min_ops || after.elapsed() < Duration::from_secs(4) {
        std::thread::sleep(Duration::from_millis(200));
    }
    wl.finish();
    let hist_ops = hist.stop(&wl);
    let end = wl.event("workload stopped");
    println!("history workload: {hist_ops} ops");
    println!("{} ops in {:?}", wl.ops(), end - t0);
    Some(CutRun {
        c,
        wl,
        hist,
        seed,
        t0,
        cut,
        healed,
        end,
    })
}

/// Three nodes in three zones (rf 3). A seeded choice of zone is cut off from the other two for a while
/// (short: ~15 s, long: 60 s) while writers work through every node. Through the two connected nodes
/// every op keeps succeeding (after the few seconds it takes to see the cut); through the isolated one
/// no op succeeds while it is cut off (no quorum: it must say so with a 5xx or not answer, never
/// answer wrong). After healing: every key reads the same through every node, as its history allows
/// (acknowledged writes kept, acknowledged deletes stay deleted), and listings agree.
#[test]
fn partition_isolating_one_zone_then_healing() {
    let mut isolated = 0;
    let Some(r) = cut_scenario(
        "resilience_net::partition_isolating_one_zone_then_healing",
        "partition",
        |rng| {
            isolated = rng.gen_range(0..3usize);
            let z = isolated;
            (format!("isolate zone {z}"), move |c: &NetCluster| {
                c.net.isolate(z, false);
                format!("zone {z} isolated")
            })
        },
    ) else {
        return;
    };
    let CutRun {
        c,
        wl,
        hist,
        seed,
        t0,
        cut,
        healed,
        end,
    } = r;
    let majority: Vec<usize> = (0..3).filter(|i| *i != isolated).collect();
    summary(&wl, "before the cut", &[0, 1, 2], t0, cut);
    summary(&wl, "cut, majority side", &majority, cut, healed);
    summary(&wl, "cut, isolated node", &[isolated], cut, healed);
    summary(&wl, "after healing", &[0, 1, 2], healed, end);
    print_internal_errors(&c.procs);
    assert_no_wrong(&wl);

    // No quorum on the isolated side: nothing succeeds there while cut (ops that started after the cut
    // and ended before the heal).
    let impossible = wl.successes_within(&[isolated], cut + Duration::from_millis(500), healed);
    assert!(
        impossible.is_empty(),
        "ops succeeded through the isolated node without a quorum: {impossible:#?}"
    );
    let (_, failed, unknown) = wl.counts(&[isolated], cut, healed);
    assert!(
        failed + unknown > 0,
        "no op was even tried through the isolated node"
    );
    // The majority side keeps working: after a grace period to see the cut (pings: ~3 × 2 s + 3 s),
    // every op succeeds.
    let grace = cut + Duration::from_secs(10);
    let bad = wl.failures(&majority, grace, healed);
    assert!(
        bad.is_empty(),
        "{} ops failed on the majority side during the cut: {:#?}",
        bad.len(),
        &bad[..bad.len().min(20)]
    );
    let (ok, _, _) = wl.counts(&majority, grace, healed);
    assert!(
        ok > 0,
        "no op succeeded on the majority side during the cut"
    );

    // Heal: the cluster sees itself whole again, every key converges.
    wait_all_up(&c.procs, Duration::from_secs(60));
    let n = wl.check_final(Duration::from_secs(60));
    wl.check_listing(Duration::from_secs(30));
    println!("converged: {n} keys read alike through all 3 nodes");
    hist.check(&wl, seed);
}

/// Three nodes in three zones (rf 3); zone 1's packets to zone 2 are dropped (seeded pair), the
/// reverse direction still flows — TCP between them breaks both ways, each still reaches the third
/// zone, so every node still has a write quorum (itself + the third). Under load: no wrong answer,
/// and after a grace period every op through every node succeeds. Then heal and converge.
#[test]
fn asymmetric_cut_under_load() {
    let Some(r) = cut_scenario("resilience_net::asymmetric_cut_under_load", "asym", |rng| {
        let from = rng.gen_range(0..3usize);
        let to = (from + rng.gen_range(1..3usize)) % 3;
        (
            format!("drop zone {from} -> zone {to}"),
            move |c: &NetCluster| {
                c.net.cut_one_way(from, to);
                format!("cut {from} -> {to}")
            },
        )
    }) else {
        return;
    };
    let CutRun {
        c,
        wl,
        hist,
        seed,
        t0,
        cut,
        healed,
        end,
    } = r;
    summary(&wl, "before the cut", &[0, 1, 2], t0, cut);
    for i in 0..3 {
        summary(&wl, "during the cut", &[i], cut, healed);
    }
    summary(&wl, "after healing", &[0, 1, 2], healed, end);
    print_internal_errors(&c.procs);
    assert_no_wrong(&wl);
    let grace = cut + Duration::from_secs(10);
    let bad = wl.failures(&[0, 1, 2], grace, healed);
    assert!(
        bad.is_empty(),
        "{} ops failed during the one-way cut though every node reaches a quorum: {:#?}",
        bad.len(),
        &bad[..bad.len().min(20)]
    );
    wait_all_up(&c.procs, Duration::from_secs(60));
    let n = wl.check_final(Duration::from_secs(60));
    println!("converged: {n} keys read alike through all 3 nodes");
    hist.check(&wl, seed);
}

// ---------------------------------------------------------------------------------------------------
// Scenario 3: full disks.

/// A tmpfs mounted over a directory (its files copied in first); unmounted on drop.
pub struct Tmpfs {
    pub path: std::path::PathBuf,
}

impl Tmpfs {
    /// Mount a tmpfs of `size` (e.g. "24m") over `path`, keeping the files directly in it; Err when
    /// mounting is impossible here.
    pub fn mount_over(path: &std::path::Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(path).unwrap();
        let mut files = vec![];
        for e in std::fs::read_dir(path).unwrap() {
            let e = e.unwrap();
            assert!(
                e.file_type().unwrap().is_file(),
                "{:?}: only files",
                e.path()
            );
            files.push((e.file_name(), std::fs::read(e.path()).unwrap()));
        }
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let t = Tmpfs {
            path: path.to_path_buf(),
        };
        for (name, bytes) in files {
            let p = path.join(name);
            std::fs::write(&p, bytes).unwrap();
            std::fs::set_permissions(
                &p,
                <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
            )
            .unwrap();
        }
        Ok(t)
    }

    fn filler(&self) -> std::path::PathBuf {
        self.path.join("zz-filler")
    }

    /// Fill the file system up with a filler file (until a write fails with ENOSPC); bytes written.
    pub fn fill(&self) -> u64 {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.filler())
            .unwrap();
        let chunk = vec![0u8; 4096];
        let mut n = 0;
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(k) => n += k as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling {}: {e}", self.path.display()),
            }
        }
        n
    }

    /// Give the space back.
    pub fn unfill(&self) {
        std::fs::remove_file(self.filler()).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

/// The blocks a node stores (`grenier debug block-local`, which prints JSON).
fn local_blocks(p: &Proc) -> std::collections::BTreeSet<String> {
    let out = p
        .cli(&["debug", "block-local"])
        .unwrap_or_else(|e| panic!("debug block-local: {e}"));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["blocks"]
        .as_array()
        .unwrap_or_else(|| panic!("block-local: {v}"))
        .iter()
        .map(|b| b.as_str().unwrap().to_string())
        .collect()
}

/// The last warnings and errors of a node's log.
fn log_warnings(p: &Proc) -> String {
    let log = p.log_text();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    lines[lines.len().saturating_sub(25)..].join("\n")
}

/// A PUT that a full disk refuses: a clean 503 S3 error (ServiceUnavailable or SlowDown).
fn assert_clean_503(o: &Outcome, what: &str) {
    match o {
        Outcome::Failed(503, code) if code == "ServiceUnavailable" || code == "SlowDown" => {}
        other => panic!("{what}: expected a 503 ServiceUnavailable/SlowDown, got {other:?}"),
    }
}

/// Three nodes in three zones (rf 3), two of them with their `which` directory ("data" or "meta") on a
/// tmpfs, under a background workload (writers through every node, and the history checker's own)
/// while the test's own requests check each phase. One node full: PUTs (inline and block-sized)
/// through every node still succeed (2 of 3 replicas elsewhere). Two nodes full: PUTs that need the
/// full directory get a clean 503, and every object written before still reads back intact through
/// every node. Space back: PUTs succeed again through every node, and the node that was full catches
/// up (data: it holds every live block the others hold; metadata: every object reads through it).
/// The long form then repeats fill/refill rounds (seeded nodes and durations) under the workload until
/// 10,000 operations were acknowledged. At the end: no wrong answer, every key reads alike through
/// every node, and the history checker finds no violation.
fn disk_full(which: &str) {
    let test = format!("resilience_net::disk_full_{which}");
    let seed = seed(&test);
    let mut rng = StdRng::seed_from_u64(seed);
    let long = long_form();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{test}: needs root (tmpfs mounts), and CI=true");
        }
        eprintln!("\n*** SKIPPED (needs root for tmpfs mounts): {test} ***\n");
        return;
    }
    // Dropped in reverse: nodes, then mounts, then the directory.
    let ClusterPlan { root, mut specs } = plan(3, 3, SECRET);
    let boot = specs[0].peer_string();
    for s in specs.iter_mut().skip(1) {
        s.bootstrap = vec![boot.clone()];
    }
    // Blocks of overwritten and deleted objects go within seconds, not 10 minutes, so the workload's
    // dead blocks do not fill the tmpfs between phases (30 s still covers a PUT's blocks written
    // before their first reference).
    for s in specs.iter_mut() {
        s.extra = "block_gc_delay_secs = 30".into();
    }
    // The two nodes to fill, in a seeded order: `first` fills, then `second` too.
    let first = rng.gen_range(0..3usize);
    let second = (first + rng.gen_range(1..3usize)) % 3;
    let mounts: BTreeMap<usize, Tmpfs> = (0..3)
        .map(|i| {
            let t = Tmpfs::mount_over(&specs[i].dir.join(which), "128m")
                .unwrap_or_else(|e| panic!("{test}: mount tmpfs: {e}"));
            (i, t)
        })
        .collect();
    println!("schedule: fill node {first}'s {which} dir, then node {second}'s");
    let procs: Vec<Proc> = specs.into_iter().map(Proc::start).collect();
    wait_for("3 nodes up", Duration::from_secs(60), || {
        procs
            .iter()
            .all(|p| p.status().is_some_and(|s| up_ids(&s).len() == 3))
            .then_some(())
    });
    assign_and_apply(&procs, &[(0, "a"), (1, "b"), (2, "c")]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let key = s3_setup(&procs, "full", &rt);
    create_bucket(&procs, &key, "load", &rt);
    create_bucket(&procs, &key, HISTORY_BUCKET, &rt);
    let endpoints: Vec<String> = procs
        .iter()
        .map(|p| format!("{}:3900", p.spec.ip))
        .collect();
    let clients: Vec<Client> = endpoints
        .iter()
        .map(|e| client(e, &key, Duration::from_secs(20)))
        .collect();
    let mut wl = Workload::start(
        WorkloadCfg {
            bucket: "load".into(),
            endpoints: endpoints.clone(),
            key: key.clone(),
            writers_per_node: 1,
            keys_per_writer: 6,
            big_ratio: 0.1,
            op_timeout: Duration::from_secs(8),
        },
        seed,
    );
    let mut hist = HistoryRun::start(&wl, seed);
    let t0 = wl.event("workload started");
    let mut written: BTreeMap<String, u64> = BTreeMap::new();
    let mut next_id = 1u64;
    // A PUT through node `i` of a small (inline) or block-sized body; Ok bodies are remembered.
    let mut put_via = |i: usize, name: &str, big: bool, written: &mut BTreeMap<String, u64>| {
        let id = next_id;
        next_id += 1;
        let len = if big {
            200_000 + (id as usize % 7) * 1000
        } else {
            500
        };
        let o = rt.block_on(put(&clients[i], "full", name, body(id, len)));
        if o == Outcome::Ok(None) {
            written.insert(name.to_string(), id);
        }
        o
    };
    let read_all = |written: &BTreeMap<String, u64>, via: &[usize]| {
        for (name, id) in written {
            for &i in via {
                let o = rt.block_on(get(&clients[i], "full", name));
                assert_eq!(o, Outcome::Ok(Some(*id)), "GET {name} via node {i}");
            }
        }
    };
    for k in 0..12 {
        let o = put_via(k % 3, &format!("before/{k}"), k % 2 == 0, &mut written);
        assert_eq!(o, Outcome::Ok(None), "PUT before/{k}");
    }

    // One node full: writes still succeed everywhere (quorum 2 of 3 on the others).
    let filled = mounts[&first].fill();
    let one_full = wl.event(&format!(
        "node {first}: {which} dir full ({filled} filler bytes)"
    ));
    for k in 0..12 {
        let o = put_via(k % 3, &format!("one-full/{k}"), k % 2 == 0, &mut written);
        assert_eq!(
            o,
            Outcome::Ok(None),
            "PUT one-full/{k} via node {} with node {first}'s {which} dir full",
            k % 3
        );
    }
    read_all(&written, &[0, 1, 2]);

    // The blocks of every object so far, as the node never filled holds them (the failed PUTs below
    // leave unreferenced blocks there, which nobody else needs).
    let third = 3 - first - second;
    let reference = local_blocks(&procs[third]);
    if which == "data" {
        let missed = reference.difference(&local_blocks(&procs[first])).count();
        println!(
            "node {first} missed {missed} of {} blocks while full",
            reference.len()
        );
        assert!(
            missed > 0,
            "node {first} missed no block while its disk was full"
        );
    }
    // Two nodes full: no write quorum for what needs the full directory.
    let filled = mounts[&second].fill();
    let two_full = wl.event(&format!(
        "node {second}: {which} dir full too ({filled} filler bytes)"
    ));
    summary(&wl, "one dir full", &[0, 1, 2], one_full, two_full);
    for i in 0..3 {
        if which == "data" {
            // A block-sized body cannot be stored on a quorum; an inline one needs no data dir.
            let name = format!("two-full/{i}");
            let o = put_via(i, &name, true, &mut written);
            assert_clean_503(&o, &format!("PUT {name} via node {i}, two data dirs full"));
            let o = put_via(i, &format!("two-full/small{i}"), false, &mut written);
            assert_eq!(
                o,
                Outcome::Ok(None),
                "inline PUT via node {i}, data dirs full"
            );
        } else {
            // The database reuses free pages of its file: writes go on until it must grow. Then
            // no quorum, and a clean 503.
            let mut n = 0;
            loop {
                let name = format!("two-full/{i}-{n}");
                match put_via(i, &name, false, &mut written) {
                    Outcome::Ok(_) if n < 2000 => n += 1,
                    o => {
                        assert_clean_503(
                            &o,
                            &format!("PUT {name} via node {i}, two meta dirs full"),
                        );
                        break;
                    }
                }
            }
            println!("via node {i}: {n} inline PUTs succeeded before the first 503");
        }
    }
    // Nothing written before is damaged or lost, through any node.
    read_all(&written, &[0, 1, 2]);

    // Space back: writes succeed again through every node (the full nodes may need a moment).
    mounts[&first].unfill();
    mounts[&second].unfill();
    let back = wl.event(&format!("space back on nodes {first} and {second}"));
    summary(&wl, "two dirs full", &[0, 1, 2], two_full, back);
    for i in 0..3 {
        let name = format!("after/{i}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let o = put_via(i, &name, true, &mut written);
            if o == Outcome::Ok(None) {
                break;
            }
            if Instant::now() > deadline {
                panic!(
                    "PUT via node {i} still fails 30 s after space came back: {o:?}; warnings of \
                     node {first}:\n{}\nnode {second}:\n{}",
                    log_warnings(&procs[first]),
                    log_warnings(&procs[second])
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    println!("writes succeed again after {:?}", back.elapsed());
    read_all(&written, &[0, 1, 2]);
    if which == "data" {
        // The node filled first catches up with the blocks written while it was full: it holds
        // every block of `reference` still live on the third node (the workload's overwritten and
        // deleted objects' blocks are collected meanwhile, and nobody needs them).
        let t = Instant::now();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let have = local_blocks(&procs[first]);
            let live = local_blocks(&procs[third]);
            let missing: Vec<String> = reference
                .iter()
                .filter(|b| live.contains(*b) && !have.contains(*b))
                .cloned()
                .collect();
            if missing.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                let log = procs[first].log_text();
                let tail: Vec<&str> = log
                    .lines()
                    .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("resync"))
                    .collect();
                panic!(
                    "node {first} still misses {} of {} blocks after 120 s ({:?}...); its log's warnings:\n{}",
                    missing.len(),
                    reference.len(),
                    &missing[..1],
                    tail[tail.len().saturating_sub(40)..].join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        println!(
            "node {first} holds every live block of the {} after {:?}",
            reference.len(),
            t.elapsed()
        );
    }
    let round_end = wl.event("first round done");
    summary(&wl, "space back", &[0, 1, 2], back, round_end);

    // Long form: more rounds under the workload until 10,000 acknowledged operations: one dir full
    // (seeded node, 3-8 s), then a second one (2-5 s), then space back until writes succeed through
    // every node again.
    let acked = |wl: &Workload, hist: &HistoryRun| {
        wl.counts(&[0, 1, 2], t0, Instant::now()).0 as u64 + hist.rec.ok_ops()
    };
    let mut round = 1;
    while long && acked(&wl, &hist) < 10_000 {
        round += 1;
        let a = rng.gen_range(0..3usize);
        let b = (a + rng.gen_range(1..3usize)) % 3;
        mounts[&a].fill();
        let t1 = wl.event(&format!("round {round}: node {a}'s {which} dir full"));
        std::thread::sleep(Duration::from_millis(rng.gen_range(3000..8000)));
        mounts[&b].fill();
        let t2 = wl.event(&format!("round {round}: node {b}'s {which} dir full too"));
        summary(&wl, "one dir full", &[0, 1, 2], t1, t2);
        std::thread::sleep(Duration::from_millis(rng.gen_range(2000..5000)));
        mounts[&a].unfill();
        mounts[&b].unfill();
        let t3 = wl.event(&format!("round {round}: space back"));
        summary(&wl, "two dirs full", &[0, 1, 2], t2, t3);
        for i in 0..3 {
            let name = format!("round{round}/{i}");
            wait_for(
                &format!("round {round}: a PUT through node {i} succeeds once space is back"),
                Duration::from_secs(30),
                || (put_via(i, &name, true, &mut written) == Outcome::Ok(None)).then_some(()),
            );
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(3000..8000)));
        let t4 = wl.event(&format!(
            "round {round} done, {} operations acknowledged",
            acked(&wl, &hist)
        ));
        summary(&wl, "space back", &[0, 1, 2], t3, t4);
    }
    if long {
        read_all(&written, &[0, 1, 2]);
    }

    // The workloads' verdicts.
    wl.finish();
    let hist_ops = hist.stop(&wl);
    let end = wl.event("workload stopped");
    let (ok, failed, unknown) = wl.counts(&[0, 1, 2], t0, end);
    println!(
        "{test} ({} form): workload {} ops ({ok} ok, {failed} failed, {unknown} no answer), history \
         workload {hist_ops} ops, {} explicit objects",
        if long { "long" } else { "short" },
        wl.ops(),
        written.len()
    );
    // A full disk is a clean 503 (no quorum) or nothing at all (quorum elsewhere), never a 500.
    assert_eq!(print_internal_errors(&procs), 0, "500 answers (above)");
    assert_no_wrong(&wl);
    wait_all_up(&procs, Duration::from_secs(60));
    let n = wl.check_final(Duration::from_secs(60));
    wl.check_listing(Duration::from_secs(30));
    println!("converged: {n} keys read alike through all 3 nodes");
    hist.check(&wl, seed);
    drop(procs);
    drop(mounts);
    drop(root);
}

#[test]
fn disk_full_data() {
    disk_full("data");
}

#[test]
fn disk_full_meta() {
    disk_full("meta");
}
