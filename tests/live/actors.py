"""Actors for tests/live_pod.rs: the processes of a fake pod.

Every role talks to the test over its standard streams: it reads one command
per line on stdin and reports on stdout, one line per fact, flushed at once,
so the test never has to sleep to find out whether the kernel state it wants
is in place.  Lines the test reads:

    ready ROLE pid=PID key=value...   all sockets of ROLE are set up
    sock LOCAL REMOTE                 (app) a connected socket the app holds
    event NAME MONOTONIC              (app) something happened, at time.monotonic()
    event admin REQUEST MONOTONIC     (envoy) an HTTP request on the admin port,
                                      its request line with spaces as _
    done COMMAND                      a command has taken effect

time.monotonic() is CLOCK_MONOTONIC, the clock behind Rust's Instant on Linux,
and it is the same in every PID namespace (no time namespace is made), so the
test can compare these stamps with its own.

Roles (argv[1]):
    pilot-agent    PID 1 of the proxy container, as in istio-proxy: listens on
                   15020 and 127.0.0.1:15004 and starts envoy beside this file.
                   "envoy ARGS" is forwarded to envoy's stdin.
    envoy          listens where Envoy does; accepts and echoes on 15001.
                   "inbound HOST PORT" connects from 127.0.0.6 to HOST:PORT,
                   the source address Istio uses for inbound passthrough;
                   "connect SRC HOST PORT" from SRC (::6, 127.0.0.1, ...).
                   "admin6" moves the admin port from 127.0.0.1 to [::1], as
                   in an IPv6-only pod.
    app            listens on 0.0.0.0:8080 and [::]:9090 (dual stack), holds
                   one outbound connection to 127.0.0.1:15001, accepts and
                   holds inbound connections. Commands: close-listeners,
                   "drain SECS", call, "gap SECS", "open N" (N more held
                   connections to its own listeners), exit.
    idle [PORT...] another container: listens on 0.0.0.0:PORT for each PORT
                   and does nothing else until its stdin closes (a log
                   shipper, a native sidecar, the pod's pause process).

The script runs with the system python3 (/usr/bin/python3) under uids that
cannot read root's home, and as comm/argv[0] "envoy" or "pilot-agent" through
symlinks made by the test, which is how both ss (comm) and netstat (argv[0])
name the process.
"""

import os
import select
import socket
import subprocess
import sys
import time

ENVOY_LISTENERS = [
    ("127.0.0.1", 15000),  # admin
    ("0.0.0.0", 15001),  # outbound capture
    ("0.0.0.0", 15006),  # inbound capture
    ("0.0.0.0", 15021),  # health
    ("0.0.0.0", 15090),  # prometheus
]
PILOT_AGENT_LISTENERS = [
    ("0.0.0.0", 15020),  # merged metrics / health
    ("127.0.0.1", 15004),  # debug
]
APP_V4 = ("0.0.0.0", 8080)
APP_V6 = ("::", 9090)


def say(*words):
    print(*words, flush=True)


def fmt(addr):
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listen(host, port):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        # Dual stack on purpose: IPv4 peers then show up in /proc/net/tcp6 as
        # ::ffff:a.b.c.d, the form the hook must print in brackets.
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind((host, port))
    s.listen(16)
    return s


class Lines:
    """Line reader over a raw fd, so select() and buffering never disagree."""

    def __init__(self, fd):
        self.fd = fd
        self.buf = b""
        self.eof = False

    def feed(self):
        data = os.read(self.fd, 4096)
        if not data:
            self.eof = True
        self.buf += data
        out = []
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            out.append(line.decode().strip())
        return out


def pilot_agent():
    here = os.path.dirname(os.path.abspath(__file__))
    listeners = [listen(h, p) for h, p in PILOT_AGENT_LISTENERS]
    envoy = subprocess.Popen(
        [
            os.path.join(here, os.environ.get("PRESTOP_LIVE_PROXY_CHILD", "envoy")),
            os.path.abspath(__file__),
            "envoy",
        ],
        stdin=subprocess.PIPE,
    )
    say("ready pilot-agent", f"pid={os.getpid()}")
    stdin = Lines(0)
    while not stdin.eof:
        readable, _, _ = select.select([0] + listeners, [], [])
        for r in readable:
            if r != 0:
                conn, _ = r.accept()
                conn.close()
                continue
            for cmd in stdin.feed():
                if cmd.startswith("envoy "):
                    envoy.stdin.write(cmd[len("envoy ") :].encode() + b"\n")
                    envoy.stdin.flush()
                elif cmd == "close-listeners":
                    for s in listeners:
                        s.close()
                    listeners = []
                    say("done close-listeners")
    envoy.kill()


