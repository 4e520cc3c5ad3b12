#!/usr/bin/env bash
# benches/compare.sh: the cost of `prestop-wait` against netstat, ss, the old
# shell loop and the kernel floor (`cat` of both tables), on live sockets.
#
# Needs root (namespaces, raising the open-file limit), unshare, ip, python3,
# cc (for benches/rusage.c, benches/fdwalk.c and benches/diagdump.c),
# netstat and ss. `check` and `wait` run with `--source auto` (netlink here);
# `check-proc` and `wait1-proc` read the tables; `quiesce1` is one look of
# `quiesce` (netlink with tcp_info, every state). Touches nothing
# outside /tmp and the namespaces it creates, which go away with it.
#
# Usage: sudo benches/compare.sh            (about 6 minutes)
# Knobs (environment):
#   RUNS=30            runs per command at node scale (interleaved round-robin)
#   POD_RUNS=30        runs per command in the small pod
#   PAIRS=9000         loopback connection pairs at node scale (2 sockets each)
#   SCENARIOS="proxy pod busy mixed app"  who owns the node-scale sockets:
#                        proxy: uid 1337, every socket excused by a table rule
#                        pod:   uid 1000, all block, and the process holding
#                               them is in another PID namespace than the
#                               measured commands: a real pod's app container
#                        app:   uid 1000, all block, holder visible: every
#                               socket needs the fd scan (shareProcessNamespace,
#                               or `check` from the node's PID namespace)
#                        mixed: listener side uid 1000, client side uid 1337
#                        busy:  a busy proxy during the wait: a process running
#                               as uid 1337 (visible, as Envoy is to the hook)
#                               holds the 18,001 sockets; the app, in another
#                               PID namespace, holds one connection that blocks
#                        busy-cg: busy, with the proxy (and the commands) in
#                               one cgroup v2 group and the app in another, as
#                               on a cgroup v2 node: attribution by cgroup, no
#                               fd scan (needs a cgroup2 mount; not by default)
#   WAIT_INTERVAL=20ms WAIT_TIMEOUT=6s   the `wait` loop measured in the pod
#   BIN=path           prestop-wait binary (default: cargo build --release into
#                      $CARGO_TARGET_DIR, default /tmp/target-bench)
#   BIN_BEFORE=path    another build, measured beside BIN in the same run
#                      (`check-before`, `wait1-before`): before and after
#   POD=0              skip the small-pod phase (node scale only)
#   DEADLINE_SCENARIOS="pod"  where to time the hooks against their deadline:
#                      wall time of `wait --timeout $DEADLINE_TIMEOUT --quiet`
#                      with the app's sockets still there, and of `quiesce
#                      --timeout $DEADLINE_TIMEOUT --idle 1h --quiet` (held to
#                      the deadline by --idle), minus the timeout
#   DEADLINE_TIMEOUT=3s DEADLINE_RUNS=7   (DEADLINE_RUNS=0: not measured)
#
# Each phase runs in `unshare --net --pid --fork --mount-proc`: a network
# namespace with only lo (up), and a PID namespace with its own /proc, so the
# fd scans of prestop-wait, netstat -p and ss -p see the benchmark's processes,
# not whatever else this machine runs. Reading /proc/net/tcp still walks the
# kernel's node-wide TCP hash (the namespace filter is applied per socket),
# which is the floor every /proc reader pays.
#
# CPU is user + system time of the whole process tree from wait4() (see
# benches/measure.py), not wall time: the machine may be busy with other work.
# It prints markdown tables and one PASS/MISS line per target; it exits 0
# either way (non-zero only if it could not measure).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

RUNS=${RUNS:-30}
POD_RUNS=${POD_RUNS:-30}
PAIRS=${PAIRS:-9000}
SCENARIOS=${SCENARIOS:-"proxy pod busy mixed app"}
WAIT_INTERVAL=${WAIT_INTERVAL:-20ms}
WAIT_TIMEOUT=${WAIT_TIMEOUT:-6s}
DEADLINE_SCENARIOS=${DEADLINE_SCENARIOS:-pod}
DEADLINE_TIMEOUT=${DEADLINE_TIMEOUT:-3s}
DEADLINE_RUNS=${DEADLINE_RUNS:-7}

# ---------------------------------------------------------------- inside ---
# `compare.sh --inner PHASE ARGS...` runs inside the namespaces.

wait_ready() { # file
    for _ in $(seq 1 600); do
        [ -s "$1" ] && return 0
        sleep 0.1
    done
    echo "compare.sh: socket helper did not get ready" >&2
    return 1
}

