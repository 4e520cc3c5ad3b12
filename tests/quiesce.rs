//! `quiesce` through the binary, on fixture tables (the tables source: what
//! the hook falls back to where netlink is denied): traffic as rows that
//! appear and change, flags and their environment, failing safe, the log.

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The app of a pod: a listener on 8080 (uid 1000), Envoy's on 15006.
fn pod() -> Fixture {
    let mut f = Fixture::new();
    f.socket("0.0.0.0:8080", "0.0.0.0:0", LISTEN, 1000, 10)
        .socket("0.0.0.0:15006", "0.0.0.0:0", LISTEN, 1337, 11);
    f
}

/// A connection to `local` from 10.0.0.9:`peer_port` appears in the table.
fn connect(f: &mut Fixture, local: &str, peer_port: u16, uid: u32, inode: u64) {
    f.socket(
        local,
        &format!("10.0.0.9:{peer_port}"),
        ESTABLISHED,
        uid,
        inode,
    );
}

fn spawn(f: &Fixture, args: &[&str]) -> Child {
    bin()
        .arg("quiesce")
        .args(["--proc", &f.path_str()])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn lines(o: &std::process::Output) -> Vec<String> {
    stderr(o)
        .lines()
        .map(|l| l.strip_prefix("prestop-wait: ").unwrap_or(l).to_owned())
        .collect()
}

#[test]
fn new_connections_hold_it_until_idle_after_the_last() {
    let mut f = pod();
    let mut hook = Watched::new(spawn(
        &f,
        &["--idle=500ms", "--interval=20ms", "--timeout=10s"],
    ));
    // The first look is the baseline: connections only after it.
    hook.wait_for("the app listens on port 8080");
    // A connection every 100 ms for 600 ms, each left open (a pool).
    let mut last = Instant::now();
    for i in 0..6u16 {
        std::thread::sleep(Duration::from_millis(100));
        // Stamped before the row shows: the hold's lower bound.
        last = Instant::now();
        connect(&mut f, "10.0.0.5:8080", 40000 + i, 1000, 100 + u64::from(i));
    }
    let (code, l) = hook.finish();
    let held_after = last.elapsed();
    assert_eq!(code, 0, "{l:?}");
    assert!(
        held_after >= Duration::from_millis(500),
        "{held_after:?}: {l:?}"
    );
    assert_eq!(
        l[1],
        "note: the tables carry no tcp_info, so this is coarser: data on a kept-alive connection shows only while bytes wait in its queues; new, ended and queued connections show at every look; traffic is assumed until a window after the start"
    );
    // The first look's stamp is however long the start took: a bracket.
    assert!(stamp(&l[2]).is_some(), "{l:?}");
    assert!(
        l[2].split_once("] ")
            .unwrap()
            .1
            .starts_with("the app listens on port 8080; 0 connections open"),
        "{l:?}"
    );
    let end = l.last().unwrap();
    assert!(
        end.starts_with(
            "no inbound traffic for 500ms (the last: 10.0.0.9:40005 -> 10.0.0.5:8080 appeared by "
        ),
        "{end}"
    );
}

#[test]
fn bytes_waiting_on_a_kept_alive_connection_are_traffic_and_a_stuck_queue_is_not() {
    let mut f = pod();
    f.socket("10.0.0.5:8080", "127.0.0.6:40000", ESTABLISHED, 1000, 100);
    let mut hook = Watched::new(spawn(
        &f,
        &["--idle=400ms", "--interval=20ms", "--timeout=3s"],
    ));
    hook.wait_for("the app listens on port 8080");
    // A request the app has not read yet: 120 bytes in rx_queue, and they
    // stay there (the app is stuck): one sign, not a stream of them.
    let set = Instant::now();
    f.set_queues(100, 0, 120);
    let (code, mut l) = hook.finish();
    assert_eq!(code, 0, "{l:?}");
    assert!(set.elapsed() >= Duration::from_millis(400), "{l:?}");
    let end = l.pop().unwrap();
    assert!(
        end.contains("127.0.0.6:40000 -> 10.0.0.5:8080 had bytes moving by"),
        "{end}"
    );
}

#[test]
fn traffic_to_the_deadline_is_exit_1_and_proxy_traffic_is_never_the_apps() {
    let mut f = pod();
    let child = spawn(&f, &["--idle=300ms", "--interval=20ms", "--timeout=1500ms"]);
    let until = Instant::now() + Duration::from_secs(2);
    let mut i = 0u16;
    while Instant::now() < until {
        // The app's connection, and Envoy's own (uid 1337, port 15006).
        connect(
            &mut f,
            "10.0.0.5:8080",
            40000 + i,
            1000,
            1000 + u64::from(i),
        );
        connect(
            &mut f,
            "10.0.0.5:15006",
            50000 + i,
            1337,
            5000 + u64::from(i),
        );
        i += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let end = lines(&o).pop().unwrap();
    assert!(end.starts_with("deadline 1s 500ms passed (at "), "{end}");
    // The deadline kept: at it, plus a look and a wake on a loaded machine.
    let at = said_at(&end);
    assert!(
        (Duration::from_millis(1500)..Duration::from_millis(2000)).contains(&at),
        "{end}"
    );
    assert!(end.contains("-> 10.0.0.5:8080 appeared by"), "{end}");
    assert!(!stderr(&o).contains(":15006 appeared"), "{}", stderr(&o));

    // Only the proxy's traffic: quiet.
    let mut f = pod();
    let child = spawn(&f, &["--idle=300ms", "--interval=20ms", "--timeout=3s"]);
    for i in 0..5u16 {
        connect(
            &mut f,
            "10.0.0.5:15006",
            50000 + i,
            1337,
            5000 + u64::from(i),
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        lines(&o)
            .last()
            .unwrap()
            .contains("none seen since the start"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn ports_narrow_what_counts() {
    // Traffic on 9090 only (a scraped metrics port).
    let mut f = pod();
    f.socket("0.0.0.0:9090", "0.0.0.0:0", LISTEN, 1000, 12);
    for (args, quiet) in [
        (&["--ignore-port=9090"][..], true),
        (&["--port=8080"], true),
        (&[], false),
        (&["--port=9090"], false),
    ] {
        let child = spawn(
            &f,
            &[&["--idle=300ms", "--interval=20ms", "--timeout=1s"], args].concat(),
        );
        for i in 0..12u16 {
            connect(&mut f, "10.0.0.5:9090", 40000 + i, 1000, 200 + u64::from(i));
            std::thread::sleep(Duration::from_millis(100));
        }
        let o = child.wait_with_output().unwrap();
        assert_eq!(
            code(&o),
            if quiet { 0 } else { 1 },
            "{args:?}: {}",
            stderr(&o)
        );
        for i in 0..12 {
            f.remove_inode(200 + i);
        }
    }
}

#[test]
fn min_wait_is_a_floor_and_env_sets_flags() {
    let f = pod();
    let started = Instant::now();
    let o = bin()
        .args(["quiesce", "--proc", &f.path_str()])
        .env("PRESTOP_WAIT_IDLE", "200ms")
        .env("PRESTOP_WAIT_MIN_WAIT", "1s")
        .env("PRESTOP_WAIT_QUIET", "1")
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(stderr(&o), "", "--quiet from the environment");
}

#[test]
fn bad_values_hold_with_defaults_and_exit_2() {
    let f = pod();
    let log = f.path().join("quiesce.log");
    let started = Instant::now();
    let o = bin()
        .args([
            "quiesce",
            "--proc",
            &f.path_str(),
            "--timeout=1s",
            "--idle=soon",
            "--bogus",
        ])
        .args(["--port=8080", "--ignore-port=8080"])
        .arg(format!("--log-file={}", log.display()))
        .output()
        .unwrap();
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "held to the deadline"
    );
    let file = log_file_when(&log, Duration::from_secs(5), |l| {
        l.ends_with("(deadline reached while holding)")
    });
    for said in [
        "invalid value 'soon' for '--idle <DURATION>'",
        "unexpected argument '--bogus'",
        "--port 8080 is also an --ignore-port: it would never count",
    ] {
        assert!(stderr(&o).contains(said), "{said}: {}", stderr(&o));
        assert!(file.contains(said), "{said} not in the log file: {file}");
    }
    assert!(
        file.contains("holding without it (its default), then exit 2"),
        "{file}"
    );
    // With the default window (no traffic, and the fixture has no counters
    // to tell a quiet pod by: 2s) past the 1s deadline:
    assert!(
        file.trim_end()
            .ends_with("(deadline reached while holding)"),
        "{file}"
    );
}

#[test]
fn an_unreadable_table_holds_to_the_deadline_then_exits_2() {
    // A hook that cannot read sockets fails safe: it says so, keeps
    // looking, and holds the app to its deadline.
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let o = bin()
        .args([
            "quiesce",
            "--proc",
            &dir.path().display().to_string(),
            "--timeout=1s",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    let err = stderr(&o);
    let said: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("prestop-wait: cannot read "))
        .collect();
    assert_eq!(said.len(), 1, "{err}");
    assert!(said[0].contains("net/tcp"), "{err}");
    assert!(
        err.lines()
            .last()
            .unwrap()
            .contains("and no look could be read: the app stops"),
        "{err}"
    );
}
