//! The rollout benchmark's short run (benches/rollout/rollout.py): a few
//! rollouts of nginx behind a real HAProxy, under curl's one-request-per-
//! connection load, with `sleep 5` and with `quiesce` in the app's preStop.
//! Needs root, haproxy, nginx and curl; skipped (failed under CI=true)
//! without. The benchmark itself, with every client kind and hundreds of
//! rollouts, is `sudo benches/rollout/run.sh`.

mod common;

use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn probe() -> Result<(), String> {
    if !rustix::process::geteuid().is_root() {
        return Err("not root (network namespaces need it)".into());
    }
    for tool in ["/usr/sbin/haproxy", "/usr/sbin/nginx", "/usr/bin/curl"] {
        if !Path::new(tool).is_file() {
            return Err(format!(
                "{tool} not installed (apt-get install haproxy nginx-light curl)"
            ));
        }
    }
    Ok(())
}

#[test]
fn quiesce_loses_no_request_where_a_short_sleep_does_not_hold_long_enough() {
    if !common::runnable(&common::test_name(), probe()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("rollouts.json");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/rollout/rollout.py");
    // The balancer drops the pod 3 s after the deletion: `sleep 2` lets the
    // app stop a second early, `quiesce` holds until the traffic stops.
    let out = Command::new("/usr/bin/python3")
        .args([script, "--bin", common::BIN, "--kinds", "curl"])
        .args([
            "--slots-per-kind",
            "2",
            "--quiesce",
            "2",
            "--quiesce-min-wait",
            "0",
        ])
        .args(["--sleeps", "2", "--sleep-rollouts", "2", "--delay", "3"])
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
    assert_eq!(rollouts.len(), 4, "{log}");
    for r in &rollouts {
        let requests = r["requests"].as_u64().unwrap();
        let failures = r["failures"].as_u64().unwrap();
        let hold = r["hold_s"].as_f64().unwrap();
        // 20 requests a second over a second of warm-up, the hold and the
        // tail: the load ran through the whole rollout.
        assert!(requests >= 80, "{r}");
        match r["strategy"].as_str().unwrap() {
            "quiesce" => {
                assert_eq!(failures, 0, "quiesce lost requests: {r}");
                assert_eq!(r["hook_exit"], 0, "{r}");
                // Traffic stops reaching the pod at 3 s: never before
                // that. After it, the window learned from ~10 requests a
                // second at the pod over 3 s: about 2 s (a silence that
                // long by chance <= 1e-3 over the hold's ~30 gaps).
                assert!((3.0..5.5).contains(&hold), "{r}");
            }
            "sleep 2" => {
                assert!((2.0..2.5).contains(&hold), "{r}");
                // For the second between the app's stop and the removal,
                // the balancer still sends half the requests to the pod.
                assert!(failures > 0, "sleep 2 lost nothing: {r}");
            }
            other => panic!("{other}: {r}"),
        }
    }
}
