//! `--drain`: one plain-HTTP POST to the proxy's admin endpoint on loopback.
//!
//! Envoy's `POST /drain_listeners?inboundonly&graceful&skip_exit` drains the
//! inbound listeners: every response carries `Connection: close` (HTTP/2: a
//! GOAWAY), so clients move on, while late requests are still served and
//! outbound listeners keep working, which is what the app needs during its
//! shutdown. `skip_exit` keeps Envoy from closing the inbound listeners when
//! its `--drain-time-s` (Istio: 45s from this call) passes, however long the
//! hook holds; Envoy before 1.28 ignores it. It is the call Istio's own
//! native-sidecar preStop and consul-dataplane make; a custom
//! `global.proxy.lifecycle` replaces that preStop, so the call is lost unless
//! this hook makes it. The version table is in docs/meshes.md. No TLS and
//! no DNS: the admin port is loopback-only.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::io::Errno;
use rustix::net::sockopt::socket_error;
use rustix::net::{AddressFamily, SocketFlags, SocketType, socket_with};

use crate::time::Clock;

/// Envoy admin on Istio's default port: inbound listeners only, gracefully,
/// and never closed by Envoy itself (`skip_exit` needs `graceful`: alone,
/// Envoy 1.28 to 1.39 answers 400 and drains nothing).
pub const DEFAULT_URL: &str =
    "http://127.0.0.1:15000/drain_listeners?inboundonly&graceful&skip_exit";

/// The whole call, connect (to the fallback too), send and status line:
/// Envoy answers at once on loopback (draining itself is asynchronous), and
/// an admin port that does not is wedged; the hook must not wait on it. The
/// caller also cuts it at the hook's deadline.
pub const BUDGET: Duration = Duration::from_secs(1);

/// Where to POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainTarget {
    /// The URL as given, for logs.
    pub url: String,
    /// Loopback address and port.
    pub addr: SocketAddr,
    /// Where to try when `addr` cannot be reached: `[::1]` for 127.0.0.1 and
    /// `localhost`, since an IPv6-only pod's Envoy admin listens on `[::1]`
    /// alone and refuses 127.0.0.1.
    pub fallback: Option<SocketAddr>,
    /// `Host:` header value.
    pub host: String,
    /// Path and query.
    pub path: String,
}

/// Parses `http://HOST[:PORT][/PATH]` where HOST is `localhost`, an address in
/// 127.0.0.0/8 or `[::1]`. Anything else is refused: the hook must never send
/// traffic off the pod.
pub fn parse_url(url: &str) -> Result<DrainTarget> {
    let Some(rest) = url.strip_prefix("http://") else {
        bail!("--drain: {url:?} is not a plain http:// URL (only loopback HTTP is allowed)");
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], &rest[i..]),
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_owned()
    };
    if path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        bail!("--drain: {url:?} has spaces or control characters in its path");
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (ip, after) = v6
            .split_once(']')
            .with_context(|| format!("--drain: {url:?} has an unclosed '['"))?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').with_context(|| {
                format!("--drain: {url:?} has {after:?} after ']' where only :PORT may be")
            })?),
        };
        (ip, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port: u16 = match port {
        None => 80,
        Some(p) => Some(p)
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse().ok())
            .filter(|&p| p != 0)
            .with_context(|| format!("--drain: bad port {p:?} in {url:?}"))?,
    };
    let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse()
            .ok()
            .filter(|ip: &IpAddr| ip.is_loopback())
            .with_context(|| {
                format!("--drain: host {host:?} in {url:?} is not a loopback address (127.0.0.0/8, ::1 or localhost)")
            })?
    };
    let fallback = (ip == IpAddr::V4(Ipv4Addr::LOCALHOST))
        .then(|| SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port));
    Ok(DrainTarget {
        url: url.to_owned(),
        addr: SocketAddr::new(ip, port),
        fallback,
        host: authority.to_owned(),
        path,
    })
}

