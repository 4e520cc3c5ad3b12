//! Live tests for the pods people really run: another container beside the
//! app, the hook's log in both PID-namespace shapes, IPv6 inbound and the
//! IPv6 admin port, and a hostNetwork pod. Same harness as live_pod.rs.
//!
//! Needs root and the ability to make namespaces. Without them each test
//! prints "skipped: ..." and passes, except under CI=true, where it fails.

mod common;
mod live;

use live::{AppPidNs, Pod, RUN, sh};

/// Slack on top of one poll interval for "the hook noticed" (see live_pod.rs).
const INTERVAL: f64 = 0.1;
const MARGIN: f64 = 0.5;

/// The last `n` lines of a hook's stderr.
fn last_lines(stderr: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines.len() >= n, "fewer than {n} lines: {stderr}");
    lines[lines.len() - n..].to_vec()
}

/// A log shipper (uid 65532, its own PID namespace, listening on 5432) that
/// never exits holds the proxy to the deadline, and the deadline's lines say
/// so by uid with the hint; with `--ignore-uid 65532` the hook lets go right
/// after the app's last socket.
#[test]
fn another_container_blocks_until_ignored_by_uid() {
    let Some(mut pod) = Pod::start(AppPidNs::Own) else {
        return;
    };
    pod.add_container("log-shipper", 65532, &[5432]);

    // App and shipper both up: both uids are named.
    let done = pod.run_hook(&["wait", "--timeout", "1s", "--interval", "100ms"]);
    assert_eq!(done.code(), 1, "{done}");
    let [owners, hint] = last_lines(&done.stderr, 2)[..] else {
        unreachable!()
    };
    assert!(
        owners.starts_with("prestop-wait: still blocking by owner: uid 1000: ")
            && owners.ends_with("; uid 65532: 1 socket (local port 5432)"),
        "{done}"
    );
    assert!(hint.ends_with("(uids here: 1000, 65532)"), "{done}");

    // The app shuts down; the shipper stays, excused by its uid.
    let mut hook = pod.spawn_hook(&[
        "wait",
        "--ignore-uid",
        "65532",
        "--timeout",
        "10s",
        "--interval",
        "100ms",
    ]);
    hook.wait_for_line(" blocking: ", RUN);
    pod.app_mut().send("drain 0.3");
    let closing = pod.app_mut().event("closing");
    let last_close = pod.app_mut().event("last-close");
    let done = hook.finish(RUN);
    assert_eq!(done.code(), 0, "{done}");
    let after = done.exited_at - last_close;
    eprintln!("ignore-uid: exit {after:.3}s after the app's last close");
    assert!(
        done.exited_at > closing && after < INTERVAL + MARGIN,
        "exit {after:.3}s after the app's last close: {done}"
    );
    assert!(
        done.stderr.contains("ignoring uids [65532]"),
        "start line: {done}"
    );

    // Without the flag, the shipper alone holds the proxy to the deadline.
    let done = pod.run_hook(&["wait", "--timeout", "500ms", "--interval", "100ms"]);
    assert_eq!(done.code(), 1, "{done}");
    assert_eq!(
        last_lines(&done.stderr, 2)[0],
        "prestop-wait: still blocking by owner: uid 65532: 1 socket (local port 5432)",
        "{done}"
    );
    let (_, report) = pod.check_json(&["--json", "--all", "--ignore-uid=65532"]);
    let shipper: Vec<_> = report.ignored().iter().filter(|s| s.uid == 65532).collect();
    assert_eq!(shipper.len(), 1, "{}", report.value);
    assert_eq!(shipper[0].reason.as_deref(), Some("ignored-uid"));
    pod.close();
}

/// `--log-file=auto` reaches the stderr of the proxy container's main
/// process, which is what `kubectl logs` shows: PID 1 in the proxy's own PID
/// namespace, pilot-agent when the pod shares one PID namespace whose PID 1
/// is the pause process of another uid.
#[test]
fn log_file_auto_reaches_the_proxys_stderr_in_both_pod_shapes() {
    for shape in [AppPidNs::Own, AppPidNs::SharedWithPause] {
        let Some(mut pod) = Pod::start(shape) else {
            return;
        };
        let main = match shape {
            AppPidNs::Own => 1,
            _ => pod.pilot_agent_pid,
        };
        assert!(shape == AppPidNs::Own || main != 1, "{shape:?}");
        // runc hands the container's stdio to the container's user
        // (libcontainer's fixStdioPermissions); the harness made the pipes
        // as root, so do the same here.
        let fd = format!("/proc/{main}/fd/2");
        let chown = pod.run_in_proxy(&["chown", "1337:1337", &fd]);
        assert_eq!(chown.code(), 0, "{shape:?}: {chown}");
        let hook = pod.spawn_hook(&[
            "wait",
            "--quiet",
            "--log-file=auto",
            "--interval",
            "100ms",
            "--timeout",
            "10s",
        ]);
        pod.app_mut().send("drain 0.3");
        let done = hook.finish(RUN);
        assert_eq!(done.code(), 0, "{shape:?}: {done}");
        assert!(done.stderr.is_empty(), "{shape:?}: --quiet printed: {done}");
        let proxy = pod.proxy_mut();
        proxy.expect("stderr prestop-wait: waiting up to 10s", RUN);
        let note = proxy.expect("stderr prestop-wait: log: also to ", RUN);
        assert!(note.contains(&format!("to {fd} (")), "{shape:?}: {note}");
        match shape {
            AppPidNs::Own => assert!(note.contains("PID 1 runs as uid 1337"), "{note}"),
            _ => assert!(
                note.contains("PID 1 runs as uid 65535")
                    && note.contains(&format!("pid {main} (pilot-agent)")),
                "{note}"
            ),
        }
        proxy.expect("stderr prestop-wait: drained after", RUN);
        pod.close();
    }
}

