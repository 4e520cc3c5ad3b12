#!/usr/bin/env python3
"""benches/rollout/rollout.py: pod rollouts behind a real load balancer.

What an app's preStop costs in failed requests and in hold time, with real
software only, on this machine, in network namespaces of its own (traffic on
loopback and veth pairs inside them):

- HAProxy (Debian's) in a "balancer" namespace, each slot with two
  frontends, each to two servers, the rolling pod and a replica that stays
  up: an L7 one (`mode http`, kept-alive backend connections, `http-reuse
  always`, as an ingress or a cloud L7 balancer) and an L4 one (`mode tcp`:
  each client connection is one connection to the pod, as through
  kube-proxy or a network balancer). HAProxy's defaults otherwise: a
  connection the pod refuses is retried three times, a second apart, on the
  same server, then failed (no `option redispatch`).
- The pod, fresh for each rollout: a network namespace (a veth pair to the
  balancer) and a PID namespace whose PID 1 is the app, as a container's,
  so that the hook reads the pod's own history (`/proc/net/snmp` of its
  namespace, PID 1's age). The app is nginx, shut down as its image does,
  SIGQUIT, its graceful quit (finish what is in flight, then exit); or
  (`--app py`) a small Python server that on SIGTERM stops accepting,
  finishes what is in flight and exits.
- Real clients, one kind per rollout: `wrk` (kept-alive connections, L7;
  its Lua `delay()` draws the gaps), `curl` (one request per connection,
  the client closing first; L4), `ab` (HTTP/1.0, the server closing first;
  L4), `h2` (HTTP/2 over one connection, L7, python3-h2's protocol stack:
  h2load can only pace at a constant rate).
- Traffic shapes (`--shapes`): `poisson:R` (arrivals at random, R a
  second), `bursty` (on/off: bursts of Poisson arrivals at 40/s lasting
  1.5 s on average, silences of 4 s on average between them, both
  exponential: the shape a Poisson model is too optimistic for),
  `h2long` (HTTP/2 only: streams of about 3 s each, arriving at random
  at 2 a second), `const:R` (the earlier constant rate).

One rollout, as the kubelet and the endpoints controller make it: the pod
starts and joins the balancer; traffic flows for `--age` seconds (the pod's
history); at T0 the pod is deleted: the app container's preStop hook starts
(`sleep N`, or `prestop-wait quiesce`), and after a propagation delay D
the balancer stops sending to it (`set server ... state maint`, HAProxy's
runtime API); when the hook ends the app gets its stop signal; at T0 + 30 s
(the grace period) it is killed. The client's failures (refused, reset,
5xx, timeouts) over the rollout count against it; the hold is the hook's
time.

D is log-normal, median 2 s, sigma 0.6 (90% between 0.75 and 5.4 s), capped
at 10 s: kube-proxy applies an EndpointSlice change within about a second
(`--iptables-min-sync-period` 1 s), ingress controllers and cloud balancers
take seconds more (target deregistration), and the long tail is what makes
people raise their sleep (quay/quay#6871: 30 -> 45 s; aws-load-balancer-
controller#2106: 70 s). `--delay S` fixes it instead.

Paired: each (client, shape) cell draws its rollouts' D and arrival seeds
once; the i-th rollout of every strategy uses the i-th draw, so the
strategies are compared on the same rollouts.

Writes one JSON line per rollout to --json, and with --docs DIR a Markdown
table and an SVG. Needs root, ip, unshare/nsenter (util-linux), haproxy,
nginx, and the clients asked for (wrk, curl, ab from apache2-utils,
python3-h2 for h2).
"""

import argparse
import ctypes
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

GRACE = 30.0
TAIL = 4.0  # after the app's exit and the balancer's removal, for retries
BURST_RATE, BURST_ON, BURST_OFF = 40.0, 1.5, 4.0
LONG_S = 3.0  # an h2long stream's response time
LONG_RATE = 2.0
CLIENTS = ["wrk", "curl", "ab", "h2"]
LIBC = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


