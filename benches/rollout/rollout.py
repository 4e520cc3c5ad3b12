#!/usr/bin/env python3
"""benches/rollout/rollout.py: pod rollouts behind a real load balancer.

What an app's preStop costs in failed requests and in hold time, with real
software only, on this machine, in network namespaces of its own (traffic on
loopback and veth pairs inside them):

- HAProxy (Debian's) in a "balancer" namespace: one frontend per slot, each
  with two backends, the rolling pod and a replica that stays up, reached
  over kept-alive connections (`http-reuse always`), as production balancers
  do. HAProxy's defaults otherwise: a connection the pod refuses is retried
  three times, a second apart, on the same server, then answered 503 (no
  `option redispatch`), as a cloud balancer answers 502/503.
- The app, in a namespace per pod (a veth pair to the balancer): nginx, shut
  down as its image does, SIGQUIT, its graceful quit (finish what is in
  flight, then exit); or (`--app py`) a small Python server (the standard
  library's ThreadingHTTPServer) that on SIGTERM stops accepting, finishes
  what is in flight and exits, as a well-behaved app does.
- Real load generators at a constant rate, one kind per slot: `wrk` (kept-
  alive connections, paced by its Lua `delay()`), `curl` (one request per
  connection, the client closing first), `ab` (HTTP/1.0: the server closes
  first), `h2load` (HTTP/2 over one connection, `--rps`). Checked with `ss`
  against nginx: after `curl` the TIME_WAIT is on the client's side (it
  closed first), after `ab` on the server's.

One rollout, as the kubelet and the endpoints controller make it:
the app starts and joins the balancer; traffic flows; at T0 the pod is
deleted: the app container's preStop hook starts (`sleep N`, or
`prestop-wait quiesce`), and after a propagation delay D drawn for this
rollout the balancer stops sending to it (`set server ... state maint`,
HAProxy's runtime API); when the hook ends the app gets SIGQUIT; at T0 + 30 s
(the grace period) it is killed. The client's failures (refused, reset,
5xx, timeouts) over the rollout count against it; the hold is the hook's time.

D is log-normal, median 2 s, sigma 0.6 (90% between 0.75 and 5.4 s), capped
at 10 s: kube-proxy applies an EndpointSlice change within about a second
(`--iptables-min-sync-period` 1 s), ingress controllers and cloud balancers
take seconds more (target deregistration), and the long tail is what makes
people raise their sleep (quay/quay#6871: 30 -> 45 s; aws-load-balancer-
controller#2106: 70 s). `--delay S` fixes it instead.

Writes one JSON line per rollout to --json, and with --docs DIR a Markdown
table and an SVG (failures against hold, one point per strategy, a panel per
client kind). Needs root, ip, haproxy, nginx, and the clients asked for.
"""

import argparse
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
RATE = 20  # requests a second, every client kind
TAIL = 4.0  # after the app's exit and the balancer's removal, for retries


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


NGINX_CONF = """daemon off; worker_processes 1; pid {d}/nginx.pid; error_log stderr error;
events {{ worker_connections 1024; }}
http {{ access_log off; keepalive_timeout 65s; keepalive_requests 100000;
client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};
{servers} }}
"""


PY_APP = r"""
import http.server, signal, sys, threading
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
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
"""


def nginx_conf(d, listens):
    servers = "".join(f'server {{ listen {a}; location / {{ return 200 "ok\\n"; }} }}\n' for a in listens)
    return NGINX_CONF.format(d=d, servers=servers)


