#!/usr/bin/env python3
"""georelay: a userland TCP relay that emulates inter-zone latency on one Linux machine (no tc/netem).

Part of Grenier (AGPL-3.0-or-later, like the rest of the repository); started as the team's reference
relay (tools/georelay.py of the project's shared workspace) and used by `script/bench geo`.

Each node really listens on IP:4901 (rpc_bind_addr) and advertises IP:3901 (rpc_public_addr); the relay
listens on IP:3901 and forwards to IP:4901. The source zone of a connection is found from the peer's
source IP (the nodes run with rpc_bind_outgoing = true, so a node dials from its own IP); the
destination zone is the route's. Every chunk, in both directions, is delivered at t_read + D(src, dst):
D = 0 within a zone or for an unknown source, `--delay-ms` (one way) between zones unless a `--pair`
overrides it. Chunks are timestamped and queued per direction, so order is kept and throughput is not
serialized (the relay keeps reading while earlier chunks wait). All relay sockets set TCP_NODELAY.

Timing: delivery is driven by a timerfd (asyncio's own timers round epoll waits up to whole ms); timers
are armed --lead-ms (0.15) early to offset wakeup latency. Measured here: a cross-zone ping through the
relay at D = 25 ms is 50.5-50.7 ms (direct loopback: 0.1 ms), i.e. about +0.2 ms per delayed hop; run
it at a negative nice value when the machine is loaded (script/bench geo tries -10) or p90 grows.

Not emulated: the TCP three-way handshake is not delayed (the kernel accepts at once), and the
loopback legs keep a ~0 RTT, so TCP slow start / window limits of a real WAN are not reproduced; the
relay buffers up to --max-buffer-mib per direction before it stops reading (back-pressure).

Usage:
  georelay.py serve --route 127.0.5.10:3901=127.0.5.10:4901@z1 [--route ...] \
                    [--zone-ip 127.0.5.11=z2 ...] [--delay-ms 25] [--pair z1:z3=40] [--echo 127.0.5.200:4901]
      Routes' listen IPs are put in the zone map too. Prints "ready" once all listeners are bound.
      Reads commands on stdin, one a line, each answered with one line on stdout:
        delay MS            set the default inter-zone one-way delay (applies to queued-later chunks)
        pair ZA ZB MS       set the one-way delay between two zones (symmetric)
        stats               JSON: connections and bytes per (src zone -> dst zone), unknown sources
        quit
  georelay.py ping HOST:PORT [--src IP] [--count 50]
      TCP round trips of 16 bytes against an echo server (e.g. an --echo target behind a route).
  georelay.py selftest [--delay-ms 25] [--net 77]
      Starts a relay in a subprocess with an echo target in zone z1, pings it from a z1 and a z2 source
      IP, and pushes 32 MiB through it both ways to check throughput is not serialized.
"""
import argparse, asyncio, collections, json, os, socket, statistics, subprocess, sys, threading, time

HIGH_WATER = 64 << 20  # default: bytes queued in one direction before the relay stops reading


def hostport(s):
    h, p = s.rsplit(":", 1)
    return h.strip("[]"), int(p)


def set_nodelay(transport):
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


class Delays:
    """One-way delay between zones, in seconds. Changeable at run time."""

    def __init__(self, default_ms=25.0, pairs=None):
        self.default = default_ms / 1000.0
        self.pairs = {}
        for (a, b), ms in (pairs or {}).items():
            self.set_pair(a, b, ms)

    def set_pair(self, a, b, ms):
        self.pairs[frozenset((a, b))] = ms / 1000.0

    def __call__(self, src, dst):
        if src is None or dst is None or src == dst:
            return 0.0
        return self.pairs.get(frozenset((src, dst)), self.default)