count_sockets() {
    local n4 n6
    n4=$(($(wc -l </proc/net/tcp) - 1))
    n6=$(($(wc -l </proc/net/tcp6) - 1))
    echo "$n4 tcp + $n6 tcp6 rows"
}

# The node-scale commands, measured into $WORK/node-SCENARIO.json.
measure_node() { # scenario
    RUSAGE="$WORK/rusage" "$PY" "$HERE/measure.py" --runs "$RUNS" --baseline cat \
        --json "$WORK/node-$1.json" \
        "cat=cat /proc/net/tcp /proc/net/tcp6" \
        "fdwalk=$WORK/fdwalk" \
        "diagdump=$WORK/diagdump" \
        "diagdump-info=$WORK/diagdump info" \
        "check=$BIN check --json" \
        "check-text=$BIN check" \
        "wait1=$BIN wait --timeout 0s --quiet" \
        "check-proc=$BIN check --json --source proc" \
        "wait1-proc=$BIN wait --timeout 0s --quiet --source proc" \
        "quiesce1=$BIN quiesce --timeout 0s --quiet" \
        ${BIN_BEFORE:+"check-before=$BIN_BEFORE check --json"} \
        ${BIN_BEFORE:+"check-text-before=$BIN_BEFORE check"} \
        ${BIN_BEFORE:+"wait1-before=$BIN_BEFORE wait --timeout 0s --quiet"} \
        ${BIN_BEFORE:+"quiesce1-before=$BIN_BEFORE quiesce --timeout 0s --quiet"} \
        "seed=sh -c 'netstat -plunt | grep tcp | grep -v envoy | wc -l'" \
        "netstat=netstat -tanp" \
        "ss=ss -tanp"
}

# How late `wait` and `quiesce` exit after their deadline, in wall time (the
# promise is about the clock, not CPU): into $WORK/deadline-SCENARIO.json.
measure_deadline() { # scenario
    [ "$DEADLINE_RUNS" != 0 ] || return 0
    case " $DEADLINE_SCENARIOS " in *" $1 "*) ;; *) return 0 ;; esac
    "$PY" - "$WORK/deadline-$1.json" "$DEADLINE_TIMEOUT" "$DEADLINE_RUNS" "$BIN" ${BIN_BEFORE:+"$BIN_BEFORE"} <<'PYEOF'
import json, re, subprocess, sys, time
out, timeout, runs, bins = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
m = re.fullmatch(r"(\d+)(ms|s)", timeout)
if not m:
    sys.exit("DEADLINE_TIMEOUT: use forms like 3s or 1500ms")
