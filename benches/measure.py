#!/usr/bin/python3
"""Measures commands as whole processes: CPU time and peak RSS from wait4().

  measure.py [--runs N] [--warmup W] [--baseline LABEL] [--json FILE] \
      LABEL='command line' [LABEL='command line' ...]

Each command line is split with shlex (use `sh -c '...'` for pipelines) and
run N times with stdin, stdout and stderr on /dev/null, the commands
interleaved round-robin so that background load hits all of them alike. Each
run goes through the small static `rusage` helper (benches/rusage.c, path in
$RUSAGE), whose wait4() gives the process tree's rusage: user + system CPU (the kernel keeps
these from the scheduler's nanosecond runtime, so they are not clock-tick
samples; the median over N runs is reported, mean and min beside it) and
ru_maxrss, the peak RSS of the largest process in the tree (for a pipeline:
its biggest member). Ratios are of medians, to the --baseline command.
Exit statuses are recorded, not judged (`check` exits 1 when something blocks).
"""

import argparse
import json
import os
import shlex
import subprocess
import statistics
import sys


RUSAGE = os.environ.get("RUSAGE", os.path.join(os.path.dirname(__file__), "rusage"))


def run_once(argv):
    """Runs argv under the rusage helper: (CPU seconds, peak RSS KiB, exit code)."""
    out = subprocess.run([RUSAGE, *argv], stdout=subprocess.PIPE, check=True).stdout
    utime, stime, maxrss, code = (int(x) for x in out.split()[:4])
    return (utime + stime) / 1e6, maxrss, code


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--baseline", default=None)
    ap.add_argument("--json", default=None, help="also write results here")
    ap.add_argument("cmds", nargs="+", metavar="LABEL=CMD")
    a = ap.parse_args()
    cmds = []
    for spec in a.cmds:
        label, _, line = spec.partition("=")
        cmds.append((label, shlex.split(line)))
    for _ in range(a.warmup):
        for _, argv in cmds:
            run_once(argv)
    samples = {label: [] for label, _ in cmds}
    for _ in range(a.runs):
        for label, argv in cmds:
            samples[label].append(run_once(argv))
    rows = []
    for label, argv in cmds:
        cpu = [s[0] * 1e3 for s in samples[label]]
        rows.append(
            {
                "label": label,
                "command": shlex.join(argv),
                "runs": len(cpu),
                "cpu_ms_median": statistics.median(cpu),
                "cpu_ms_mean": statistics.fmean(cpu),
                "cpu_ms_min": min(cpu),
                "maxrss_kib": max(s[1] for s in samples[label]),
                "exit_codes": sorted({s[2] for s in samples[label]}),
            }
        )
    base = next((r for r in rows if r["label"] == a.baseline), None)
    print(
        "| command | CPU ms median | mean | min | x %s | peak RSS KiB | exit |"
        % (a.baseline or "-")
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        ratio = r["cpu_ms_median"] / base["cpu_ms_median"] if base else float("nan")
        r["ratio"] = ratio
        print(
            "| `%s` | %.2f | %.2f | %.2f | %.2f | %d | %s |"
            % (
                r["command"].replace("|", "\\|"),
                r["cpu_ms_median"],
                r["cpu_ms_mean"],
                r["cpu_ms_min"],
                ratio,
                r["maxrss_kib"],
                ",".join(map(str, r["exit_codes"])),
            )
        )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
