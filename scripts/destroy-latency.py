#!/usr/bin/env python3
"""scripts/destroy-latency.py: how long the kernel takes to report a closed
TCP connection on sock_diag's destroy group (what `quiesce` and `wait` read
between their looks), on this machine, now. Opens and closes N loopback
connections, 10 ms apart, and prints the delay from each close() to its
event: median, p99, max. Run it beside a load (stress-ng --cpu $(nproc)) to
see whether the events lag; needs no privilege.

    scripts/destroy-latency.py [N]
"""
import socket
import statistics
import struct
import sys
import threading
import time

n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 4)  # NETLINK_SOCK_DIAG
nl.bind((0, 1))  # SKNLGRP_INET_TCP_DESTROY
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(128)
port = srv.getsockname()[1]


def accept():
    while True:
        c, _ = srv.accept()
        c.recv(10)
        c.close()


closed, delays, lock = {}, [], threading.Lock()


def read():
    while True:
        data = nl.recv(65536)
        now = time.monotonic()
        # nlmsghdr (16 bytes), then inet_diag_msg: family, state, timer,
        # retrans, then the ports, big-endian.
        sport, dport = struct.unpack(">HH", data[20:24])
        with lock:
            for p in (sport, dport):
                if p in closed:
                    delays.append(now - closed.pop(p))


threading.Thread(target=accept, daemon=True).start()
threading.Thread(target=read, daemon=True).start()
for _ in range(n):
    c = socket.create_connection(("127.0.0.1", port))
    c.send(b"x")
    with lock:
        closed[c.getsockname()[1]] = time.monotonic()
    c.close()
    time.sleep(0.01)
time.sleep(2)
d = sorted(delays)
if not d:
    sys.exit("no destroy event came")
print(f"{len(d)} of {n} closes reported; delay median {1000 * statistics.median(d):.1f} ms, "
      f"p99 {1000 * d[max(0, int(len(d) * 0.99) - 1)]:.1f} ms, max {1000 * d[-1]:.1f} ms; "
      f"{n - len(d)} never (within 2 s)")