/// Sends the POST and returns the response's status line and the address
/// that answered (the fallback when the first address could not be reached).
///
/// The call as a whole, both connects, the request and every read of the
/// status line, ends by `until`: a server that accepts and says nothing, or
/// trickles a byte at a time, costs no more than that. The caller logs an
/// error and goes on waiting, since a proxy that cannot be told to drain
/// still needs its app's connections to finish.
///
/// The socket is nonblocking and every wait on it is a `poll` until `until`
/// by `clock`, checked again on each wake: socket timeouts
/// (`SO_RCVTIMEO`) run on the kernel's timer ticks and came back tens of
/// milliseconds late. `clock` must move with real time, as the waits do.
pub fn post(
    target: &DrainTarget,
    clock: &dyn Clock,
    until: Instant,
) -> Result<(String, SocketAddr)> {
    let left = || remaining(clock, until).ok_or_else(|| anyhow!("no complete status line in time"));
    left()?;
    let (mut stream, addr) = match connect(target.addr, clock, until) {
        Ok(s) => (s, target.addr),
        Err(first) => match target.fallback {
            Some(fallback) => {
                left()?;
                match connect(fallback, clock, until) {
                    Ok(s) => (s, fallback),
                    Err(second) => bail!(
                        "cannot connect to {} ({first}) nor to {fallback} ({second})",
                        target.addr
                    ),
                }
            }
            None => bail!("cannot connect to {}: {first}", target.addr),
        },
    };
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: prestop-wait/{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        target.path,
        target.host,
        env!("CARGO_PKG_VERSION")
    );
    left()?;
    send(&mut stream, request.as_bytes(), clock, until).context("cannot send the request")?;
    // Only the status line matters; read at most a small buffer's worth.
    let mut buf = [0u8; 512];
    let mut len = 0;
    while len < buf.len() {
        match stream.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => {
                len += n;
                if buf[..len].contains(&b'\n') {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if !ready(&stream, PollFlags::IN, clock, until).context("no response")? {
                    bail!("no complete status line in time ({len} bytes came)")
                }
            }
            Err(e) => return Err(e).context("no response"),
        }
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    // For the log: at most 80 characters, nothing that could end its line.
    let status: String = head
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .chars()
        .take(80)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    let code = status
        .strip_prefix("HTTP/1.")
        .and_then(|s| s.get(2..5))
        .and_then(|c| c.parse::<u16>().ok());
    match code {
        Some(200..=299) => Ok((status, addr)),
        Some(_) => bail!("answered {status:?}"),
        None => bail!("not an HTTP response: {status:?}"),
    }
}

/// What is left until `until` by `clock`; `None` once it has come.
fn remaining(clock: &dyn Clock, until: Instant) -> Option<Duration> {
    until
        .checked_duration_since(clock.now())
        .filter(|d| !d.is_zero())
}

/// Waits until `fd` is ready for `events` (or has an error or hangup for
/// the next call to report): `true`, or `false` once `until` has passed by
/// `clock`. Each wait is for what is left by the clock, read again before
/// it and after it: a wake before the deadline (a signal, a timer that
/// fired early by the clock's reckoning) waits again for the rest.
/// `ppoll`'s timeout is a timespec, so nothing is rounded to milliseconds;
/// a timer fires no earlier than asked, and late only by the timer slack
/// (50 µs), not by a tick.
fn ready(fd: impl AsFd, events: PollFlags, clock: &dyn Clock, until: Instant) -> io::Result<bool> {
    loop {
        let Some(left) = remaining(clock, until) else {
            return Ok(false);
        };
        let timeout = Timespec::try_from(left).unwrap_or(Timespec {
            tv_sec: i64::MAX,
            tv_nsec: 0,
        });
        let mut fds = [PollFd::new(&fd, events)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) => {}
            Ok(_) => return Ok(true),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// A nonblocking TCP connection to `addr`, made by `until`. Errors as
/// `TcpStream::connect_timeout` words them ("Connection refused (os error
/// 111)", "connection timed out"), since they go into the log line.
fn connect(addr: SocketAddr, clock: &dyn Clock, until: Instant) -> io::Result<TcpStream> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::INET,
        SocketAddr::V6(_) => AddressFamily::INET6,
    };
    let fd = socket_with(
        family,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?;
    match rustix::net::connect(&fd, &addr) {
        Ok(()) => {}
        // Under way (an interrupted connect goes on too): done when the
        // socket is writable, its outcome in SO_ERROR.
        Err(Errno::INPROGRESS | Errno::INTR) => {
            if !ready(&fd, PollFlags::OUT, clock, until)? {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection timed out",
                ));
            }
            socket_error(&fd)??;
        }
        Err(e) => return Err(e.into()),
    }
    Ok(TcpStream::from(fd))
}

