//! Drives the binary over fixture `/proc` trees: exit codes, output, every flag, bad input.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

#[test]
fn check_lists_exactly_the_apps_sockets() {
    let f = istio_pod();
    let (o, r) = check_json(&f, &[]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert_eq!(
        r.blocking_locals(),
        [
            "0.0.0.0:8080",
            "10.1.2.3:45000",
            "10.1.2.3:8080",
            "[::]:9090"
        ]
    );
    assert!(r.ignored.is_none(), "{}", r.value);
    // Another PID namespace: no socket of the app has a visible holder.
    for s in &r.blocking {
        assert_eq!((s.pid, &s.process), (None, &None), "{s:?}");
    }
}

#[test]
fn check_all_gives_every_reason() {
    let mut f = istio_pod();
    // A root-owned pilot-agent socket: only the process rule can excuse it.
    f.socket("0.0.0.0:15010", "0.0.0.0:0", LISTEN, 0, 110)
        .process(2, "pilot-agent", &["pilot-agent"], &[110]);
    let (o, r) = check_json(&f, &["--all", "--ignore-port", "9090"]);
    assert_eq!(code(&o), 1);
    assert_eq!(
        r.blocking_locals(),
        ["0.0.0.0:8080", "10.1.2.3:45000", "10.1.2.3:8080"]
    );
    assert_eq!(r.ignored().len(), 11, "{}", r.value);
    assert_eq!(
        r.entry("ignored", "0.0.0.0:15010"),
        &json!({"state": "LISTEN", "local": "0.0.0.0:15010", "remote": "0.0.0.0:0",
                "uid": 0, "inode": 110, "cgroup": null, "this_container": null, "pid": 2, "process": "pilot-agent",
                "direction": "listen", "to_proxy": false, "reason": "proxy-process"})
    );
    assert_eq!(
        r.entry("ignored", "[::]:9090"),
        &json!({"state": "LISTEN", "local": "[::]:9090", "remote": "[::]:0",
                "uid": 1000, "inode": 202, "cgroup": null, "this_container": null, "pid": null, "process": null,
                "direction": "listen", "to_proxy": false, "reason": "ignored-port"})
    );
    let by_uid = r
        .ignored()
        .iter()
        .filter(|s| s.reason.as_deref() == Some("proxy-uid"))
        .count();
    assert_eq!(by_uid, 9, "{}", r.value);
    // TIME_WAIT (inode 0) is in no list.
    assert!(!stdout(&o).contains("50000"), "{}", r.value);
}

#[test]
fn check_text_table() {
    let f = istio_pod();
    let o = run(&f, &["check"]);
    assert_eq!(code(&o), 1);
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["STATE", "LOCAL", "REMOTE", "DIRECTION", "UID", "PROCESS"]
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["LISTEN", "0.0.0.0:8080", "0.0.0.0:0", "listen", "1000", "-"]
    );
    // Last, what quiesce would start from (its own test below).
    let n = lines.len() - 1;
    assert!(
        lines[n].starts_with("note: quiesce would start from: "),
        "{out}"
    );
    assert_eq!(lines[n - 3], "4 sockets block");
    assert_eq!(
        lines[n - 2],
        "by owner: uid 1000: 4 sockets (local ports 8080, 9090, 45000)"
    );
    assert!(
        lines[n - 1].starts_with("hint: ") && lines[n - 1].ends_with("(uids here: 1000)"),
        "{out}"
    );
    let o = run(&f, &["check", "--all"]);
    let out = stdout(&o);
    assert!(out.lines().next().unwrap().ends_with("VERDICT"));
    assert!(out.contains("15/envoy"), "{out}");
    assert!(
        out.lines().any(|l| l.contains("127.0.0.1:15004")
            && l.contains("1/pilot-agent")
            && l.ends_with("proxy-uid")),
        "{out}"
    );
}

