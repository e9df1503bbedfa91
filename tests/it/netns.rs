//! Network-namespace cluster harness: each zone's nodes run in their own network namespace, joined to the
//! test's namespace by one veth pair per zone plugged into a bridge, so the test process (SDK clients and
//! the CLI) reaches every node while links between zones can be cut and healed.
//!
//! Layout of one [`Net`] (names carry the test process id, so a sweep can tell leftovers of dead runs):
//! - namespaces `gz<pid>-<n>-<zone>`; in each, `lo` up and the veth end `eth0` holding the zone's node
//!   addresses `10.A.B.(16·zone + node + 1)/24`;
//! - in the test's namespace, a bridge `g<pid>_<n>b` with `10.A.B.254/24` and the other veth ends
//!   `g<pid>_<n>_<zone>` as its ports.
//!
//! Faults are blackhole routes (`ip route add blackhole ADDR/32`) inside a zone's namespace: packets that
//! namespace sends to ADDR vanish, as on a cut long-distance link (no reset, no ICMP: peers see timeouts).
//! A cut X→Y drops what X sends to Y; a symmetric cut adds the reverse. [`Net::heal`] removes every
//! fault route. Needs root and `ip netns`; [`Net::create_or_skip`] prints a loud SKIPPED line and gives
//! None where that is impossible, except under `CI=true`, where it fails the test.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::harness::*;

static NEXT: AtomicU32 = AtomicU32::new(0);
/// One sweep of dead runs' leftovers per test process.
static SWEPT: std::sync::Once = std::sync::Once::new();

/// Run `ip ARGS`; stderr on failure.
pub fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The pid in a name made by this harness: `gz<pid>-...` (namespaces) or `g<pid>_...` (links).
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name
        .strip_prefix("gz")
        .and_then(|r| r.split_once('-'))
        .or_else(|| name.strip_prefix('g').and_then(|r| r.split_once('_')))?;
    rest.0.parse().ok().filter(|_| !rest.0.is_empty())
}

/// Remove namespaces and links left by test processes that died without cleaning up (SIGKILL, abort).
pub fn sweep_dead() {
    if let Ok(list) = ip(&["netns", "list"]) {
        for line in list.lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if let Some(pid) = owner_pid(name)
                && name.starts_with("gz")
                && !pid_alive(pid)
            {
                eprintln!("netns: removing leftover namespace {name} (pid {pid} is gone)");
                let _ = ip(&["netns", "del", name]);
            }
        }
    }
    if let Ok(list) = ip(&["-o", "link", "show"]) {
        for line in list.lines() {
            // "7: g123_0_1@if6: <...>"
            let Some(name) = line.split(':').nth(1).map(|n| n.trim()) else {
                continue;
            };
            let name = name.split('@').next().unwrap_or(name);
            if let Some(pid) = owner_pid(name)
                && name.starts_with('g')
                && !name.starts_with("gz")
                && !pid_alive(pid)
            {
                eprintln!("netns: removing leftover link {name} (pid {pid} is gone)");
                let _ = ip(&["link", "del", name]);
            }
        }
    }
}

/// Print the loud skip line and return None, or panic under `CI=true` (CI runs as root: a skip there
/// would hide a broken harness).
fn skip<T>(test: &str, why: &str) -> Option<T> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: needs root and ip netns, and CI=true: {why}");
    }
    eprintln!("\n*** SKIPPED (needs root and ip netns): {test}: {why} ***\n");
    None
}

/// Zones in namespaces, joined by a bridge in the test's namespace; see the module documentation.
pub struct Net {
    /// `gz<pid>-<n>`: namespace names are `<prefix>-<zone index>`.
    prefix: String,
    /// `g<pid>_<n>`: bridge `<link>b`, veth ends `<link>_<zone index>` (test side), `eth0` (zone side).
    link: String,
    /// `10.A.B`.
    subnet: String,
    pub zones: Vec<String>,
    nodes_per_zone: usize,
    namespaces: Vec<String>,
    /// Fault routes in place: (zone index whose namespace holds it, destination address).
    faults: Mutex<BTreeSet<(usize, String)>>,
}