class _TimerFd:
    """Wakes the event loop at an absolute CLOCK_MONOTONIC time with ~0.1 ms precision. asyncio's own
    timers wait in epoll, whose timeout is rounded up to whole milliseconds (sometimes twice: measured
    here +1.8 ms median), which would add a millisecond or two to every delayed hop."""

    def __init__(self, loop):
        import ctypes
        self.ctypes = ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        self.libc = libc

        class timespec(ctypes.Structure):
            _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]

        class itimerspec(ctypes.Structure):
            _fields_ = [("it_interval", timespec), ("it_value", timespec)]

        self.itimerspec = itimerspec
        CLOCK_MONOTONIC, TFD_NONBLOCK, TFD_CLOEXEC = 1, 0o4000, 0o2000000
        self.fd = libc.timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create")
        self.loop = loop
        self.heap = []
        self.seq = 0
        self.armed_for = None
        loop.add_reader(self.fd, self._fire)

    def at(self, when, cb):
        import heapq
        self.seq += 1
        heapq.heappush(self.heap, (when, self.seq, cb))
        if self.armed_for is None or when < self.armed_for:
            self._set(when)

    def _set(self, when):
        # loop.time() is time.monotonic(), i.e. CLOCK_MONOTONIC, so the absolute time can be used as is
        when = max(when, 1e-6)
        s = self.itimerspec()
        s.it_value.tv_sec = int(when)
        s.it_value.tv_nsec = int((when - int(when)) * 1e9)
        if self.libc.timerfd_settime(self.fd, 1, self.ctypes.byref(s), None) != 0:  # TFD_TIMER_ABSTIME
            raise OSError(self.ctypes.get_errno(), "timerfd_settime")
        self.armed_for = when

    def _fire(self):
        import heapq
        try:
            os.read(self.fd, 8)
        except BlockingIOError:
            pass
        self.armed_for = None
        now = self.loop.time()
        while self.heap and self.heap[0][0] <= now:
            _, _, cb = heapq.heappop(self.heap)
            try:
                cb()
            except Exception as e:  # never let one connection stop the clock
                print(f"georelay: callback failed: {e!r}", file=sys.stderr)
            now = self.loop.time()
        if self.heap and self.armed_for is None:
            self._set(self.heap[0][0])
        elif self.heap and self.heap[0][0] < self.armed_for:
            self._set(self.heap[0][0])


class _CallAt:
    """Fallback clock: asyncio's call_at (about +1 ms per delayed hop)."""

    def __init__(self, loop):
        self.loop = loop

    def at(self, when, cb):
        self.loop.call_at(when, cb)


class Side(asyncio.Protocol):
    """One socket of a relayed connection. Bytes read here are delivered to `self.other` after
    `delay()` seconds, in order."""

    def __init__(self, relay, delay_fn, label):
        self.relay, self.delay_fn, self.label = relay, delay_fn, label
        self.loop = asyncio.get_running_loop()
        self.transport = None
        self.other = None
        self.queue = collections.deque()  # (due, bytes) or (due, None) for EOF / close
        self.queued = 0
        self.timer = None
        self.pause_reasons = set()
        self.closed = False
        self.bytes = 0

    # -- socket events --
    def connection_made(self, transport):
        self.transport = transport
        set_nodelay(transport)
        try:
            transport.set_write_buffer_limits(high=8 << 20, low=2 << 20)
        except Exception:
            pass

    def data_received(self, data):
        self.bytes += len(data)
        self.relay.count_bytes(self, len(data))
        self._enqueue(data)

    def eof_received(self):
        self._enqueue(b"")  # forward the half close after the same delay
        return True

    def connection_lost(self, exc):
        self.closed = True
        self._enqueue(None)  # delivered after what was already read from this side

    def pause_writing(self):  # our write buffer is full: stop reading the other side
        if self.other:
            self.other._pause("peer-write")

    def resume_writing(self):
        if self.other:
            self.other._resume("peer-write")

    # -- relay logic --
    def _pause(self, why):
        if not self.pause_reasons and self.transport and not self.closed:
            try:
                self.transport.pause_reading()
            except Exception:
                pass
        self.pause_reasons.add(why)

    def _resume(self, why):
        self.pause_reasons.discard(why)
        if not self.pause_reasons and self.transport and not self.closed:
            try:
                self.transport.resume_reading()
            except Exception:
                pass

    def _enqueue(self, item):
        d = self.delay_fn()
        if d <= 0 and not self.queue:
            self._deliver(item)
            return
        due = self.loop.time() + d
        self.queue.append((due, item))
        if item:
            self.queued += len(item)
            if self.queued > self.relay.high_water:
                self._pause("queue")
        if self.timer is None:
            self._arm()

    def _arm(self):
        self.timer = True
        self.relay.clock.at(self.queue[0][0] - self.relay.lead, self._flush)

    def _flush(self):
        self.timer = None
        limit = self.loop.time() + self.relay.lead
        q = self.queue
        while q and q[0][0] <= limit:
            _, item = q.popleft()
            if item:
                self.queued -= len(item)
            self._deliver(item)
        if q:
            self._arm()
        if self.queued <= self.relay.high_water // 2:
            self._resume("queue")

    def _deliver(self, item):
        o = self.other
        if o is None or o.transport is None or o.closed:
            return
        if item is None:  # this side closed: close the other once everything before is written
            o.transport.close()
        elif item == b"":
            if o.transport.can_write_eof():
                try:
                    o.transport.write_eof()
                except OSError:
                    o.transport.close()
        else:
            o.transport.write(item)


