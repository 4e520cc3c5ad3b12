#!/usr/bin/env python3
"""benches/sidecar/sidecar.py: pod deletions with a proxy sidecar, the
proxy half of a graceful shutdown, with real software on this machine.

What the proxy container's preStop costs: the app's last outbound calls
through the proxy, and the time the pod takes to go. Each rollout builds,
in namespaces of its own (traffic on loopback and veth pairs inside them):

- **the pod:** one network namespace shared by two containers, each a PID
  namespace of its own whose PID 1 is the container's main process, as the
  kubelet runs them without `shareProcessNamespace`:
  - **the proxy** (uid 1337, as Istio's): a `pilot-agent` stand-in as PID 1
    (a small Python process named so, holding 15020 and 15021 as
    pilot-agent does) running HAProxy as `envoy` (Debian's binary under
    that name) with the egress listener 127.0.0.1:15001. On SIGTERM it
    does what pilot-agent does for Envoy: it tells the proxy to stop
    accepting and finish what it has (HAProxy's soft stop, SIGUSR1), waits
    for it to exit, and exits. Envoy is not installable here; HAProxy is a
    real proxy with the same graceful stop, and the names and uid are
    what the hooks see in an istio-proxy container.
  - **the app** (uid 1000): jobs in flight at the deletion, each calling
    the upstream through the proxy every 100 ms, half over a kept-alive
    connection (a pool), half one connection per call. On SIGTERM it
    takes no new work and finishes its jobs, each for its drawn 0-10 s,
    then exits.
- **the upstream:** nginx in another network namespace ("another pod"),
  across a veth pair.

The kubelet's order on deletion, kept by the benchmark: every container's
preStop hook at once (the app has none), each container's SIGTERM when its
own hook returns, SIGKILL at the grace period's end (30 s, the default).
Native sidecars (Kubernetes 1.33+ with Istio 1.27+, Linkerd 2.20) instead:
the proxy's SIGTERM only once the app has exited.

Strategies for the proxy's preStop: `none`; `netstat`, the widely copied
loop, verbatim, with a real shell and net-tools' netstat, as uid 1337:
`while [ $(netstat -plunt | grep tcp | grep -v envoy | wc -l | xargs) -ne 0 ];
do sleep 1; done`; `sleep N`; `wait` (`prestop-wait wait --between-calls`);
`native` (no hook, the native-sidecar order: the reference).

Per rollout: failed outbound calls (refused, reset, timeouts, non-200); the
pod's termination time (deletion to the last container gone); the proxy's
over-hold (its exit minus the app's); whether the grace period's SIGKILL
was needed. Paired: the i-th rollout of every strategy has the same job
lengths. `--long N` adds N rollouts per strategy with one job longer than
the grace period (40 s), reported apart.

Needs root, ip, unshare/nsenter/setpriv (util-linux), haproxy, nginx,
net-tools (netstat).
"""

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "rollout"))
from rollout import Namespaces, children, ns, run, wait_listen  # noqa: E402

GRACE = 30.0
JOBS = 4
LONG_JOB = 40.0
PROXY_UID, APP_UID = 1337, 1000
SEED_LOOP = ("while [ $(netstat -plunt | grep tcp | grep -v envoy | wc -l | xargs) -ne 0 ]; "
             "do sleep 1; done")

PILOT = r"""
import ctypes, os, signal, socket, subprocess, sys, threading
ctypes.CDLL(None).prctl(15, b"pilot-agent", 0, 0, 0)
def serve(port):
    s = socket.socket(socket.AF_INET6)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port))
    s.listen(16)
    while True:
        c, _ = s.accept()
        try:
            c.recv(4096)
            c.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        finally:
            c.close()
for port in (15020, 15021):
    threading.Thread(target=serve, args=(port,), daemon=True).start()
envoy = subprocess.Popen([sys.argv[1], "-db", "-f", sys.argv[2]])
def term(*_):
    # As pilot-agent drains Envoy: stop accepting, finish what is in
    # flight, exit.
    envoy.send_signal(signal.SIGUSR1)
signal.signal(signal.SIGTERM, term)
sys.exit(envoy.wait())
"""

