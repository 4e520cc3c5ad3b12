//! Live tests: prestop-wait against the real kernel, in the shape of a pod.
//!
//! Fixture trees prove the decision logic; these prove the binary where it
//! will run: one network namespace shared by the proxy and app containers,
//! one PID namespace (and /proc) each, real sockets under real uids, and the
//! hook entering the proxy container's namespaces as uid 1337 the way the
//! kubelet runs an exec preStop hook. The pod is built in tests/live/.
//!
//! Needs root and the ability to make namespaces. Without them each test
//! prints "skipped: ..." and passes, except under CI=true, where it fails.
//! Run with `cargo test --test live_pod -- --nocapture` to see the numbers.

mod common;
mod live;

use common::JsonSock;
use live::{AppPidNs, Done, Pod, RUN, Sock, SockSets};
use std::collections::BTreeSet;
use std::net::SocketAddr;

const INTERVAL: f64 = 0.25;
/// Slack on top of one poll interval for "the hook noticed": one read of
/// /proc/net/tcp{,6} and of the proxy container's /proc, the exit, nsenter
/// reaping it, on a 2-core machine running the other live tests alongside.
const MARGIN: f64 = 0.5;

const PROXY_NAMES: [&str; 2] = ["envoy", "pilot-agent"];

/// `--interval` for [`INTERVAL`].
fn interval() -> String {
    format!("{}ms", (INTERVAL * 1000.0) as u64)
}