class Relay:
    def __init__(self, routes, zone_of_ip, delays, high_water=HIGH_WATER, lead_ms=0.15, echo=()):
        self.routes = routes  # [(listen_host, listen_port, target_host, target_port, zone)]
        self.zone_of_ip = dict(zone_of_ip)
        for lh, _, _, _, z in routes:
            self.zone_of_ip.setdefault(lh, z)
        self.delays = delays
        self.high_water = high_water
        self.lead = lead_ms / 1000.0
        self.echo = list(echo)
        self.servers = []
        self.stats = collections.defaultdict(lambda: {"conns": 0, "bytes_fwd": 0, "bytes_back": 0})
        self.unknown_sources = collections.Counter()
        self.exit_on_eof = False

    def count_bytes(self, side, n):
        key, direction = side.stat_key, side.direction
        self.stats[key]["bytes_fwd" if direction == "fwd" else "bytes_back"] += n

    async def start(self):
        loop = asyncio.get_running_loop()
        try:
            self.clock = _TimerFd(loop)
        except Exception as e:  # not Linux, or no ctypes
            print(f"georelay: timerfd unavailable ({e}); using asyncio timers", file=sys.stderr)
            self.clock = _CallAt(loop)
        for (lh, lp, th, tp, zone) in self.routes:
            srv = await loop.create_server(lambda r=(lh, lp, th, tp, zone): _Accepted(self, r), lh, lp,
                                           reuse_address=True, backlog=256)
            self.servers.append(srv)
        for (h, p) in self.echo:
            srv = await loop.create_server(_Echo, h, p, reuse_address=True)
            self.servers.append(srv)

    def close(self):
        for s in self.servers:
            s.close()