#[test]
fn check_nothing_blocks_exits_0() {
    let mut f = Fixture::new();
    f.socket("0.0.0.0:15001", "0.0.0.0:0", LISTEN, 1337, 1);
    let o = run(&f, &["check"]);
    assert_eq!(code(&o), 0);
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "nothing blocks", "{out}");
    assert!(
        lines[1].starts_with("note: quiesce would start from: the app listens on no port"),
        "{out}"
    );
    assert_eq!(lines.len(), 2, "{out}");
    let (o, mut r) = check_json(&f, &[]);
    assert_eq!(code(&o), 0);
    // A fixture has no history: the fallback window, and why (a path
    // under the fixture's temporary root).
    let q = r.value.as_object_mut().unwrap().remove("quiesce").unwrap();
    assert_eq!(
        r.value,
        json!({"blocking": [], "uninspected_processes": 0, "unreadable_fds": 0, "host_network": false, "source": "proc",
               "containers": {"by": "uid", "cgroup": null, "why": "the tables carry no cgroup ids"}})
    );
    let why = q["history_error"].as_str().unwrap().to_owned();
    assert!(
        why.starts_with(&f.path_str()) && why.contains("net/snmp"),
        "{q}"
    );
    assert_eq!(
        q,
        json!({"ports": [], "window_ms": 2000, "basis": "unknown", "rate": 0.00, "arrivals": 0, "over_ms": 1,
               "history": false, "history_error": why, "miss": 1e-3})
    );
}

#[test]
fn check_shows_the_window_quiesce_would_start_from() {
    let mut f = Fixture::new();
    f.socket("0.0.0.0:15001", "0.0.0.0:0", LISTEN, 1337, 1)
        .socket("0.0.0.0:8080", "0.0.0.0:0", LISTEN, 1000, 2)
        // 36,000 connections accepted over the pod's hour: 10 a second.
        .history(36_000, 3600);
    let (o, r) = check_json(&f, &[]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let q = r.quiesce();
    assert_eq!(q.ports, [8080]);
    assert_eq!(
        (q.basis.as_str(), q.history, &q.history_error),
        ("rate", true, &None)
    );
    assert!((q.rate - 10.0).abs() < 0.05, "{}", r.value);
    // At most a minute of history counts (rhythm::HISTORY_WEIGHT).
    assert_eq!((q.arrivals, q.over_ms / 1000), (600, 60), "{}", r.value);
    // ln(1000)/10 a second is 0.69s; the rate's uncertainty over 600
    // arrivals adds a little.
    assert!((690..800).contains(&q.window_ms), "{}", r.value);
    // A smaller --miss, a longer window, the same traffic.
    let (_, strict) = check_json(&f, &["--miss", "1e-6"]);
    assert_eq!(strict.quiesce().miss, 1e-6);
    assert!(
        strict.quiesce().window_ms > q.window_ms * 3 / 2,
        "{} vs {}",
        strict.value,
        r.value
    );
    // The table says the same in a note, in quiesce's own words.
    let out = stdout(&run(&f, &["check"]));
    let note = out
        .lines()
        .find_map(|l| l.strip_prefix("note: quiesce would start from: "))
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        note.split("; ").collect::<Vec<_>>()[..2],
        [
            "the app listens on port 8080",
            &format!(
                "10.00 arrivals/s over 1m, the pod's history with them: a silence of {}ms by chance <= 1e-3",
                q.window_ms
            )[..]
        ],
        "{out}"
    );
}

#[test]
fn listen_only_matches_the_old_loop_rule() {
    let f = istio_pod();
    let (o, r) = check_json(&f, &["--listen-only"]);
    assert_eq!(code(&o), 1);
    assert_eq!(r.blocking_locals(), ["0.0.0.0:8080", "[::]:9090"]);
    let (_, r) = check_json(&f, &["--listen-only", "--all"]);
    let not_listening: Vec<&str> = r
        .ignored()
        .iter()
        .filter(|s| s.reason.as_deref() == Some("not-listening"))
        .map(|s| s.local.as_str())
        .collect();
    assert_eq!(
        not_listening,
        ["10.1.2.3:45000", "10.1.2.3:8080"],
        "{}",
        r.value
    );
}

