//! `--drain`, `--quiet-period`, `--log-file`, the budget warning, direction,
//! and `sleep`, driven through the binary.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// A one-shot HTTP server on loopback that records the request it gets.
fn recording_server(reply: &'static str) -> (String, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let handle = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.ends_with(b"\r\n\r\n") {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            req.extend_from_slice(&buf[..n]);
        }
        s.write_all(reply.as_bytes()).unwrap();
        String::from_utf8_lossy(&req).into_owned()
    });
    (addr, handle)
}

#[test]
fn drain_posts_once_then_waits() {
    let (addr, server) = recording_server("HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nOK\n");
    let f = Fixture::new();
    let url = format!("--drain=http://{addr}/drain_listeners?inboundonly&graceful");
    let o = run(&f, &["wait", "--timeout", "2s", &url]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let req = server.join().unwrap();
    assert!(
        req.starts_with("POST /drain_listeners?inboundonly&graceful HTTP/1.1\r\n"),
        "{req}"
    );
    assert!(req.contains(&format!("Host: {addr}\r\n")), "{req}");
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "drain: POST http://{addr}/drain_listeners?inboundonly&graceful -> HTTP/1.1 200 OK"
        )),
        "{err}"
    );
    assert!(err.contains("drained after"), "{err}");
}

#[test]
fn failed_drain_is_logged_and_the_wait_goes_on() {
    let mut f = Fixture::new();
    f.socket("0.0.0.0:8080", "0.0.0.0:0", LISTEN, 1000, 7);
    // A port nobody listens on: refused at once.
    let (_held, closed) =
        prestop_wait::fixture::refusing_port("127.0.0.1:0".parse().unwrap()).unwrap();
    let o = run(
        &f,
        &[
            "wait",
            "--timeout",
            "300ms",
            &format!("--drain=http://{closed}/"),
        ],
    );
    assert_eq!(code(&o), 1, "the wait ran to its deadline");
    let err = stderr(&o);
    assert!(err.contains("failed: cannot connect"), "{err}");
    assert!(err.contains("waiting anyway"), "{err}");
    assert!(err.contains("deadline 300ms passed"), "{err}");

    // A server that accepts and never answers costs at most the drain's
    // budget (1s), and that time counts against --timeout.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let start = Instant::now();
    let o = run(
        &Fixture::new(),
        &[
            "wait",
            "--timeout",
            "5s",
            &format!("--drain=http://{}/", silent.local_addr().unwrap()),
        ],
    );
    assert_eq!(code(&o), 0);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert!(
        stderr(&o).contains("no complete status line in time"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn drain_to_a_remote_host_is_a_usage_error() {
    // Said first, the wait goes on without a drain (fail safe), exit 2.
    let o = run(&Fixture::new(), &["--drain=http://192.0.2.1:15000/"]);
    assert_eq!(code(&o), 2);
    let err = stderr(&o);
    assert!(
        err.lines()
            .next()
            .unwrap()
            .contains("not a loopback address"),
        "{err}"
    );
    assert!(!err.contains("drain: POST"), "no POST was made: {err}");
}

#[test]
fn quiet_period_holds_after_the_last_socket() {
    let start = Instant::now();
    let o = run(
        &Fixture::new(),
        &["wait", "--quiet-period", "400ms", "--interval", "50ms"],
    );
    assert_eq!(code(&o), 0);
    assert!(start.elapsed() >= Duration::from_millis(400));
    // The quiet period counts from the look that found nothing blocking,
    // which may finish a few ms after the start on a loaded machine: the
    // hold is that look's stamp plus 400ms, and the hook drains no sooner.
    let err = stderr(&o);
    let lines: Vec<&str> = err
        .lines()
        .filter_map(|l| l.strip_prefix("prestop-wait: "))
        .collect();
    let clear = lines
        .iter()
        .find_map(|l| l.ends_with("] nothing blocks").then(|| stamp(l)).flatten())
        .unwrap_or_else(|| panic!("{err}"));
    let until = lines
        .iter()
        .find_map(|l| l.strip_prefix("nothing blocks; holding until "))
        .and_then(|l| humantime::parse_duration(l.split(" (").next()?).ok())
        .unwrap_or_else(|| panic!("{err}"));
    let wanted = clear + Duration::from_millis(400);
    // Both are said to the millisecond, each rounded on its own.
    assert!(
        until.abs_diff(wanted) <= Duration::from_millis(1),
        "{until:?} vs {wanted:?}: {err}"
    );
    let drained = lines
        .iter()
        .find_map(|l| l.strip_prefix("drained after "))
        .and_then(|d| humantime::parse_duration(d).ok())
        .unwrap_or_else(|| panic!("{err}"));
    assert!(drained + Duration::from_millis(1) >= until, "{err}");
}

#[test]
fn log_file_gets_every_line_and_a_bad_path_is_one_warning() {
    let f = istio_pod();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("hook.log");
    std::fs::write(&log, "earlier line\n").unwrap();
    let o = run(
        &f,
        &[
            "wait",
            "--timeout",
            "200ms",
            "--quiet",
            "--log-file",
            log.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 1);
    // At the deadline the writer process gets a moment for the last lines
    // and finishes them after the hook exits (logging never holds it);
    // late on a loaded machine, --quiet or not, the hook says so on stderr.
    let err = stderr(&o);
    assert!(
        err.is_empty() || err.contains("did not take its last lines in time"),
        "{err}"
    );
    let written = log_file_when(&log, Duration::from_secs(5), |l| l.contains("--ignore-uid"));
    let lines: Vec<&str> = written.lines().collect();
    assert_eq!(lines[0], "earlier line", "appends");
    assert!(
        lines[1].starts_with("prestop-wait: waiting up to 200ms"),
        "{written}"
    );
    let [.., deadline, owners, hint] = lines[..] else {
        panic!("{written}")
    };
    assert!(deadline.contains("deadline 200ms passed"), "{written}");
    assert!(
        owners.contains("still blocking by owner: uid 1000"),
        "{written}"
    );
    assert!(hint.contains("--ignore-uid"), "{written}");

    let o = run(
        &Fixture::new(),
        &["wait", "--log-file", "/nonexistent/dir/hook.log"],
    );
    let quiet = run(
        &Fixture::new(),
        &["wait", "-q", "--log-file", "/nonexistent/dir/hook.log"],
    );
    assert_eq!(code(&quiet), 0);
    assert_eq!(
        stderr(&quiet),
        "prestop-wait: warning: cannot open --log-file /nonexistent/dir/hook.log: No such file or directory (os error 2)\n"
    );
    assert_eq!(code(&o), 0);
    let err = stderr(&o);
    assert_eq!(
        err.matches("cannot open --log-file /nonexistent/dir/hook.log")
            .count(),
        1,
        "{err}"
    );
    assert!(err.contains("drained after"), "{err}");
}

#[test]
fn budget_warning_for_a_timeout_past_the_default_grace() {
    let o = run(&Fixture::new(), &["wait", "--timeout", "40s"]);
    assert_eq!(code(&o), 0);
    let err = stderr(&o);
    assert!(
        err.contains("warning: --timeout 40s plus the proxy's default 5s drain is over the default 30s terminationGracePeriodSeconds; set terminationGracePeriodSeconds to at least 45"),
        "{err}"
    );
    let o = run(&Fixture::new(), &["wait"]);
    assert!(!stderr(&o).contains("warning"));
    // The pod's own grace period, stated, replaces the default.
    let o = run(
        &Fixture::new(),
        &["wait", "--timeout", "40s", "--grace-period", "1m"],
    );
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
    let o = bin()
        .args(["wait", "--timeout", "40s", "--proc"])
        .arg(Fixture::new().path())
        .env("PRESTOP_WAIT_GRACE_PERIOD", "40s")
        .output()
        .unwrap();
    assert!(
        stderr(&o).contains("over the pod's 40s terminationGracePeriodSeconds; set terminationGracePeriodSeconds to at least 45"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn direction_in_check_json_and_text() {
    let mut f = istio_pod();
    // The app talks to the proxy's outbound port directly.
    f.socket("127.0.0.1:40000", "127.0.0.1:15001", ESTABLISHED, 1000, 205);
    let (_, r) = check_json(&f, &[]);
    for (local, dir, to_proxy) in [
        ("0.0.0.0:8080", "listen", false),
        ("10.1.2.3:45000", "outbound", false),
        ("10.1.2.3:8080", "inbound", false),
        ("127.0.0.1:40000", "outbound", true),
    ] {
        let s = r.entry("blocking", local);
        assert_eq!(
            (&s["direction"], &s["to_proxy"]),
            (&json!(dir), &json!(to_proxy)),
            "{local}: {s}"
        );
    }
    let o = run(&f, &["check"]);
    let out = stdout(&o);
    assert!(
        out.lines()
            .any(|l| l.contains("127.0.0.1:40000") && l.contains("outbound>proxy")),
        "{out}"
    );
}

#[test]
fn sleep_sleeps_and_rejects_bad_durations() {
    let start = Instant::now();
    let o = bin().args(["sleep", "300ms"]).output().unwrap();
    assert_eq!(code(&o), 0);
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert!(o.stdout.is_empty() && o.stderr.is_empty());
    for bad in [
        &["sleep"][..],
        &["sleep", "5"],
        &["sleep", "soon"],
        &["sleep", "1s", "2s"],
    ] {
        let o = bin().args(bad).output().unwrap();
        assert_eq!(code(&o), 2, "{bad:?}");
        assert_eq!(stderr(&o).lines().count(), 1, "{bad:?}: {}", stderr(&o));
    }
}
