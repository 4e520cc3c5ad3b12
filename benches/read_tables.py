#!/usr/bin/python3
"""The floor for one poll: CPU of one in-process read of both TCP tables.

  read_tables.py [--once] ITERATIONS INTERVAL_S [FILE...]

Reads FILE... (default /proc/net/tcp /proc/net/tcp6) to EOF with os.read and
a 64 KiB buffer, as cat, netstat or any plain reader does (--once: a single
read per file, which for a small pod's table returns all of it: the least
any reader can do, one walk of the kernel's TCP hash per table, where reading
on to EOF pays a second one), ITERATIONS times with
INTERVAL_S seconds of sleep in between (the cadence of the `wait` loop, so
caches are as cold as they are for the loop), and prints the process CPU time
(CLOCK_PROCESS_CPUTIME_ID) per iteration in microseconds, counting only the
reads, not the sleeps. Python's own overhead per iteration is measured by
compare.sh with the same loop over two small regular files and subtracted.
"""

import os
import sys
import time


def main():
    args = sys.argv[1:]
    once = args[:1] == ["--once"]
    if once:
        args = args[1:]
    n = int(args[0])
    interval = float(args[1])
    paths = args[2:] or ["/proc/net/tcp", "/proc/net/tcp6"]
    total = 0
    for _ in range(n):
        t0 = time.process_time_ns()
        for p in paths:
            fd = os.open(p, os.O_RDONLY)
            while os.read(fd, 65536) and not once:
                pass
            os.close(fd)
        total += time.process_time_ns() - t0
        if interval > 0:
            time.sleep(interval)
    print("%.1f" % (total / n / 1e3))


if __name__ == "__main__":
    main()
