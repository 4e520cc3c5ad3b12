//! Hostile or odd `/proc` trees: vanishing tables and processes, denied fd
//! directories, links that are not sockets, thousands of processes, and the
//! deadline measured live. None of these may panic, hang or end `wait` early.

mod common;

use std::os::unix::fs::{PermissionsExt, symlink};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

#[test]
fn table_vanishing_between_polls_keeps_waiting() {
    let mut f = Fixture::new();
    f.socket("0.0.0.0:8080", "0.0.0.0:0", LISTEN, 1000, 7);
    let mut hook = Watched::new(
        bin()
            .args(["wait", "--timeout", "10s", "--interval", "50ms", "--proc"])
            .arg(f.path())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    hook.wait_for("1 socket blocking");
    std::fs::remove_file(f.table_path("tcp")).unwrap();
    // A look without the table is said, and the wait goes on.
    hook.wait_for("poll failed, keeping the last result");
    // The table comes back without the app's socket: now it drains.
    f.remove_inode(7);
    let (code, lines) = hook.finish();
    assert_eq!(code, 0, "{lines:?}");
    let err = lines.join("\n");
    assert_eq!(
        err.matches("poll failed, keeping the last result").count(),
        1,
        "{err}"
    );
    assert!(err.contains("cannot read"), "{err}");
}

#[test]
fn odd_fd_entries_are_not_sockets_and_not_errors() {
    let mut f = Fixture::new();
    f.socket("0.0.0.0:8080", "0.0.0.0:0", LISTEN, 1000, 7);
    f.process(10, "app", &["app"], &[]);
    let fd = f.path().join("10/fd");
    for (name, target) in [
        ("20", "socket:[abc]"),
        ("21", "socket:[]"),
        ("22", "socket:[7"),
        ("23", "/etc/hostname"),
        ("24", "net:[4026531840]"),
        ("25", "socket:[99999999999999999999999]"),
    ] {
        symlink(target, fd.join(name)).unwrap();
    }
    // A plain file and a directory where links should be.
    std::fs::write(fd.join("26"), "x").unwrap();
    std::fs::create_dir(fd.join("27")).unwrap();
    // A pid directory whose `fd` is a file: listing it fails (ENOTDIR).
    f.process(11, "odd", &["odd"], &[]);
    std::fs::remove_dir_all(f.path().join("11/fd")).unwrap();
    std::fs::write(f.path().join("11/fd"), "").unwrap();
    // A pid directory with no comm, cmdline or fd at all (a process exiting).
    std::fs::create_dir(f.path().join("12")).unwrap();

    let (o, r) = check_json(&f, &[]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert_eq!(r.blocking.len(), 1, "{}", r.value);
    assert_eq!((r.blocking[0].inode, r.blocking[0].pid), (7, None));
    // Two non-links failed readlink; the ENOTDIR fd "directory" counts as one
    // process not inspected.
    assert_eq!((r.uninspected_processes, r.unreadable_fds), (1, 2));
}

#[test]
fn thousands_of_processes() {
    let mut f = Fixture::new();
    f.socket("0.0.0.0:8080", "0.0.0.0:0", LISTEN, 0, 7).socket(
        "0.0.0.0:15001",
        "0.0.0.0:0",
        LISTEN,
        0,
        8,
    );
    for pid in 100..3_100u32 {
        f.process(pid, "worker", &["/bin/worker"], &[]);
    }
    f.process(3_100, "envoy", &["envoy"], &[8]);
    f.process(3_101, "app", &["/srv/app", "--port=8080"], &[7]);
    let (o, mut r) = check_json(&f, &[]);
    assert_eq!(code(&o), 1);
    // The process rule tells envoy's listener from the app's for quiesce too.
    let q = r.value.as_object_mut().unwrap().remove("quiesce").unwrap();
    assert_eq!(q["ports"], json!([8080]), "{q}");
    assert_eq!(
        r.value,
        json!({"blocking": [{"state": "LISTEN", "local": "0.0.0.0:8080", "remote": "0.0.0.0:0",
                             "uid": 0, "inode": 7, "cgroup": null, "this_container": null,
                             "pid": 3101, "process": "app",
                             "direction": "listen", "to_proxy": false}],
               "uninspected_processes": 0, "unreadable_fds": 0, "host_network": false, "source": "proc",
               "containers": {"by": "uid", "cgroup": null, "why": "the tables carry no cgroup ids"}})
    );
}

#[test]
fn non_utf8_process_names_give_valid_output() {
    let mut f = Fixture::new();
    f.socket("0.0.0.0:8080", "0.0.0.0:0", LISTEN, 0, 7)
        .process(5, "x", &["x"], &[7]);
    std::fs::write(f.path().join("5/comm"), b"ev\xffil\"\n").unwrap();
    let (_, r) = check_json(&f, &[]);
    assert_eq!(
        r.blocking[0].process.as_deref(),
        Some("ev\u{fffd}il\""),
        "{}",
        r.value
    );
}

#[test]
fn processes_vanishing_mid_scan_are_never_an_error() {
    let mut f = Fixture::new();
    f.socket("0.0.0.0:8080", "0.0.0.0:0", LISTEN, 0, 7)
        .process(2, "app", &["app"], &[7]);
    let root = f.path().to_path_buf();
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0u32;
            // Create and remove pid directories as fast as possible, so that
            // some disappear between readdir, open, read_dir(fd) and readlink.
            while !stop.load(Ordering::Relaxed) {
                let pid = 1_000 + n % 50;
                let dir = root.join(pid.to_string());
                if dir.exists() {
                    let _ = std::fs::remove_dir_all(&dir);
                } else {
                    let _ = std::fs::create_dir_all(dir.join("fd"));
                    let _ = symlink("socket:[7]", dir.join("fd/3"));
                    let _ = std::fs::write(dir.join("comm"), "churn\n");
                }
                n += 1;
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut runs = 0;
    while Instant::now() < deadline && runs < 150 {
        let (o, r) = check_json(&f, &[]);
        assert_eq!(code(&o), 1, "{}", stderr(&o));
        assert!(o.stderr.is_empty(), "{}", stderr(&o));
        assert_eq!(r.blocking.len(), 1, "{}", r.value);
        assert_eq!((r.blocking[0].inode, r.blocking[0].pid), (7, Some(2)));
        runs += 1;
    }
    stop.store(true, Ordering::Relaxed);
    churn.join().unwrap();
    assert!(runs >= 10, "only {runs} runs");
}

/// Whether this test may switch uid: root, and `setpriv` present.
fn can_drop_to(uid: u32) -> bool {
    let root = rustix::process::geteuid().is_root();
    let setpriv = Command::new("setpriv").arg("--version").output().is_ok();
    runnable(
        &test_name(),
        if root && setpriv {
            Ok(())
        } else {
            Err(format!(
                "needs root and setpriv to run as uid {uid} (root: {root}, setpriv: {setpriv})"
            ))
        },
    )
}

#[test]
fn denied_fd_directories_are_counted_not_fatal_as_uid_1337() {
    if !can_drop_to(1337) {
        return;
    }
    let mut f = Fixture::new();
    f.socket("0.0.0.0:8080", "0.0.0.0:0", LISTEN, 1000, 7)
        .socket("0.0.0.0:15020", "0.0.0.0:0", LISTEN, 0, 8)
        .process(2, "app", &["app"], &[7])
        .process(3, "pilot-agent", &["pilot-agent"], &[8]);
    // tempdirs are 0700; the hook's uid must be able to walk the tree, as it
    // can walk the real /proc.
    std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // The app's fd directory is root's and closed to others, as a real
    // /proc/<pid>/fd of another uid is to a process without CAP_SYS_PTRACE.
    std::fs::set_permissions(
        f.path().join("2/fd"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    let o = Command::new("setpriv")
        .args([
            "--reuid",
            "1337",
            "--regid",
            "1337",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(BIN)
        .args(["check", "--json", "--proc"])
        .arg(f.path())
        .output()
        .unwrap();
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let r = Report::exact(&stdout(&o));
    // Only the app's socket blocks, pilot-agent's does not, and the app's
    // holder is hidden behind its closed fd directory.
    assert_eq!(r.blocking.len(), 1, "{}", r.value);
    let s = &r.blocking[0];
    assert_eq!((s.inode, s.pid, &s.process), (7, None, &None), "{s:?}");
    assert_eq!(r.uninspected_processes, 1, "{}", r.value);
    assert!(o.stderr.is_empty(), "{}", stderr(&o));
}

#[test]
fn deadline_is_kept_to_the_millisecond_live() {
    let f = istio_pod();
    let start = Instant::now();
    // An interval far longer than the timeout: the one sleep must be cut to
    // the deadline.
    let o = bin()
        .args(["wait", "--timeout", "500ms", "--interval", "10s", "--proc"])
        .arg(f.path())
        .output()
        .unwrap();
    let wall = start.elapsed();
    assert_eq!(code(&o), 1);
    let err = stderr(&o);
    let at = err
        .split("deadline 500ms passed (at ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .unwrap_or_else(|| panic!("{err}"));
    let at = humantime::parse_duration(at).unwrap();
    // The binary's own clock: the 10s interval cut to the deadline, plus
    // the wake and the last look on a loaded machine (a sibling test churns
    // /proc-like trees in this process meanwhile).
    assert!(
        at >= Duration::from_millis(500) && at <= Duration::from_millis(750),
        "binary's own clock: {at:?}"
    );
    // From outside, with process start and exit: still well short of a poll interval.
    assert!(wall < Duration::from_millis(1_500), "wall {wall:?}");
}
