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

/// How long past its deadline a hook's whole run may take, measured from
/// outside: its process start and exit on a loaded 2-core machine, not a
/// poll's or a write's worth, and far below any hang these tests catch.
const SLACK: Duration = Duration::from_millis(400);

/// Exit by the deadline: at least it, and not much after ([`SLACK`]).
fn assert_on_time(took: Duration, timeout: Duration, what: &str) {
    assert!(
        took >= timeout,
        "{what}: exited before the deadline: {took:?}"
    );
    assert!(
        took < timeout + SLACK,
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
    // The writer reports its count when it ends; at the deadline the hook
    // gives it a moment, not more (logging never holds the hook). Late on
    // a loaded machine, the hook says that instead, and goes.
    let late = err.contains("did not take its last lines in time");
    assert!(
        late || (last.starts_with("prestop-wait: warning: ")
            && last.contains(" log lines dropped: --log-file ")),
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
    // The writer process may still be writing the last lines as the hook
    // exits at its deadline.
    let logged = log_file_when(&log, Duration::from_secs(5), |l| {
        l.ends_with("log lines dropped: stderr would block")
    });
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
        prestop_wait::fixture::skipped(&format!("chown needs root ({e})"));
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

/// `wait`'s runtime errors reach the log file as well as stderr; a hook
/// that cannot read sockets at all still holds to its deadline (a hook that
/// ended at once would let the proxy stop under its app), then exits 2.
#[test]
fn a_runtime_error_reaches_the_log_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("hook.log");
    let started = Instant::now();
    let o = bin()
        .args(["wait", "--timeout=500ms", "--proc", "/nonexistent/proc"])
        .arg(format!("--log-file={}", log.display()))
        .output()
        .unwrap();
    assert_eq!(code(&o), 2);
    assert!(started.elapsed() >= Duration::from_millis(500));
    let err = stderr(&o);
    let said: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("prestop-wait: cannot ") && l.contains("/nonexistent/proc"))
        .collect();
    assert_eq!(said.len(), 1, "said once on stderr: {err}");
    assert!(said[0].ends_with("; polling on, then exit 2"), "{err}");
    assert!(
        err.lines()
            .last()
            .unwrap()
            .contains("and no poll could be read: the proxy stops"),
        "{err}"
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        logged.lines().filter(|l| *l == said[0]).count(),
        1,
        "{logged}"
    );
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

/// Runs `cmd`, killing it after `limit`: a hook that never ends must fail
/// its test, not hang the suite.
fn run_bounded(cmd: &mut std::process::Command, limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output().unwrap();
    (out, started.elapsed())
}

/// Hooks fail safe on any command line: whatever clap or the environment
/// make of it, `wait` and `quiesce` hold to their deadline with an app
/// socket present, say what was wrong, and exit 2; never a panic, never an
/// exit at once.
#[test]
fn hooks_hold_whatever_the_command_line() {
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;
    let mut f = Fixture::new();
    f.socket("0.0.0.0:8080", "0.0.0.0:0", LISTEN, 1000, 7);
    let bogus: Vec<OsString> = (0..40).map(|i| format!("--bogus{i}").into()).collect();
    // (arguments, environment)
    type Case = (Vec<OsString>, Vec<(&'static str, &'static str)>);
    let cases: Vec<Case> = vec![
        (vec!["--help=x".into()], vec![]),
        (vec!["-qx".into()], vec![]),
        (vec!["-q=yes".into()], vec![]),
        (vec!["-qq".into()], vec![]),
        (
            vec![OsString::from_vec(b"--ignore-port=\xff".to_vec())],
            vec![],
        ),
        (bogus, vec![]),
        (vec!["--proc=/nonexistent".into()], vec![]),
        (vec![], vec![("PRESTOP_WAIT_PROC", " ")]),
    ];
    for hook in ["wait", "quiesce"] {
        for (args, env) in &cases {
            let mut cmd = bin();
            cmd.arg(hook).arg("--timeout=300ms");
            if env.is_empty()
                && !args
                    .iter()
                    .any(|a| a.to_string_lossy().starts_with("--proc"))
            {
                cmd.arg("--proc").arg(f.path());
            }
            cmd.args(args).envs(env.iter().copied());
            let (o, took) = run_bounded(&mut cmd, Duration::from_secs(10));
            let err = stderr(&o);
            let shown = format!("{hook} {args:?} {env:?}: {took:?}\n{err}");
            assert_eq!(code(&o), 2, "{shown}");
            assert!(took >= Duration::from_millis(300), "held: {shown}");
            assert!(took < Duration::from_secs(3), "kept --timeout: {shown}");
            assert!(!err.contains("panicked"), "{shown}");
            assert!(
                err.lines().all(|l| l.starts_with("prestop-wait: ")),
                "{shown}"
            );
        }
    }
}

/// `quiesce` whose every look is cut at a deadline shorter than one look
/// ends at the deadline instead of spinning (it once ran at 100% CPU until
/// killed); `wait` alike.
#[test]
fn a_deadline_shorter_than_one_look_ends_the_hook() {
    for hook in ["quiesce", "wait"] {
        let (o, took) = run_bounded(bin().args([hook, "--timeout=1ms"]), Duration::from_secs(5));
        assert!(
            [0, 1].contains(&code(&o)),
            "{hook}: {took:?} {}",
            stderr(&o)
        );
        assert!(took < Duration::from_secs(1), "{hook}: {took:?}");
    }
}

/// `--log-file=auto` looks for the container's log among every visible
/// process; with 10,000 of them that takes longer than a short deadline,
/// and the hook keeps its deadline all the same (the search is the log
/// file's thread's, off the deadline's path).
#[test]
fn auto_among_ten_thousand_processes_keeps_a_short_deadline() {
    let mut f = Fixture::new();
    f.socket("0.0.0.0:8080", "0.0.0.0:0", LISTEN, 1000, 7);
    for pid in 2..10_002 {
        f.process(pid, "worker", &["worker"], &[]);
    }
    for _ in 0..3 {
        let (o, took) = run_bounded(
            bin()
                .args(["wait", "--timeout=50ms", "--log-file=auto", "--proc"])
                .arg(f.path()),
            Duration::from_secs(10),
        );
        assert_eq!(code(&o), 1, "{}", stderr(&o));
        // The deadline plus assert_on_time's slack (process start and
        // exit on a loaded machine); the search it must not wait for takes
        // seconds.
        assert!(
            took < Duration::from_millis(50) + SLACK,
            "{took:?}: {}",
            stderr(&o)
        );
    }
}

/// A log file on a mount whose `open` or `write` hangs (a hung NFS or FUSE
/// server: `O_NONBLOCK` does nothing for a regular file) never holds the
/// hook past its deadline, nor changes its verdict; stderr says the file
/// was left behind.
#[test]
fn a_log_file_on_a_hung_mount_never_holds_the_hook() {
    let probe = std::process::Command::new("/usr/bin/python3")
        .args(["-c", "import fusepy"])
        .output()
        .map_err(|e| e.to_string())
        .and_then(|o| {
            o.status
                .success()
                .then_some(())
                .ok_or("python3-fusepy is not installed".to_owned())
        })
        .and_then(|()| {
            std::fs::metadata("/dev/fuse")
                .map(|_| ())
                .map_err(|e| format!("/dev/fuse: {e}"))
        });
    if !runnable("a_log_file_on_a_hung_mount_never_holds_the_hook", probe) {
        return;
    }
    let mut f = Fixture::new();
    f.socket("0.0.0.0:8080", "0.0.0.0:0", LISTEN, 1000, 7);
    for what in ["open", "write"] {
        let mnt = tempfile::tempdir().unwrap();
        let fs = Mounted::new(mnt.path(), what);
        let log = mnt.path().join("hook.log");
        let (o, took) = run_bounded(
            bin()
                .args(["wait", "--timeout=1s", "--proc"])
                .arg(f.path())
                .arg(format!("--log-file={}", log.display())),
            Duration::from_secs(10),
        );
        drop(fs);
        let err = stderr(&o);
        assert_eq!(code(&o), 1, "{what}: {took:?}\n{err}");
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_secs(1) + SLACK,
            "{what}: {took:?}\n{err}"
        );
        assert!(
            err.lines()
                .any(|l| l.starts_with("prestop-wait: warning: --log-file ")
                    && l.contains("did not take its last lines in time")),
            "{what}: {err}"
        );
        assert!(err.contains("still blocking: LISTEN 0.0.0.0:8080"), "{err}");
    }
}

/// A hanging FUSE filesystem at a mount point, unmounted (and its server
/// killed) when dropped, also when a test fails.
struct Mounted {
    at: std::path::PathBuf,
    server: std::process::Child,
}

impl Mounted {
    fn new(at: &Path, what: &str) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/live/hangfs.py");
        let server = std::process::Command::new("/usr/bin/python3")
            .arg(script)
            .arg(at)
            .arg(what)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let m = Mounted {
            at: at.to_path_buf(),
            server,
        };
        let started = Instant::now();
        while !is_mount(at) {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "hangfs did not mount"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    }
}

fn is_mount(at: &Path) -> bool {
    let at = at.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(at.as_str()))
}

impl Drop for Mounted {
    fn drop(&mut self) {
        // Lazily: a request still hanging must not keep the mount.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.at)
            .status();
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// A stderr that is a socket nobody reads (a log agent that went quiet)
/// and a line longer than the room left in it: the line is dropped, and the
/// hook keeps its deadline (a blocking send never returned).
#[test]
fn a_socket_stderr_nobody_reads_never_holds_the_hook() {
    let (_reader, stderr) = std::os::unix::net::UnixStream::pair().unwrap();
    rustix::net::sockopt::set_socket_send_buffer_size(&stderr, 4096).unwrap();
    let mut f = Fixture::new();
    f.socket("0.0.0.0:8080", "0.0.0.0:0", LISTEN, 1000, 7);
    // The start line names every ignored port: one line of about 15 KB.
    let ports: Vec<String> = (1..3000).map(|p| p.to_string()).collect();
    let started = Instant::now();
    let mut child = bin()
        .args(["wait", "--timeout=1s", "--proc"])
        .arg(f.path())
        .arg(format!("--ignore-port={}", ports.join(",")))
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::os::fd::OwnedFd::from(stderr)))
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let took = started.elapsed();
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{took:?}");
    assert!(took < Duration::from_secs(1) + SLACK, "{took:?}");
}