def run(*args, check=True):
    return subprocess.run(args, check=check, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def ns(name, *args):
    return ["ip", "netns", "exec", name, *args]


def wait_listen(netns, addr, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        out = run(*ns(netns, "ss", "-Htln"), check=False).stdout
        if any(line.split()[3] == addr for line in out.splitlines() if len(line.split()) > 3):
            return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {addr} in {netns}")


# ---- traffic shapes -----------------------------------------------------------

def parse_shape(s):
    kind, _, arg = s.partition(":")
    if kind in ("poisson", "const") and arg:
        rate = float(arg)
        if rate <= 0:
            raise ValueError(f"{s}: the rate must be above 0")
        return (kind, rate)
    if kind in ("bursty", "h2long") and not arg:
        return (kind, None)
    raise ValueError(f"unknown traffic shape {s!r} (poisson:R, const:R, bursty, h2long)")


def shape_name(shape):
    kind, rate = shape
    if kind == "poisson":
        return f"poisson {rate:g}/s"
    if kind == "const":
        return f"constant {rate:g}/s"
    if kind == "bursty":
        return "bursty on/off"
    return "h2 long streams"


def mean_rate(shape):
    kind, rate = shape
    if kind in ("poisson", "const"):
        return rate
    if kind == "bursty":
        return BURST_RATE * BURST_ON / (BURST_ON + BURST_OFF)
    return LONG_RATE


def arrivals(shape, seed, until):
    """Arrival offsets (seconds from the client's start) up to `until`."""
    rng = random.Random(seed)
    kind, rate = shape
    out, t = [], 0.0
    if kind == "const":
        while t < until:
            out.append(t)
            t += 1.0 / rate
        return out
    if kind in ("poisson", "h2long"):
        rate = rate if kind == "poisson" else LONG_RATE
        while True:
            t += rng.expovariate(rate)
            if t >= until:
                return out
            out.append(t)
    # bursty: a random phase to start in, then on/off periods.
    on = rng.random() < BURST_ON / (BURST_ON + BURST_OFF)
    while t < until:
        if on:
            end = t + rng.expovariate(1.0 / BURST_ON)
            while True:
                t += rng.expovariate(BURST_RATE)
                if t >= end:
                    t = end
                    break
                out.append(t)
        else:
            t += rng.expovariate(1.0 / BURST_OFF)
        on = not on
    return [a for a in out if a < until]


def wrk_lua(shape, seed, conns):
    """A wrk script whose `delay()` draws each connection's gaps."""
    kind, rate = shape
    head = f"math.randomseed({seed})\nlocal function exp(mean) return -math.log(1 - math.random()) * mean end\n"
    if kind == "const":
        return f"function delay() return {1000.0 * conns / rate} end\n"
    if kind == "poisson":
        return head + f"function delay() return exp({1000.0 * conns / rate}) end\n"
    if kind == "bursty":
        # One connection: within a burst Poisson gaps, past its end an
        # off period, then a new burst.
        return head + (
            f"local left = exp({BURST_ON * 1000})\n"
            "function delay()\n"
            f"  local g = exp({1000.0 / BURST_RATE})\n"
            "  if g <= left then left = left - g; return g end\n"
            f"  local wait = left + exp({BURST_OFF * 1000})\n"
            f"  left = exp({BURST_ON * 1000})\n"
            "  return wait\n"
            "end\n")
    raise ValueError(f"wrk has no {kind} shape")


NGINX_CONF = """daemon off; worker_processes 1; pid {d}/nginx.pid; error_log stderr error;
events {{ worker_connections 1024; }}
http {{ access_log off; keepalive_timeout 65s; keepalive_requests 100000;
client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};
{servers} }}
"""

# A long stream: a body sent at a limited rate, LONG_S seconds of it.
LONG_BYTES = 150 * 1024


PY_APP = r"""
import http.server, signal, sys, threading, time
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path == "/long":
            time.sleep(%(long)s)
        self.send_response(200)
        self.send_header("content-length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("0.0.0.0", 8080), H)
srv.daemon_threads = False
srv.block_on_close = True
def term(*_):
    # Stop accepting; server_close() below waits for requests in flight.
    threading.Thread(target=srv.shutdown).start()
signal.signal(signal.SIGTERM, term)
srv.serve_forever()
srv.server_close()
""" % {"long": LONG_S}


def nginx_conf(d, listens):
    long = (f'location = /long {{ root {d}; try_files /long.bin =404; limit_rate {LONG_BYTES // int(LONG_S)}; '
            f'limit_rate_after 0; default_type application/octet-stream; }}')
    servers = "".join(f'server {{ listen {a}; location / {{ return 200 "ok\\n"; }} {long} }}\n' for a in listens)
    return NGINX_CONF.format(d=d, servers=servers)


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


class Namespaces:
    """The processes and network namespaces a benchmark makes, and a
    scratch directory: `down()` removes them all."""

    def __init__(self, prefix):
        self.tag = f"{prefix}{os.getpid()}"
        self.dir = tempfile.mkdtemp(prefix=f"{self.tag}-")
        os.chmod(self.dir, 0o755)
        self.procs = []
        self.netns = []
        self.lock = threading.Lock()

    def spawn(self, argv, **kw):
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True, **kw)
        with self.lock:
            self.procs.append(p)
        return p

    def down(self):
        with self.lock:
            procs = list(self.procs)
        for p in procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        for n in self.netns:
            run("ip", "netns", "del", n, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def pod_net(self, slot, peer, net):
        """A fresh network namespace for slot's pod, wired to namespace
        `peer` by a veth pair: the peer is 10.NET.SLOT.1, the pod .2."""
        pod = f"{self.tag}-p{slot}"
        a, b = f"{self.tag[:6]}a{slot}", f"{self.tag[:6]}b{slot}"
        # The last pod's namespace may outlive its name (a socket still
        # closing): its veth pair goes with the peer's end.
        run(*ns(peer, "ip", "link", "del", a), check=False)
        run("ip", "netns", "del", pod, check=False)
        run("ip", "netns", "add", pod)
        with self.lock:
            if pod not in self.netns:
                self.netns.append(pod)
        run(*ns(pod, "ip", "link", "set", "lo", "up"))
        run("ip", "link", "add", a, "netns", peer, "type", "veth", "peer", "name", b, "netns", pod)
        run(*ns(peer, "ip", "addr", "add", f"10.{net}.{slot}.1/30", "dev", a))
        run(*ns(pod, "ip", "addr", "add", f"10.{net}.{slot}.2/30", "dev", b))
        run(*ns(peer, "ip", "link", "set", a, "up"))
        run(*ns(pod, "ip", "link", "set", b, "up"))
        return pod


class Bench(Namespaces):
    def __init__(self, args):
        super().__init__("rb")
        self.args = args
        self.lb = f"{self.tag}-lb"
        self.sock = os.path.join(self.dir, "haproxy.sock")
        with open(os.path.join(self.dir, "long.bin"), "wb") as f:
            f.write(b"x" * LONG_BYTES)

    # ---- set-up and tear-down ---------------------------------------------
    def up(self, slots):
        run("ip", "netns", "add", self.lb)
        self.netns.append(self.lb)
        run(*ns(self.lb, "ip", "link", "set", "lo", "up"))
        # The replicas that stay up, one port per slot, in the balancer's
        # namespace.
        d = os.path.join(self.dir, "replicas")
        os.mkdir(d)
        shutil.copy(os.path.join(self.dir, "long.bin"), d)
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write(nginx_conf(d, [f"127.0.0.1:{9000 + i}" for i in range(slots)]))
        self.spawn(ns(self.lb, "nginx", "-e", "stderr", "-c", os.path.join(d, "nginx.conf")))
        for i in range(slots):
            wait_listen(self.lb, f"127.0.0.1:{9000 + i}")
        cfg = [
            "global", f"  stats socket {self.sock} mode 600 level admin", "  maxconn 8192",
            "defaults", "  timeout connect 2s", "  timeout client 30s",
            "  timeout server 30s", "  timeout http-keep-alive 10s",
        ]
        for i in range(slots):
            pod = f"10.80.{i}.2:8080"
            cfg += [
                f"frontend fe{i}", "  mode http", f"  bind 127.0.0.1:{8000 + i}",
                f"  bind 127.0.0.1:{8100 + i} proto h2", f"  default_backend be{i}",
                f"backend be{i}", "  mode http", "  http-reuse always", "  balance roundrobin",
                f"  server pod {pod} disabled", f"  server replica 127.0.0.1:{9000 + i}",
                f"frontend ft{i}", "  mode tcp", f"  bind 127.0.0.1:{8200 + i}", f"  default_backend bt{i}",
                f"backend bt{i}", "  mode tcp", "  balance roundrobin",
                f"  server pod {pod} disabled", f"  server replica 127.0.0.1:{9000 + i}",
            ]
        conf = os.path.join(self.dir, "haproxy.cfg")
        with open(conf, "w") as f:
            f.write("\n".join(cfg) + "\n")
        # Its warnings (a server into and out of maintenance, every
        # rollout) go to a file, not the run's output.
        self.spawn(ns(self.lb, "haproxy", "-db", "-f", conf),
                   stderr=open(os.path.join(self.dir, "haproxy.log"), "w"))
        for i in range(slots):
            wait_listen(self.lb, f"127.0.0.1:{8000 + i}")

    def pod_net(self, slot):
        return super().pod_net(slot, self.lb, 80)

    def haproxy(self, cmd):
        s = socket.socket(socket.AF_UNIX)
        s.connect(self.sock)
        s.sendall(cmd.encode() + b"\n")
        out = b""
        while chunk := s.recv(4096):
            out += chunk
        s.close()
        return out.decode()

    def servers(self, slot, state):
        for be in (f"be{slot}", f"bt{slot}"):
            self.haproxy(f"set server {be}/pod state {state}")

    # ---- one rollout --------------------------------------------------------
    def rollout(self, slot, job):
        client_kind, shape, strategy, delay, seed = (
            job["client"], job["shape"], job["strategy"], job["delay"], job["seed"])
        pod = self.pod_net(slot)
        d = os.path.join(self.dir, f"app{slot}-{job['n']}")
        os.mkdir(d)
        shutil.copy(os.path.join(self.dir, "long.bin"), d)
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write(nginx_conf(d, ["0.0.0.0:8080"]))
        # The app is PID 1 of a PID namespace of its own, as in a container.
        app_argv = ([sys.executable, "-c", PY_APP] if self.args.app == "py"
                    else ["nginx", "-e", "stderr", "-c", os.path.join(d, "nginx.conf")])
        app = self.spawn(ns(pod, "unshare", "--pid", "--fork", "--mount-proc", "--kill-child", *app_argv),
                         stderr=subprocess.DEVNULL)
        client = None
        try:
            wait_listen(pod, "0.0.0.0:8080")
            pid1 = next(iter(children(app.pid)), None)
            if pid1 is None:
                raise RuntimeError("the app's PID 1 is not found")
            self.servers(slot, "ready")
            client = Client(self, client_kind, shape, slot, seed)
            time.sleep(self.args.age)
            t0 = time.monotonic()
            hook = self.spawn(["nsenter", "-t", str(pid1), "-p", "-m", "-n", "--", *self.hook_argv(strategy)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            removal = threading.Timer(delay, lambda: self.servers(slot, "maint"))
            removal.start()
            try:
                _, hook_err = hook.communicate(timeout=GRACE)
                hold = time.monotonic() - t0
            except subprocess.TimeoutExpired:
                os.killpg(hook.pid, signal.SIGKILL)
                _, hook_err = hook.communicate()
                hold = GRACE
            try:
                os.kill(pid1, signal.SIGTERM if self.args.app == "py" else signal.SIGQUIT)
            except ProcessLookupError:
                pass
            try:
                app.wait(timeout=max(0.1, GRACE - (time.monotonic() - t0)))
                killed = False
            except subprocess.TimeoutExpired:
                os.killpg(app.pid, signal.SIGKILL)
                app.wait()
                killed = True
            app_exit = time.monotonic() - t0
            removal.join()
            if hook.returncode in (126, 127):
                raise RuntimeError(f"the hook did not run: {(hook_err or '').strip()}")
            # A request the balancer sent to the pod once it was gone is
            # retried (HAProxy's default `retries 3`, a second apart) before
            # it fails: the clients' last answers come up to TAIL later.
            time.sleep(TAIL)
            requests, failures, detail = client.stop()
            client = None
        finally:
            if client is not None:
                client.stop()
            if app.poll() is None:
                os.killpg(app.pid, signal.SIGKILL)
                app.wait()
            shutil.rmtree(d, ignore_errors=True)
        return {
            "slot": slot, "app": self.args.app, "kind": client_kind, "shape": shape_name(shape),
            "rate": mean_rate(shape), "pair": job["i"], "seed": seed, "strategy": strategy, "delay_s": round(delay, 3),
            "age_s": self.args.age, "hold_s": round(hold, 3), "app_exit_s": round(app_exit, 3),
            "killed": killed, "requests": requests, "failures": failures, "detail": detail,
            "hook_exit": hook.returncode,
            "hook_last": (hook_err or "").strip().splitlines()[-1:] if strategy.startswith("quiesce") else [],
        }

    def hook_argv(self, strategy):
        if strategy.startswith("sleep"):
            return ["sleep", strategy.split()[1]]
        argv = [self.args.bin, "quiesce", f"--timeout={int(GRACE) - 5}s"]
        if "min-wait" in strategy:
            argv.append(f"--min-wait={self.args.min_wait:g}s")
        if "idle=" in strategy:
            argv.append("--" + strategy.split()[1])
        return argv


class Client:
    """One kind of client against slot's frontends, from now until stop(),
    sending at the shape's arrival times; counts requests and failures."""

    def __init__(self, bench, kind, shape, slot, seed):
        self.bench, self.kind, self.shape = bench, kind, shape
        self.lb = bench.lb
        self.requests = self.failures = 0
        self.detail = {}
        self.stopping = threading.Event()
        self.proc = None
        self.thread = None
        path = "/long" if shape[0] == "h2long" else "/"
        if kind == "wrk":
            conns = 1 if shape[0] == "bursty" else max(1, min(4, math.ceil(shape[1] / 50)))
            lua = os.path.join(bench.dir, f"delay-{slot}-{seed}.lua")
            with open(lua, "w") as f:
                f.write(wrk_lua(shape, seed, conns))
            self.proc = bench.spawn(ns(self.lb, "wrk", "-t1", f"-c{conns}", "-d3600s", "--timeout", "5s",
                                       "-s", lua, f"http://127.0.0.1:{8000 + slot}{path}"),
                                    stdout=subprocess.PIPE, text=True)
            return
        # Far past any rollout's end: stop() ends it sooner.
        times = arrivals(shape, seed, bench.args.age + GRACE + TAIL + 30)
        if kind == "h2":
            self.h2 = H2Client(self, slot, path, times)
            self.thread = threading.Thread(target=self.h2.run, daemon=True)
        else:
            self.thread = threading.Thread(target=self.loop, args=(slot, path, times), daemon=True)
        self.thread.start()

    def count(self, ok, why=""):
        with self.bench.lock:
            self.requests += 1
            if not ok:
                self.failures += 1
                self.detail[why] = self.detail.get(why, 0) + 1

    def note(self, what):
        with self.bench.lock:
            self.detail[what] = self.detail.get(what, 0) + 1

    def one(self, argv, parse):
        try:
            p = subprocess.run(ns(self.lb, *argv), stdin=subprocess.DEVNULL, capture_output=True,
                               text=True, timeout=15)
            ok, why = parse(p)
        except subprocess.TimeoutExpired:
            ok, why = False, "timeout"
        self.count(ok, why)

    def loop(self, slot, path, times):
        # curl and ab go through the L4 frontend: the pod sees their own
        # connections, closed by the client (curl) or by the server (ab).
        url = f"http://127.0.0.1:{8200 + slot}{path}"
        if self.kind == "curl":
            argv = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", "--max-time", "10", url]

            def parse(p):
                code, _, took = p.stdout.strip().partition(" ")
                if p.returncode == 0 and code == "200" and float(took or 0) > 1.0 + (LONG_S if path == "/long" else 0):
                    # Answered, but only after the balancer's retries: a
                    # request that met the gone pod. Not a failure; counted.
                    self.note("slow (>1s), answered")
                return (p.returncode == 0 and code == "200"), (code if p.returncode == 0 else f"curl exit {p.returncode}")
        else:  # ab: HTTP/1.0, one request per run
            argv = ["ab", "-q", "-n", "1", "-s", "10", url]

            def parse(p):
                failed = re.search(r"Failed requests:\s+(\d+)", p.stdout)
                non2xx = re.search(r"Non-2xx responses:\s+(\d+)", p.stdout)
                body = re.search(r"HTML transferred:\s+(\d+) bytes", p.stdout)
                if p.returncode != 0 or not failed:
                    return False, f"ab exit {p.returncode}"
                if int(failed[1]) or non2xx:
                    return False, "ab failed/non-2xx"
                # ab counts a connection closed without an answer (what an
                # L4 balancer gives once its retries fail) as complete.
                if not body or int(body[1]) == 0:
                    return False, "ab empty reply"
                return True, ""
        start = time.monotonic()
        workers = []
        for t in times:
            if self.stopping.wait(max(0.0, start + t - time.monotonic())):
                break
            w = threading.Thread(target=self.one, args=(argv, parse), daemon=True)
            w.start()
            workers.append(w)
        for w in workers:
            w.join()

    def stop(self):
        if self.thread:
            self.stopping.set()
            self.thread.join()
            return self.requests, self.failures, self.detail
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=120)
        requests, failures, detail = parse_wrk(out)
        if self.bench.args.raw:
            detail["raw"] = out
        return requests, failures, detail


class H2Client:
    """HTTP/2 over one connection to HAProxy's h2 frontend, a stream per
    arrival; a lost connection fails its open streams and the next arrival
    opens a new one."""

    TIMEOUT = 10.0

    def __init__(self, client, slot, path, times):
        self.client, self.slot, self.path, self.times = client, slot, path, times
        self.lock = threading.Lock()
        self.conn = self.sock = None
        self.open = {}  # stream id -> [sent at, status]

    def connect(self):
        import h2.config
        import h2.connection
        # The balancer's namespace: a socket made there is a socket there.
        # (setns is per thread; Debian 12's Python 3.11 has no os.setns.)
        fd = os.open(f"/run/netns/{self.client.lb}", os.O_RDONLY)
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            if LIBC.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns")
            try:
                sock = socket.create_connection(("127.0.0.1", 8100 + self.slot), timeout=5)
            finally:
                LIBC.setns(own, CLONE_NEWNET)
        finally:
            os.close(fd)
            os.close(own)
        sock.settimeout(None)
        conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        self.conn, self.sock = conn, sock
        threading.Thread(target=self.reader, args=(conn, sock), daemon=True).start()

    def lost(self, conn, why):
        with self.lock:
            if self.conn is not conn:
                return
            failed = list(self.open.values())
            self.open.clear()
            self.conn = None
            try:
                self.sock.close()
            except OSError:
                pass
        for _ in failed:
            self.client.count(False, why)

    def reader(self, conn, sock):
        import h2.events
        while True:
            try:
                data = sock.recv(65536)
            except OSError as e:
                return self.lost(conn, f"connection: {e.__class__.__name__}")
            if not data:
                return self.lost(conn, "connection closed")
            done = []
            with self.lock:
                if self.conn is not conn:
                    return
                try:
                    events = conn.receive_data(data)
                except Exception as e:  # a protocol error ends the connection
                    events = []
                    done.append((False, f"h2: {e.__class__.__name__}"))
                for e in events:
                    if isinstance(e, h2.events.ResponseReceived):
                        status = dict(e.headers).get(b":status", b"")
                        if e.stream_id in self.open:
                            self.open[e.stream_id][1] = status
                    elif isinstance(e, h2.events.DataReceived):
                        conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
                    elif isinstance(e, h2.events.StreamEnded):
                        s = self.open.pop(e.stream_id, None)
                        if s:
                            done.append((s[1] == b"200", f"status {s[1].decode() or '?'}"))
                    elif isinstance(e, h2.events.StreamReset):
                        if self.open.pop(e.stream_id, None):
                            done.append((False, "stream reset"))
                    elif isinstance(e, h2.events.ConnectionTerminated):
                        done.append((None, "goaway"))
                try:
                    sock.sendall(conn.data_to_send())
                except OSError:
                    pass
            for ok, why in done:
                if ok is None:
                    return self.lost(conn, "goaway")
                self.client.count(ok, why)

    def send(self):
        with self.lock:
            conn = self.conn
        if conn is None:
            try:
                self.connect()
            except OSError as e:
                self.client.count(False, f"connect: {e.__class__.__name__}")
                return
        with self.lock:
            conn = self.conn
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, [(":method", "GET"), (":path", self.path), (":scheme", "http"),
                                    (":authority", f"127.0.0.1:{8100 + self.slot}")], end_stream=True)
            self.open[sid] = [time.monotonic(), b""]
            try:
                self.sock.sendall(conn.data_to_send())
            except OSError:
                pass

    def expire(self):
        now = time.monotonic()
        with self.lock:
            old = [sid for sid, (at, _) in self.open.items() if now - at > self.TIMEOUT + LONG_S]
            for sid in old:
                del self.open[sid]
        for _ in old:
            self.client.count(False, "timeout")

    def run(self):
        start = time.monotonic()
        for t in self.times:
            if self.client.stopping.wait(max(0.0, start + t - time.monotonic())):
                break
            self.send()
            self.expire()
        # What is still open at the stop gets its timeout to finish.
        end = time.monotonic() + self.TIMEOUT + LONG_S
        while time.monotonic() < end:
            with self.lock:
                if not self.open:
                    break
            time.sleep(0.05)
        self.expire()
        with self.lock:
            left = list(self.open)
            self.open.clear()
            if self.sock:
                self.sock.close()
            self.conn = None
        for _ in left:
            self.client.count(False, "timeout")


def parse_wrk(out):
    detail = {}
    m = re.search(r"(\d+) requests in", out)
    requests = int(m[1]) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        for k, v in zip(["connect", "read", "write", "timeout"], m.groups()):
            if int(v):
                detail[k] = int(v)
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        detail["non-2xx"] = int(m[1])
    return requests, sum(detail.values()), detail


def strategies(args):
    out = []
    if args.quiesce:
        out.append("quiesce")
    if args.quiesce_min_wait:
        out.append("quiesce min-wait")
    out += [f"sleep {n}" for n in args.sleeps]
    return out


def draw_delay(rng, args):
    if args.delay is not None:
        return args.delay
    return min(10.0, 2.0 * math.exp(rng.gauss(0.0, 0.6)))


def cells(args):
    """The (client, shape) pairs: h2long is HTTP/2's alone."""
    return [(c, shape) for shape in args.shapes for c in args.clients
            if shape[0] != "h2long" or c == "h2"]


def plan(args):
    """Every rollout, paired: a cell's i-th draw of D and seed is every
    strategy's i-th rollout."""
    rng = random.Random(args.seed)
    jobs = []
    for c, shape in cells(args):
        draws = [(draw_delay(rng, args), rng.randrange(1 << 30)) for _ in range(args.rollouts)]
        for s in strategies(args):
            for i, (delay, seed) in enumerate(draws):
                jobs.append({"client": c, "shape": shape, "strategy": s, "delay": delay, "seed": seed, "i": i})
    rng.shuffle(jobs)
    for n, j in enumerate(jobs):
        j["n"] = n
    return jobs


def expected(job, args):
    s = job["strategy"]
    hold = float(s.split()[1]) if s.startswith("sleep") else job["delay"] + 2.0 + 8.0 / max(1.0, mean_rate(job["shape"]))
    return 0.7 + args.age + hold + TAIL


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", help="the prestop-wait binary (not for --report)")
    ap.add_argument("--clients", default=",".join(CLIENTS), help="of " + ", ".join(CLIENTS))
    ap.add_argument("--shapes", default="poisson:0.5,poisson:2,poisson:20,poisson:200,bursty,h2long")
    ap.add_argument("--app", choices=["nginx", "py"], default="nginx")
    ap.add_argument("--slots", type=int, default=16, help="rollouts at once")
    ap.add_argument("--rollouts", type=int, default=100, help="per strategy per (client, shape)")
    ap.add_argument("--quiesce", type=int, default=1, help="1: quiesce with its defaults is a strategy")
    ap.add_argument("--quiesce-min-wait", type=int, default=0, help="1: also quiesce --min-wait")
    ap.add_argument("--min-wait", type=float, default=3.0)
    ap.add_argument("--sleeps", default="2,5,10")
    ap.add_argument("--age", type=float, default=15.0, help="seconds of traffic before the deletion")
    ap.add_argument("--delay", type=float, help="a fixed propagation delay instead of the draw")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", required=True, help="one JSON line per rollout")
    ap.add_argument("--docs", help="write rollout.md and rollout.svg here")
    ap.add_argument("--raw", action="store_true", help="keep wrk's output in the JSON")
    ap.add_argument("--dry-run", action="store_true", help="print the plan and its estimated time only")
    ap.add_argument("--report", type=float, metavar="SECONDS",
                    help="run nothing: write --docs from the rollouts already in --json, which took SECONDS")
    args = ap.parse_args()
    try:
        args.shapes = [parse_shape(s) for s in args.shapes.split(",") if s]
    except ValueError as e:
        sys.exit(f"rollout.py: --shapes: {e}")
    args.clients = [c for c in args.clients.split(",") if c]
    for c in args.clients:
        if c not in CLIENTS:
            sys.exit(f"rollout.py: --clients: unknown client {c!r} (of {', '.join(CLIENTS)})")
    args.sleeps = [int(x) for x in args.sleeps.split(",") if x != ""]
    if args.report is not None:
        with open(args.json) as f:
            write_docs([json.loads(line) for line in f if line.strip()], args, args.report)
        return
    jobs = plan(args)
    estimate = sum(expected(j, args) for j in jobs) / max(1, args.slots)
    print(f"{len(jobs)} rollouts over {len(cells(args))} (client, shape) cells x {len(strategies(args))} "
          f"strategies, {args.slots} at once: about {estimate / 60:.0f} min", flush=True)
    if args.dry_run:
        return
    if not args.bin:
        sys.exit("rollout.py: --bin is needed")
    # The hook runs in the pod's mount namespace, from its root.
    args.bin = os.path.abspath(args.bin)
    tools = {"wrk": "wrk", "curl": "curl", "ab": "ab"}
    for tool in ["ip", "unshare", "nsenter", "haproxy", "nginx"] + [tools[c] for c in args.clients if c in tools]:
        if not shutil.which(tool):
            sys.exit(f"rollout.py: needs {tool}")
    if "h2" in args.clients:
        try:
            import h2  # noqa: F401
        except ImportError:
            sys.exit("rollout.py: the h2 client needs python3-h2 (apt-get install python3-h2)")
    if os.geteuid() != 0:
        sys.exit("rollout.py: run as root (network namespaces)")
    bench = Bench(args)
    started = time.monotonic()
    out = open(args.json, "w")
    results = []
    errors = []

    def worker(slot):
        while True:
            with bench.lock:
                if not jobs or errors:
                    return
                job = jobs.pop()
            try:
                r = bench.rollout(slot, job)
            except Exception as e:
                with bench.lock:
                    errors.append(f"slot {slot}: {job['client']} {shape_name(job['shape'])} {job['strategy']}: {e!r}")
                return
            with bench.lock:
                results.append(r)
                out.write(json.dumps(r) + "\n")
                out.flush()
                done = len(results)
            print(f"[{time.monotonic() - started:6.0f}s] #{done} {r['kind']:4} {r['shape']:16} {r['strategy']:10} "
                  f"D={r['delay_s']:4.1f}s hold={r['hold_s']:5.2f}s failures={r['failures']}/{r['requests']}", flush=True)

    try:
        bench.up(args.slots)
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.slots)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        bench.down()
        out.close()
    took = time.monotonic() - started
    print(f"{len(results)} rollouts in {took:.0f}s", flush=True)
    if errors:
        sys.exit("rollout.py: " + "; ".join(errors))
    if args.docs:
        write_docs(results, args, took)


def summarise(results):
    table = {}
    for r in results:
        table.setdefault((r["kind"], r.get("shape", "constant 20/s"), r["strategy"]), []).append(r)
    return table


def order(strategy):
    if strategy.startswith("sleep"):
        return (1, int(strategy.split()[1]))
    return (0, {"quiesce": 0, "quiesce min-wait": 1}.get(strategy, 2))


def shape_order(name):
    m = re.match(r"(poisson|constant) ([\d.]+)/s", name)
    return (0, float(m[2])) if m else (1, name)


def verdicts(table):
    """Per (client, shape) and quiesce strategy: the three goals, met or not."""
    out = []
    for (k, sh, q), rs in sorted(table.items(), key=lambda kv: (shape_order(kv[0][1]), kv[0][0], order(kv[0][2]))):
        if not q.startswith("quiesce"):
            continue
        lost = sum(r["failures"] for r in rs)
        median = statistics.median(r["hold_s"] for r in rs)
        over_d = median - statistics.median(r["delay_s"] for r in rs)
        clean = [s for kk, ss, s in table if kk == k and ss == sh and s.startswith("sleep")
                 and sum(r["failures"] for r in table[(kk, ss, s)]) == 0]
        smallest = min(clean, key=order) if clean else None
        half = int(smallest.split()[1]) / 2 if smallest else None
        rate = rs[0].get("rate", 20)
        out.append({
            "client": k, "shape": sh, "strategy": q, "rollouts": len(rs), "lost": lost, "median": median,
            "over_d": over_d, "smallest": smallest, "half": half,
            "lossless": lost == 0,
            "fast": half is not None and median <= half,
            "tight": None if rate < 20 else over_d <= 0.5,
        })
    return out


def write_docs(results, args, took):
    table = summarise(results)
    name = "rollout" if args.app == "nginx" else f"rollout-{args.app}"
    age = sorted({r.get("age_s", 1.0) for r in results})
    lines = [
        f"# Rollouts behind HAProxy: `sleep N` against `quiesce` ({args.app})",
        "",
        "Written by `benches/rollout/rollout.py` (method: its docstring; run it with",
        "`sudo benches/rollout/run.sh`). Each rollout deletes a pod behind a real HAProxy",
        "while a real client sends it traffic at random: the app's preStop runs, the",
        "balancer drops the pod after a propagation delay D, the app gets its stop",
        "signal when the hook ends. Failed requests are the client's (refused,",
        "reset, 5xx, timeouts); the hold is the hook's time. Every strategy of a",
        "(client, traffic) pair ran on the same draws of D and of the arrivals.",
        "",
        f"![failed requests per rollout against median hold]({name}.svg)",
        "",
        f"{len(results)} rollouts of the {args.app} app in {took / 60:.0f} min on this machine ({os.cpu_count()} cores); "
        f"propagation delay {'fixed at %gs' % args.delay if args.delay is not None else 'log-normal, median 2s, sigma 0.6, cap 10s'}; "
        f"{'/'.join('%g' % a for a in age)}s of traffic before each deletion; `quiesce` with its defaults.",
        "",
        "| client | traffic | strategy | rollouts | failed requests (all rollouts) | rollouts losing any | median hold | median hold - median D | max hold |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (k, sh, s) in sorted(table, key=lambda t: (shape_order(t[1]), t[0], order(t[2]))):
        rs = table[(k, sh, s)]
        fails = sum(r["failures"] for r in rs)
        losing = sum(1 for r in rs if r["failures"])
        holds = [r["hold_s"] for r in rs]
        over = statistics.median(holds) - statistics.median(r["delay_s"] for r in rs)
        lines.append(f"| {k} | {sh} | {s} | {len(rs)} | {fails} of {sum(r['requests'] for r in rs)} | {losing} | "
                     f"{statistics.median(holds):.1f}s | {over:+.1f}s | {max(holds):.1f}s |")
    lines += ["", "**The goals**, per client and traffic: `quiesce` loses no request over all its",
              "rollouts; its median hold is at most half that of the smallest `sleep N` that",
              "also lost none; at 20 requests/s or more, its median hold is within 0.5 s of",
              "the median D.", ""]
    for v in verdicts(table):
        if v["smallest"] is None:
            against = "no `sleep N` lost nothing"
        else:
            against = f"the smallest sleep losing none is `{v['smallest']}`, half of it {v['half']:g}s"
        tight = "" if v["tight"] is None else (
            f"; median hold - median D {v['over_d']:+.2f}s: **{'met' if v['tight'] else 'not met'}**")
        lines.append(f"- {v['client']}, {v['shape']}, `{v['strategy']}`: {v['lost']} lost over {v['rollouts']} rollouts: "
                     f"**{'met' if v['lossless'] else 'not met'}**; median hold {v['median']:.1f}s, {against}: "
                     f"**{'met' if v['fast'] else 'not met'}**{tight}")
    os.makedirs(args.docs, exist_ok=True)
    with open(os.path.join(args.docs, f"{name}.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(args.docs, f"{name}.svg"), "w") as f:
        f.write(svg(table))


def svg(table):
    shapes = sorted({sh for _, sh, _ in table}, key=shape_order)
    w, h, pad = 300, 260, 40
    width = w * len(shapes) + 20
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h + 40}" font-family="sans-serif" font-size="9">',
           f'<rect width="{width}" height="{h + 40}" fill="white"/>']
    max_hold = max((statistics.median([r["hold_s"] for r in rs]) for rs in table.values()), default=1) or 1
    max_fail = max((sum(r["failures"] for r in rs) / len(rs) for rs in table.values()), default=1) or 1
    for i, sh in enumerate(shapes):
        x0 = 10 + i * w
        out.append(f'<text x="{x0 + w / 2}" y="14" text-anchor="middle" font-size="12">{sh}</text>')
        ax, ay, aw, ah = x0 + pad, 24, w - pad - 10, h - pad
        out.append(f'<line x1="{ax}" y1="{ay + ah}" x2="{ax + aw}" y2="{ay + ah}" stroke="black"/>')
        out.append(f'<line x1="{ax}" y1="{ay}" x2="{ax}" y2="{ay + ah}" stroke="black"/>')
        out.append(f'<text x="{ax + aw / 2}" y="{ay + ah + 28}" text-anchor="middle">median hold (s, 0-{max_hold:.0f})</text>')
        out.append(f'<text x="{x0 + 10}" y="{ay + ah / 2}" transform="rotate(-90 {x0 + 10} {ay + ah / 2})" text-anchor="middle">failed requests per rollout (0-{max_fail:.1f})</text>')
        keys = sorted([(k, s) for k, ss, s in table if ss == sh], key=lambda t: (order(t[1]), t[0]))
        for n, (k, s) in enumerate(keys):
            rs = table[(k, sh, s)]
            hold = statistics.median([r["hold_s"] for r in rs])
            fail = sum(r["failures"] for r in rs) / len(rs)
            px = ax + aw * hold / max_hold
            py = ay + ah - ah * fail / max_fail
            colour = "#1f77b4" if s.startswith("sleep") else "#d62728"
            out.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{colour}"/>')
            out.append(f'<text x="{px + 4:.1f}" y="{py - 4 - 9 * (n % 4):.1f}" fill="{colour}">{k} {s}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