#[test]
fn proxy_name_and_uid_flags_and_env() {
    // A Linkerd-shaped pod: proxy uid 2102, process linkerd2-proxy.
    let mut f = Fixture::new();
    f.socket("0.0.0.0:4143", "0.0.0.0:0", LISTEN, 2102, 1)
        .socket("127.0.0.1:4191", "0.0.0.0:0", LISTEN, 0, 2)
        .socket("0.0.0.0:8080", "0.0.0.0:0", LISTEN, 1000, 3)
        .process(
            7,
            "linkerd2-proxy",
            &["/usr/lib/linkerd/linkerd2-proxy"],
            &[2],
        );
    let (_, r) = check_json(&f, &[]);
    assert_eq!(r.blocking.len(), 3, "{}", r.value);
    let (_, r) = check_json(
        &f,
        &["--proxy-uid", "2102", "--proxy-name", "linkerd2-proxy"],
    );
    assert_eq!(r.blocking_locals(), ["0.0.0.0:8080"]);
    let o = bin()
        .args(["check", "--json"])
        .env("PRESTOP_WAIT_PROC", f.path())
        .env("PRESTOP_WAIT_PROXY_UID", "2102")
        .env("PRESTOP_WAIT_PROXY_NAME", "linkerd2-proxy")
        .env("PRESTOP_WAIT_IGNORE_PORT", "8080")
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn app_visible_in_shared_pid_namespace_is_named() {
    let mut f = istio_pod();
    f.process(40, "python3", &["/usr/bin/python3", "app.py"], &[201, 203]);
    let (_, r) = check_json(&f, &[]);
    assert_eq!(
        r.entry("blocking", "0.0.0.0:8080"),
        &json!({"state": "LISTEN", "local": "0.0.0.0:8080", "remote": "0.0.0.0:0",
                "uid": 1000, "inode": 201, "cgroup": null, "this_container": null, "pid": 40, "process": "python3",
                "direction": "listen", "to_proxy": false})
    );
}

#[test]
fn missing_tcp6_is_empty() {
    let mut f = Fixture::new();
    f.socket("0.0.0.0:8080", "0.0.0.0:0", LISTEN, 1000, 3);
    std::fs::remove_file(f.table_path("tcp6")).unwrap();
    let (o, r) = check_json(&f, &[]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert_eq!(r.blocking_locals(), ["0.0.0.0:8080"]);
}

#[test]
fn bad_tables_exit_2_naming_file_and_line() {
    let f = Fixture::new();
    std::fs::write(
        f.table_path("tcp"),
        format!(
            "{TCP_HEADER}\n{}\n   1: zz:zz 00000000:0000 0A 0:0 0:0 0 5 0 9\n",
            row(0, "0.0.0.0:1", "0.0.0.0:0", LISTEN, 0, 5)
        ),
    )
    .unwrap();
    // `check` ends on it; `wait` says it and holds to its deadline (a hook
    // that cannot read sockets fails safe), then exits 2.
    for args in [&["check"][..], &["wait", "--timeout", "1s"]] {
        let o = run(&f, args);
        assert_eq!(code(&o), 2);
        let err = stderr(&o);
        let said: Vec<&str> = err
            .lines()
            .filter(|l| l.contains("net/tcp line 3: bad local_address"))
            .collect();
        assert_eq!(said.len(), 1, "{err}");
        assert!(said[0].starts_with("prestop-wait: "), "{err}");
        if args[0] == "check" {
            assert_eq!(err.lines().last(), Some(said[0]), "{err}");
        }
        assert!(
            !err.contains("panicked") && !err.contains("please report"),
            "{err}"
        );
    }

    // Unknown state code, and an IPv6 row in the IPv4 table is fine to parse
    // but a truncated one is not.
    std::fs::write(
        f.table_path("tcp"),
        format!("{TCP_HEADER}\n   0: 0100007F:0050 00000000:0000 0E 0:0 0:0 0 5 0 9\n"),
    )
    .unwrap();
    let o = run(&f, &["check"]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("net/tcp line 2: unknown TCP state 0x0E"),
        "{}",
        stderr(&o)
    );

    std::fs::write(f.table_path("tcp6"), format!("{TCP6_HEADER}\n   0: 0000\n")).unwrap();
    std::fs::write(f.table_path("tcp"), format!("{TCP_HEADER}\n")).unwrap();
    let o = run(&f, &["check"]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("net/tcp6 line 2: too few columns"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn unreadable_table_and_missing_dir_exit_2() {
    let f = Fixture::new();
    // A directory where the table should be: unreadable even for root.
    std::fs::remove_file(f.table_path("tcp")).unwrap();
    std::fs::create_dir(f.table_path("tcp")).unwrap();
    let o = run(&f, &["check"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("net/tcp line 1"), "{}", stderr(&o));

    let o = bin()
        .args(["check", "--proc", "/nonexistent/proc"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 2);
    assert_eq!(
        stderr(&o),
        "prestop-wait: cannot read /nonexistent/proc/net/tcp: No such file or directory (os error 2)\n"
    );
}

#[test]
fn usage_errors_are_one_line_and_exit_2() {
    let cases: &[(&[&str], &str)] = &[
        (&["check", "--ignore-port", "http"], "--ignore-port"),
        (&["check", "--proxy-uid", "root"], "--proxy-uid"),
        (&["check", "--bogus"], "--bogus"),
        (&["check", "--proxy-name="], "--proxy-name"),
        (&["check", "--json=maybe"], "--json"),
        (&["sleep", "5"], "a duration needs a unit"),
        (&["sleep", "0"], "a duration needs a unit, as in 0s"),
        (&["install"], "DIR"),
        (&["sleepy"], "sleepy"),
    ];
    for (args, want) in cases {
        let o = bin().args(*args).output().unwrap();
        assert_eq!(code(&o), 2, "{args:?}");
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("prestop-wait: ") && err.contains(want),
            "{args:?}: {err}"
        );
        assert!(o.stdout.is_empty());
    }
}

/// `wait` fails safe: a bad value is said (on stderr even with --quiet, and
/// in the log file), the wait goes on with that flag's default in its place,
/// and the exit is 2 whatever it found. Every other flag still applies.
#[test]
fn wait_with_bad_values_holds_with_defaults_and_exits_2() {
    let f = Fixture::new(); // nothing blocks: each run drains at once
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("hook.log");
    // (arguments, environment, what the first line says)
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            &["--timeout", "soon"],
            &[],
            "invalid value 'soon' for '--timeout <DURATION>'",
        ),
        (
            &["wait", "--timeout=30"],
            &[],
            "a duration needs a unit, as in 30s",
        ),
        (
            &["wait", "--interval", "1ns"],
            &[],
            "--interval must be at least 10ms",
        ),
        (
            &["wait", "--min-wait", "1m"],
            &[],
            "--min-wait (1m) must not be longer than --timeout (25s)",
        ),
        (&["wait", "--bogus"], &[], "unexpected argument '--bogus'"),
        (
            &["wait", "--drain=http://[::1]15000/drain_listeners"],
            &[],
            "--drain: \"http://[::1]15000/drain_listeners\" has \"15000\" after ']'",
        ),
        (
            &["wait"],
            &[("PRESTOP_WAIT_TIMEOUT", "forever")],
            "--timeout",
        ),
        (&["wait"], &[("PRESTOP_WAIT_QUIET", "maybe")], "--quiet"),
        (
            &["wait"],
            &[("PRESTOP_WAIT_PROXY_UID", "istio")],
            "--proxy-uid",
        ),
    ];
    for (args, env, want) in cases {
        let _ = std::fs::remove_file(&log);
        let o = bin()
            .args(*args)
            .arg("--proc")
            .arg(f.path())
            .arg(format!("--log-file={}", log.display()))
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let err = stderr(&o);
        assert_eq!(code(&o), 2, "{args:?} {env:?}: {err}");
        let first = err.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("prestop-wait: ") && first.contains(want),
            "{args:?} {env:?}: {err}"
        );
        assert!(
            first.ends_with("; waiting without it (its default), then exit 2"),
            "{err}"
        );
        assert!(
            err.contains("prestop-wait: drained after"),
            "{args:?}: {err}"
        );
        let logged = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            logged.lines().next(),
            Some(first),
            "the log file has it too"
        );
    }
    // The flags that were right still apply: --timeout 700ms with a blocking
    // app and a bad --interval ends at the deadline, not after 25s.
    let start = Instant::now();
    let o = run(
        &istio_pod(),
        &["wait", "--timeout=700ms", "--interval=1ns", "--quiet"],
    );
    assert_eq!(code(&o), 2);
    assert!(start.elapsed() < Duration::from_secs(5));
    let err = stderr(&o);
    assert_eq!(
        err.lines().count(),
        1,
        "--quiet keeps only the error: {err}"
    );
    // Two bad values: both said, both dropped.
    let o = bin()
        .args(["wait", "--timeout=x", "--interval=y", "--proc"])
        .arg(f.path())
        .output()
        .unwrap();
    assert_eq!(code(&o), 2);
    let err = stderr(&o);
    assert_eq!(err.matches("then exit 2").count(), 2, "{err}");
}

/// Boolean variables take what people write in a pod spec.
#[test]
fn boolean_env_values_as_people_write_them() {
    let f = istio_pod();
    for (value, quiet) in [
        ("1", true),
        ("true", true),
        ("yes", true),
        ("on", true),
        ("TRUE", true),
        ("0", false),
        ("false", false),
        ("no", false),
        ("off", false),
    ] {
        let o = bin()
            .args(["wait", "--timeout=0s", "--proc"])
            .arg(f.path())
            .env("PRESTOP_WAIT_QUIET", value)
            .output()
            .unwrap();
        assert_eq!(code(&o), 1, "PRESTOP_WAIT_QUIET={value}: {}", stderr(&o));
        assert_eq!(o.stderr.is_empty(), quiet, "PRESTOP_WAIT_QUIET={value}");
        let o = bin()
            .args(["check", "--proc"])
            .arg(f.path())
            .env("PRESTOP_WAIT_JSON", value)
            .output()
            .unwrap();
        assert_eq!(code(&o), 1, "PRESTOP_WAIT_JSON={value}");
        assert_eq!(
            stdout(&o).starts_with('{'),
            quiet,
            "PRESTOP_WAIT_JSON={value}"
        );
    }
}

/// A `PRESTOP_WAIT_*` value of a flag a command does not take is not that
/// command's business.
#[test]
fn env_of_another_commands_flag_never_breaks_a_command() {
    let f = istio_pod();
    let bad = [
        ("PRESTOP_WAIT_TIMEOUT", "forever"),
        ("PRESTOP_WAIT_INTERVAL", "1ns"),
        ("PRESTOP_WAIT_QUIET", "maybe"),
        ("PRESTOP_WAIT_DRAIN", "http://10.0.0.1/"),
        ("PRESTOP_WAIT_GRACE_PERIOD", "30"),
    ];
    let o = bin()
        .args(["check", "--proc"])
        .arg(f.path())
        .envs(bad)
        .output()
        .unwrap();
    assert_eq!((code(&o), stderr(&o)), (1, String::new()));
    let o = bin().args(["sleep", "10ms"]).envs(bad).output().unwrap();
    assert_eq!((code(&o), stderr(&o)), (0, String::new()));
    let dir = tempfile::tempdir().unwrap();
    let o = bin()
        .arg("install")
        .arg(dir.path())
        .envs(bad)
        .output()
        .unwrap();
    assert_eq!((code(&o), stderr(&o)), (0, String::new()));
}

#[test]
fn help_documents_exit_codes_and_every_flag() {
    let top = stdout(&bin().arg("--help").output().unwrap());
    for text in [
        "wait",
        "check",
        "sleep",
        "install",
        "Without a subcommand it runs `wait`",
    ] {
        assert!(top.contains(text), "--help lacks {text}: {top}");
    }
    for args in [&["--help"][..], &["wait", "--help"], &["check", "--help"]] {
        let o = bin().args(args).output().unwrap();
        assert_eq!(code(&o), 0);
        let out = stdout(&o);
        assert!(
            out.contains("Exit codes:") && out.contains("  2  usage or runtime error"),
            "{out}"
        );
    }
    for args in [["wait", "--help"], ["check", "--help"]] {
        let out = stdout(&bin().args(args).output().unwrap());
        for flag in [
            "--proc",
            "--proxy-uid",
            "--proxy-name",
            "--ignore-uid",
            "--ignore-port",
            "--listen-only",
        ] {
            assert!(out.contains(flag), "{args:?} lacks {flag}");
        }
    }
    let out = stdout(&bin().args(["quiesce", "--help"]).output().unwrap());
    for text in [
        "--port <PORT>",
        "--idle <DURATION>",
        "--miss <P>",
        "[default: 0.001]",
        "[default: 100ms]",
        "PRESTOP_WAIT_IDLE",
        "PRESTOP_WAIT_MISS",
        "Exit codes:",
    ] {
        assert!(out.contains(text), "quiesce --help lacks {text}");
    }
    assert!(
        !out.contains("--proxy-name"),
        "quiesce takes no proxy names"
    );
    let out = stdout(&bin().args(["wait", "--help"]).output().unwrap());
    for text in [
        "--timeout",
        "[default: 25s]",
        "--interval",
        "[default: 250ms]",
        "--min-wait",
        "[default: 0s]",
        "PRESTOP_WAIT_TIMEOUT",
        "--quiet",
    ] {
        assert!(out.contains(text), "wait --help lacks {text}");
    }
    let out = stdout(&bin().args(["check", "--help"]).output().unwrap());
    assert!(out.contains("--json") && out.contains("--all"));
    let o = bin().arg("--version").output().unwrap();
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).starts_with("prestop-wait "));
}