class _Accepted(Side):
    """The socket a peer dialed (on the route's listen address). Dials the target on connect."""

    def __init__(self, relay, route):
        self.route = route
        super().__init__(relay, None, "in")

    def connection_made(self, transport):
        super().connection_made(transport)
        lh, lp, th, tp, dst_zone = self.route
        src_ip = transport.get_extra_info("peername")[0]
        src_zone = self.relay.zone_of_ip.get(src_ip)
        if src_zone is None:
            self.relay.unknown_sources[src_ip] += 1
        self.stat_key = f"{src_zone or '?'}->{dst_zone}"
        self.direction = "fwd"
        self.relay.stats[self.stat_key]["conns"] += 1
        delays = self.relay.delays
        self.delay_fn = lambda: delays(src_zone, dst_zone)
        transport.pause_reading()
        self.pause_reasons.add("connecting")
        self.dial_task = self.loop.create_task(self._dial(src_ip if src_zone is not None else None, th, tp))

    async def _dial(self, bind_ip, th, tp):
        up = Side(self.relay, self.delay_fn, "out")
        up.stat_key, up.direction = self.stat_key, "back"
        try:
            sock = socket.socket(socket.AF_INET6 if ":" in th else socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            if bind_ip:  # let the target see the real source IP
                try:
                    sock.bind((bind_ip, 0))
                except OSError:
                    pass
            await self.loop.sock_connect(sock, (th, tp))
            await self.loop.create_connection(lambda: up, sock=sock)
        except OSError:
            self.transport.close()
            return
        up.other, self.other = self, up
        if self.closed:
            up.transport.close()
            return
        self._resume("connecting")


class _Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.t = transport
        set_nodelay(transport)

    def data_received(self, data):
        self.t.write(data)


async def _stdin_commands(relay, stop):
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    except (ValueError, OSError):
        return
    while True:
        line = await reader.readline()
        if not line:  # stdin closed: stop if our controller went away, else run until a signal
            if relay.exit_on_eof:
                stop.set()
            return
        w = line.decode().split()
        try:
            if not w:
                continue
            if w[0] == "delay":
                relay.delays.default = float(w[1]) / 1000.0
                out = f"ok delay {w[1]}"
            elif w[0] == "pair":
                relay.delays.set_pair(w[1], w[2], float(w[3]))
                out = f"ok pair {w[1]} {w[2]} {w[3]}"
            elif w[0] == "stats":
                out = json.dumps({"pairs": relay.stats, "unknown_sources": dict(relay.unknown_sources),
                                  "default_ms": relay.delays.default * 1000})
            elif w[0] == "quit":
                print("ok bye", flush=True)
                stop.set()
                return
            else:
                out = f"error unknown command {w[0]}"
        except Exception as e:  # bad argument
            out = f"error {e}"
        print(out, flush=True)


async def serve(relay):
    await relay.start()
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # keep a strong reference: asyncio holds tasks weakly, and a task waiting on stdin could be
    # garbage-collected ("Task was destroyed but it is pending"), silently ending the control channel
    relay.control_task = loop.create_task(_stdin_commands(relay, stop))
    await stop.wait()
    relay.close()


def parse_route(s):
    # LISTEN=TARGET@ZONE
    left, zone = s.rsplit("@", 1)
    listen, target = left.split("=", 1)
    lh, lp = hostport(listen)
    th, tp = hostport(target)
    return (lh, lp, th, tp, zone)


def serve_args(routes, zone_ips=None, delay_ms=25.0, pairs=None, echo=(), lead_ms=0.15, max_buffer_mib=64):
    """argv for `georelay.py serve` (used by selftest)."""
    a = [sys.executable, os.path.abspath(__file__), "serve", "--delay-ms", str(delay_ms),
         "--lead-ms", str(lead_ms), "--max-buffer-mib", str(max_buffer_mib), "--exit-on-stdin-eof"]
    for (lh, lp, th, tp, z) in routes:
        a += ["--route", f"{lh}:{lp}={th}:{tp}@{z}"]
    for ip, z in (zone_ips or {}).items():
        a += ["--zone-ip", f"{ip}={z}"]
    for (za, zb), ms in (pairs or {}).items():
        a += ["--pair", f"{za}:{zb}={ms}"]
    for h, p in echo:
        a += ["--echo", f"{h}:{p}"]
    return a


class RelayProcess:
    """A `georelay.py serve` subprocess driven through its stdin."""

    def __init__(self, argv):
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  bufsize=1, start_new_session=True)
        line = self.p.stdout.readline().strip()
        if line != "ready":
            self.p.kill()
            raise RuntimeError(f"georelay did not start: {line!r}")

    def cmd(self, line, timeout=10):
        import select
        if self.p.poll() is not None:
            raise RuntimeError(f"georelay exited (rc {self.p.returncode})")
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        r, _, _ = select.select([self.p.stdout], [], [], timeout)
        if not r:
            raise RuntimeError(f"georelay did not answer {line!r} within {timeout} s")
        return self.p.stdout.readline().strip()

    def set_delay(self, ms):
        r = self.cmd(f"delay {ms}")
        assert r.startswith("ok"), r

    def stats(self):
        return json.loads(self.cmd("stats"))

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


# ---------------------------------------------------------------- client-side checks

def tcp_ping(host, port, src=None, count=50, size=16, warmup=3):
    """Round trips (seconds) of `size` bytes to an echo server, one connection, TCP_NODELAY."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if src:
        s.bind((src, 0))
    s.settimeout(10)
    s.connect((host, port))
    msg = b"p" * size
    rtts = []
    for i in range(warmup + count):
        t0 = time.perf_counter()
        s.sendall(msg)
        got = 0
        while got < size:
            b = s.recv(size - got)
            if not b:
                raise RuntimeError("echo closed")
            got += len(b)
        if i >= warmup:
            rtts.append(time.perf_counter() - t0)
    s.close()
    return rtts


def tcp_bulk(host, port, src=None, nbytes=32 << 20):
    """Push nbytes through an echo server and read them back concurrently; seconds until the last byte
    came back."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if src:
        s.bind((src, 0))
    s.settimeout(30)
    s.connect((host, port))
    buf = b"x" * (256 << 10)
    t0 = time.perf_counter()

    def send():
        left = nbytes
        while left > 0:
            n = s.send(buf[:min(left, len(buf))])
            left -= n

    th = threading.Thread(target=send)
    th.start()
    got = 0
    while got < nbytes:
        b = s.recv(1 << 20)
        if not b:
            break
        got += len(b)
    dt = time.perf_counter() - t0
    th.join()
    s.close()
    return dt


