//! The rollout benchmark's short run (benches/rollout/rollout.py): a few
//! rollouts of nginx behind a real HAProxy, under curl's one-request-per-
//! connection load at a constant rate, with `sleep 2` and with `quiesce`
//! in the app's preStop, each pair on the same draw.
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
        .args([script, "--bin", common::BIN, "--clients", "curl"])
        .args(["--shapes", "const:20", "--slots", "2", "--rollouts", "2"])
        .args(["--sleeps", "2", "--delay", "3", "--age", "1"])
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
                // second at the pod: about 1.5 s (a silence that long by
                // chance <= 1e-3 over the hold's ~30 gaps).
                assert!((3.0..5.5).contains(&hold), "{r}");
                // The pod is a PID namespace whose PID 1 is the app, as a
                // container: its second of history counted.
                let last = r["hook_last"][0].as_str().unwrap_or_default();
                assert!(last.contains("the pod's history with them"), "{r}");
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
    // Paired: the i-th rollout of each strategy had the same draw.
    for pair in [0, 1] {
        let draws: Vec<_> = rollouts
            .iter()
            .filter(|r| r["pair"] == pair)
            .map(|r| (r["delay_s"].clone(), r["seed"].clone()))
            .collect();
        assert_eq!(draws.len(), 2, "{log}");
        assert_eq!(draws[0], draws[1], "{log}");
    }
}