/// Every long flag `--help` shows reads `PRESTOP_WAIT_` plus its name (the
/// README states the rule instead of listing each variable) and is in the
/// README.
#[test]
fn every_flag_has_its_env_variable_and_is_in_the_readme() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut seen = 0;
    for args in [
        ["wait", "--help"],
        ["check", "--help"],
        ["quiesce", "--help"],
    ] {
        let out = stdout(&bin().args(args).output().unwrap());
        // One option a line (help is not wrapped: clap's `wrap_help` is off).
        for line in out.lines().filter(|l| l.trim_start().starts_with('-')) {
            let Some(start) = line.find("--") else {
                continue;
            };
            let name: String = line[start + 2..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            if ["help", "version"].contains(&name.as_str()) {
                continue;
            }
            seen += 1;
            let env = format!(
                "[env: PRESTOP_WAIT_{}=",
                name.to_uppercase().replace('-', "_")
            );
            assert!(
                line.contains(&env),
                "{args:?}: --{name} lacks {env}: {line}"
            );
            assert!(
                readme.contains(&format!("`--{name}")),
                "README lacks --{name}"
            );
        }
    }
    assert!(seen >= 30, "only {seen} flags found");
}

#[test]
fn ignore_uid_from_the_environment_excuses_another_container() {
    let mut f = istio_pod();
    f.socket("0.0.0.0:5432", "0.0.0.0:0", LISTEN, 65532, 301);
    let o = bin()
        .args(["check", "--json", "--all", "--proc"])
        .arg(f.path())
        .env("PRESTOP_WAIT_IGNORE_UID", "65532,70000")
        .output()
        .unwrap();
    assert_eq!(code(&o), 1, "the app still blocks");
    let r = Report::exact(&stdout(&o));
    let s = r.entry("ignored", "0.0.0.0:5432");
    assert_eq!(s["reason"], "ignored-uid", "{s}");
    assert!(r.blocking.iter().all(|s| s.uid == 1000), "{}", r.value);
}

