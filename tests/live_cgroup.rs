//! Live tests: which container holds each socket, by the kernel's cgroup id.
//!
//! Pods as a cgroup v2 node makes them: every container in a cgroup v2 group
//! of its own, seen through its own cgroup namespace with cgroup2 mounted at
//! /sys/fs/cgroup, and every hook joining its container's group before it
//! enters the container's namespaces, as `runc exec` does. The groups are
//! made under this machine's cgroup2 mount (beside cgroup v1 controllers on
//! the CI machine). Needs root; skipped (and failed under CI=true) without.

mod common;
mod live;

use common::Report;
use live::{APP_UID, AppPidNs, Done, Pod, Running, Shape, Sock, SockSets};
use std::collections::BTreeSet;
use std::time::Duration;

fn shape(proxy_uid: u32, proxy_names: [&'static str; 2], cgroups: bool) -> Shape {
    Shape {
        app_ns: AppPidNs::Own,
        proxy_uid,
        proxy_names,
        cgroups,
    }
}

fn first_line(done: &Done) -> &str {
    done.stderr.lines().next().unwrap_or("")
}

/// One entry of `check --json`: socket, cgroup, this_container, reason.
type Attributed = (Sock, Option<u64>, Option<bool>, Option<String>);

/// Every entry of the blocking (or the ignored) list in `r`.
fn entries(r: &Report, ignored: bool) -> Vec<Attributed> {
    let list = if ignored {
        r.ignored()
    } else {
        &r.blocking[..]
    };
    list.iter()
        .map(|s| (Sock::from(s), s.cgroup, s.this_container, s.reason.clone()))
        .collect()
}

/// A Linkerd-shaped pod (uid 2102, `linkerd2-proxy`) and one with an
/// OpenShift-like random uid: no flag names the proxy, and none is needed.
/// `check` finds exactly the app's sockets, each in the app's cgroup, and
/// every socket of the proxy's container is excused as the proxy's; `wait`
/// drains when the app exits.
#[test]
fn proxies_of_any_uid_and_name_need_no_flags() {
    for (uid, names) in [
        (2102, ["linkerd-await", "linkerd2-proxy"]),
        (1_000_650_000, ["proxy-init-sh", "mesh-proxy"]),
    ] {
        let Some(mut pod) = Pod::start_shaped(shape(uid, names, true)) else {
            return;
        };
        let (proxy_cg, app_cg) = (pod.cgroup_of("proxy"), pod.cgroup_of("app"));
        assert_ne!(proxy_cg, app_cg);
        pod.settle();
        let (done, r) = pod.check_json(&["--json", "--all"]);
        assert_eq!(done.code(), 1, "{done}");
        assert_eq!(r.containers.by, "cgroup", "{done}");
        assert_eq!(r.containers.cgroup, Some(proxy_cg), "{done}");
        assert_eq!(r.blocking_set(), pod.app_socks, "uid {uid}: {done}");
        for (s, cg, this, _) in entries(&r, false) {
            assert_eq!((cg, this), (Some(app_cg), Some(false)), "{s}: {done}");
        }
        let ignored = r.ignored_set();
        assert!(
            pod.proxy_socks.is_subset(&ignored),
            "uid {uid}: {:?} not excused: {done}",
            pod.proxy_socks.difference(&ignored).collect::<Vec<_>>()
        );
        for (s, cg, this, reason) in entries(&r, true) {
            assert_eq!(
                (cg, this, reason.as_deref()),
                (Some(proxy_cg), Some(true), Some("proxy-container")),
                "{s}: {done}"
            );
        }

        let hook = Running::spawn(
            "wait",
            pod.hook(&["wait", "--interval=100ms", "--timeout=10s"]),
        );
        std::thread::sleep(Duration::from_millis(300));
        pod.app_mut().send("exit");
        let done = hook.finish(Duration::from_secs(15));
        assert_eq!(done.code(), 0, "uid {uid}: {done}");
        assert!(
            first_line(&done).contains("for other containers' sockets in /proc")
                && first_line(&done).ends_with(&format!(
                    "; sockets from netlink; containers by cgroup (this one's: {proxy_cg})"
                )),
            "{done}"
        );
        pod.close();
    }
}

/// The same Linkerd-shaped pod where containers have no cgroup of their
/// own (every process here is in the cgroup v2 root, as on a cgroup v1
/// node): the hook says so on its first line and decides by today's rules,
/// so the proxy's uid needs its flag.
#[test]
fn without_cgroups_of_their_own_todays_rules_decide() {
    let Some(mut pod) = Pod::start_shaped(shape(2102, ["linkerd-await", "linkerd2-proxy"], false))
    else {
        return;
    };
    pod.settle();
    let (done, r) = pod.check_json(&["--json"]);
    assert_eq!(r.containers.by, "uid", "{done}");
    assert!(
        r.containers
            .why
            .as_deref()
            .is_some_and(|w| w.contains("no cgroup v2 group of its own")),
        "{done}"
    );
    assert!(
        r.blocking
            .iter()
            .all(|s| s.cgroup.is_none() && s.this_container.is_none())
    );
    // By uid 1337 (the default), the proxy's listeners block.
    assert!(pod.proxy_socks.is_subset(&r.blocking_set()), "{done}");
    let (done, r) = pod.check_json(&["--json", "--proxy-uid=2102"]);
    assert_eq!(r.blocking_set(), pod.app_socks, "{done}");

    let hook = Running::spawn(
        "wait",
        pod.hook(&[
            "wait",
            "--proxy-uid=2102",
            "--interval=100ms",
            "--timeout=10s",
        ]),
    );
    std::thread::sleep(Duration::from_millis(300));
    pod.app_mut().send("exit");
    let done = hook.finish(Duration::from_secs(15));
    assert_eq!(done.code(), 0, "{done}");
    assert!(
        first_line(&done).contains(
            "; sockets from netlink; containers by uid and process name: this process has no cgroup v2 group of its own"
        ),
        "{done}"
    );
    pod.close();
}

/// An app and a collector sidecar of one uid (1000), which the app's
/// traffic reaches without pause. By cgroup they are two containers:
/// `check` and `wait` name them apart, and `quiesce` in the app's container
/// lets go after --idle although the collector never goes quiet; without
/// cgroups the collector's port is taken for the app's and holds `quiesce`
/// to its deadline.
#[test]
fn an_app_and_a_collector_of_one_uid_are_two_containers() {
    for cgroups in [true, false] {
        let Some(mut pod) =
            Pod::start_shaped(shape(live::PROXY_UID, ["pilot-agent", "envoy"], cgroups))
        else {
            return;
        };
        pod.add_container("collector", APP_UID, &[4317]);
        pod.add_client(&["keepalive", "127.0.0.1", "4317", "0.05", "-1"])
            .expect("sock ", Duration::from_secs(5));
        let (done, r) = pod.check_json(&["--json"]);
        let collector = Sock::new("LISTEN", "0.0.0.0:4317", "0.0.0.0:0");
        let want: BTreeSet<Sock> = pod
            .app_socks
            .iter()
            .cloned()
            .chain([collector.clone()])
            .collect();
        assert!(want.is_subset(&r.blocking_set()), "{done}");
        if cgroups {
            let (app_cg, col_cg) = (pod.cgroup_of("app"), pod.cgroup_of("collector"));
            for (s, cg, _, _) in entries(&r, false) {
                let want = if s.local.ends_with(":4317") {
                    col_cg
                } else {
                    app_cg
                };
                assert_eq!(cg, Some(want), "{s}: {done}");
            }
            // `wait`'s deadline lines: by container, the two apart.
            let done = pod.run(
                "wait",
                pod.hook(&["wait", "--interval=100ms", "--timeout=1s"]),
                Duration::from_secs(10),
            );
            assert_eq!(done.code(), 1, "{done}");
            let by = done
                .stderr
                .lines()
                .find_map(|l| l.strip_prefix("prestop-wait: still blocking by container: "))
                .unwrap_or_else(|| panic!("{done}"));
            let mut groups: Vec<&str> = by.split("; ").collect();
            groups.sort();
            let mut want = [
                format!("cgroup {app_cg} (uid 1000): "),
                format!("cgroup {col_cg} (uid 1000): 1 socket (local port 4317)"),
            ];
            want.sort();
            assert_eq!(groups.len(), 2, "{done}");
            for (g, w) in groups.iter().zip(&want) {
                assert!(g.starts_with(w.as_str()), "{g} is not {w}: {done}");
            }
        }
        // `quiesce` in the app container, while the collector takes data
        // every 50 ms.
        let done = pod.run(
            "quiesce",
            pod.app_hook(&["quiesce", "--idle=1s", "--interval=100ms", "--timeout=4s"]),
            Duration::from_secs(10),
        );
        if cgroups {
            assert_eq!(done.code(), 0, "{done}");
            assert!(done.elapsed() < 3.0, "{done}");
            assert!(
                first_line(&done).contains(
                    "until no inbound traffic for 1s on this container's listening ports"
                ),
                "{done}"
            );
        } else {
            assert_eq!(done.code(), 1, "the collector's traffic holds it: {done}");
        }
        pod.close();
    }
}

/// The cgroup ids `check` reports agree with `ss -tan --cgroup`, socket by
/// socket, while connections come and go.
#[test]
fn cgroup_ids_agree_with_ss_under_churn() {
    let Some(mut pod) = Pod::start_shaped(shape(live::PROXY_UID, ["pilot-agent", "envoy"], true))
    else {
        return;
    };
    // One connection opened and closed every 5 ms to envoy's 15001, which
    // echoes and closes when its peer does.
    pod.add_client(&["probe", "127.0.0.1", "15001", "0.005", "-1"])
        .expect("sock ", Duration::from_secs(5));
    let mount = live::cgroup2_mount().unwrap();
    let mut compared = 0;
    for _ in 0..5 {
        let (done, r) = pod.check_json(&["--json", "--all"]);
        let ss = live::sh(
            "nsenter",
            &[
                &format!("--net=/run/netns/{}", pod.netns),
                "ss",
                "-Htan",
                "--cgroup",
            ],
        );
        let mut theirs = std::collections::BTreeMap::new();
        for line in ss.lines() {
            let w: Vec<&str> = line.split_whitespace().collect();
            let Some(cg) = w.iter().find_map(|c| c.strip_prefix("cgroup:")) else {
                continue;
            };
            let id = match cg.strip_prefix("unreachable:") {
                Some(hex) => u64::from_str_radix(hex, 16).unwrap(),
                None => live::cgroup_id(&mount.join(cg.trim_start_matches('/'))),
            };
            let key = (live::ss_addr(w[3]), live::ss_addr(w[4]));
            theirs.insert(key, id);
        }
        for s in r.blocking.iter().chain(r.ignored()) {
            let key = (
                live::contract_addr(&s.local),
                live::contract_addr(&s.remote),
            );
            let Some(&id) = theirs.get(&key) else {
                continue;
            };
            assert_eq!(s.cgroup, Some(id), "{s:?}: ss says {id}\n{ss}\n{done}");
            compared += 1;
        }
    }
    eprintln!("compared {compared} sockets' cgroups with ss's");
    // Listeners and the held connections are in both every time.
    assert!(
        compared >= 5 * (pod.app_socks.len() + pod.proxy_socks.len()),
        "{compared}: {}",
        live::sh(
            "nsenter",
            &[
                &format!("--net=/run/netns/{}", pod.netns),
                "ss",
                "-tan",
                "--cgroup"
            ]
        )
    );
    pod.close();
}