/// What `wait` printed once its deadline passed, whitespace collapsed so
/// the test depends neither on column padding nor on one-per-line layout.
fn deadline_report(stderr: &str) -> String {
    let from = stderr
        .find("deadline")
        .unwrap_or_else(|| panic!("no deadline report on stderr:\n{stderr}"));
    stderr[from..]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether the report names `s` as `STATE local -> remote`. A listener may
/// also be named without its (meaningless) remote: `LISTEN local (...)`.
fn names_socket(report: &str, s: &Sock) -> bool {
    report.contains(&format!("{s} "))
        || (s.state == "LISTEN" && report.contains(&format!("{} {} (", s.state, s.local)))
}

/// Scenario 1: a graceful shutdown. The app stops listening, goes on calling
/// out for a second (through envoy's 15001, as traffic leaving a meshed pod
/// does), then closes everything and exits. The hook must hold envoy up
/// until the last of the app's sockets is gone, not just its listeners;
/// `--listen-only` is the looser mode that lets go at the listener close.
#[test]
fn drain_returns_after_last_app_socket() {
    let Some(mut pod) = Pod::start(AppPidNs::Own) else {
        return;
    };
    let iv = interval();
    let mut all = pod.spawn_hook(&["wait", "--interval", &iv, "--timeout", "20s"]);
    let mut listen_only = pod.spawn_hook(&[
        "wait",
        "--listen-only",
        "--interval",
        &iv,
        "--timeout",
        "20s",
    ]);
    // Both have found the app's sockets before it starts to close them.
    all.wait_for_line(" blocking: ", RUN);
    listen_only.wait_for_line(" blocking: ", RUN);

    let app = pod.app_mut();
    app.send("drain 1.0");
    let listeners_closing = app.event("listeners-closing");
    let listeners_closed = app.event("listeners-closed");
    let closing = app.event("closing");
    let last_close = app.event("last-close");
    let all = all.finish(RUN);
    let listen_only = listen_only.finish(RUN);

    eprintln!(
        "scenario 1 (interval {iv}, margin {:.0}ms): app drained for {:.3}s\n  \
         wait:               exit {} at listener close +{:.3}s, last close +{:.3}s\n  \
         wait --listen-only: exit {} at listener close +{:.3}s",
        MARGIN * 1000.0,
        last_close - listeners_closed,
        all.code(),
        all.exited_at - listeners_closed,
        all.exited_at - last_close,
        listen_only.code(),
        listen_only.exited_at - listeners_closed,
    );
    assert_eq!(all.code(), 0, "wait: {all}");
    assert!(
        all.exited_at > closing,
        "wait returned {:.3}s before the app's last sockets closed: {all}",
        closing - all.exited_at
    );
    assert!(
        all.exited_at - last_close < INTERVAL + MARGIN,
        "wait took {:.3}s after the last close: {all}",
        all.exited_at - last_close
    );
    assert_eq!(listen_only.code(), 0, "wait --listen-only: {listen_only}");
    assert!(
        listen_only.exited_at > listeners_closing
            && listen_only.exited_at - listeners_closed < INTERVAL + MARGIN,
        "wait --listen-only exited {:.3}s after the listener close: {listen_only}",
        listen_only.exited_at - listeners_closed
    );
    assert!(
        listen_only.exited_at < closing,
        "wait --listen-only waited for the connections too: {listen_only}"
    );
    pod.close();
}

/// Issue 5, `--quiet-period`: an app that closes everything, pauses, and
/// makes one more call. A plain `wait` takes the pause for the end and lets
/// the proxy go before that call; with a quiet period longer than the pause
/// the hook holds on, and exits one quiet period after the real last close.
#[test]
fn quiet_period_bridges_a_pause_between_calls() {
    let Some(mut pod) = Pod::start(AppPidNs::Own) else {
        return;
    };
    let iv = interval();
    let mut plain = pod.spawn_hook(&["wait", "--interval", &iv, "--timeout", "20s"]);
    let mut quiet = pod.spawn_hook(&[
        "wait",
        "--interval",
        &iv,
        "--quiet-period",
        "2500ms",
        "--timeout",
        "20s",
    ]);
    plain.wait_for_line(" blocking: ", RUN);
    quiet.wait_for_line(" blocking: ", RUN);
    let app = pod.app_mut();
    // Long enough for the plain hook's poll and exit inside it on a
    // loaded machine, a second short of the quiet period.
    app.send("gap 1.2");
    let gap_closing = app.event("gap-closing");
    let gap_start = app.event("gap-start");
    let gap_end = app.event("gap-end");
    let closing = app.event("closing");
    let last_close = app.event("last-close");
    let plain = plain.finish(RUN);
    let quiet = quiet.finish(RUN);
    eprintln!(
        "quiet period (interval {iv}): pause {:.3}s; plain wait exit {} at pause +{:.3}s; \
         --quiet-period 2500ms exit {} at last close +{:.3}s",
        gap_end - gap_start,
        plain.code(),
        plain.exited_at - gap_start,
        quiet.code(),
        quiet.exited_at - last_close,
    );
    assert_eq!(plain.code(), 0, "{plain}");
    assert!(
        plain.exited_at > gap_closing && plain.exited_at < gap_end,
        "plain wait should have ended inside the pause: {plain}"
    );
    assert_eq!(quiet.code(), 0, "{quiet}");
    assert!(
        quiet.exited_at >= closing + 2.5,
        "--quiet-period exited {:.3}s after the last close: {quiet}",
        quiet.exited_at - last_close
    );
    assert!(
        quiet.exited_at < last_close + 2.5 + INTERVAL + MARGIN,
        "--quiet-period took {:.3}s after the last close: {quiet}",
        quiet.exited_at - last_close
    );
    pod.close();
}

/// Issue 5, `--drain`: run as the real hook is (uid 1337, the proxy
/// container's namespaces), the call reaches Envoy's admin port on the pod's
/// loopback once, at the start, and the wait goes on; the hook's own
/// connection to the admin port never counts as the app's.
#[test]
fn drain_call_reaches_the_admin_port_and_the_wait_goes_on() {
    let Some(mut pod) = Pod::start(AppPidNs::Own) else {
        return;
    };
    let hook = pod.spawn_hook(&[
        "wait",
        "--drain",
        "--interval",
        "100ms",
        "--timeout",
        "1500ms",
    ]);
    let line = pod.proxy_mut().expect("event admin", RUN);
    let request = line
        .split_whitespace()
        .nth(2)
        .unwrap_or_default()
        .to_owned();
    let done = hook.finish(RUN);
    assert_eq!(
        request, "POST_/drain_listeners?inboundonly&graceful&skip_exit_HTTP/1.1",
        "{line}"
    );
    // The app never stops here: the deadline passes, after the drain call.
    assert_eq!(done.code(), 1, "{done}");
    assert!(
        done.stderr.contains(
            "drain: POST http://127.0.0.1:15000/drain_listeners?inboundonly&graceful&skip_exit -> HTTP/1.1 200 OK"
        ),
        "{done}"
    );
    let report = deadline_report(&done.stderr);
    assert!(
        !report.contains(":15000"),
        "the drain call blocked: {report}"
    );
    pod.close();
}

/// Issue 5, `--log-file`: the hook, as uid 1337, appends its story to a
/// stream of the proxy container's PID 1, which is what puts it into
/// `kubectl logs`. The README names `/proc/1/fd/2`; here fd 1 is used
/// because the harness reads PID 1's stdout line by line (both are pipes to
/// the same reader in a real container runtime).
#[test]
fn log_file_reaches_the_proxy_containers_pid_1() {
    let Some(mut pod) = Pod::start(AppPidNs::Own) else {
        return;
    };
    // runc hands a container's PID 1 its stdio pipes chowned to the
    // container's user (libcontainer's fixStdioPermissions); the harness made
    // them as root, so do the same here, or uid 1337 may not open them.
    let chown = pod.run_in_proxy(&["chown", "1337:1337", "/proc/1/fd/1", "/proc/1/fd/2"]);
    assert_eq!(chown.code(), 0, "{chown}");
    let hook = pod.spawn_hook(&[
        "wait",
        "--quiet",
        "--log-file",
        "/proc/1/fd/1",
        "--interval",
        "100ms",
        "--timeout",
        "10s",
    ]);
    pod.app_mut().send("drain 0.3");
    let done = hook.finish(RUN);
    assert_eq!(done.code(), 0, "{done}");
    let proxy = pod.proxy_mut();
    let start = proxy.expect("prestop-wait: waiting up to 10s", RUN);
    let end = proxy.expect("prestop-wait: drained after", RUN);
    assert!(done.stderr.is_empty(), "--quiet printed: {done}");
    assert!(start.contains("(every 100ms)"), "{start}");
    assert!(end.starts_with("prestop-wait: drained after"), "{end}");
    pod.close();
}

/// Scenario 2: the app never stops. The hook must give up at its deadline
/// (before the kubelet's grace period would SIGKILL everything anyway) and
/// say what was still open, so the operator can tell which port kept it.
#[test]
fn deadline_passes_and_names_app_sockets() {
    let Some(pod) = Pod::start(AppPidNs::Own) else {
        return;
    };
    let done = pod.run_hook(&["wait", "--timeout", "2s", "--interval", "250ms"]);
    eprintln!("scenario 2: {done}");
    assert_eq!(done.code(), 1, "{done}");
    assert!(
        done.elapsed() >= 2.0 && done.elapsed() < 2.0 + INTERVAL + MARGIN,
        "exit after {:.3}s, want 2s..{:.2}s",
        done.elapsed(),
        2.0 + INTERVAL + MARGIN
    );
    assert!(
        done.stderr.lines().any(|l| l.starts_with("prestop-wait: ")),
        "no `prestop-wait: ` line on stderr: {done}"
    );
    let report = deadline_report(&done.stderr);
    for s in &pod.app_socks {
        assert!(names_socket(&report, s), "stderr does not name {s}: {done}");
    }
    for s in &pod.proxy_socks {
        let named = report.contains(&format!("{} {} ", s.state, s.local));
        assert!(!named, "stderr names proxy socket {s}: {done}");
    }
    pod.close();
}

/// Scenario 3: `check --json` sees the app's sockets and nothing of the
/// proxy's, through every rule that can exclude a socket.
#[test]
fn check_json_lists_exactly_app_sockets() {
    let Some(mut pod) = Pod::start(AppPidNs::Own) else {
        return;
    };
    // A finished call leaves our side in TIME_WAIT with inode 0: it must not
    // be listed anywhere, not even as ignored.
    let call = pod.app_mut().ask("call", "done call");
    let tw_local = call.split_whitespace().nth(2).unwrap().to_string();
    pod.settle();

    let (done, r) = pod.check_json(&["--json"]);
    eprintln!(
        "scenario 3: top-level keys {:?}, keys beyond the contract's {:?}",
        common::keys(&r.value),
        r.extra_keys()
    );
    assert_eq!(done.code(), 1, "{done}");
    assert_eq!(r.blocking_set(), pod.app_socks, "blocking: {done}");
    assert!(
        r.ignored.is_none(),
        "`ignored` present without --all: {done}"
    );
    for s in &r.blocking {
        assert_eq!(s.uid, live::APP_UID, "{s:?}");
        assert_ne!(s.inode, 0, "{s:?}");
        // Another PID namespace: the hook cannot see the app's processes.
        assert_eq!((s.pid, &s.process), (None, &None), "{s:?}");
    }

    let (done, r) = pod.check_json(&["--json", "--all"]);
    assert_eq!(done.code(), 1, "{done}");
    assert_eq!(
        r.blocking_set(),
        pod.app_socks,
        "blocking with --all: {done}"
    );
    assert_eq!(
        r.ignored_set(),
        pod.proxy_socks,
        "ignored with --all: {done}"
    );
    for s in r.ignored() {
        assert_eq!(s.reason.as_deref(), Some("proxy-uid"), "{s:?}");
        assert_eq!(s.uid, live::PROXY_UID, "{s:?}");
        check_proxy_pid(&pod, s);
    }
    assert!(
        !done.stdout.contains(&tw_local),
        "TIME_WAIT socket {tw_local} listed: {done}"
    );

    // Not the proxy's uid: now only the process names can tell the proxy's
    // sockets apart, which works because the hook shares their PID
    // namespace and uid and so may read their fd tables. The app's sockets
    // have no visible holder at all, which must not count as "all holders
    // are proxies".
    let (done, r) = pod.check_json(&["--json", "--all", "--proxy-uid", "4242"]);
    assert_eq!(done.code(), 1, "{done}");
    assert_eq!(
        r.blocking_set(),
        pod.app_socks,
        "blocking, uid 4242: {done}"
    );
    assert_eq!(
        r.ignored_set(),
        pod.proxy_socks,
        "ignored, uid 4242: {done}"
    );
    for s in r.ignored() {
        assert_eq!(s.reason.as_deref(), Some("proxy-process"), "{s:?}");
        assert!(s.pid.is_some(), "proxy-process without a pid: {s:?}");
        check_proxy_pid(&pod, s);
    }

    let (done, r) = pod.check_json(&["--json", "--all", "--ignore-port", "9090"]);
    let on_9090 = |s: &Sock| contract_port(&s.local) == 9090;
    let want_blocking: BTreeSet<Sock> = pod
        .app_socks
        .iter()
        .filter(|s| !on_9090(s))
        .cloned()
        .collect();
    let want_ignored: BTreeSet<Sock> = pod
        .app_socks
        .iter()
        .filter(|s| on_9090(s))
        .cloned()
        .collect();
    assert_eq!(done.code(), 1, "{done}");
    assert_eq!(
        r.blocking_set(),
        want_blocking,
        "--ignore-port 9090: {done}"
    );
    for s in r
        .ignored()
        .iter()
        .filter(|s| s.reason.as_deref() != Some("proxy-uid"))
    {
        assert_eq!(s.reason.as_deref(), Some("ignored-port"), "{s:?}");
    }
    let port_ignored: BTreeSet<Sock> = r
        .ignored()
        .iter()
        .filter(|s| s.reason.as_deref() == Some("ignored-port"))
        .map(Sock::from)
        .collect();
    assert_eq!(port_ignored, want_ignored, "--ignore-port 9090: {done}");

    let (done, r) = pod.check_json(&["--json", "--all", "--listen-only"]);
    let (listening, connected): (BTreeSet<Sock>, BTreeSet<Sock>) = pod
        .app_socks
        .iter()
        .cloned()
        .partition(|s| s.state == "LISTEN");
    assert_eq!(done.code(), 1, "{done}");
    assert_eq!(r.blocking_set(), listening, "--listen-only: {done}");
    let not_listening: BTreeSet<Sock> = r
        .ignored()
        .iter()
        .filter(|s| s.reason.as_deref() == Some("not-listening"))
        .map(Sock::from)
        .collect();
    assert_eq!(
        not_listening, connected,
        "--listen-only not-listening: {done}"
    );
    pod.close();
}

fn contract_port(addr: &str) -> u16 {
    live::contract_addr(addr).port()
}

/// If the hook names a holder of a proxy socket, it must be the right one.
fn check_proxy_pid(pod: &Pod, s: &JsonSock) {
    let Some(pid) = s.pid else { return };
    let port = contract_port(&s.local);
    let (want_pid, want_name) = if port == 15020 || port == 15004 {
        (pod.pilot_agent_pid, "pilot-agent")
    } else {
        (pod.envoy_pid, "envoy")
    };
    assert_eq!(pid, want_pid, "{s:?}");
    assert_eq!(s.process.as_deref(), Some(want_name), "{s:?}");
}

/// Scenario 4: `shareProcessNamespace: true`. The app's processes are now
/// in the hook's /proc, but under another uid, so reading their fd links
/// fails with EACCES (ptrace access mode check). That must be neither an
/// error nor a reason to let go.
#[test]
fn shared_process_namespace_unreadable_fds() {
    let Some(mut pod) = Pod::start(AppPidNs::SharedWithProxy) else {
        return;
    };

    // The premise: the hook's uid sees the app process but not its fds.
    let mut probe = pod.in_proxy();
    probe.args([
        "setpriv",
        "--reuid=1337",
        "--regid=1337",
        "--clear-groups",
        "--",
    ]);
    probe.args([
        "sh",
        "-c",
        &format!("test -d /proc/{0} && ! ls /proc/{0}/fd", pod.app_pid),
    ]);
    let done = pod.run("fd probe", probe, RUN);
    assert_eq!(
        done.code(),
        0,
        "uid 1337 can read the app's fds, or cannot see it: {done}"
    );

    // "No error": exit 1 (something blocks), not 2, in both output modes.
    let text = pod.run_hook(&["check"]);
    eprintln!("scenario 4: check: {text}");
    assert_eq!(text.code(), 1, "{text}");
    for port in [":8080", ":9090"] {
        assert!(
            text.stdout.contains(port),
            "check does not name {port}: {text}"
        );
    }
    let (done, r) = pod.check_json(&["--json", "--all"]);
    assert_eq!(done.code(), 1, "{done}");
    assert_eq!(r.blocking_set(), pod.app_socks, "blocking: {done}");
    assert_eq!(r.ignored_set(), pod.proxy_socks, "ignored: {done}");
    for s in &r.blocking {
        // The app's process is in /proc now, but its fds are not readable.
        assert_eq!((s.pid, &s.process), (None, &None), "{s:?}");
    }

    let (done, r) = pod.check_json(&["--json", "--all", "--proxy-uid", "4242"]);
    assert_eq!(done.code(), 1, "{done}");
    assert_eq!(
        r.blocking_set(),
        pod.app_socks,
        "blocking, uid 4242: {done}"
    );
    assert_eq!(
        r.ignored_set(),
        pod.proxy_socks,
        "ignored, uid 4242: {done}"
    );

    let w = pod.spawn_hook(&["wait", "--timeout", "10s", "--interval", "100ms"]);
    pod.app_mut().send("exit");
    pod.app_mut().event("last-close");
    let done = w.finish(RUN);
    assert_eq!(done.code(), 0, "{done}");
    pod.close();
}

/// The preStop loop this project replaces, as found in Istio issues and
/// blog posts. It counts listening sockets not named envoy.
const SEED_LOOP: &str = "while [ $(netstat -plunt | grep tcp | grep -v envoy | wc -l | xargs) -ne 0 ]; do sleep 1; done";

fn seed_loop(pod: &Pod) -> Done {
    // As root: netstat -p names processes only for a user that may read
    // their fds; that is how the loop is usually run (istio-proxy as root,
    // or with the hook's uid equal to envoy's).
    pod.run_in_proxy(&["timeout", "3", "sh", "-c", SEED_LOOP])
}

/// Scenario 5: documents the seed loop next to ours. pilot-agent's own
/// listeners (15020, 15004) are not "envoy", so as long as pilot-agent
/// runs, which is until the kubelet kills the container after the hook, the
/// loop never ends and every pod waits out its whole grace period.
#[test]
fn seed_loop_never_ends_with_pilot_agent() {
    let Some(mut pod) = Pod::start(AppPidNs::Own) else {
        return;
    };

    let full = seed_loop(&pod);
    eprintln!(
        "scenario 5: seed loop, app running: exit {} after {:.2}s",
        full.code(),
        full.elapsed()
    );
    assert_eq!(full.code(), 124, "{full}");

    pod.app_mut().send("exit");
    pod.app_mut().event("last-close");
    let ours = pod.run_hook(&["check"]);
    assert_eq!(
        ours.code(),
        0,
        "prestop-wait check after the app exited: {ours}"
    );
    let gone = seed_loop(&pod);
    eprintln!(
        "scenario 5: seed loop, app gone, pilot-agent up: exit {} after {:.2}s (check: exit {})",
        gone.code(),
        gone.elapsed(),
        ours.code()
    );
    assert_eq!(
        gone.code(),
        124,
        "seed loop ended with pilot-agent listening: {gone}"
    );

    pod.proxy_mut()
        .ask("close-listeners", "done close-listeners");
    let envoy_only = seed_loop(&pod);
    eprintln!(
        "scenario 5: seed loop, only envoy listening: exit {} after {:.2}s",
        envoy_only.code(),
        envoy_only.elapsed()
    );
    assert_eq!(envoy_only.code(), 0, "{envoy_only}");
    pod.close();

    // The other way round: the loop counts listeners only, so once the
    // listeners are closed it lets go while the app still has connections
    // open (in flight requests, calls out through envoy) that envoy's
    // shutdown would then cut.
    let mut pod = Pod::start(AppPidNs::Own).expect("the machine ran the first pod");
    pod.app_mut().send("close-listeners");
    pod.app_mut().event("listeners-closed");
    pod.proxy_mut()
        .ask("close-listeners", "done close-listeners");
    let seed = seed_loop(&pod);
    let ours = pod.run_hook(&["check"]);
    let ours_lo = pod.run_hook(&["check", "--listen-only"]);
    eprintln!(
        "scenario 5: seed loop, app connected but not listening: exit {} after {:.2}s \
         (check: exit {}, check --listen-only: exit {})",
        seed.code(),
        seed.elapsed(),
        ours.code(),
        ours_lo.code()
    );
    assert_eq!(seed.code(), 0, "{seed}");
    assert_eq!(ours.code(), 1, "{ours}");
    assert_eq!(ours_lo.code(), 0, "{ours_lo}");
    pod.close();
}

/// Scenario 6: the same pod through three pairs of eyes. netstat and ss run
/// as root in the proxy container, the usual way to debug this by hand.
#[test]
fn differential_against_netstat_and_ss() {
    let Some(mut pod) = Pod::start(AppPidNs::Own) else {
        return;
    };
    // Leave a TIME_WAIT around: ss lists it, and it must be the only kind of
    // line that needs dropping besides the proxy's.
    pod.app_mut().ask("call", "done call");
    pod.settle();

    let tool = |args: &[&str]| -> String {
        let done = pod.run_in_proxy(args);
        assert_eq!(done.code(), 0, "{done}");
        done.stdout
    };
    let not_proxy = |l: &live::ToolLine| !l.procs.iter().any(|p| PROXY_NAMES.contains(&p.as_str()));

    let (_, ours) = pod.check_json(&["--listen-only", "--json"]);
    let ours: BTreeSet<SocketAddr> = ours
        .blocking
        .iter()
        .map(|s| live::contract_addr(&s.local))
        .collect();
    let netstat: BTreeSet<SocketAddr> = live::parse_netstat(&tool(&["netstat", "-plunt"]))
        .into_iter()
        .filter(not_proxy)
        .map(|l| l.local)
        .collect();
    let ss: BTreeSet<SocketAddr> = live::parse_ss(&tool(&["ss", "-tlnp"]))
        .into_iter()
        .filter(not_proxy)
        .map(|l| l.local)
        .collect();
    eprintln!("scenario 6: listening, ours {ours:?}\n  netstat {netstat:?}\n  ss {ss:?}");
    assert_eq!(ours, netstat, "check --listen-only vs netstat -plunt");
    assert_eq!(ours, ss, "check --listen-only vs ss -tlnp");

    type Row = (String, SocketAddr, SocketAddr);
    let (_, ours) = pod.check_json(&["--json"]);
    let ours: BTreeSet<Row> = ours
        .blocking
        .iter()
        .map(|s| {
            (
                s.state.clone(),
                live::contract_addr(&s.local),
                live::contract_addr(&s.remote),
            )
        })
        .collect();
    let ss_all = live::parse_ss(&tool(&["ss", "-tanp"]));
    assert!(
        ss_all.iter().any(|l| l.state == "TIME_WAIT"),
        "no TIME_WAIT to drop: {ss_all:?}"
    );
    let ss: BTreeSet<Row> = ss_all
        .into_iter()
        .filter(not_proxy)
        .filter(|l| l.state != "TIME_WAIT")
        .map(|l| (l.state, l.local, l.remote))
        .collect();
    eprintln!("scenario 6: all, ours {ours:?}\n  ss {ss:?}");
    assert_eq!(ours, ss, "check --json vs ss -tanp");
    pod.close();
}

/// The table reader stops at a short read on procfs instead of reading on to
/// the 0-byte end (see `procread::seq_file_ended`): every row must still be
/// seen, whatever the number of rows in the last page-sized read. The pod
/// grows one connection at a time, v4 and v6 in turn, until `tcp` has rows
/// across more than two pages; each step compares `check --all` with every
/// held row of a plain read to the end.
#[test]
fn check_sees_every_row_whatever_the_last_read_holds() {
    let Some(mut pod) = Pod::start(AppPidNs::Own) else {
        return;
    };
    let held_rows = |pod: &Pod| -> BTreeSet<u64> {
        let done = pod.run_in_proxy(&["cat", "/proc/net/tcp", "/proc/net/tcp6"]);
        assert_eq!(done.code(), 0, "{done}");
        done.stdout
            .lines()
            .filter(|l| !l.contains("local_address"))
            .map(|l| l.split_whitespace().nth(9).unwrap().parse().unwrap())
            .filter(|&inode: &u64| inode != 0)
            .collect()
    };
    let mut widths = BTreeSet::new();
    for _ in 0..70 {
        pod.app_mut().ask("open 1", "done open");
        pod.settle();
        let want = held_rows(&pod);
        let (done, r) = pod.check_json(&["--json", "--all"]);
        let got: BTreeSet<u64> = r
            .blocking
            .iter()
            .chain(r.ignored())
            .map(|s| s.inode)
            .collect();
        assert_eq!(got, want, "check --all against cat: {done}");
        assert_eq!(r.blocking.len() + r.ignored().len(), want.len(), "{done}");
        widths.insert(want.len());
    }
    // tcp rows are 150 bytes, 27 to a page: 70 steps must have ended the
    // last read both well short of a page and within one row of it.
    assert!(widths.len() >= 60, "pod did not grow: {widths:?}");
    pod.close();
}

/// One pass, one verdict: in a live pod (both PID shapes), every output of
/// the same moment names the same blocking sockets: the `check` table and
/// `--all` (the table's sink), `check --json` (the streaming sink) and
/// `--json --all`, and one `wait` poll (the tally, whose deadline line names
/// up to ten).
#[test]
fn every_output_names_the_same_blocking_sockets() {
    for shape in [AppPidNs::Own, AppPidNs::SharedWithProxy] {
        let Some(pod) = Pod::start(shape) else {
            return;
        };
        pod.settle();
        let want = pod.app_socks.clone();
        assert!(!want.is_empty() && want.len() <= 10, "{want:?}");
        for args in [&["--json"][..], &["--json", "--all"]] {
            let (done, r) = pod.check_json(args);
            assert_eq!(done.code(), 1, "{done}");
            assert_eq!(r.blocking_set(), want, "check {args:?}: {done}");
        }
        for args in [&["check"][..], &["check", "--all"]] {
            let done = pod.run_hook(args);
            assert_eq!(done.code(), 1, "{done}");
            // STATE LOCAL REMOTE ... [VERDICT]: the rows that block.
            let rows: BTreeSet<Sock> = done
                .stdout
                .lines()
                .skip(1)
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
                .take_while(|c| c.len() >= 6)
                .filter(|c| c.len() == 6 || c[6] == "blocks")
                .map(|c| Sock::new(c[0], c[1], c[2]))
                .collect();
            assert_eq!(rows, want, "{args:?}: {done}");
        }
        let done = pod.run_hook(&["wait", "--timeout=0s"]);
        assert_eq!(done.code(), 1, "{done}");
        let line = done
            .stderr
            .lines()
            .find(|l| l.contains(" still blocking: "))
            .unwrap_or_else(|| panic!("no deadline line: {done}"));
        let (count, named) = line
            .split_once(" still blocking: ")
            .map(|(head, tail)| (head.rsplit("; ").next().unwrap_or_default(), tail))
            .unwrap();
        assert_eq!(
            count,
            format!(
                "{} socket{}",
                want.len(),
                if want.len() == 1 { "" } else { "s" }
            )
        );
        // "STATE local -> remote [direction] (who)", joined with ", ".
        let named: BTreeSet<Sock> = named
            .split(", ")
            .map(|e| {
                let w: Vec<&str> = e.split_whitespace().collect();
                assert_eq!(w[2], "->", "{e}");
                Sock::new(w[0], w[1], w[3])
            })
            .collect();
        assert_eq!(named, want, "wait: {done}");
    }
}

/// `wait` learns of the app's last socket from the kernel's destroy events,
/// not only at its next poll: with polls 3 s apart, it exits within a
/// fraction of a second of the app's last close (the events are read over
/// netlink; from the tables it is the next poll, as before).
#[test]
fn wait_ends_at_the_apps_last_close_not_at_its_next_poll() {
    let Some(mut pod) = Pod::start(AppPidNs::Own) else {
        return;
    };
    let mut netlink = pod.spawn_hook(&["wait", "--interval", "3s", "--timeout", "20s"]);
    let mut tables = pod.spawn_hook(&[
        "wait",
        "--interval",
        "3s",
        "--timeout",
        "20s",
        "--source",
        "proc",
    ]);
    // Both have looked once and found the app's sockets.
    netlink.wait_for_line(" blocking: ", RUN);
    tables.wait_for_line(" blocking: ", RUN);
    let app = pod.app_mut();
    app.send("exit");
    let closing = app.event("closing");
    let last_close = app.event("last-close");
    let netlink = netlink.finish(RUN);
    let tables = tables.finish(RUN);
    eprintln!(
        "polls 3s apart: over netlink exit {:.3}s after the app's last close; from the tables {:.3}s",
        netlink.exited_at - last_close,
        tables.exited_at - last_close
    );
    assert_eq!(
        (netlink.code(), tables.code()),
        (0, 0),
        "{netlink}\n{tables}"
    );
    assert!(netlink.exited_at > closing, "{netlink}");
    assert!(
        netlink.exited_at - last_close < 0.5,
        "{:.3}s after the last close: {netlink}",
        netlink.exited_at - last_close
    );
    // The tables' hook is the control: it waits for its next poll.
    assert!(tables.exited_at - last_close > 0.5, "{tables}");
}
