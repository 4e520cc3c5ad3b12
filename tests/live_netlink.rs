//! The netlink source against the tables, live: in the pod-shaped
//! namespaces (both PID shapes), under churn, and with `AF_NETLINK` denied
//! by a seccomp filter (the fallback).

mod common;
mod live;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{JsonSock, Report};
use live::{AppPidNs, Pod};

/// Connections made and closed in a loop inside the pod's network
/// namespace (to the app's 8080 and to a listener of its own, IPv4 and
/// IPv6), until dropped: rows come and go between any two reads.
struct Churn(Child);

impl Churn {
    fn start(pod: &Pod) -> Churn {
        let script = r#"
import socket, time
l4 = socket.socket(); l4.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l4.bind(("127.0.0.1", 0)); l4.listen(128)
l6 = socket.socket(socket.AF_INET6); l6.bind(("::1", 0)); l6.listen(128)
end = time.time() + 60
while time.time() < end:
    for fam, addr in ((socket.AF_INET, l4.getsockname()), (socket.AF_INET6, l6.getsockname()[:2])):
        c = socket.socket(fam); c.connect(addr)
        s, _ = (l4 if fam == socket.AF_INET else l6).accept()
        c.close(); s.close()
    time.sleep(0.001)
"#;
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", pod.netns))
            .args(["/usr/bin/python3", "-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("churn");
        std::thread::sleep(Duration::from_millis(200));
        Churn(child)
    }
}

impl Drop for Churn {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Held rows of `check --json --all` by inode.
fn rows(pod: &Pod, source: &str) -> (BTreeMap<u64, JsonSock>, Report) {
    let (done, r) = pod.check_json(&["--json", "--all", &format!("--source={source}")]);
    assert_eq!(r.source, source, "{done}");
    let all = r.blocking.iter().chain(r.ignored()).cloned();
    (all.map(|s| (s.inode, s)).collect(), r)
}

#[test]
fn netlink_and_the_tables_agree_under_churn() {
    for shape in [AppPidNs::Own, AppPidNs::SharedWithPause] {
        let Some(pod) = Pod::start(shape) else {
            return;
        };
        let _churn = Churn::start(&pod);
        let (mut compared, mut families) = (0, [false; 3]);
        for _ in 0..10 {
            let (nl, _) = rows(&pod, "netlink");
            let (pr, _) = rows(&pod, "proc");
            for (inode, n) in &nl {
                let Some(p) = pr.get(inode) else { continue };
                // Lived through both reads: the same row (a state may move
                // on between the two reads; a listener's does not).
                assert_eq!(
                    (&n.local, &n.remote, n.uid, &n.pid, &n.process, &n.direction),
                    (&p.local, &p.remote, p.uid, &p.pid, &p.process, &p.direction),
                    "inode {inode}"
                );
                if n.state == "LISTEN" || p.state == "LISTEN" {
                    assert_eq!(n.state, p.state, "inode {inode}");
                }
                families[0] |= !n.local.starts_with('[');
                families[1] |= n.local.starts_with("[::ffff:");
                families[2] |= n.local.starts_with('[') && !n.local.starts_with("[::ffff:");
                compared += 1;
            }
        }
        assert!(compared > 50, "only {compared} rows compared");
        assert_eq!(families, [true; 3], "IPv4, v4-mapped and IPv6 all seen");
        // auto picks netlink on a live procfs.
        let (done, r) = pod.check_json(&["--json"]);
        assert_eq!(r.source, "netlink", "{done}");
    }
}

/// `AF_NETLINK` denied by seccomp (python3-seccomp, as a hardened profile
/// or gVisor would): `auto` answers from the tables with the same verdict,
/// says so in a note, and `--source netlink` is an error naming it;
/// `quiesce` falls back alike and says its signal is coarser.
#[test]
fn with_netlink_denied_auto_reads_the_tables() {
    let probe = Command::new("/usr/bin/python3")
        .args(["-c", "import seccomp"])
        .status()
        .map_err(|e| e.to_string())
        .and_then(|s| {
            s.success()
                .then_some(())
                .ok_or("python3-seccomp is not installed".to_owned())
        });
    if !common::runnable("with_netlink_denied_auto_reads_the_tables", probe) {
        return;
    }
    let Some(pod) = Pod::start(AppPidNs::Own) else {
        return;
    };
    pod.settle();
    // socket(AF_NETLINK, ...) fails with EPERM; everything else is allowed.
    let deny = r#"
import os, sys, seccomp
f = seccomp.SyscallFilter(seccomp.ALLOW)
f.add_rule(seccomp.ERRNO(1), "socket", seccomp.Arg(0, seccomp.EQ, 16))
f.load()
os.execv(sys.argv[1], sys.argv[1:])
"#;
    let run = |args: &[&str]| pod.run_wrapped_hook(&["/usr/bin/python3", "-c", deny], args);
    let (_, before) = pod.check_json(&["--json"]);
    assert_eq!(before.source, "netlink");
    let done = run(&["check", "--json"]);
    let denied = Report::parse(&done.stdout).unwrap_or_else(|e| panic!("{e}: {done}"));
    assert_eq!(denied.source, "proc", "{done}");
    assert_eq!(denied.blocking, before.blocking, "same verdict: {done}");
    assert_eq!(done.code(), 1);
    let done = run(&["check"]);
    assert!(
        done.stdout.lines().any(
            |l| l.starts_with("note: sockets read from the tables: netlink is not available (")
        ),
        "{done}"
    );
    let done = run(&["check", "--source=netlink"]);
    assert_eq!(done.code(), 2, "{done}");
    assert!(
        done.stderr.starts_with(
            "prestop-wait: --source netlink: cannot open a NETLINK_SOCK_DIAG socket: "
        ),
        "{done}"
    );
    let done = run(&["wait", "--timeout=0s"]);
    assert_eq!(done.code(), 1, "{done}");
    assert!(
        done.stderr
            .lines()
            .next()
            .unwrap_or_default()
            .contains("; sockets from the tables (netlink is not available ("),
        "{done}"
    );
    // The dump refused (sendto) with an explicit --source netlink, which
    // has no tables to fall back to: the hooks say so, hold to their
    // deadline, and exit 2.
    let refuse = r#"
import os, sys, seccomp
f = seccomp.SyscallFilter(seccomp.ALLOW)
f.add_rule(seccomp.ERRNO(1), "sendto")
f.load()
os.execv(sys.argv[1], sys.argv[1:])
"#;
    for (hook, look) in [("wait", "poll"), ("quiesce", "look")] {
        let done = pod.run_wrapped_hook(
            &["/usr/bin/python3", "-c", refuse],
            &[hook, "--source=netlink", "--timeout=500ms"],
        );
        assert_eq!(done.code(), 2, "{done}");
        let last = done.stderr.lines().last().unwrap_or_default();
        assert!(
            last.contains(&format!("and no {look} could be read")),
            "{done}"
        );
    }
    // quiesce too, and it says once that the tables see less.
    let done = run(&["quiesce", "--timeout=1s", "--idle=300ms"]);
    assert_eq!(done.code(), 0, "{done}");
    let lines: Vec<&str> = done.stderr.lines().collect();
    assert!(
        lines[0].contains("; sockets from the tables (netlink is not available ("),
        "{done}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("prestop-wait: note: the tables carry no tcp_info"))
            .count(),
        1,
        "{done}"
    );
}