/// Writes all of `bytes` to the nonblocking `stream` by `until`.
fn send(stream: &mut TcpStream, bytes: &[u8], clock: &dyn Clock, until: Instant) -> io::Result<()> {
    let mut sent = 0;
    while sent < bytes.len() {
        match stream.write(&bytes[sent..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if !ready(&*stream, PollFlags::OUT, clock, until)? {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("not sent in time ({sent} of {} bytes)", bytes.len()),
                    ));
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::SystemClock;

    fn soon() -> Instant {
        Instant::now() + BUDGET
    }

    #[test]
    fn default_url_is_envoy_admin_inbound_graceful_and_never_stops() {
        let t = parse_url(DEFAULT_URL).unwrap();
        assert_eq!(t.addr, "127.0.0.1:15000".parse().unwrap());
        assert_eq!(t.host, "127.0.0.1:15000");
        assert_eq!(t.path, "/drain_listeners?inboundonly&graceful&skip_exit");
    }

    #[test]
    fn loopback_forms_are_accepted() {
        for (url, addr, path) in [
            (
                "http://localhost:9901/drain_listeners",
                "127.0.0.1:9901",
                "/drain_listeners",
            ),
            ("http://127.0.0.6:15000", "127.0.0.6:15000", "/"),
            ("http://[::1]:15000/x?y", "[::1]:15000", "/x?y"),
            ("http://127.0.0.1/", "127.0.0.1:80", "/"),
            (
                "http://127.0.0.1:15000?inboundonly",
                "127.0.0.1:15000",
                "/?inboundonly",
            ),
        ] {
            let t = parse_url(url).unwrap();
            assert_eq!(t.addr, addr.parse().unwrap(), "{url}");
            assert_eq!(t.path, path, "{url}");
        }
    }

    #[test]
    fn anything_off_loopback_or_not_plain_http_is_refused() {
        for (url, want) in [
            ("https://127.0.0.1:15000/", "not a plain http://"),
            ("127.0.0.1:15000", "not a plain http://"),
            ("http://10.0.0.1:15000/", "not a loopback address"),
            ("http://example.com/", "not a loopback address"),
            ("http://[2001:db8::1]:80/", "not a loopback address"),
            ("http://0.0.0.0:15000/", "not a loopback address"),
            ("http://127.0.0.1:0/", "bad port"),
            ("http://127.0.0.1:99999/", "bad port"),
            ("http://127.0.0.1:x/", "bad port"),
            ("http://[::1/", "unclosed"),
            ("http://127.0.0.1/a b", "spaces"),
            ("http://127.0.0.1/a\r\nX: y", "control"),
            // The colon missing after ']': not port 80 in silence.
            (
                "http://[::1]15000/drain_listeners",
                "after ']' where only :PORT may be",
            ),
            // CR/LF after the host: never into the Host header.
            (
                "http://[::1]\r\nX-Evil: 1/",
                "after ']' where only :PORT may be",
            ),
            ("http://127.0.0.1\r\n:15000/", "not a loopback address"),
            ("http://127.0.0.1:+80/", "bad port"),
            ("http://127.0.0.1:/", "bad port"),
            ("http://[::1]:/", "bad port"),
        ] {
            let err = format!("{:#}", parse_url(url).unwrap_err());
            assert!(err.contains(want), "{url}: {err}");
            assert!(err.starts_with("--drain: "), "{err}");
        }
    }

    #[test]
    fn post_reports_status_and_refusal() {
        use std::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let mut answers = Vec::new();
            for reply in [
                "HTTP/1.1 200 OK\r\n\r\nOK\n",
                "HTTP/1.1 404 Not Found\r\n\r\n",
                "garbage",
            ] {
                let (mut s, _) = listener.accept().unwrap();
                let mut req = vec![0u8; 1024];
                let n = s.read(&mut req).unwrap();
                answers.push(String::from_utf8_lossy(&req[..n]).into_owned());
                s.write_all(reply.as_bytes()).unwrap();
            }
            answers
        });
        let t = parse_url(&format!(
            "http://{addr}/drain_listeners?inboundonly&graceful"
        ))
        .unwrap();
        assert_eq!(
            post(&t, &SystemClock, soon()).unwrap(),
            ("HTTP/1.1 200 OK".to_owned(), addr)
        );
        assert!(
            format!("{:#}", post(&t, &SystemClock, soon()).unwrap_err()).contains("404 Not Found")
        );
        assert!(
            format!("{:#}", post(&t, &SystemClock, soon()).unwrap_err())
                .contains("not an HTTP response")
        );
        let requests = server.join().unwrap();
        assert!(requests[0].starts_with("POST /drain_listeners?inboundonly&graceful HTTP/1.1\r\n"));
        assert!(requests[0].contains("Content-Length: 0\r\n"));

        // Nobody listening: refused quickly, an error not a hang.
        let (_held, closed) =
            crate::fixture::refusing_port("127.0.0.1:0".parse().unwrap()).unwrap();
        let t = parse_url(&format!("http://{closed}/")).unwrap();
        let err = format!("{:#}", post(&t, &SystemClock, soon()).unwrap_err());
        assert!(err.contains("cannot connect"), "{err}");
    }

    #[test]
    fn loopback_v4_falls_back_to_v6_when_refused() {
        use std::net::TcpListener;
        let d = parse_url(DEFAULT_URL).unwrap();
        assert_eq!(d.fallback, Some("[::1]:15000".parse().unwrap()));
        let l = parse_url("http://localhost:9901/x").unwrap();
        assert_eq!(l.fallback, Some("[::1]:9901".parse().unwrap()));
        for no in ["http://[::1]:15000/", "http://127.0.0.6:15000/"] {
            assert_eq!(parse_url(no).unwrap().fallback, None, "{no}");
        }
        // An admin port on [::1] only, as in an IPv6-only pod; nothing on
        // 127.0.0.1 at that port.
        let Ok(v6) = TcpListener::bind("[::1]:0") else {
            assert!(std::env::var_os("CI").is_none(), "CI has IPv6 loopback");
            crate::fixture::skipped("no IPv6 loopback here");
            return;
        };
        let port = v6.local_addr().unwrap().port();
        // Held refusing on 127.0.0.1 for the whole test.
        let Ok((_v4, _)) = crate::fixture::refusing_port(SocketAddr::from(([127, 0, 0, 1], port)))
        else {
            eprintln!("skipped: 127.0.0.1:{port} is taken");
            return;
        };
        let server = std::thread::spawn(move || {
            let (mut s, _) = v6.accept().unwrap();
            let mut req = [0u8; 1024];
            let _ = s.read(&mut req).unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
        });
        let t = parse_url(&format!("http://127.0.0.1:{port}/drain_listeners")).unwrap();
        let (status, via) = post(&t, &SystemClock, soon()).unwrap();
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(via, format!("[::1]:{port}").parse().unwrap());
        server.join().unwrap();
        // The listener is gone: [::1]:port refuses from here. Its
        // connection's TIME_WAIT keeps a held socket of ours off the port,
        // so it is not held: a parallel test that took it in this moment
        // would fail this test, never pass it.
        // Neither answers: one error naming both.
        let err = format!("{:#}", post(&t, &SystemClock, soon()).unwrap_err());
        assert!(
            err.contains(&format!("cannot connect to 127.0.0.1:{port}")),
            "{err}"
        );
        assert!(err.contains(&format!("nor to [::1]:{port}")), "{err}");
    }

    #[test]
    fn a_silent_server_times_out() {
        use std::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let t = parse_url(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        // Accepted by the kernel backlog but never answered.
        let err = format!("{:#}", post(&t, &SystemClock, soon()).unwrap_err());
        assert!(
            err.contains("no complete status line in time (0 bytes came)"),
            "{err}"
        );
        drop(listener);
    }

    /// A server on loopback that accepts, reads the request, then trickles
    /// a status line one byte every `trickle` (never a whole line within
    /// the tests' budget) or, with `None`, says nothing at all; it holds the
    /// connection open until the returned sender is dropped.
    fn slow_server(
        trickle: Option<Duration>,
    ) -> (
        DrainTarget,
        std::sync::mpsc::Sender<()>,
        std::thread::JoinHandle<()>,
    ) {
        use std::net::TcpListener;
        use std::sync::mpsc::RecvTimeoutError;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let t = parse_url(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let server = std::thread::spawn(move || {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            let mut req = [0u8; 1024];
            let _ = s.read(&mut req);
            let mut reply = b"HTTP/1.1 200 OK\r\n".iter();
            loop {
                match trickle {
                    Some(every) => match wait.recv_timeout(every) {
                        Err(RecvTimeoutError::Timeout) => match reply.next() {
                            Some(b) if s.write_all(&[*b]).is_ok() => {}
                            _ => return,
                        },
                        _ => return,
                    },
                    // Silent: says nothing until told to go.
                    None => {
                        let _ = wait.recv();
                        return;
                    }
                }
            }
        });
        (t, done, server)
    }

    /// How late past `until` a `post` may return, typically: the call's
    /// budget is kept by the monotonic clock, not by the kernel's timer
    /// ticks (socket timeouts came back 23 to 30 ms late, every time). The
    /// median of the tries tells the two apart; a single try may be late
    /// by the scheduler alone on a loaded 2-core machine, so the worst
    /// only has to keep the promise's order of magnitude ([`WORST`]).
    const LATE: Duration = Duration::from_millis(10);
    const WORST: Duration = Duration::from_millis(250);

    #[test]
    fn a_silent_or_trickling_server_costs_the_budget_and_no_more_than_10ms_over() {
        const TRIES: usize = 5;
        const SPAN: Duration = Duration::from_millis(300);
        let mut worst = Vec::new();
        for (what, trickle) in [
            ("silent", None),
            ("trickling", Some(Duration::from_millis(100))),
        ] {
            let mut overs = Vec::new();
            for _ in 0..TRIES {
                let (t, done, server) = slow_server(trickle);
                let until = Instant::now() + SPAN;
                let err = post(&t, &SystemClock, until).unwrap_err();
                let end = Instant::now();
                drop(done);
                server.join().unwrap();
                let err = format!("{err:#}");
                assert!(
                    err.starts_with("no complete status line in time ("),
                    "{what}: {err}"
                );
                assert!(end >= until, "{what}: gave up {:?} early", until - end);
                overs.push(end - until);
            }
            eprintln!("{what}: returned past the {SPAN:?} budget by {overs:?}");
            let mut sorted = overs.clone();
            sorted.sort();
            worst.push((what, sorted[TRIES / 2], sorted[TRIES - 1], overs));
        }
        for (what, median, worst, overs) in worst {
            assert!(
                median <= LATE,
                "{what}: returned a median {median:?} past its {SPAN:?} budget (tries: {overs:?})"
            );
            assert!(
                worst <= WORST,
                "{what}: returned up to {worst:?} past its {SPAN:?} budget (tries: {overs:?})"
            );
        }
    }
}
