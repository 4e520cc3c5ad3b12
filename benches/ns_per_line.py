#!/usr/bin/python3
"""Turns `cargo bench --bench poll` output into ns per socket line.

  cargo bench --bench poll | tee run.txt; benches/ns_per_line.py run.txt

Prints a markdown table: benchmark, tree size, fastest and median time per
call, and both divided by the number of socket lines in the tree. On a busy
machine `fastest` is the better estimate of the code's own cost (other
processes only ever add time); `median` shows the spread.
"""

import re
import sys

UNIT = {"ns": 1.0, "µs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}
LEAF = re.compile(
    r"─ (\d+) lines, (\d+) procs\s+([\d.]+) (ns|µs|us|ms|s)\s+│\s+[\d.]+ \S+\s+│\s+([\d.]+) (ns|µs|us|ms|s)"
)
NODE = re.compile(r"^([│ ]*)[├╰]─ ([a-z_]+)\s")


def main():
    text = open(sys.argv[1]).read() if len(sys.argv) > 1 else sys.stdin.read()
    path = []
    rows = []
    for line in text.splitlines():
        m = NODE.match(line)
        if m:
            depth = len(m[1]) // 3
            path = path[:depth] + [m[2]]
            continue
        m = LEAF.search(line)
        if m and path:
            lines, procs = int(m[1]), int(m[2])
            fastest = float(m[3]) * UNIT[m[4]]
            median = float(m[5]) * UNIT[m[6]]
            rows.append(("::".join(path), lines, procs, fastest, median))
    print("| benchmark | lines | procs | fastest | median | ns/line (fastest) | ns/line (median) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, lines, procs, fastest, median in rows:
        if name.startswith("zz_"):
            continue
        print(
            "| %s | %d | %d | %s | %s | %.0f | %.0f |"
            % (name, lines, procs, fmt(fastest), fmt(median), fastest / lines, median / lines)
        )


def fmt(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return "%.3g %s" % (ns / scale, unit)
    return "%.3g ns" % ns


if __name__ == "__main__":
    main()
