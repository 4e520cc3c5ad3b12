#!/usr/bin/python3
"""Holds TCP sockets open on loopback for benches/compare.sh, until killed.

Run it inside a network namespace of its own (compare.sh does): it binds
fixed ports.

  sockets.py pairs N [--listen-uid U] [--client-uid U] [--port P] [--as-uid U]
      One listener on 127.0.0.1:P (default 7000) and N connection pairs to
      it: 2N ESTABLISHED sockets + 1 LISTEN. The listener and the accepted
      sockets get --listen-uid, the client sockets --client-uid. The
      open-file limit is raised (soft and hard: run as root) to fit. With
      --as-uid the process then drops to that uid for good, before making any
      socket: a process running as the proxy's uid, as Envoy does (write the
      ready line to stdout then: the process may not create files).
  sockets.py pod
      A small Istio-like pod, 13 sockets: the proxy's (uid 1337) listeners on
      15001, 15006, 15021, 15090, 127.0.0.1:15000, [::]:15020, 127.0.0.1:15004;
      the app's (uid 1000) on 8080 and [::]:9090; one connection to 8080 from a
      proxy-owned client (both ends) and one app-owned outbound to 15021.

The owner uid the kernel shows is the fs uid of whoever made the socket's
file: at socket() for listeners and clients, at accept() for accepted ones
(they do not inherit the listener's). The script switches its effective uid
around those calls and stays root otherwise.
When every socket is open it writes "ready <count>" to the file given by
--ready (or stdout) and sleeps until SIGTERM.
"""

import argparse
import os
import resource
import signal
import socket
import sys
import time


def as_uid(uid, make):
    """Calls make() with the effective uid (and so fsuid) set to uid."""
    if uid is None or uid == os.geteuid():
        return make()
    os.seteuid(uid)
    try:
        return make()
    finally:
        os.seteuid(0)


def listener(addr, uid, family=socket.AF_INET, backlog=4096):
    s = as_uid(uid, lambda: socket.socket(family, socket.SOCK_STREAM))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(addr)
    s.listen(backlog)
    return s


def connect(addr, uid, family=socket.AF_INET):
    c = as_uid(uid, lambda: socket.socket(family, socket.SOCK_STREAM))
    c.connect(addr)
    return c


def pairs(n, listen_uid, client_uid, port=7000, as_uid_for_good=None):
    want = 2 * n + 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    if as_uid_for_good is not None:
        os.setresgid(as_uid_for_good, as_uid_for_good, as_uid_for_good)
        os.setresuid(as_uid_for_good, as_uid_for_good, as_uid_for_good)
    addr = ("127.0.0.1", port)
    lst = listener(addr, listen_uid)
    held = [lst]
    # Connect in batches no larger than the backlog, then accept the batch.
    batch = 1024
    done = 0
    while done < n:
        k = min(batch, n - done)
        for _ in range(k):
            held.append(connect(addr, client_uid))
        for _ in range(k):
            conn, _ = as_uid(listen_uid, lst.accept)
            held.append(conn)
        done += k
    return held


def pod():
    proxy, app = 1337, 1000
    held = [
        listener(("0.0.0.0", 15001), proxy),
        listener(("0.0.0.0", 15006), proxy),
        listener(("0.0.0.0", 15021), proxy),
        listener(("0.0.0.0", 15090), proxy),
        listener(("127.0.0.1", 15000), proxy),
        listener(("::", 15020), proxy, socket.AF_INET6),
        listener(("127.0.0.1", 15004), proxy),
    ]
    app_listener = listener(("0.0.0.0", 8080), app)
    held += [app_listener, listener(("::", 9090), app, socket.AF_INET6)]
    # Inbound: the proxy connects to the app (client end is the proxy's).
    held.append(connect(("127.0.0.1", 8080), proxy))
    held.append(as_uid(app, app_listener.accept)[0])
    # Outbound from the app to a proxy port. Accept it too: a connection
    # left in the accept queue has no file yet and shows inode 0.
    held.append(connect(("127.0.0.1", 15021), app))
    held.append(as_uid(proxy, held[2].accept)[0])
    return held


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=["pairs", "pod"])
    ap.add_argument("n", nargs="?", type=int, default=9000)
    ap.add_argument("--listen-uid", type=int, default=None)
    ap.add_argument("--client-uid", type=int, default=None)
    ap.add_argument("--port", type=int, default=7000)
    ap.add_argument("--as-uid", type=int, default=None)
    ap.add_argument("--ready", default=None)
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    t0 = time.monotonic()
    if a.mode == "pairs":
        held = pairs(a.n, a.listen_uid, a.client_uid, a.port, a.as_uid)
    else:
        held = pod()
    msg = "ready %d %.2fs\n" % (len(held), time.monotonic() - t0)
    if a.ready:
        with open(a.ready + ".tmp", "w") as f:
            f.write(msg)
        os.rename(a.ready + ".tmp", a.ready)
    else:
        sys.stdout.write(msg)
        sys.stdout.flush()
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