impl Net {
    /// Create the namespaces, bridge and links for `zones` with up to `nodes_per_zone` nodes each, or
    /// skip (None, see [`skip`]) when not root or `ip netns` does not work.
    pub fn create_or_skip(test: &str, zones: &[&str], nodes_per_zone: usize) -> Option<Net> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return skip(test, "not running as root");
        }
        if let Err(e) = ip(&["netns", "list"]) {
            return skip(test, &e);
        }
        SWEPT.call_once(sweep_dead);
        assert!(nodes_per_zone <= 15 && zones.len() <= 14);
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let subnet = free_subnet(pid, n);
        let mut net = Net {
            prefix: format!("gz{pid}-{n}"),
            link: format!("g{pid}_{n}"),
            subnet,
            zones: zones.iter().map(|z| z.to_string()).collect(),
            nodes_per_zone,
            namespaces: vec![],
            faults: Mutex::new(BTreeSet::new()),
        };
        match net.build() {
            Ok(()) => Some(net),
            // The first step failing means the machine cannot do it; a later one is a harness bug.
            Err(e) if net.namespaces.is_empty() => {
                drop(net);
                skip(test, &e)
            }
            Err(e) => panic!("building the test network: {e}"),
        }
    }

    fn build(&mut self) -> Result<(), String> {
        let bridge = format!("{}b", self.link);
        let ns0 = format!("{}-0", self.prefix);
        ip(&["netns", "add", &ns0])?;
        self.namespaces.push(ns0);
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        ip(&[
            "addr",
            "add",
            &format!("{}.254/24", self.subnet),
            "dev",
            &bridge,
        ])?;
        ip(&["link", "set", &bridge, "up"])?;
        for z in 0..self.zones.len() {
            let ns = format!("{}-{z}", self.prefix);
            if z > 0 {
                ip(&["netns", "add", &ns])?;
                self.namespaces.push(ns.clone());
            }
            let outer = format!("{}_{z}", self.link);
            ip(&[
                "link", "add", &outer, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            ip(&["link", "set", &outer, "master", &bridge])?;
            ip(&["link", "set", &outer, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            for i in 0..self.nodes_per_zone {
                let addr = format!("{}/24", self.addr(z, i));
                ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            }
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        }
        Ok(())
    }

    /// The address of node `i` of zone `z`.
    pub fn addr(&self, z: usize, i: usize) -> String {
        format!("{}.{}", self.subnet, 16 * z + i + 1)
    }

    /// The namespace of zone `z`.
    pub fn ns(&self, z: usize) -> &str {
        &self.namespaces[z]
    }

    fn zone_addrs(&self, z: usize) -> Vec<String> {
        (0..self.nodes_per_zone).map(|i| self.addr(z, i)).collect()
    }

    fn blackhole(&self, z: usize, dest: String) {
        let mut faults = self.faults.lock().unwrap();
        if faults.insert((z, dest.clone())) {
            ip(&[
                "-n",
                self.ns(z),
                "route",
                "add",
                "blackhole",
                &format!("{dest}/32"),
            ])
            .unwrap();
        }
    }

    /// Drop every packet zone `from` sends to zone `to` (the reverse direction still flows: a TCP
    /// connection then fails both ways, since its acknowledgements are lost).
    pub fn cut_one_way(&self, from: usize, to: usize) {
        for a in self.zone_addrs(to) {
            self.blackhole(from, a);
        }
    }

    /// Cut zones `x` and `y` apart, both directions.
    pub fn cut(&self, x: usize, y: usize) {
        self.cut_one_way(x, y);
        self.cut_one_way(y, x);
    }

    /// Cut zone `z` from every other zone; with `from_clients`, also from the test's namespace (its
    /// answers to the test's clients and CLI vanish too).
    pub fn isolate(&self, z: usize, from_clients: bool) {
        for other in 0..self.zones.len() {
            if other != z {
                self.cut(z, other);
            }
        }
        if from_clients {
            self.blackhole(z, format!("{}.254", self.subnet));
        }
    }

    /// Remove every fault route.
    pub fn heal(&self) {
        let mut faults = self.faults.lock().unwrap();
        for (z, dest) in std::mem::take(&mut *faults) {
            ip(&[
                "-n",
                self.ns(z),
                "route",
                "del",
                "blackhole",
                &format!("{dest}/32"),
            ])
            .unwrap();
        }
    }

    /// A description of the faults in place, for logs.
    pub fn describe(&self) -> String {
        let faults = self.faults.lock().unwrap();
        let v: Vec<String> = faults
            .iter()
            .map(|(z, d)| format!("{}->{d}", self.zones[*z]))
            .collect();
        v.join(" ")
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace destroys its veth end and with it the pair; the test-side end is deleted
        // too in case the namespace outlives its name (a process still inside).
        for z in 0..self.zones.len() {
            let _ = ip(&["link", "del", &format!("{}_{z}", self.link)]);
        }
        for ns in &self.namespaces {
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = ip(&["link", "del", &format!("{}b", self.link)]);
    }
}

/// A `10.A.B` block for one network: derived from the pid and counter, moved on while some address of
/// the test's namespace already uses it (another test process, another network of this one).
fn free_subnet(pid: u32, n: u32) -> String {
    let used = ip(&["-4", "-o", "addr", "show"]).unwrap_or_default();
    let mut k = pid.wrapping_mul(2654435761).wrapping_add(n * 7919);
    loop {
        let a = 200 + (k >> 8) % 50;
        let b = k % 250 + 1;
        let subnet = format!("10.{a}.{b}");
        if !used.contains(&format!(" {subnet}.")) {
            return subnet;
        }
        k = k.wrapping_add(1);
    }
}

/// A cluster whose zones live in the namespaces of one [`Net`]. Drop kills the nodes, then removes the
/// network (fields drop in order).
pub struct NetCluster {
    pub procs: Vec<Proc>,
    /// Zone index of each node.
    pub zone_of: Vec<usize>,
    pub net: Net,
    _root: tempfile::TempDir,
}

impl NetCluster {
    /// `nodes_per_zone[z]` nodes in zone `z` of `zones`, replication factor `rf`, all bootstrapped from the
    /// first, layout applied (every node a storage node of its zone, 10G), healthy everywhere; None when
    /// skipped.
    pub fn start(
        test: &str,
        zones: &[&str],
        nodes_per_zone: &[usize],
        rf: usize,
        extra: &str,
    ) -> Option<NetCluster> {
        let per = *nodes_per_zone.iter().max().unwrap();
        let net = Net::create_or_skip(test, zones, per)?;
        let total: usize = nodes_per_zone.iter().sum();
        let mut plan = plan(total, rf, SECRET);
        let mut zone_of = vec![];
        let mut k = 0;
        for (z, count) in nodes_per_zone.iter().enumerate() {
            for i in 0..*count {
                let s = &mut plan.specs[k];
                s.ip = net.addr(z, i);
                s.netns = Some(net.ns(z).to_string());
                s.extra = extra.to_string();
                zone_of.push(z);
                k += 1;
            }
        }
        let boot = plan.specs[0].peer_string();
        for s in plan.specs.iter_mut().skip(1) {
            s.bootstrap = vec![boot.clone()];
        }
        let root = plan.root;
        let procs: Vec<Proc> = plan.specs.drain(..).map(Proc::start).collect();
        let c = NetCluster {
            procs,
            zone_of,
            net,
            _root: root,
        };
        wait_for(
            &format!("{total} nodes up"),
            Duration::from_secs(60),
            || {
                c.procs
                    .iter()
                    .all(|p| p.status().is_some_and(|s| up_ids(&s).len() == total))
                    .then_some(())
            },
        );
        let roles: Vec<(usize, &str)> = c
            .zone_of
            .iter()
            .enumerate()
            .map(|(i, z)| (i, zones[*z]))
            .collect();
        assign_and_apply(&c.procs, &roles);
        Some(c)
    }

    /// The S3 endpoint (`ip:port`) of node `i`.
    pub fn s3_addr(&self, i: usize) -> String {
        format!("{}:3900", self.procs[i].spec.ip)
    }
}

impl Drop for NetCluster {
    fn drop(&mut self) {
        // Kill the nodes before the network goes (Proc's own Drop would come after Net's otherwise).
        for p in &mut self.procs {
            p.kill();
        }
    }
}

/// Run `f` on a thread that has entered namespace `ns` (a network namespace is per thread: sockets
/// the thread makes live there).
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let file = std::fs::File::open(format!("/var/run/netns/{ns}")).unwrap();
    std::thread::spawn(move || {
        // SAFETY: setns on a descriptor this closure owns; only this thread changes namespace.
        let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap()
}

/// The harness itself: a cut is a cut (a TCP connect across it times out, while the same address is
/// reachable from the test's namespace and the other direction), heal restores it, names of live
/// owners are never swept, and Drop leaves nothing behind.
#[test]
fn namespaces_cut_and_heal() {
    let Some(net) = Net::create_or_skip("netns::namespaces_cut_and_heal", &["a", "b"], 1) else {
        return;
    };
    let (a, b) = (net.addr(0, 0), net.addr(1, 0));
    // A listener in each zone (kept open by the threads' results).
    let la = in_ns(net.ns(0), move || {
        std::net::TcpListener::bind((a.as_str(), 4000)).unwrap()
    });
    let lb = in_ns(net.ns(1), move || {
        std::net::TcpListener::bind((b.as_str(), 4000)).unwrap()
    });
    let dial = |z: Option<usize>, to: &str| {
        let to: std::net::SocketAddr = format!("{to}:4000").parse().unwrap();
        let f =
            move || std::net::TcpStream::connect_timeout(&to, Duration::from_millis(800)).is_ok();
        match z {
            Some(z) => in_ns(net.ns(z), f),
            None => f(),
        }
    };
    let (a, b) = (net.addr(0, 0), net.addr(1, 0));
    assert!(dial(Some(0), &b) && dial(Some(1), &a) && dial(None, &a) && dial(None, &b));
    net.cut_one_way(0, 1);
    assert!(!dial(Some(0), &b), "a -> b still connects");
    // b's SYN reaches a, whose SYN-ACK is dropped: one-way cuts break TCP both ways.
    assert!(!dial(Some(1), &a), "b -> a connects through a one-way cut");
    assert!(dial(None, &a) && dial(None, &b), "the test lost a zone");
    net.heal();
    assert!(dial(Some(0), &b) && dial(Some(1), &a));
    net.isolate(1, true);
    assert!(!dial(None, &b) && !dial(Some(0), &b) && dial(None, &a));
    net.heal();
    assert!(dial(None, &b));
    assert_eq!(net.describe(), "");
    drop((la, lb));
    // Our own names are not swept (we are alive); a dead pid's would be.
    assert_eq!(owner_pid(net.ns(0)), Some(std::process::id()));
    assert_eq!(owner_pid("g4194999_3_1"), Some(4194999));
    assert_eq!(owner_pid("eth0"), None);
    assert_eq!(owner_pid("gre0"), None);
    sweep_dead();
    assert!(ip(&["netns", "list"]).unwrap().contains(net.ns(1)));
    let names: Vec<String> = net.namespaces.clone();
    let bridge = format!("{}b", net.link);
    drop(net);
    let list = ip(&["netns", "list"]).unwrap();
    for ns in names {
        assert!(!list.contains(&ns), "{ns} left behind: {list}");
    }
    assert!(
        ip(&["link", "show", &bridge]).is_err(),
        "{bridge} left behind"
    );
}