#[test]
fn wait_returns_soon_after_the_app_socket_goes() {
    let mut f = istio_pod();
    let mut hook = Watched::new(
        bin()
            .args(["wait", "--timeout", "10s", "--interval", "50ms", "--proc"])
            .arg(f.path())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Its first look is on record before the sockets go.
    hook.wait_for("4 sockets blocking: LISTEN 0.0.0.0:8080 -> 0.0.0.0:0 (uid 1000)");
    for inode in [201, 202, 203, 204] {
        f.remove_inode(inode);
    }
    let removed = Instant::now();
    let (code, lines) = hook.finish();
    let took = removed.elapsed();
    assert_eq!(code, 0, "{lines:?}");
    // One interval plus process exit, on a loaded machine; the timeout was 10s.
    assert!(took < Duration::from_millis(1_000), "took {took:?}");
    let err = lines.join("\n");
    assert!(
        err.contains("nothing blocks") && err.contains("drained after"),
        "{err}"
    );
}

#[test]
fn wait_deadline_exits_1_near_the_deadline_and_names_the_sockets() {
    let f = istio_pod();
    let start = Instant::now();
    let o = run(&f, &["wait", "--timeout", "700ms", "--interval", "300ms"]);
    let took = start.elapsed();
    assert_eq!(code(&o), 1);
    assert!(took >= Duration::from_millis(700), "took {took:?}");
    assert!(took < Duration::from_millis(1_500), "took {took:?}");
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().collect();
    let [.., deadline, owners, hint] = lines[..] else {
        panic!("{err}")
    };
    // Never before the deadline; after it by no more than the cut sleep's
    // wake-up and the last look.
    let at = said_at(deadline);
    assert!(
        (Duration::from_millis(700)..=Duration::from_millis(1_000)).contains(&at),
        "{err}"
    );
    assert!(deadline.starts_with("prestop-wait: deadline 700ms passed (at ")
            && deadline.contains("; 4 sockets still blocking: LISTEN 0.0.0.0:8080 -> 0.0.0.0:0 (uid 1000), ESTABLISHED 10.1.2.3:45000 -> 10.9.8.7:443 outbound (uid 1000)"), "{err}");
    assert!(
        deadline.ends_with("LISTEN [::]:9090 -> [::]:0 (uid 1000)"),
        "{err}"
    );
    assert_eq!(
        owners,
        "prestop-wait: still blocking by owner: uid 1000: 4 sockets (local ports 8080, 9090, 45000)"
    );
    assert!(hint.starts_with("prestop-wait: hint: "), "{err}");
}

#[test]
fn wait_quiet_prints_nothing_and_min_wait_holds() {
    let f = Fixture::new();
    let start = Instant::now();
    let o = run(
        &f,
        &[
            "--quiet",
            "--timeout",
            "5s",
            "--min-wait",
            "400ms",
            "--interval",
            "100ms",
        ],
    );
    assert_eq!(code(&o), 0);
    assert!(start.elapsed() >= Duration::from_millis(400));
    assert!(o.stderr.is_empty() && o.stdout.is_empty());
}

#[test]
fn wait_zero_timeout_polls_once() {
    let f = istio_pod();
    let o = run(&f, &["--timeout", "0s"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("deadline 0s passed (at "));
    let o = run(&Fixture::new(), &["--timeout", "0s"]);
    assert_eq!(code(&o), 0);
}