def envoy():
    listeners = {listen(h, p): p for h, p in ENVOY_LISTENERS}
    conns = []
    # Connections accepted on the admin port (15000) speak HTTP, like Envoy's
    # admin API: enough to answer the hook's drain call and report it.
    admin = set()
    say("ready envoy", f"pid={os.getpid()}")
    stdin = Lines(0)
    while not stdin.eof:
        readable, _, _ = select.select([0] + list(listeners) + conns, [], [])
        for r in readable:
            if r == 0:
                for cmd in stdin.feed():
                    words = cmd.split()
                    if words and words[0] in ("inbound", "connect"):
                        if words[0] == "inbound":
                            words = ["connect", "127.0.0.6"] + words[1:]
                        src, host, port = words[1], words[2], int(words[3])
                        family = socket.AF_INET6 if ":" in src else socket.AF_INET
                        c = socket.socket(family, socket.SOCK_STREAM)
                        c.bind((src, 0))
                        c.connect((host, port))
                        conns.append(c)
                        say("done " + cmd.split()[0], fmt(c.getsockname()), fmt(c.getpeername()))
                    elif cmd == "admin6":
                        for s, p in list(listeners.items()):
                            if p == 15000:
                                del listeners[s]
                                s.close()
                        s6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
                        s6.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                        s6.bind(("::1", 15000))
                        s6.listen(16)
                        listeners[s6] = 15000
                        say("done admin6")
            elif r in listeners:
                conn, _ = r.accept()
                conns.append(conn)
                if listeners[r] == 15000:
                    admin.add(conn)
            else:
                # A client that sends and closes at once (a probe) may
                # reset the connection under the echo: that is its end.
                try:
                    data = r.recv(4096)
                except OSError:
                    data = b""
                if data and r in admin:
                    request = data.split(b"\r\n", 1)[0].decode(errors="replace")
                    say("event admin", request.replace(" ", "_"), repr(time.monotonic()))
                    r.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nOK\n")
                    conns.remove(r)
                    admin.discard(r)
                    r.close()
                elif data:
                    try:
                        r.sendall(data)
                    except OSError:
                        pass
                else:
                    # The peer closed: close our side too, as Envoy does, so
                    # the proxy leaves no CLOSE_WAIT behind.
                    conns.remove(r)
                    admin.discard(r)
                    r.close()


