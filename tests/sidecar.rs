//! The sidecar benchmark's short run (benches/sidecar/sidecar.py): a few
//! pod deletions with a real proxy sidecar (HAProxy as `envoy`, uid 1337,
//! behind a pilot-agent stand-in) while the app's jobs call an upstream
//! pod through it, half over kept-alive connections, half one connection
//! per call. The pooled jobs end at 1.5 s, the per-call ones at 3 s, so
//! that for the last 1.5 s the app holds no socket between two calls (a
//! `wait` that let go then lost calls: the benchmark's first run). With
//! no hook the proxy stops at once and the app's calls fail; with `wait`
//! none fails and the proxy goes within a second of the app. Needs root, haproxy, nginx and net-tools; skipped
//! (failed under CI=true) without. The benchmark itself:
//! `sudo benches/sidecar/run.sh`.

mod common;

use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn probe() -> Result<(), String> {
    if !rustix::process::geteuid().is_root() {
        return Err("not root (namespaces, other uids)".into());
    }
    for tool in ["/usr/sbin/haproxy", "/usr/sbin/nginx", "/usr/bin/netstat"] {
        if !Path::new(tool).is_file() {
            return Err(format!(
                "{tool} not installed (apt-get install haproxy nginx-light net-tools)"
            ));
        }
    }
    Ok(())
}

#[test]
fn wait_loses_no_outbound_call_and_lets_the_proxy_go_with_the_app() {
    if !common::runnable(&common::test_name(), probe()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("rollouts.json");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/sidecar/sidecar.py");
    let out = Command::new("/usr/bin/python3")
        .args([script, "--bin", common::BIN, "--strategies", "none,wait"])
        .args(["--rollouts", "3", "--long", "0", "--jobs", "1.5,3,1.5,3"])
        .args(["--slots", "2"])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{log}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rollouts: Vec<Value> = std::fs::read_to_string(&json)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rollouts.len(), 6, "{log}");
    for r in &rollouts {
        let failures = r["failures"].as_u64().unwrap();
        let over = r["over_hold_s"].as_f64().unwrap();
        let app = r["app_exit_s"].as_f64().unwrap();
        // The jobs ran their 3 s after the deletion, calling all along.
        assert!((3.0..4.5).contains(&app), "{r}");
        assert!(r["calls"].as_u64().unwrap() >= 40, "{r}");
        assert_eq!(r["killed"], false, "{r}");
        match r["strategy"].as_str().unwrap() {
            // The proxy drains at the deletion: the rest of the jobs' calls
            // are refused.
            "none" => assert!(failures > 0 && over < 0.0, "{r}"),
            "wait" => {
                assert_eq!(failures, 0, "wait lost calls: {r}");
                // Never before the app, and within a second of it: the
                // per-call jobs' rhythm (about 20 new connections a
                // second) holds it a little past their last call.
                assert!((0.0..=1.0).contains(&over), "{r}");
            }
            other => panic!("{other}: {r}"),
        }
    }
}
