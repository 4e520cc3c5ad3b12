//! `quiesce` live, in the pod-shaped namespaces: the hook runs in the app
//! container as uid 1000, as the kubelet runs the app's preStop, while
//! clients in the pod's network namespace send the traffic patterns a pod
//! sees after deletion.

mod common;
mod live;

use std::time::Duration;

use live::{AppPidNs, Done, Pod};

/// The hook's lines, without their prefix.
fn lines(done: &Done) -> Vec<&str> {
    done.stderr
        .lines()
        .filter_map(|l| l.strip_prefix("prestop-wait: "))
        .collect()
}

fn last_line(done: &Done) -> &str {
    lines(done).last().copied().unwrap_or_default()
}

fn quiesce(pod: &Pod, args: &[&str]) -> Done {
    let args = [&["quiesce"][..], args].concat();
    pod.run(
        &args.join(" "),
        pod.app_hook(&args),
        Duration::from_secs(30),
    )
}

/// A pseudo-random fraction in [0, 1) that differs between runs, without a
/// crate: the low bits of the clock.
fn random() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    f64::from(nanos % 1000) / 1000.0
}

/// Requests on a kept-alive connection that stop at a random moment: the
/// hook ends no sooner than --idle after the last one, and within one
/// interval (and the time a look and an exec take) of that; with tcp_info
/// (netlink) and with the tables (whose only sign is the queue of bytes the
/// app has not read).
#[test]
fn kept_alive_requests_that_stop_at_a_random_moment() {
    for source in ["netlink", "proc"] {
        let Some(mut pod) = Pod::start(AppPidNs::Own) else {
            return;
        };
        // The client first, its connection up, then the hook: a hook
        // started first could spend its --idle before a slow client's
        // first request. The stop comes well after the hook's start.
        let stop_after = format!("{:.2}", 2.0 + 1.5 * random());
        let args = ["quiesce", "--idle=1s", "--timeout=10s", "--source", source];
        let hook = pod.app_hook(&args);
        let client = pod.add_client(&["keepalive", "127.0.0.1", "8080", "0.1", &stop_after]);
        let sock = client.expect("sock ", Duration::from_secs(5));
        let hook = live::Running::spawn(args.join(" "), hook);
        let last_send = client.event("last-send");
        let done = hook.finish(Duration::from_secs(15));
        let held_after = done.exited_at - last_send;
        eprintln!(
            "{source}: stop after {stop_after}s; exit {held_after:.3}s after the last request\n{done}"
        );
        assert_eq!(done.code(), 0, "{done}");
        assert!(
            held_after >= 1.0,
            "ended {held_after:.3}s after the last request: {done}"
        );
        // --idle, one interval, and slack for a look, the exit and the
        // reaping through nsenter on a loaded 2-core machine.
        assert!(
            held_after < 1.0 + 0.1 + 0.9,
            "held {held_after:.3}s after the last request: {done}"
        );
        // The last line names the client's connection.
        let client_local = sock.split_whitespace().nth(1).unwrap();
        let last = last_line(&done);
        assert!(
            last.starts_with("no inbound traffic for 1s (the last: ")
                && last.contains(&format!("{client_local} -> 127.0.0.1:8080")),
            "{last}"
        );
        assert!(
            lines(&done)[0].contains(&format!("; sockets from {source}; containers by ")),
            "{done}"
        );
        if source == "proc" {
            assert!(
                lines(&done)[1].starts_with("note: the tables carry no tcp_info"),
                "{done}"
            );
        }
    }
}

/// Traffic that never stops: exit 1 at the deadline, saying so.
#[test]
fn traffic_that_never_stops_is_exit_1_at_the_deadline() {
    let Some(mut pod) = Pod::start(AppPidNs::Own) else {
        return;
    };
    pod.add_client(&["keepalive", "127.0.0.1", "8080", "0.2", "-1"]);
    let done = quiesce(&pod, &["--idle=1s", "--timeout=3s"]);
    assert_eq!(done.code(), 1, "{done}");
    // Measured from before nsenter's spawn: the exec chain and exit too.
    assert!((3.0..4.0).contains(&done.elapsed()), "{done}");
    assert!(
        last_line(&done).starts_with("deadline 3s passed (at "),
        "{done}"
    );
    let at = common::said_at(last_line(&done));
    assert!(
        (Duration::from_secs(3)..Duration::from_millis(3500)).contains(&at),
        "{done}"
    );
    assert!(
        last_line(&done).contains("traffic still arriving: the last: "),
        "{done}"
    );
}