APP = r"""
import http.client, json, os, signal, socket, sys, threading, time
jobs = json.loads(sys.argv[1])
out = sys.argv[2]
lock = threading.Lock()
stats = {"calls": 0, "failures": 0, "detail": {}, "ready": False}
term = threading.Event()
term_at = [None]
def save():
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(stats, f)
    os.replace(tmp, out)
def count(ok, why=""):
    with lock:
        stats["calls"] += 1
        if ok:
            stats["ready"] = True
        else:
            stats["failures"] += 1
            stats["detail"][why] = stats["detail"].get(why, 0) + 1
        save()
def call(conn):
    c = conn or http.client.HTTPConnection("127.0.0.1", 15001, timeout=5)
    try:
        c.request("GET", "/", headers={"host": "upstream"})
        r = c.getresponse()
        r.read()
        if r.status != 200:
            count(False, f"status {r.status}")
        else:
            count(True)
        if r.getheader("connection", "").lower() == "close":
            c.close()
            return None
        return c
    except (OSError, http.client.HTTPException) as e:
        count(False, e.__class__.__name__)
        c.close()
        return None
def job(length, pooled):
    conn = None
    while True:
        if term.is_set() and time.monotonic() >= term_at[0] + length:
            break
        if pooled:
            conn = call(conn)
        else:
            c = call(None)
            if c:
                c.close()
        time.sleep(0.1)
    if conn:
        conn.close()
def on_term(*_):
    term_at[0] = time.monotonic()
    term.set()
signal.signal(signal.SIGTERM, on_term)
threads = [threading.Thread(target=job, args=(l, k % 2 == 0)) for k, l in enumerate(jobs)]
for t in threads:
    t.start()
for t in threads:
    t.join()
with lock:
    stats["exited"] = True
    save()
"""

HAPROXY = """global
  maxconn 1024
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  timeout http-keep-alive 30s
frontend egress
  bind 127.0.0.1:15001
  default_backend upstream
backend upstream
  http-reuse always
  server up {upstream}:8080
"""


