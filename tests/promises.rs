//! The promises `wait` makes under hostile conditions (issue: "The deadline
//! is a promise"): nothing outlasts `--timeout` whatever the log target or
//! the drain endpoint does, nothing aborts, one verdict everywhere, errors
//! reach the log. Each test is one finding of that issue, kept as a test.

mod common;

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A FIFO at `path`.
fn fifo(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o666),
        0,
    )
    .expect("mkfifo");
}

/// A FIFO whose reader is held open and never reads, filled to the brim:
/// what a proxy's stderr pipe is when its log collector stopped reading.
/// Returns (reader, a writer in blocking mode).
fn full_fifo(path: &Path) -> (File, File) {
    fifo(path);
    let reader = OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .unwrap();
    let mut filler = OpenOptions::new()
        .write(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .unwrap();
    let chunk = [b'x'; 4096];
    loop {
        match filler.write(&chunk) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("filling the fifo: {e}"),
        }
    }
    let writer = OpenOptions::new().write(true).open(path).unwrap();
    (reader, writer)
}

/// Runs `wait ARGS --proc FIXTURE` and how long it took.
fn timed(f: &Fixture, args: &[&str]) -> (Output, Duration) {
    let start = Instant::now();
    let o = run(f, args);
    (o, start.elapsed())
}

/// Exit by the deadline: at least it, and not much after (process start
/// and a loaded CI machine, not a poll's or a write's worth).
fn assert_on_time(took: Duration, timeout: Duration, what: &str) {
    assert!(
        took >= timeout,
        "{what}: exited before the deadline: {took:?}"
    );
    assert!(
        took < timeout + Duration::from_millis(400),
        "{what}: {took:?} for a {timeout:?} deadline"
    );
}

#[test]
fn a_fifo_nobody_reads_as_log_file_fails_to_open_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.fifo");
    fifo(&path);
    let (o, took) = timed(
        &istio_pod(),
        &[
            "wait",
            "--timeout=500ms",
            &format!("--log-file={}", path.display()),
        ],
    );
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert_on_time(took, Duration::from_millis(500), "FIFO log file");
    let err = stderr(&o);
    assert!(
        err.starts_with(&format!(
            "prestop-wait: warning: cannot open --log-file {}: ",
            path.display()
        )) && err
            .lines()
            .next()
            .unwrap()
            .ends_with("(a FIFO or pipe nobody reads)"),
        "{err}"
    );
}

#[test]
fn a_full_log_pipe_drops_lines_and_says_so_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.fifo");
    let (_reader, _writer) = full_fifo(&path);
    let (o, took) = timed(
        &istio_pod(),
        &[
            "wait",
            "--timeout=600ms",
            "--interval=20ms",
            &format!("--log-file={}", path.display()),
        ],
    );
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert_on_time(took, Duration::from_millis(600), "full log pipe");
    let err = stderr(&o);
    assert_eq!(
        err.matches("would block (nobody is reading it); dropping the lines it cannot take")
            .count(),
        1,
        "{err}"
    );
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with("prestop-wait: warning: ")
            && last.contains(" log lines dropped: --log-file "),
        "the count comes last: {err}"
    );
    // Every other line still reached stderr.
    assert!(err.contains("deadline 600ms passed"), "{err}");
}

/// `--log-file=auto` reopens the proxy's fd 2: here a fixture PID 1 whose
/// fd 2 is that same full pipe.
#[test]
fn auto_into_a_full_pipe_never_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stderr.fifo");
    let (_reader, _writer) = full_fifo(&path);
    let mut f = Fixture::new();
    f.socket("0.0.0.0:8080", "0.0.0.0:0", LISTEN, 1000, 201);
    f.process(1, "pilot-agent", &["/usr/local/bin/pilot-agent"], &[]);
    let fd2 = f.path().join("1/fd/2");
    std::fs::remove_file(&fd2).unwrap();
    std::os::unix::fs::symlink(&path, &fd2).unwrap();
    std::fs::create_dir_all(f.path().join("1/fdinfo")).unwrap();
    std::fs::write(f.path().join("1/fdinfo/2"), "pos:\t0\nflags:\t01\n").unwrap();
    let (o, took) = timed(&f, &["wait", "--timeout=500ms", "--log-file=auto"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert_on_time(took, Duration::from_millis(500), "auto into a full pipe");
    let err = stderr(&o);
    assert!(err.contains("log: also to"), "{err}");
    assert!(err.contains("would block"), "{err}");
}

/// The hook's own stderr full (its reader stopped): lines are dropped there,
/// and the log file says so.
#[test]
fn a_full_stderr_drops_lines_and_the_log_file_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stderr.fifo");
    let (_reader, writer) = full_fifo(&path);
    let log = dir.path().join("hook.log");
    let f = istio_pod();
    let start = Instant::now();
    let status = bin()
        .args(["wait", "--timeout=500ms", "--proc"])
        .arg(f.path())
        .arg(format!("--log-file={}", log.display()))
        .stderr(Stdio::from(writer))
        .status()
        .unwrap();
    let took = start.elapsed();
    assert_eq!(status.code(), Some(1));
    assert_on_time(took, Duration::from_millis(500), "full stderr");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        logged.matches("stderr cannot take lines").count(),
        1,
        "{logged}"
    );
    assert!(logged.contains("deadline 500ms passed"), "{logged}");
    assert!(
        logged
            .lines()
            .last()
            .unwrap()
            .ends_with("log lines dropped: stderr would block"),
        "{logged}"
    );
}