/// Probe-like requests, each its own connection, further apart than
/// --idle: they do not hold the hook.
#[test]
fn probes_further_apart_than_idle_do_not_hold_it() {
    let Some(mut pod) = Pod::start(AppPidNs::Own) else {
        return;
    };
    let client = pod.add_client(&["probe", "127.0.0.1", "8080", "4", "-1"]);
    client.expect("sock ", Duration::from_secs(5));
    let done = quiesce(&pod, &["--idle=1s", "--timeout=10s"]);
    assert_eq!(done.code(), 0, "{done}");
    assert!(done.elapsed() < 3.0, "{done}");
}

/// An app that stopped accepting is still being sent connections: they
/// wait in its accept queue, and that is traffic.
#[test]
fn connections_queuing_at_a_listener_that_no_longer_accepts_hold_it() {
    let Some(mut pod) = Pod::start(AppPidNs::Own) else {
        return;
    };
    pod.app_mut().ask("stop-accepting", "done stop-accepting");
    pod.add_client(&["queue", "127.0.0.1", "8080", "0.3", "-1"]);
    let done = quiesce(&pod, &["--idle=1s", "--timeout=3s"]);
    assert_eq!(done.code(), 1, "{done}");
    let last = last_line(&done);
    let queued: u32 = last
        .rsplit_once(", ")
        .and_then(|(_, q)| q.strip_suffix(" queued"))
        .and_then(|q| q.parse().ok())
        .unwrap_or_else(|| panic!("no queue length in {last:?}"));
    assert!(queued >= 5, "{done}");
}

/// Traffic to the proxy's own ports only (Envoy's inbound listener): not
/// the app's, so it holds nothing.
#[test]
fn traffic_only_to_the_proxys_ports_is_not_the_apps() {
    let Some(mut pod) = Pod::start(AppPidNs::Own) else {
        return;
    };
    pod.add_client(&["keepalive", "127.0.0.1", "15006", "0.1", "-1"]);
    let done = quiesce(&pod, &["--idle=1s", "--timeout=5s"]);
    assert_eq!(done.code(), 0, "{done}");
    assert!(done.elapsed() < 2.5, "{done}");
    // The first look's line is the first stamped one (a loaded machine's
    // slow look is said before it); its stamp is however long the start
    // took.
    let first = lines(&done)
        .into_iter()
        .find(|l| common::stamp(l).is_some())
        .unwrap_or_else(|| panic!("no look said: {done}"));
    assert_eq!(
        first.split_once("] ").unwrap().1,
        "the app listens on ports 8080, 9090; 2 connections open, 0 queued",
        "{done}"
    );
}

/// --min-wait is a floor however idle the app is; --log-file=auto finds the
/// app container's own log (its PID 1's stderr).
#[test]
fn min_wait_is_a_floor_and_the_log_reaches_the_app_container() {
    let Some(mut pod) = Pod::start(AppPidNs::Own) else {
        return;
    };
    // runc hands the container's stdio to the container's user; the
    // harness made the pipes as root, so do the same here.
    let chown = pod.run_in_app(&["chown", "1000:1000", "/proc/1/fd/2"]);
    assert_eq!(chown.code(), 0, "{chown}");
    let done = quiesce(
        &pod,
        &[
            "--idle=300ms",
            "--min-wait=2s",
            "--timeout=5s",
            "--log-file=auto",
        ],
    );
    assert_eq!(done.code(), 0, "{done}");
    // Measured from outside: the exec chain, and the writer's close.
    assert!((2.0..3.0).contains(&done.elapsed()), "{done}");
    assert!(
        last_line(&done)
            .starts_with("no inbound traffic for 300ms (none seen since the start); done after 2s"),
        "{done}"
    );
    pod.app_mut().expect(
        "stderr prestop-wait: no inbound traffic for 300ms",
        Duration::from_secs(5),
    );
}