class Bench(Namespaces):
    def __init__(self, args):
        super().__init__("sc")
        self.args = args
        self.up_ns = f"{self.tag}-up"
        # HAProxy under Envoy's name, as the hooks see an istio-proxy.
        self.envoy = os.path.join(self.dir, "envoy")
        shutil.copy(shutil.which("haproxy") or "/usr/sbin/haproxy", self.envoy)
        for name, text in (("pilot.py", PILOT), ("app.py", APP)):
            with open(os.path.join(self.dir, name), "w") as f:
                f.write(text)

    def up(self):
        run("ip", "netns", "add", self.up_ns)
        self.netns.append(self.up_ns)
        run(*ns(self.up_ns, "ip", "link", "set", "lo", "up"))
        d = os.path.join(self.dir, "upstream")
        os.mkdir(d)
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write(f"""daemon off; worker_processes 1; pid {d}/nginx.pid; error_log stderr error;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_timeout 65s; keepalive_requests 100000;
client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};
server {{ listen 0.0.0.0:8080; location / {{ return 200 "ok\\n"; }} }} }}
""")
        self.spawn(ns(self.up_ns, "nginx", "-e", "stderr", "-c", os.path.join(d, "nginx.conf")))
        wait_listen(self.up_ns, "0.0.0.0:8080")

    def pod_net(self, slot):
        return super().pod_net(slot, self.up_ns, 81)

    def container(self, pod, uid, argv, log):
        """A container: a PID namespace whose PID 1 runs `argv` as `uid`,
        in the pod's network namespace. Returns (the unshare process,
        PID 1's pid as seen here)."""
        p = self.spawn(ns(pod, "unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
                          "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv),
                       stdout=log, stderr=log)
        end = time.monotonic() + 5
        while time.monotonic() < end:
            pid1 = next(iter(children(p.pid)), None)
            if pid1:
                return p, pid1
            time.sleep(0.01)
        raise RuntimeError(f"no PID 1 for {argv[0]}")

    def hook_argv(self, strategy, proxy_pid1):
        enter = ["nsenter", "-t", str(proxy_pid1), "-p", "-m", "-n", "-S", str(PROXY_UID), "-G", str(PROXY_UID), "--"]
        if strategy == "netstat":
            return enter + ["sh", "-c", SEED_LOOP]
        if strategy.startswith("sleep"):
            return enter + ["sleep", strategy.split()[1]]
        if strategy == "wait":
            return enter + [self.args.bin, "wait", "--between-calls"]
        return None

    def rollout(self, slot, job):
        strategy, lengths = job["strategy"], job["jobs"]
        pod = self.pod_net(slot)
        d = os.path.join(self.dir, f"pod{slot}-{job['n']}")
        os.mkdir(d)
        os.chmod(d, 0o777)
        with open(os.path.join(d, "haproxy.cfg"), "w") as f:
            f.write(HAPROXY.format(upstream=f"10.81.{slot}.1"))
        stats_file = os.path.join(d, "app.json")
        log = open(os.path.join(d, "log"), "w")
        procs = []
        try:
            proxy, proxy_pid1 = self.container(
                pod, PROXY_UID, ["/usr/bin/python3", "-c",
                                 "import os,sys; os.execv('/usr/bin/python3', ['pilot-agent'] + sys.argv[1:])",
                                 os.path.join(self.dir, "pilot.py"), self.envoy, os.path.join(d, "haproxy.cfg")], log)
            procs.append(proxy)
            wait_listen(pod, "127.0.0.1:15001")
            app, app_pid1 = self.container(
                pod, APP_UID, ["/usr/bin/python3", os.path.join(self.dir, "app.py"), json.dumps(lengths), stats_file],
                log)
            procs.append(app)
            # The jobs are under way: their calls go through.
            end = time.monotonic() + 10
            while not read_json(stats_file).get("ready"):
                if time.monotonic() > end:
                    raise RuntimeError(f"the app's calls never went through: {read_json(stats_file)}")
                time.sleep(0.02)
            time.sleep(0.5)
            t0 = time.monotonic()
            # The app has no preStop: its SIGTERM comes at once.
            os.kill(app_pid1, signal.SIGTERM)
            argv = self.hook_argv(strategy, proxy_pid1)
            hook = self.spawn(argv, stdout=log, stderr=log) if argv else None
            exits = {}
            killed = False
            hook_s = None
            proxy_termed = False
            while len(exits) < 2:
                now = time.monotonic()
                if "app" not in exits and app.poll() is not None:
                    exits["app"] = now - t0
                if "proxy" not in exits and proxy.poll() is not None:
                    exits["proxy"] = now - t0
                if hook is not None and hook_s is None and hook.poll() is not None:
                    hook_s = now - t0
                if not proxy_termed:
                    ready = {"none": True, "native": "app" in exits}.get(strategy, hook_s is not None)
                    if ready:
                        try:
                            os.kill(proxy_pid1, signal.SIGTERM)
                        except ProcessLookupError:
                            pass
                        proxy_termed = True
                if now - t0 >= GRACE:
                    killed = True
                    for p in (app, proxy, hook):
                        if p is not None and p.poll() is None:
                            os.killpg(p.pid, signal.SIGKILL)
                    for p in (app, proxy):
                        p.wait()
                    for k, p in (("app", app), ("proxy", proxy)):
                        exits.setdefault(k, GRACE)
                    break
                time.sleep(0.005)
            if hook is not None and hook.poll() is None:
                os.killpg(hook.pid, signal.SIGKILL)
                hook.wait()
            stats = read_json(stats_file)
            log.flush()
            with open(os.path.join(d, "log"), errors="replace") as f:
                said = [line.strip() for line in f if line.startswith("prestop-wait:")]
        finally:
            for p in procs:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
            log.close()
            shutil.rmtree(d, ignore_errors=True)
        return {
            "slot": slot, "strategy": strategy, "pair": job["i"], "long": job["long"], "jobs": lengths,
            "calls": stats.get("calls", 0), "failures": stats.get("failures", 0), "detail": stats.get("detail", {}),
            "app_finished": bool(stats.get("exited")), "app_exit_s": round(exits["app"], 3),
            "proxy_exit_s": round(exits["proxy"], 3), "termination_s": round(max(exits.values()), 3),
            "over_hold_s": round(exits["proxy"] - exits["app"], 3), "killed": killed,
            "hook_s": None if hook_s is None else round(hook_s, 3),
            "hook_said": said[-3:],
        }


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def plan(args):
    rng = random.Random(args.seed)
    jobs = []
    sets = [(False, args.rollouts), (True, args.long)]
    for long, n in sets:
        draws = []
        for _ in range(n):
            lengths = [round(rng.uniform(0.0, 10.0), 3) for _ in range(JOBS)] if args.jobs is None else list(args.jobs)
            if long:
                lengths[0] = LONG_JOB
            draws.append(lengths)
        for s in args.strategies:
            for i, lengths in enumerate(draws):
                jobs.append({"strategy": s, "jobs": lengths, "i": i, "long": long})
    rng.shuffle(jobs)
    for n, j in enumerate(jobs):
        j["n"] = n
    return jobs


def expected(job):
    s = job["strategy"]
    app = max(job["jobs"])
    if s == "netstat":
        return GRACE + 2
    if s.startswith("sleep"):
        return max(app, float(s.split()[1])) + 2
    return min(GRACE, app) + 2


def p99(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.99 * (len(xs) - 1))))]