def app():
    listeners = [listen(*APP_V4), listen(*APP_V6)]
    out = socket.create_connection(("127.0.0.1", 15001))
    accepted = []
    say("sock", fmt(out.getsockname()), fmt(out.getpeername()))
    say("ready app", f"pid={os.getpid()}", f"uid={os.getuid()}")
    stdin = Lines(0)

    # Each close is stamped on both sides: "...-closing" before it (a
    # lower bound for a hook's reaction), "...-closed"/"last-close" after
    # it (an upper bound).
    def close_listeners():
        nonlocal listeners
        say("event listeners-closing", repr(time.monotonic()))
        for s in listeners:
            s.close()
        listeners = []
        say("event listeners-closed", repr(time.monotonic()))

    def close_all_and_exit():
        # close() detaches the socket from its file at once: from here on
        # /proc/net/tcp shows it with inode 0 (TIME_WAIT or an orphan in
        # FIN_WAIT), which the hook must not wait for.
        say("event closing", repr(time.monotonic()))
        for s in listeners + accepted + [out]:
            s.close()
        say("event last-close", repr(time.monotonic()))
        sys.exit(0)

    accepting = True
    while True:
        readable, _, _ = select.select([0] + (listeners if accepting else []), [], [])
        for r in readable:
            if r != 0:
                conn, peer = r.accept()
                accepted.append(conn)
                say("sock", fmt(conn.getsockname()), fmt(peer))
                continue
            lines = stdin.feed()
            if stdin.eof:
                close_all_and_exit()
            for cmd in lines:
                words = cmd.split()
                if cmd == "close-listeners":
                    close_listeners()
                elif cmd == "stop-accepting":
                    # Listeners stay open, nothing accepts: new connections
                    # wait in the accept queue, as when an app stops serving.
                    accepting = False
                    say("done stop-accepting")
                elif words and words[0] == "drain":
                    # The shape of a graceful shutdown: stop accepting, keep
                    # calling out for a while (each call its own connection,
                    # closed by us, so TIME_WAIT entries pile up), then exit.
                    close_listeners()
                    end = time.monotonic() + float(words[1])
                    while time.monotonic() < end:
                        c = socket.create_connection(("127.0.0.1", 15001))
                        c.sendall(b"ping")
                        c.recv(4)
                        out.sendall(b"ping")
                        out.recv(4)
                        c.close()
                        time.sleep(0.1)
                    close_all_and_exit()
                elif cmd == "call":
                    # One short outbound call that we close first: our side
                    # ends in TIME_WAIT, inode 0, for the next 60 s.
                    c = socket.create_connection(("127.0.0.1", 15001))
                    c.sendall(b"ping")
                    c.recv(4)
                    local = fmt(c.getsockname())
                    c.close()
                    say("done call", local)
                elif words and words[0] == "gap":
                    # A shutdown with a pause between two calls: for that
                    # moment the app holds no socket at all, then it calls
                    # out once more, holds the call 0.5 s and exits.
                    close_listeners()
                    say("event gap-closing", repr(time.monotonic()))
                    for s in accepted + [out]:
                        s.close()
                    say("event gap-start", repr(time.monotonic()))
                    time.sleep(float(words[1]))
                    c = socket.create_connection(("127.0.0.1", 15001))
                    say("event gap-end", repr(time.monotonic()))
                    c.sendall(b"ping")
                    c.recv(4)
                    time.sleep(0.5)
                    say("event closing", repr(time.monotonic()))
                    c.close()
                    say("event last-close", repr(time.monotonic()))
                    sys.exit(0)
                elif words and words[0] == "open":
                    # N more connections to our own listeners, v4 and v6 in
                    # turn: table rows, two per connection, without traffic.
                    for i in range(int(words[1])):
                        lst = listeners[i % len(listeners)]
                        c = socket.create_connection(lst.getsockname()[:2])
                        conn, _ = lst.accept()
                        accepted += [c, conn]
                    say("done open", str(len(accepted)))
                elif cmd == "exit":
                    close_all_and_exit()


def client():
    """Inbound traffic: `client MODE HOST PORT EVERY FOR`. Every EVERY
    seconds for FOR seconds (forever if FOR < 0), MODE `keepalive` sends a
    request on one kept-alive connection, `probe` opens a connection, sends
    and closes it, `queue` opens one, sends and keeps it. Then it says when
    it last sent, and holds its connections until stdin closes."""
    mode, host, port = sys.argv[2], sys.argv[3], int(sys.argv[4])
    every, for_s = float(sys.argv[5]), float(sys.argv[6])
    say("ready client", f"pid={os.getpid()}")
    end = time.monotonic() + for_s
    kept, conn, last = [], None, None
    while for_s < 0 or time.monotonic() < end:
        if mode == "keepalive":
            if conn is None:
                conn = socket.create_connection((host, port))
                kept.append(conn)
                say("sock", fmt(conn.getsockname()), fmt(conn.getpeername()))
            conn.sendall(b"GET / HTTP/1.1\r\nhost: app\r\n\r\n")
        else:
            c = socket.create_connection((host, port))
            c.sendall(b"GET /healthz HTTP/1.1\r\nhost: app\r\n\r\n")
            say("sock", fmt(c.getsockname()), fmt(c.getpeername()))
            if mode == "queue":
                kept.append(c)
            else:
                c.close()
        last = time.monotonic()
        time.sleep(every)
    say("event last-send", repr(last))
    stdin = Lines(0)
    while not stdin.eof:
        select.select([0], [], [])
        stdin.feed()


def idle():
    held = [listen("0.0.0.0", int(p)) for p in sys.argv[2:]]
    say("ready idle", f"pid={os.getpid()}", f"uid={os.getuid()}")
    stdin = Lines(0)
    while not stdin.eof:
        select.select([0], [], [])
        stdin.feed()
    for s in held:
        s.close()


if __name__ == "__main__":
    {
        "pilot-agent": pilot_agent,
        "envoy": envoy,
        "app": app,
        "idle": idle,
        "client": client,
    }[sys.argv[1]]()