/// Inbound connections whose listener the app already closed stay inbound:
/// from Istio's IPv6 passthrough source `::6`, and from loopback with the
/// proxy holding the other end. The app's own call to 15001 stays outbound.
#[test]
fn inbound_stays_inbound_after_the_listener_closes() {
    let Some(mut pod) = Pod::start(AppPidNs::Own) else {
        return;
    };
    sh(
        "ip",
        &[
            "-n", &pod.netns, "addr", "add", "::6/128", "dev", "lo", "nodad",
        ],
    );
    let from_v6 = pod
        .proxy_mut()
        .ask("envoy connect ::6 ::1 9090", "done connect");
    let from_lo = pod
        .proxy_mut()
        .ask("envoy connect 127.0.0.1 127.0.0.1 8080", "done connect");
    // The app's ends: local and remote swapped.
    let app_end = |done: &str| {
        let w: Vec<&str> = done.split_whitespace().collect();
        (w[3].to_owned(), w[2].to_owned())
    };
    let (v6_local, v6_remote) = app_end(&from_v6);
    let (lo_local, lo_remote) = app_end(&from_lo);
    pod.app_mut().wait_until("two more accepted", RUN, |seen| {
        seen.iter().filter(|l| l.starts_with("sock ")).count() == 5
    });
    pod.app_mut().send("close-listeners");
    pod.app_mut().event("listeners-closed");
    pod.settle();
    let (_, report) = pod.check_json(&["--json"]);
    let find = |local: &str, remote: &str| {
        report
            .blocking
            .iter()
            .find(|s| s.local == local && s.remote == remote)
            .unwrap_or_else(|| panic!("no {local} -> {remote}: {}", report.value))
    };
    assert_eq!(v6_remote.split(']').next(), Some("[::6"));
    let v6 = find(&v6_local, &v6_remote);
    assert_eq!(v6.direction, "inbound", "{}", report.value);
    let lo = find(&lo_local, &lo_remote);
    assert_eq!(lo.direction, "inbound", "{}", report.value);
    let out = find(&pod.app_out_local, "127.0.0.1:15001");
    assert_eq!(
        (out.direction.as_str(), out.to_proxy),
        ("outbound", true),
        "{}",
        report.value
    );
    assert!(
        report.blocking.iter().all(|s| s.state != "LISTEN"),
        "{}",
        report.value
    );
    pod.close();
}

/// In an IPv6-only pod Envoy's admin port is `[::1]:15000`: the bare
/// `--drain` reaches it after 127.0.0.1 refuses.
#[test]
fn drain_falls_back_to_the_ipv6_admin_port() {
    let Some(mut pod) = Pod::start(AppPidNs::Own) else {
        return;
    };
    pod.proxy_mut().ask("envoy admin6", "done admin6");
    let done = pod.run_hook(&["wait", "--drain", "--timeout", "500ms"]);
    assert_eq!(done.code(), 1, "the app is still up: {done}");
    let request = pod.proxy_mut().expect("event admin ", RUN);
    assert!(
        request.starts_with(
            "event admin POST_/drain_listeners?inboundonly&graceful&skip_exit_HTTP/1.1"
        ),
        "{request}"
    );
    assert!(
        done.stderr.contains(
            "drain: POST http://127.0.0.1:15000/drain_listeners?inboundonly&graceful&skip_exit -> HTTP/1.1 200 OK (via [::1]:15000; 127.0.0.1:15000 could not be reached)"
        ),
        "{done}"
    );
    pod.close();
}

/// With `hostNetwork: true` the tables are the node's, where the kubelet
/// listens on 10250: `check` and `wait` say so, once.
#[test]
fn host_network_is_said_once() {
    let Some(mut pod) = Pod::start(AppPidNs::Own) else {
        return;
    };
    let (_, report) = pod.check_json(&["--json"]);
    assert!(!report.host_network, "{}", report.value);
    pod.add_container("kubelet", 0, &[10250]);
    let (_, report) = pod.check_json(&["--json"]);
    assert!(report.host_network, "{}", report.value);
    let text = pod.run_hook(&["check"]);
    assert!(
        text.stdout
            .lines()
            .any(|l| l.starts_with("note: these are the node's sockets")),
        "{text}"
    );
    let done = pod.run_hook(&["wait", "--timeout", "500ms", "--interval", "100ms"]);
    assert_eq!(done.code(), 1, "{done}");
    assert_eq!(
        done.stderr
            .matches("warning: these are the node's sockets")
            .count(),
        1,
        "{done}"
    );
    pod.close();
}