def order(s):
    return {"none": 0, "netstat": 1, "wait": 3, "native": 4}.get(s, 2), float(s.split()[1]) if s.startswith("sleep") else 0


def write_docs(results, args, took):
    lines = [
        "# The proxy half: a sidecar's preStop on a pod's deletion",
        "",
        "Written by `benches/sidecar/sidecar.py` (method: its docstring; run it with",
        "`sudo benches/sidecar/run.sh`). Each rollout deletes a pod of an app and a",
        "proxy sidecar (HAProxy under Envoy's name and uid, behind a pilot-agent",
        "stand-in) while the app's jobs still call an upstream pod through the",
        "proxy; the kubelet's order is kept (hooks at once, each SIGTERM after its",
        "own hook, SIGKILL at 30 s). Failed calls are the app's (refused, reset,",
        "timeouts, non-200); termination is deletion to the last container gone;",
        "over-hold is the proxy's exit minus the app's. Every strategy ran on the",
        "same job lengths.",
        "",
        "![failed calls against termination time](sidecar.svg)",
        "",
        f"{len(results)} rollouts in {took / 60:.0f} min on this machine ({os.cpu_count()} cores); "
        f"{JOBS} jobs in flight at each deletion, each 0-10 s (uniform), calling every 100 ms, "
        "half kept-alive, half one connection per call; grace period 30 s.",
        "",
        "| strategy | jobs | rollouts | failed calls (all rollouts) | rollouts losing any | median termination | p99 termination | median over-hold | p99 over-hold | SIGKILL needed |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    table = {}
    for r in results:
        table.setdefault((r["long"], r["strategy"]), []).append(r)
    for (long, s) in sorted(table, key=lambda k: (k[0], order(k[1]))):
        rs = table[(long, s)]
        term = [r["termination_s"] for r in rs]
        over = [r["over_hold_s"] for r in rs]
        lines.append(
            f"| {s} | {'one of 40 s' if long else '0-10 s'} | {len(rs)} | {sum(r['failures'] for r in rs)} of "
            f"{sum(r['calls'] for r in rs)} | {sum(1 for r in rs if r['failures'])} | {statistics.median(term):.2f}s | "
            f"{p99(term):.2f}s | {statistics.median(over):+.2f}s | {p99(over):+.2f}s | {sum(1 for r in rs if r['killed'])} |")
    lines += ["", "**The goal:** `wait` loses no call in a rollout whose jobs fit the grace",
              "period, and the pod ends within 0.1 s of the app's exit (median and p99).", ""]
    rs = table.get((False, "wait"), [])
    if rs:
        lost = sum(r["failures"] for r in rs)
        over = [r["over_hold_s"] for r in rs]
        fast = statistics.median(over) <= 0.1 and p99(over) <= 0.1
        lines.append(f"- `wait`: {lost} calls lost over {len(rs)} rollouts: **{'met' if lost == 0 else 'not met'}**; "
                     f"over-hold median {statistics.median(over):+.3f}s, p99 {p99(over):+.3f}s: "
                     f"**{'met' if fast else 'not met'}**")
    long = table.get((True, "wait"), [])
    if long:
        lines.append(f"- A job longer than the grace period, `wait` with its defaults (`--timeout 25s`): "
                     f"{sum(r['failures'] for r in long)} calls lost over {len(long)} rollouts, "
                     f"the SIGKILL needed in {sum(1 for r in long if r['killed'])}.")
    os.makedirs(args.docs, exist_ok=True)
    with open(os.path.join(args.docs, "sidecar.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(args.docs, "sidecar.svg"), "w") as f:
        f.write(svg({s: rs for (long, s), rs in table.items() if not long}))


def svg(table):
    w, h, pad = 520, 300, 50
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">',
           f'<rect width="{w}" height="{h}" fill="white"/>']
    ax, ay, aw, ah = pad, 20, w - pad - 20, h - pad - 20
    max_t = max((statistics.median([r["termination_s"] for r in rs]) for rs in table.values()), default=1) or 1
    max_f = max((sum(r["failures"] for r in rs) / len(rs) for rs in table.values()), default=1) or 1
    out.append(f'<line x1="{ax}" y1="{ay + ah}" x2="{ax + aw}" y2="{ay + ah}" stroke="black"/>')
    out.append(f'<line x1="{ax}" y1="{ay}" x2="{ax}" y2="{ay + ah}" stroke="black"/>')
    out.append(f'<text x="{ax + aw / 2}" y="{h - 8}" text-anchor="middle">median termination time (s, 0-{max_t:.0f})</text>')
    out.append(f'<text x="14" y="{ay + ah / 2}" transform="rotate(-90 14 {ay + ah / 2})" text-anchor="middle">failed calls per rollout (0-{max_f:.1f})</text>')
    for n, s in enumerate(sorted(table, key=order)):
        rs = table[s]
        t = statistics.median([r["termination_s"] for r in rs])
        f = sum(r["failures"] for r in rs) / len(rs)
        px, py = ax + aw * t / max_t, ay + ah - ah * f / max_f
        colour = "#d62728" if s in ("wait", "native") else "#1f77b4"
        out.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="4" fill="{colour}"/>')
        out.append(f'<text x="{px + 6:.1f}" y="{py - 6 - 12 * (n % 3):.1f}" fill="{colour}">{s}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", help="the prestop-wait binary")
    ap.add_argument("--strategies", default="none,netstat,sleep 5,sleep 10,sleep 20,wait,native")
    ap.add_argument("--rollouts", type=int, default=100, help="per strategy, jobs of 0-10 s")
    ap.add_argument("--long", type=int, default=10, help="per strategy, with one job past the grace period")
    ap.add_argument("--slots", type=int, default=10, help="rollouts at once")
    ap.add_argument("--jobs", help=f"the {JOBS} jobs' lengths in seconds (even ones pooled, odd ones one "
                    "connection per call), comma-separated, instead of the 0-10 s draws")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", required=True, help="one JSON line per rollout")
    ap.add_argument("--docs", help="write sidecar.md and sidecar.svg here")
    ap.add_argument("--dry-run", action="store_true", help="print the plan and its estimated time only")
    ap.add_argument("--report", type=float, metavar="SECONDS",
                    help="run nothing: write --docs from the rollouts in --json, which took SECONDS")
    args = ap.parse_args()
    args.strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    if args.jobs is not None:
        try:
            args.jobs = [float(x) for x in args.jobs.split(",")]
        except ValueError:
            sys.exit(f"sidecar.py: --jobs: not numbers: {args.jobs!r}")
        if len(args.jobs) != JOBS or min(args.jobs) < 0:
            sys.exit(f"sidecar.py: --jobs: {JOBS} lengths of 0 s or more, got {args.jobs}")
    for s in args.strategies:
        if s not in ("none", "netstat", "wait", "native") and not (s.startswith("sleep ") and s[6:].isdigit()):
            sys.exit(f"sidecar.py: --strategies: unknown strategy {s!r} (none, netstat, sleep N, wait, native)")
    if args.report is not None:
        with open(args.json) as f:
            write_docs([json.loads(line) for line in f if line.strip()], args, args.report)
        return
    jobs = plan(args)
    estimate = sum(expected(j) for j in jobs) / max(1, args.slots)
    print(f"{len(jobs)} rollouts, {len(args.strategies)} strategies, {args.slots} at once: about {estimate / 60:.0f} min",
          flush=True)
    if args.dry_run:
        return
    if "wait" in args.strategies:
        if not args.bin:
            sys.exit("sidecar.py: --bin is needed for the wait strategy")
        args.bin = os.path.abspath(args.bin)
    for tool in ["ip", "unshare", "nsenter", "setpriv", "haproxy", "nginx", "netstat"]:
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            sys.exit(f"sidecar.py: needs {tool}")
    if os.geteuid() != 0:
        sys.exit("sidecar.py: run as root (namespaces, other uids)")
    bench = Bench(args)
    started = time.monotonic()
    out = open(args.json, "w")
    results, errors = [], []

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
                    errors.append(f"slot {slot}: {job['strategy']}: {e!r}")
                return
            with bench.lock:
                results.append(r)
                out.write(json.dumps(r) + "\n")
                out.flush()
                done = len(results)
            print(f"[{time.monotonic() - started:6.0f}s] #{done} {r['strategy']:8} app {r['app_exit_s']:5.2f}s "
                  f"proxy {r['proxy_exit_s']:5.2f}s failed {r['failures']}/{r['calls']}"
                  f"{' KILLED' if r['killed'] else ''}", flush=True)

    try:
        bench.up()
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
        sys.exit("sidecar.py: " + "; ".join(errors))
    if args.docs:
        write_docs(results, args, took)


if __name__ == "__main__":
    main()