/// An admin port that accepts and trickles a byte a second, or says nothing.
fn slow_admin(trickle: bool) -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut req = [0u8; 1024];
        let _ = s.read(&mut req);
        for b in b"HTTP/1.1 200 OK\r\n" {
            if !trickle {
                break;
            }
            if s.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        std::thread::sleep(Duration::from_secs(3));
    });
    (port, server)
}

#[test]
fn a_trickling_or_silent_drain_endpoint_costs_no_more_than_the_deadline() {
    for (trickle, timeout) in [(true, 2_000), (false, 300)] {
        let (port, server) = slow_admin(trickle);
        let timeout = Duration::from_millis(timeout);
        let (o, took) = timed(
            &istio_pod(),
            &[
                "wait",
                &format!("--timeout={}ms", timeout.as_millis()),
                &format!("--drain=http://127.0.0.1:{port}/drain_listeners?inboundonly&graceful"),
            ],
        );
        assert_eq!(code(&o), 1, "{}", stderr(&o));
        assert_on_time(took, timeout, if trickle { "trickle" } else { "silent" });
        let err = stderr(&o);
        assert!(
            err.contains("drain: POST") && err.contains("failed"),
            "{err}"
        );
        drop(server);
    }
}

/// The drain call's own budget (1s) also holds on a long deadline.
#[test]
fn the_drain_call_gives_up_after_its_budget() {
    let (port, _server) = slow_admin(true);
    let f = Fixture::new(); // nothing blocks: the drain is all the time spent
    let (o, took) = timed(
        &f,
        &[
            "wait",
            "--timeout=20s",
            &format!("--drain=http://127.0.0.1:{port}/"),
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(took < Duration::from_millis(1_600), "{took:?}");
    assert!(
        stderr(&o).contains("no complete status line in time"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn huge_durations_saturate_instead_of_aborting() {
    let huge = "18446744073709551615s";
    // Nothing blocks: drained at once, whatever the deadline.
    for args in [
        vec!["wait", "--timeout", huge],
        vec![
            "wait",
            "--timeout",
            huge,
            "--quiet-period",
            "1ms",
            "--grace-period",
            huge,
        ],
    ] {
        let o = run(&Fixture::new(), &args);
        assert_eq!(code(&o), 0, "{args:?}: {}", stderr(&o));
    }
    // Past what a duration holds at all: rejected, one line each, no abort
    // (and wait goes on without them).
    let o = run(
        &Fixture::new(),
        &[
            "wait",
            "--timeout=600000000000y",
            "--interval=600000000000y",
        ],
    );
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert_eq!(
        stderr(&o).matches("number is too large").count(),
        2,
        "{}",
        stderr(&o)
    );
    // An app that blocks, an interval past any clock: still the deadline.
    let (o, took) = timed(
        &istio_pod(),
        &["wait", "--timeout=300ms", "--interval", huge],
    );
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert_on_time(took, Duration::from_millis(300), "huge interval");
    // From the environment too.
    let o = bin()
        .args(["wait", "--proc"])
        .arg(Fixture::new().path())
        .env("PRESTOP_WAIT_TIMEOUT", huge)
        .env("PRESTOP_WAIT_MIN_WAIT", "0s")
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("waiting up to 100years"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn errors_on_a_closed_or_broken_stderr_exit_2_not_abort() {
    // Closed: fd 2 not open at all.
    let o = bin()
        .args(["check", "--proc", "/nonexistent"])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&o), 2);
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("exec 2>&-; exec {BIN} check --proc /nonexistent"))
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2), "closed fd 2");
    // Broken: a pipe whose reader is gone.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gone.fifo");
    fifo(&path);
    let reader = OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(&path)
        .unwrap();
    let writer = OpenOptions::new().write(true).open(&path).unwrap();
    drop(reader);
    let status = bin()
        .args(["check", "--proc", "/nonexistent"])
        .stderr(Stdio::from(writer))
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2), "broken stderr pipe: {status:?}");
}