class Bench:
    def __init__(self, args):
        self.args = args
        self.tag = f"rb{os.getpid()}"
        self.lb = f"{self.tag}-lb"
        self.dir = tempfile.mkdtemp(prefix=f"{self.tag}-")
        os.chmod(self.dir, 0o755)
        self.procs = []
        self.netns = []
        self.lock = threading.Lock()
        self.sock = os.path.join(self.dir, "haproxy.sock")

    # ---- set-up and tear-down ---------------------------------------------
    def up(self, slots):
        run("ip", "netns", "add", self.lb)
        self.netns.append(self.lb)
        run(*ns(self.lb, "ip", "link", "set", "lo", "up"))
        for i in range(slots):
            pod = f"{self.tag}-p{i}"
            run("ip", "netns", "add", pod)
            self.netns.append(pod)
            run(*ns(pod, "ip", "link", "set", "lo", "up"))
            a, b = f"{self.tag[:6]}a{i}", f"{self.tag[:6]}b{i}"
            run("ip", "link", "add", a, "netns", self.lb, "type", "veth", "peer", "name", b, "netns", pod)
            run(*ns(self.lb, "ip", "addr", "add", f"10.80.{i}.1/30", "dev", a))
            run(*ns(pod, "ip", "addr", "add", f"10.80.{i}.2/30", "dev", b))
            run(*ns(self.lb, "ip", "link", "set", a, "up"))
            run(*ns(pod, "ip", "link", "set", b, "up"))
        # The replicas that stay up, one port per slot, in the balancer's
        # namespace.
        d = os.path.join(self.dir, "replicas")
        os.mkdir(d)
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write(nginx_conf(d, [f"127.0.0.1:{9000 + i}" for i in range(slots)]))
        self.spawn(ns(self.lb, "nginx", "-e", "stderr", "-c", os.path.join(d, "nginx.conf")))
        for i in range(slots):
            wait_listen(self.lb, f"127.0.0.1:{9000 + i}")
        cfg = [
            "global", f"  stats socket {self.sock} mode 600 level admin", "  maxconn 8192",
            "defaults", "  mode http", "  timeout connect 2s", "  timeout client 30s",
            "  timeout server 30s", "  timeout http-keep-alive 10s", "  http-reuse always",
        ]
        for i in range(slots):
            cfg += [
                f"frontend fe{i}", f"  bind 127.0.0.1:{8000 + i}",
                f"  bind 127.0.0.1:{8100 + i} proto h2", f"  default_backend be{i}",
                f"backend be{i}", "  balance roundrobin",
                f"  server pod 10.80.{i}.2:8080 disabled",
                f"  server replica 127.0.0.1:{9000 + i}",
            ]
        conf = os.path.join(self.dir, "haproxy.cfg")
        with open(conf, "w") as f:
            f.write("\n".join(cfg) + "\n")
        self.spawn(ns(self.lb, "haproxy", "-db", "-f", conf))
        for i in range(slots):
            wait_listen(self.lb, f"127.0.0.1:{8000 + i}")

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

    def haproxy(self, cmd):
        s = socket.socket(socket.AF_UNIX)
        s.connect(self.sock)
        s.sendall(cmd.encode() + b"\n")
        out = b""
        while chunk := s.recv(4096):
            out += chunk
        s.close()
        return out.decode()

    # ---- one rollout --------------------------------------------------------
    def rollout(self, slot, kind, strategy, delay, seq):
        pod = f"{self.tag}-p{slot}"
        d = os.path.join(self.dir, f"app{slot}-{seq}")
        os.mkdir(d)
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write(nginx_conf(d, ["0.0.0.0:8080"]))
        if self.args.app == "py":
            app = self.spawn(ns(pod, sys.executable, "-c", PY_APP), stderr=subprocess.DEVNULL)
        else:
            app = self.spawn(ns(pod, "nginx", "-e", "stderr", "-c", os.path.join(d, "nginx.conf")),
                             stderr=subprocess.DEVNULL)
        wait_listen(pod, "0.0.0.0:8080")
        self.haproxy(f"set server be{slot}/pod state ready")
        client = Client(self, kind, slot, window=1.0 + self.expected_hold(strategy, delay) + TAIL + 1.0)
        time.sleep(1.0)
        t0 = time.monotonic()
        hook = self.spawn(ns(pod, *self.hook_argv(strategy)), stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
        removal = threading.Timer(delay, lambda: self.haproxy(f"set server be{slot}/pod state maint"))
        removal.start()
        try:
            _, hook_err = hook.communicate(timeout=GRACE)
            hold = time.monotonic() - t0
        except subprocess.TimeoutExpired:
            os.killpg(hook.pid, signal.SIGKILL)
            _, hook_err = hook.communicate()
            hold = GRACE
        app.send_signal(signal.SIGTERM if self.args.app == "py" else signal.SIGQUIT)
        try:
            app.wait(timeout=max(0.1, GRACE - (time.monotonic() - t0)))
            killed = False
        except subprocess.TimeoutExpired:
            os.killpg(app.pid, signal.SIGKILL)
            app.wait()
            killed = True
        app_exit = time.monotonic() - t0
        removal.join()
        # A request the balancer sent to the pod once it was gone is retried
        # (HAProxy's default `retries 3`, a second apart) before it fails:
        # the clients' last answers come up to TAIL later.
        time.sleep(TAIL)
        requests, failures, detail = client.stop()
        shutil.rmtree(d, ignore_errors=True)
        return {
            "slot": slot, "app": self.args.app, "kind": kind, "strategy": strategy, "delay_s": round(delay, 3),
            "hold_s": round(hold, 3), "app_exit_s": round(app_exit, 3), "killed": killed,
            "requests": requests, "failures": failures, "detail": detail,
            "hook_exit": hook.returncode,
            "hook_last": (hook_err or "").strip().splitlines()[-1:] if strategy.startswith("quiesce") else [],
        }

    def expected_hold(self, strategy, delay):
        if strategy.startswith("sleep"):
            return max(float(strategy.split()[1]), delay)
        return max(delay + 4.0, self.args.min_wait if "min-wait" in strategy else 0.0)

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
    """One kind of load generator against slot's frontend, from now until
    stop(); counts requests and failures."""

    def __init__(self, bench, kind, slot, window):
        self.bench, self.kind, self.slot = bench, kind, slot
        self.lb = bench.lb
        self.url = f"http://127.0.0.1:{8000 + slot}/"
        self.requests = self.failures = 0
        self.detail = {}
        self.stopping = threading.Event()
        self.proc = None
        self.thread = None
        if kind == "wrk":
            lua = os.path.join(bench.dir, "delay.lua")
            if not os.path.exists(lua):
                with open(lua, "w") as f:
                    # Two connections, each waiting 100 ms between requests.
                    f.write("function delay() return 100 end\n")
            self.proc = bench.spawn(ns(self.lb, "wrk", "-t1", "-c2", "-d3600s", "--timeout", "5s",
                                       "-s", lua, self.url), stdout=subprocess.PIPE, text=True)
        elif kind == "h2load":
            # h2load stops only at the end of its duration: the rollout's
            # expected window, which the rollout then waits out.
            self.proc = bench.spawn(ns(self.lb, "h2load", "-c1", "-m1", f"--rps={RATE}",
                                       f"-D{max(3, math.ceil(window))}", "-T5",
                                       f"http://127.0.0.1:{8100 + slot}/"),
                                    stdout=subprocess.PIPE, text=True)
        else:
            self.thread = threading.Thread(target=self.loop, daemon=True)
            self.thread.start()

    def one(self, argv, parse):
        try:
            p = subprocess.run(ns(self.lb, *argv), stdin=subprocess.DEVNULL, capture_output=True,
                               text=True, timeout=10)
            ok, why = parse(p)
        except subprocess.TimeoutExpired:
            ok, why = False, "timeout"
        with self.bench.lock:
            self.requests += 1
            if not ok:
                self.failures += 1
                self.detail[why] = self.detail.get(why, 0) + 1

    def loop(self):
        if self.kind == "curl":
            argv = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", "--max-time", "5", self.url]

            def parse(p):
                code, _, took = p.stdout.strip().partition(" ")
                if p.returncode == 0 and code == "200" and float(took or 0) > 1.0:
                    # Answered, but only after the balancer's retries: a
                    # request that met the gone pod. Not a failure; counted.
                    with self.bench.lock:
                        self.detail["slow (>1s), answered"] = self.detail.get("slow (>1s), answered", 0) + 1
                return (p.returncode == 0 and code == "200"), (code if p.returncode == 0 else f"curl exit {p.returncode}")
        else:  # ab: HTTP/1.0, one request per run
            argv = ["ab", "-q", "-n", "1", "-s", "5", self.url]

            def parse(p):
                failed = re.search(r"Failed requests:\s+(\d+)", p.stdout)
                non2xx = re.search(r"Non-2xx responses:\s+(\d+)", p.stdout)
                if p.returncode != 0 or not failed:
                    return False, f"ab exit {p.returncode}"
                if int(failed[1]) or non2xx:
                    return False, "ab failed/non-2xx"
                return True, ""
        period = 1.0 / RATE
        nxt = time.monotonic()
        workers = []
        while not self.stopping.is_set():
            t = threading.Thread(target=self.one, args=(argv, parse), daemon=True)
            t.start()
            workers.append(t)
            nxt += period
            time.sleep(max(0.0, nxt - time.monotonic()))
        for t in workers:
            t.join()

    def stop(self):
        if self.thread:
            self.stopping.set()
            self.thread.join()
            return self.requests, self.failures, self.detail
        if self.kind == "wrk":
            self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=120)
        requests, failures, detail = parse_generator(self.kind, out)
        if self.bench.args.raw:
            detail["raw"] = out
        return requests, failures, detail