t = int(m[1]) / (1000 if m[2] == "ms" else 1)
hooks = {"wait": ["wait"], "quiesce": ["quiesce", "--idle", "1h"]}
res = {f"{h} {b}": {"over_ms": [], "codes": []} for b in bins for h in hooks}
for _ in range(runs):
    for b in bins:  # interleaved
        for h, args in hooks.items():
            t0 = time.monotonic()
            p = subprocess.run([b, *args, "--timeout", timeout, "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            res[f"{h} {b}"]["over_ms"].append((time.monotonic() - t0 - t) * 1e3)
            res[f"{h} {b}"]["codes"].append(p.returncode)
json.dump({"timeout_s": t, "bins": res}, open(out, "w"))
PYEOF
}

# The `busy` scenario's measuring side, in a PID namespace of its own: the
# proxy-like helper runs here (visible), the app's connection outside (not).
inner_busy_proxy() { # scenario: busy or busy-cg
    local sc=$1 how="the app, in another PID namespace, one connection of uid 1000"
    [ "$sc" = busy ] || how="$how; the proxy and the commands in one cgroup v2 group, the app in another: attribution by cgroup"
    "$PY" "$HERE/sockets.py" pairs "$PAIRS" --as-uid 1337 >"$WORK/ready-node-$sc" &
    local helper=$!
    wait_ready "$WORK/ready-node-$sc"
    echo "#### Node scale, scenario \`$sc\` (a process running as uid 1337 holds $(cut -d' ' -f2 "$WORK/ready-node-$sc") sockets; $how): $(count_sockets)"
    echo
    measure_node "$sc"
    measure_deadline "$sc"
    echo
    kill "$helper"
    wait "$helper" 2>/dev/null || true
}

inner_node() { # scenario
    local scenario=$1 luid cuid nest=()
    if [ "$scenario" = busy ] || [ "$scenario" = busy-cg ]; then
        ip link set lo up
        local groups=
        if [ "$scenario" = busy-cg ]; then
            # A container each, as a cgroup v2 node makes them: the app's
            # helper in one group, this shell (the proxy's helper and the
            # measured commands) in another, for as long as the scenario runs.
            groups=$(awk '$3 == "cgroup2" {print $2; exit}' /proc/self/mounts)/prestop-bench-$$
            mkdir -p "$groups/app" "$groups/proxy"
        fi
        (
            [ -z "$groups" ] || echo "$BASHPID" >"$groups/app/cgroup.procs"
            exec "$PY" "$HERE/sockets.py" pairs 1 --port 7001 --listen-uid 1000 --client-uid 1000 \
                --ready "$WORK/ready-node-$scenario-app"
        ) &
        local app=$!
        wait_ready "$WORK/ready-node-$scenario-app"
        [ -z "$groups" ] || echo $$ >"$groups/proxy/cgroup.procs"
        unshare --pid --fork --mount-proc --kill-child -- bash "$HERE/compare.sh" --inner busy-proxy "$scenario"
        kill "$app"
        wait "$app" 2>/dev/null || true
        if [ -n "$groups" ]; then
            echo $$ >"$(dirname "$groups")/cgroup.procs"
            rmdir "$groups/app" "$groups/proxy" "$groups"
        fi
        return
    fi
    case $scenario in
    proxy) luid=1337 cuid=1337 ;;
    pod) luid=1000 cuid=1000 nest=(unshare --pid --fork --mount-proc --kill-child --) ;;
    app) luid=1000 cuid=1000 ;;
    mixed) luid=1000 cuid=1337 ;;
    *) echo "unknown scenario $scenario" >&2; return 2 ;;
    esac
    ip link set lo up
    # One helper holds at most 9,000 pairs (18,001 fds: the hard open-file
    # limit here is 20,000, and root without CAP_SYS_RESOURCE cannot raise
    # it); more pairs are spread over helpers on listener ports 7000, 7001...
    local helpers=$(((PAIRS + 8999) / 9000)) pids=() i
    for ((i = 0; i < helpers; i++)); do
        "$PY" "$HERE/sockets.py" pairs $((PAIRS / helpers)) --port $((7000 + i)) \
            --listen-uid "$luid" --client-uid "$cuid" --ready "$WORK/ready-node-$scenario-$i" &
        pids+=($!)
    done
    for ((i = 0; i < helpers; i++)); do
        wait_ready "$WORK/ready-node-$scenario-$i"
    done
    echo "#### Node scale, scenario \`$scenario\` (listener uid $luid, clients uid $cuid${nest:+; commands in a PID namespace without the helper}): $(count_sockets); $helpers helper(s)"
    echo
    "${nest[@]}" bash "$HERE/compare.sh" --inner measure "$scenario"
    echo
    kill "${pids[@]}"
    wait "${pids[@]}" 2>/dev/null || true
}

inner_pod() {
    ip link set lo up
    "$PY" "$HERE/sockets.py" pod --ready "$WORK/ready-pod" &
    local helper=$!
    wait_ready "$WORK/ready-pod"
    echo "#### Small pod: $(count_sockets); helper: $(cat "$WORK/ready-pod")"
    echo
    # Whole commands, for reference.
    RUSAGE="$WORK/rusage" "$PY" "$HERE/measure.py" --runs "$POD_RUNS" --baseline cat \
        --json "$WORK/pod-cmds.json" \
        "cat=cat /proc/net/tcp /proc/net/tcp6" \
        "check=$BIN check --json" \
        "seed=sh -c 'netstat -plunt | grep tcp | grep -v envoy | wc -l'" \
        "iter=sh -c '[ \$(netstat -plunt | grep tcp | grep -v envoy | wc -l | xargs) -ne 0 ]; sleep 0'"
    echo
    # The running wait loop: the app's sockets stay, so it polls until the
    # deadline. Polls = sleeps + 1 = voluntary context switches + 1.
    local out utime stime rss code nvcsw
    : >"$WORK/wait.txt"
    for _ in 1 2 3; do
        out=$("$WORK/rusage" "$BIN" wait --interval "$WAIT_INTERVAL" --timeout "$WAIT_TIMEOUT")
        read -r utime stime rss code nvcsw <<<"$out"
        echo "$utime $stime $rss $code $nvcsw" >>"$WORK/wait.txt"
    done
    # The floor: one in-process read of both tables at the same cadence, minus
    # the Python loop's own overhead (same loop over two small regular files).
    local n interval_s
    read -r n interval_s < <("$PY" - "$WAIT_INTERVAL" "$WAIT_TIMEOUT" <<'PYEOF'
import re, sys
def secs(s):
    m = re.fullmatch(r"(\d+)(ms|s)", s)
    if not m:
        sys.exit("WAIT_INTERVAL/WAIT_TIMEOUT: use forms like 20ms or 6s")
    return int(m[1]) / (1000 if m[2] == "ms" else 1)
i, t = secs(sys.argv[1]), secs(sys.argv[2])
print(int(t / i) + 1, i)
PYEOF
    )
    head -c 1000 /dev/zero >"$WORK/small1"
    head -c 1000 /dev/zero >"$WORK/small2"
    : >"$WORK/read.txt"
    for _ in 1 2 3; do
        echo "$("$PY" "$HERE/read_tables.py" "$n" "$interval_s") $("$PY" "$HERE/read_tables.py" "$n" "$interval_s" "$WORK/small1" "$WORK/small2") $("$PY" "$HERE/read_tables.py" --once "$n" "$interval_s")" >>"$WORK/read.txt"
    done
    kill "$helper"
    wait "$helper" 2>/dev/null || true
}