def summarize(xs):
    xs = sorted(xs)
    p90 = xs[min(len(xs) - 1, int(round(0.9 * (len(xs) - 1))))]
    return statistics.median(xs), p90, xs[0]


def selftest(delay_ms=25.0, net=77, lead_ms=0.15):
    """Relay verification: RTT through the relay for same-zone and cross-zone sources, and bulk
    throughput. Returns a list of printable lines."""
    probe = f"127.0.{net}.200"
    z1_src, z2_src = f"127.0.{net}.201", f"127.0.{net}.202"
    routes = [(probe, 3901, probe, 4901, "z1")]
    rp = RelayProcess(serve_args(routes, {z1_src: "z1", z2_src: "z2"}, delay_ms, echo=[(probe, 4901)],
                                 lead_ms=lead_ms))
    out = []
    try:
        direct = summarize(tcp_ping(probe, 4901, z2_src))
        out.append(f"direct echo (no relay)        : median {direct[0]*1e3:6.2f} ms  p90 {direct[1]*1e3:6.2f}  min {direct[2]*1e3:6.2f}")
        for label, src in (("relay, same zone (z1->z1)", z1_src), (f"relay, cross zone (z2->z1)", z2_src)):
            m = summarize(tcp_ping(probe, 3901, src))
            out.append(f"{label:30s}: median {m[0]*1e3:6.2f} ms  p90 {m[1]*1e3:6.2f}  min {m[2]*1e3:6.2f}"
                       f"   (expected {2*delay_ms if 'cross' in label else 0:.1f} ms + direct)")
        n = 32 << 20
        for label, src, exp in (("bulk 32 MiB echo, same zone", z1_src, 0), ("bulk 32 MiB echo, cross zone", z2_src, 2 * delay_ms)):
            dt = tcp_bulk(probe, 3901, src, n)
            out.append(f"{label:30s}: {dt*1e3:7.1f} ms  ({n / dt / 1e6:6.1f} MB/s each way incl. {exp:.0f} ms of delay)")
    finally:
        rp.stop()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--route", action="append", default=[], help="LISTEN_IP:PORT=TARGET_IP:PORT@ZONE")
    s.add_argument("--zone-ip", action="append", default=[], help="IP=ZONE (source IPs of each zone)")
    s.add_argument("--delay-ms", type=float, default=25.0, help="inter-zone one-way delay (default 25)")
    s.add_argument("--pair", action="append", default=[], help="ZA:ZB=MS one-way delay for one zone pair")
    s.add_argument("--echo", action="append", default=[], help="IP:PORT run an echo server there")
    s.add_argument("--lead-ms", type=float, default=0.15,
                   help="arm the timer this early: offsets the ~0.18 ms wakeup latency measured for timerfd here")
    s.add_argument("--max-buffer-mib", type=int, default=64)
    s.add_argument("--exit-on-stdin-eof", action="store_true", help="stop when stdin closes (controller died)")
    p = sub.add_parser("ping")
    p.add_argument("target")
    p.add_argument("--src")
    p.add_argument("--count", type=int, default=50)
    t = sub.add_parser("selftest")
    t.add_argument("--delay-ms", type=float, default=25.0)
    t.add_argument("--net", type=int, default=77)
    t.add_argument("--lead-ms", type=float, default=0.15)
    a = ap.parse_args()
    if a.cmd == "serve":
        routes = [parse_route(r) for r in a.route]
        zips = dict(x.split("=", 1) for x in a.zone_ip)
        pairs = {}
        for x in a.pair:
            zz, ms = x.split("=", 1)
            za, zb = zz.split(":", 1)
            pairs[(za, zb)] = float(ms)
        relay = Relay(routes, zips, Delays(a.delay_ms, pairs), a.max_buffer_mib << 20, a.lead_ms,
                      [hostport(e) for e in a.echo])
        relay.exit_on_eof = a.exit_on_stdin_eof
        asyncio.run(serve(relay))
    elif a.cmd == "ping":
        h, port = hostport(a.target)
        m = summarize(tcp_ping(h, port, a.src, a.count))
        print(f"rtt median {m[0]*1e3:.2f} ms  p90 {m[1]*1e3:.2f} ms  min {m[2]*1e3:.2f} ms")
    else:
        for line in selftest(a.delay_ms, a.net, a.lead_ms):
            print(line)


if __name__ == "__main__":
    main()