def parse_generator(kind, out):
    detail = {}
    if kind == "wrk":
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
    # h2load
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", out)
    if not m:
        return 0, 1, {"h2load": out.strip().splitlines()[-1:] if out.strip() else "no output"}
    total, started, done, ok, failed, errored, timeout = map(int, m.groups())
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    for k, v in [("failed", failed), ("errored", errored), ("timeout", timeout)]:
        if v:
            detail[k] = v
    if codes and int(codes[4]):
        detail["5xx"] = int(codes[4])
    return started, failed + (int(codes[4]) if codes else 0), detail


def schedule(args):
    plan = [("quiesce", args.quiesce), ("quiesce min-wait", args.quiesce_min_wait),
            ("quiesce idle=1s", args.quiesce_idle1)]
    plan += [(f"sleep {n}", args.sleep_rollouts) for n in args.sleeps]
    todo = [s for s, n in plan for _ in range(n)]
    return todo


def draw_delay(rng, args):
    if args.delay is not None:
        return args.delay
    return min(10.0, 2.0 * math.exp(rng.gauss(0.0, 0.6)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", help="the prestop-wait binary (not for --report)")
    ap.add_argument("--kinds", default="wrk,curl,ab,h2load")
    ap.add_argument("--app", choices=["nginx", "py"], default="nginx")
    ap.add_argument("--slots-per-kind", type=int, default=3)
    ap.add_argument("--quiesce", type=int, default=100, help="rollouts per kind with quiesce")
    ap.add_argument("--quiesce-min-wait", type=int, default=100, help="... with quiesce --min-wait")
    ap.add_argument("--min-wait", type=float, default=3.0)
    ap.add_argument("--quiesce-idle1", type=int, default=0, help="... with quiesce --idle=1s (not by default)")
    ap.add_argument("--sleeps", default="0,2,5,10,15,20,30")
    ap.add_argument("--sleep-rollouts", type=int, default=20, help="rollouts per kind per sleep N")
    ap.add_argument("--delay", type=float, help="a fixed propagation delay instead of the draw")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", required=True, help="one JSON line per rollout")
    ap.add_argument("--docs", help="write rollout.md and rollout.svg here")
    ap.add_argument("--raw", action="store_true", help="keep each generator's output in the JSON")
    ap.add_argument("--report", type=float, metavar="SECONDS",
                    help="run nothing: write --docs from the rollouts already in --json, which took SECONDS")
    args = ap.parse_args()
    if args.report is not None:
        with open(args.json) as f:
            write_docs([json.loads(line) for line in f if line.strip()], args, args.report)
        return
    if not args.bin:
        sys.exit("rollout.py: --bin is needed")
    args.sleeps = [int(x) for x in args.sleeps.split(",") if x != ""]
    kinds = [k for k in args.kinds.split(",") if k]
    for tool in ["ip", "haproxy", "nginx"] + [k for k in kinds]:
        if not shutil.which(tool):
            sys.exit(f"rollout.py: needs {tool}")
    if os.geteuid() != 0:
        sys.exit("rollout.py: run as root (network namespaces)")
    rng = random.Random(args.seed)
    bench = Bench(args)
    slots = [(k, j) for k in kinds for j in range(args.slots_per_kind)]
    # Each kind's rollouts, shuffled, dealt to its slots.
    queues = {}
    for k in kinds:
        todo = schedule(args)
        rng.shuffle(todo)
        queues[k] = [(s, draw_delay(rng, args)) for s in todo]
    started = time.monotonic()
    out = open(args.json, "w")
    results = []

    def worker(slot, kind):
        seq = 0
        while True:
            with bench.lock:
                if not queues[kind]:
                    return
                strategy, delay = queues[kind].pop()
            r = bench.rollout(slot, kind, strategy, delay, seq)
            seq += 1
            with bench.lock:
                results.append(r)
                out.write(json.dumps(r) + "\n")
                out.flush()
                done = len(results)
            print(f"[{time.monotonic() - started:6.0f}s] #{done} {kind:6} {strategy:16} D={delay:4.1f}s "
                  f"hold={r['hold_s']:5.2f}s failures={r['failures']}/{r['requests']}", flush=True)

    try:
        bench.up(len(slots))
        threads = [threading.Thread(target=worker, args=(i, k)) for i, (k, _) in enumerate(slots)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        bench.down()
        out.close()
    took = time.monotonic() - started
    print(f"{len(results)} rollouts in {took:.0f}s", flush=True)
    if args.docs:
        write_docs(results, args, took)


def summarise(results):
    table = {}
    for r in results:
        table.setdefault((r["kind"], r["strategy"]), []).append(r)
    return table


def order(strategy):
    if strategy.startswith("sleep"):
        return (1, int(strategy.split()[1]))
    return (0, {"quiesce": 0, "quiesce min-wait": 1}.get(strategy, 2))


def write_docs(results, args, took):
    table = summarise(results)
    kinds = sorted({k for k, _ in table})
    name = "rollout" if args.app == "nginx" else f"rollout-{args.app}"
    lines = [
        f"# Rollouts behind HAProxy: `sleep N` against `quiesce` ({args.app})",
        "",
        "Written by `benches/rollout/rollout.py` (method: its docstring; run it with",
        "`sudo benches/rollout/run.sh`). Each rollout deletes a pod behind a real HAProxy",
        "while a real load generator sends it traffic: the app's preStop runs, the",
        "balancer drops the pod after a propagation delay, the app gets its stop",
        "signal when the hook ends. Failed requests are the client's (refused,",
        "reset, 5xx, timeouts); the hold is the hook's time.",
        "",
        f"![failed requests per rollout against median hold]({name}.svg)",
        "",
        f"{len(results)} rollouts of the {args.app} app in {took / 60:.0f} min on this machine ({os.cpu_count()} cores); "
        f"propagation delay {'fixed at %gs' % args.delay if args.delay is not None else 'log-normal, median 2s, sigma 0.6, cap 10s'}; "
        f"{RATE} requests/s per client; `quiesce` with its defaults, and with `--min-wait {args.min_wait:g}s`.",
        "",
        "| client | strategy | rollouts | failed requests (all rollouts) | rollouts losing any | median hold | max hold |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for k in kinds:
        for s in sorted({s for kk, s in table if kk == k}, key=order):
            rs = table[(k, s)]
            fails = sum(r["failures"] for r in rs)
            losing = sum(1 for r in rs if r["failures"])
            holds = [r["hold_s"] for r in rs]
            lines.append(f"| {k} | {s} | {len(rs)} | {fails} of {sum(r['requests'] for r in rs)} | {losing} | "
                         f"{statistics.median(holds):.1f}s | {max(holds):.1f}s |")
    lines += ["", "**The goal** (per client kind: `quiesce` loses no request over all its",
              "rollouts, and its median hold is at most half that of the smallest `sleep N`",
              "that also lost none):", ""]
    for k in kinds:
        for q in ("quiesce", "quiesce min-wait", "quiesce idle=1s"):
            rs = table.get((k, q), [])
            if not rs:
                continue
            lost = sum(r["failures"] for r in rs)
            median = statistics.median(r["hold_s"] for r in rs)
            clean = [s for kk, s in table if kk == k and s.startswith("sleep")
                     and sum(r["failures"] for r in table[(k, s)]) == 0]
            smallest = min(clean, key=order) if clean else None
            if smallest is None:
                verdict = "no `sleep N` lost nothing"
                met = lost == 0
            else:
                n = int(smallest.split()[1])
                met = lost == 0 and median <= n / 2
                verdict = f"the smallest sleep losing none is `{smallest}`, half of it {n / 2:g}s"
            lines.append(f"- {k}, `{q}`: {lost} lost over {len(rs)} rollouts, median hold {median:.1f}s; "
                         f"{verdict}: **{'met' if met else 'not met'}**")
    os.makedirs(args.docs, exist_ok=True)
    with open(os.path.join(args.docs, f"{name}.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(args.docs, f"{name}.svg"), "w") as f:
        f.write(svg(table, kinds))


def svg(table, kinds):
    w, h, pad = 300, 240, 40
    width = w * len(kinds) + 20
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h + 40}" font-family="sans-serif" font-size="10">',
           f'<rect width="{width}" height="{h + 40}" fill="white"/>']
    max_hold = max((statistics.median([r["hold_s"] for r in rs]) for rs in table.values()), default=1) or 1
    max_fail = max((sum(r["failures"] for r in rs) / len(rs) for rs in table.values()), default=1) or 1
    for i, k in enumerate(kinds):
        x0 = 10 + i * w
        out.append(f'<text x="{x0 + w / 2}" y="14" text-anchor="middle" font-size="12">{k}</text>')
        ax, ay, aw, ah = x0 + pad, 24, w - pad - 10, h - pad
        out.append(f'<line x1="{ax}" y1="{ay + ah}" x2="{ax + aw}" y2="{ay + ah}" stroke="black"/>')
        out.append(f'<line x1="{ax}" y1="{ay}" x2="{ax}" y2="{ay + ah}" stroke="black"/>')
        out.append(f'<text x="{ax + aw / 2}" y="{ay + ah + 28}" text-anchor="middle">median hold (s, 0-{max_hold:.0f})</text>')
        out.append(f'<text x="{x0 + 10}" y="{ay + ah / 2}" transform="rotate(-90 {x0 + 10} {ay + ah / 2})" text-anchor="middle">failed requests per rollout (0-{max_fail:.1f})</text>')
        for n, s in enumerate(sorted({s for kk, s in table if kk == k}, key=order)):
            rs = table[(k, s)]
            hold = statistics.median([r["hold_s"] for r in rs])
            fail = sum(r["failures"] for r in rs) / len(rs)
            px = ax + aw * hold / max_hold
            py = ay + ah - ah * fail / max_fail
            colour = "#1f77b4" if s.startswith("sleep") else "#d62728"
            out.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="4" fill="{colour}"/>')
            # The quiesce points sit together near the origin: their labels
            # go one under another, the sleeps' above their points.
            dy = -6 - 11 * n if not s.startswith("sleep") else -6 - 11 * (n % 2)
            out.append(f'<text x="{px + 5:.1f}" y="{py + dy:.1f}" fill="{colour}">{s}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