if [ "${1:-}" = --inner ]; then
    shift
    phase=$1
    shift
    case $phase in
    node) inner_node "$@" ;;
    measure) measure_node "$@" && measure_deadline "$@" ;;
    busy-proxy) inner_busy_proxy "$@" ;;
    pod) inner_pod ;;
    esac
    exit 0
fi

# --------------------------------------------------------------- outside ---

[ "$(id -u)" = 0 ] || { echo "compare.sh: run as root (namespaces)" >&2; exit 2; }
for tool in unshare ip netstat ss cc "$PY"; do
    command -v "$tool" >/dev/null || { echo "compare.sh: needs $tool" >&2; exit 2; }
done

WORK=$(mktemp -d /tmp/prestop-compare.XXXXXX)
export WORK PY RUNS POD_RUNS PAIRS WAIT_INTERVAL WAIT_TIMEOUT BIN_BEFORE=${BIN_BEFORE:-}
export DEADLINE_SCENARIOS DEADLINE_TIMEOUT DEADLINE_RUNS
child=
cleanup() {
    # unshare --kill-child takes the namespace's processes down with it.
    if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
        kill "$child" 2>/dev/null || true
        wait "$child" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${BIN:-}" ]; then
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/target-bench}
    (cd "$ROOT" && cargo build --release --quiet --target x86_64-unknown-linux-musl)
    BIN=$CARGO_TARGET_DIR/x86_64-unknown-linux-musl/release/prestop-wait
fi
BIN=$(realpath "$BIN")
export BIN
[ -z "$BIN_BEFORE" ] || BIN_BEFORE=$(realpath "$BIN_BEFORE")
for tool in rusage fdwalk diagdump; do
    cc -O2 -static -o "$WORK/$tool" "$HERE/$tool.c" 2>/dev/null ||
        cc -O2 -o "$WORK/$tool" "$HERE/$tool.c"
done

in_ns() { # phase args...
    unshare --net --pid --fork --mount-proc --kill-child -- bash "$HERE/compare.sh" --inner "$@" &
    child=$!
    wait "$child"
    child=
}

echo "### prestop-wait compare.sh, $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), Linux $(uname -r);" \
    "binary: $BIN ($(stat -c %s "$BIN") bytes); $("$BIN" --version 2>/dev/null || true)"
echo "CPU = user+system time from wait4(), median of $RUNS runs (pod: $POD_RUNS), commands interleaved; ratio = median / median of \`cat\`."
echo "Peak RSS = ru_maxrss (largest process in the tree; floor of the rusage helper itself: $("$WORK/rusage" "$WORK/rusage" true | awk '{print $3}') KiB)."
echo

for scenario in $SCENARIOS; do
    in_ns node "$scenario"
done
POD=${POD:-1}
[ "$POD" = 0 ] || in_ns pod

# ------------------------------------------------------------------ report ---
"$PY" - "$WORK" "$SCENARIOS" "$WAIT_INTERVAL" "$WAIT_TIMEOUT" "$POD" <<'EOF'
import json, statistics, sys
work, scenarios, interval, timeout, pod_phase = sys.argv[1], sys.argv[2].split(), sys.argv[3], sys.argv[4], sys.argv[5] != "0"
verdicts = []
notes = []