/// `check | head -1`: the reader goes away after one line. Quietly, with
/// the verdict's exit code, whether the output is the table or JSON.
#[test]
fn a_reader_that_goes_away_ends_output_quietly_with_the_verdicts_code() {
    let mut f = Fixture::new();
    for i in 0..3_000u64 {
        let port = 20_000 + i;
        f.socket(
            &format!("10.1.2.3:{port}"),
            "10.9.8.7:443",
            ESTABLISHED,
            1000,
            1_000 + i,
        );
    }
    for args in [
        &["check"][..],
        &["check", "--all"],
        &["check", "--json"],
        &["--help"],
    ] {
        let mut child = bin()
            .args(args)
            .arg("--proc")
            .arg(f.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = [0u8; 16];
        child.stdout.take().unwrap().read_exact(&mut first).unwrap();
        // The read end is dropped here: the rest of the output meets EPIPE.
        let o = child.wait_with_output().unwrap();
        let want = if args == ["--help"] { 0 } else { 1 };
        assert_eq!(code(&o), want, "{args:?}: {}", stderr(&o));
        assert_eq!(stderr(&o), "", "{args:?}");
    }
}

/// One verdict: a socket of the app's uid held only by a process of the
/// proxy's uid named envoy (handed over, or made before a uid change) is
/// the proxy's, in every output; `--all` only adds rows.
#[test]
fn a_socket_held_only_by_a_proxy_process_has_one_verdict_everywhere() {
    use std::os::unix::fs::chown;
    let mut f = istio_pod();
    f.socket("127.0.0.1:7000", "0.0.0.0:0", LISTEN, 1000, 777);
    f.process(40, "envoy", &["/usr/local/bin/envoy"], &[777, 101]);
    if let Err(e) = chown(f.path().join("40"), Some(1337), None) {
        assert!(std::env::var_os("CI").is_none(), "CI runs as root: {e}");
        eprintln!("skipped: chown needs root ({e})");
        return;
    }
    let (plain, r) = check_json(&f, &[]);
    let (all, r_all) = check_json(&f, &["--all"]);
    assert_eq!(code(&plain), code(&all));
    assert_eq!(r.blocking, r_all.blocking, "--all only adds rows");
    assert!(
        !r.blocking_locals().contains(&"127.0.0.1:7000"),
        "{}",
        r.value
    );
    let s = r_all.entry("ignored", "127.0.0.1:7000");
    assert_eq!(
        (s["reason"].as_str(), s["pid"].as_u64()),
        (Some("proxy-process"), Some(40))
    );
    // The table says the same, and wait's log never names it.
    let text = stdout(&run(&f, &["check"]));
    assert!(!text.contains("127.0.0.1:7000"), "{text}");
    let text_all = stdout(&run(&f, &["check", "--all"]));
    assert!(text_all.contains("proxy-process"), "{text_all}");
    assert_eq!(
        text.lines().last(),
        text_all.lines().last(),
        "same hint line: {text_all}"
    );
    let o = run(&f, &["wait", "--timeout=0s"]);
    assert_eq!(code(&o), code(&plain));
    assert!(!stderr(&o).contains("7000"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("{} sockets still blocking", r.blocking.len())),
        "{}",
        stderr(&o)
    );
}

/// `wait`'s runtime errors reach the log file as well as stderr.
#[test]
fn a_runtime_error_reaches_the_log_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("hook.log");
    let o = bin()
        .args(["wait", "--proc", "/nonexistent/proc"])
        .arg(format!("--log-file={}", log.display()))
        .output()
        .unwrap();
    assert_eq!(code(&o), 2);
    let err = stderr(&o);
    let want = err.lines().last().unwrap();
    assert!(
        want.starts_with("prestop-wait: cannot ") && want.contains("/nonexistent/proc"),
        "{err}"
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_eq!(logged.lines().last(), Some(want), "{logged}");
    assert_eq!(err.matches(want).count(), 1, "said once on stderr: {err}");
}

/// A table of one huge line is an error at once, naming at most a little of it.
#[test]
fn one_huge_table_line_is_a_short_error() {
    let f = Fixture::new();
    let mut text = String::from(TCP_HEADER);
    text.push('\n');
    text.push_str(&"A".repeat(8 << 20));
    std::fs::write(f.table_path("tcp"), text).unwrap();
    let o = run(&f, &["check"]);
    assert_eq!(code(&o), 2);
    let err = stderr(&o);
    assert!(
        err.ends_with("line 2: longer than 4096 bytes: not a socket table\n"),
        "{err}"
    );
    // A long token within a short line: quoted, cut.
    let mut text = String::from(TCP_HEADER);
    text.push_str(&format!(
        "\n   0: {}:1F90 00000000:0000 0A 0:0 0:0 0 1000 0 5 1\n",
        "0".repeat(3000)
    ));
    std::fs::write(f.table_path("tcp"), text).unwrap();
    let o = run(&f, &["check"]);
    assert_eq!(code(&o), 2);
    let err = stderr(&o);
    assert!(err.len() < 300, "{} bytes: {err}", err.len());
    assert!(err.contains("(3005 bytes)"), "{err}");
}