def target(ok, text):
    verdicts.append(("PASS" if ok else "MISS") + ": " + text)

for sc in scenarios:
    rows = {r["label"]: r for r in json.load(open(f"{work}/node-{sc}.json"))}
    cat, check, ss = rows["cat"], rows["check"], rows["ss"]
    r = check["cpu_ms_median"] / cat["cpu_ms_median"]
    target(r <= 1.5, f"[{sc}] check CPU {check['cpu_ms_median']:.2f} ms = {r:.2f}x cat ({cat['cpu_ms_median']:.2f} ms), target <= 1.5x")
    target(check["cpu_ms_median"] < ss["cpu_ms_median"],
           f"[{sc}] check CPU {check['cpu_ms_median']:.2f} ms < ss -tanp {ss['cpu_ms_median']:.2f} ms")
    target(check["maxrss_kib"] <= 3072, f"[{sc}] check peak RSS {check['maxrss_kib']} KiB <= 3072 KiB")
    wait1 = rows["wait1"]
    r = wait1["cpu_ms_median"] / cat["cpu_ms_median"]
    target(r <= 1.3, f"[{sc}] one wait poll (wait --timeout 0s -q) CPU {wait1['cpu_ms_median']:.2f} ms = {r:.2f}x cat, target <= 1.3x")
    target(wait1["maxrss_kib"] <= 3072, f"[{sc}] one wait poll peak RSS {wait1['maxrss_kib']} KiB <= 3072 KiB")
    if "diagdump" in rows:
        dd = rows["diagdump"]["cpu_ms_median"]
        notes.append(f"[{sc}] netlink floor: benches/diagdump.c (the dump of both families, unparsed) = {dd:.2f} ms = {dd / cat['cpu_ms_median']:.2f}x cat")
        target(wait1["cpu_ms_median"] <= 0.45 * cat["cpu_ms_median"] or sc not in ("pod",),
               f"[{sc}] one wait poll over netlink {wait1['cpu_ms_median']:.2f} ms = {r:.2f}x cat, netlink target <= 0.45x (pod)")
        target(check["cpu_ms_median"] <= 0.6 * ss["cpu_ms_median"] or sc not in ("pod",),
               f"[{sc}] check over netlink {check['cpu_ms_median']:.2f} ms = {check['cpu_ms_median'] / ss['cpu_ms_median']:.2f}x ss -tanp, target <= 0.6x (pod)")
        target(max(check["maxrss_kib"], wait1["maxrss_kib"]) <= 1536,
               f"[{sc}] peak RSS over netlink {max(check['maxrss_kib'], wait1['maxrss_kib'])} KiB <= 1536 KiB")
    if "diagdump-info" in rows and sc.startswith("busy"):
        dd, ddi = rows["diagdump"]["cpu_ms_median"], rows["diagdump-info"]["cpu_ms_median"]
        said = target if sc == "busy-cg" else lambda ok, text: notes.append(text)
        said(wait1["cpu_ms_median"] <= 1.3 * dd,
             f"[{sc}] one wait poll {wait1['cpu_ms_median']:.2f} ms = {wait1['cpu_ms_median'] / dd:.2f}x the raw dump ({dd:.2f} ms), target <= 1.3x (busy-cg)")
        said(check["cpu_ms_median"] <= 1.3 * ddi,
             f"[{sc}] check --json {check['cpu_ms_median']:.2f} ms = {check['cpu_ms_median'] / ddi:.2f}x the raw dump with tcp_info ({ddi:.2f} ms), target <= 1.3x (busy-cg)")
        text = rows["check-text"]["cpu_ms_median"]
        notes.append(f"[{sc}] check (text) {text:.2f} ms = {text / check['cpu_ms_median']:.2f}x check --json")
    floor = cat["cpu_ms_median"] + rows["fdwalk"]["cpu_ms_median"]
    notes.append(f"[{sc}] floor for naming holders = cat + benches/fdwalk.c = {floor:.2f} ms = {floor / cat['cpu_ms_median']:.2f}x cat; check = {check['cpu_ms_median'] / floor:.2f}x that floor")

import os
for sc in scenarios:
    path = f"{work}/deadline-{sc}.json"
    if not os.path.exists(path):
        continue
    d = json.load(open(path))
    print(f"#### Deadline, scenario `{sc}`: `wait --timeout {d['timeout_s']:g}s --quiet` with the app's sockets still held, `quiesce --idle 1h` likewise; wall time past the timeout")
    print()
    print("| hook | binary | median ms late | max ms late | exit codes |")
    print("|---|---|---:|---:|---|")
    bins = []
    for key, r in d["bins"].items():
        hook, b = key.split(" ", 1)
        if b not in bins:
            bins.append(b)
        label = "BIN" if bins.index(b) == 0 else "BIN_BEFORE"
        print(f"| {hook} | {label} | {statistics.median(r['over_ms']):.1f} | {max(r['over_ms']):.1f} | {sorted(set(r['codes']))} |")
        if label == "BIN":
            target(max(r["over_ms"]) <= 50, f"[{sc}] {hook} exits within 50 ms of --timeout (max {max(r['over_ms']):.1f} ms late over {len(r['over_ms'])} runs)")
    print()

if pod_phase:
    waits = [tuple(map(int, l.split())) for l in open(f"{work}/wait.txt")]
    per_poll, polls = [], []
    for utime, stime, rss, code, nvcsw in waits:
        n = nvcsw + 1
        polls.append(n)
        per_poll.append((utime + stime) / n)
    poll_us = statistics.median(per_poll)
    reads = [tuple(map(float, l.split())) for l in open(f"{work}/read.txt")]
    raw_us = statistics.median(r[0] for r in reads)
    overhead_us = statistics.median(r[1] for r in reads)
    read_us = raw_us - overhead_us
    once_us = statistics.median(r[2] for r in reads) - overhead_us
    pod = {r["label"]: r for r in json.load(open(f"{work}/pod-cmds.json"))}
    seed_us = pod["seed"]["cpu_ms_median"] * 1e3
    iter_us = pod["iter"]["cpu_ms_median"] * 1e3
    print(f"#### Small pod: one poll of the running loop (`wait --interval {interval} --timeout {timeout}`, 3 runs)")
    print()
    print("| measure | CPU per poll/iteration (us) | x in-process read |")
    print("|---|---:|---:|")
    print(f"| `prestop-wait wait`, one poll (runs: {', '.join(f'{p:.0f}' for p in per_poll)} us over {', '.join(map(str, polls))} polls; peak RSS {max(w[2] for w in waits)} KiB) | {poll_us:.0f} | {poll_us / read_us:.2f} |")
    print(f"| in-process read of both tables to EOF (python os.read 64 KiB, same cadence; {raw_us:.0f} us minus {overhead_us:.0f} us loop overhead) | {read_us:.0f} | 1.00 |")
    print(f"| in-process single read() per table, no read to EOF (one hash walk per table, the least any reader can do) | {once_us:.0f} | {once_us / read_us:.2f} |")
    print(f"| `cat /proc/net/tcp /proc/net/tcp6`, whole process | {pod['cat']['cpu_ms_median']*1e3:.0f} | {pod['cat']['cpu_ms_median']*1e3 / read_us:.2f} |")
    print(f"| `prestop-wait check --json`, whole process | {pod['check']['cpu_ms_median']*1e3:.0f} | {pod['check']['cpu_ms_median']*1e3 / read_us:.2f} |")
    print(f"| seed loop iteration `sh -c 'netstat -plunt \\| grep tcp \\| grep -v envoy \\| wc -l'` | {seed_us:.0f} | {seed_us / read_us:.2f} |")
    print(f"| one whole seed-loop iteration: the test `[ $(netstat -plunt \\| grep tcp \\| grep -v envoy \\| wc -l \\| xargs) -ne 0 ]` and its `sleep` (run as `sleep 0`: the same fork and exec, without the idle second) | {iter_us:.0f} | {iter_us / read_us:.2f} |")
    print()
    target(poll_us <= 1.1 * read_us, f"[pod] one poll {poll_us:.0f} us = {poll_us / read_us:.2f}x the in-process read to EOF ({read_us:.0f} us, what cat does without its process start), target <= 1.1x")
    target(poll_us <= 1.25 * once_us, f"[pod] one poll {poll_us:.0f} us = {poll_us / once_us:.2f}x a single read() per table ({once_us:.0f} us), the stricter floor, <= 1.25x")
    target(iter_us >= 3 * poll_us, f"[pod] seed-loop iteration {iter_us:.0f} us = {iter_us / poll_us:.1f}x one poll, target >= 3x")
print("#### Targets")
print()
for v in verdicts:
    print("- " + v)
print()
print("#### Floors")
print()
for n in notes:
    print("- " + n)
EOF
