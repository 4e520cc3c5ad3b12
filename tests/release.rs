//! The shipped artifacts: the static release builds, `cargo build --release
//! --target x86_64-unknown-linux-musl` and `--target
//! aarch64-unknown-linux-musl`, must produce statically linked (no ELF
//! interpreter), stripped binaries of at most 1 MiB for their architecture
//! that run with an empty environment; the arm64 one, run under
//! `qemu-aarch64`, must give the same results as the host build on every
//! fixture shape.
//!
//! The test runs that build itself (with the same cargo, the same
//! environment and so the same `CARGO_TARGET_DIR`) and takes the binary's
//! path from cargo's JSON messages, so it checks exactly what the documented
//! command produces, wherever the target directory is. When the binary is
//! already built, this is a no-op. Without a target's standard library
//! (rustup's default toolchain has only the host target), or without qemu,
//! the tests skip, except under `CI=true`, where .ci/install-deps.sh has
//! installed them.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::*;
use object::elf::{PT_DYNAMIC, PT_INTERP, ProgramType, SHT_SYMTAB, SectionType};
use object::read::elf::{ElfFile64, ProgramHeader, SectionHeader};
use object::{Architecture, LittleEndian, Object};

/// The size budget from the README: 1 MiB for the stripped binary.
const MAX_SIZE: u64 = 1024 * 1024;

/// The targets shipped, each with its architecture.
const TARGETS: [(&str, Architecture); 2] = [
    ("x86_64-unknown-linux-musl", Architecture::X86_64),
    ("aarch64-unknown-linux-musl", Architecture::Aarch64),
];
const ARM64: &str = "aarch64-unknown-linux-musl";

/// The static release binary for `target`, built once per test process;
/// `None` (after printing why, or panicking under CI=true) when the target
/// is missing.
fn release_binary(target: &str) -> Option<&'static Path> {
    static BINS: [OnceLock<Result<PathBuf, String>>; 2] = [OnceLock::new(), OnceLock::new()];
    let i = TARGETS
        .iter()
        .position(|(t, _)| *t == target)
        .expect("a shipped target");
    let built = BINS[i].get_or_init(|| target_installed(target).map(|()| build(target)));
    match built {
        Ok(path) => Some(path),
        Err(reason) => {
            runnable(&test_name(), Err(reason.clone()));
            None
        }
    }
}

/// The shipped binaries that could be built here, with their architecture.
fn release_binaries() -> Vec<(&'static str, &'static Path, Architecture)> {
    TARGETS
        .iter()
        .filter_map(|&(t, arch)| release_binary(t).map(|p| (t, p, arch)))
        .collect()
}

/// `qemu-aarch64`, to run the arm64 binary on this machine: its full path
/// (so that a cleared environment still finds it), or why there is none.
fn qemu_aarch64() -> Result<PathBuf, String> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("qemu-aarch64"))
        .find(|p| p.is_file())
        .ok_or_else(|| "no qemu-aarch64 on PATH (Debian: apt-get install qemu-user)".to_string())
}

/// A command that runs the binary of `target`: directly, or under qemu.
fn command_for(target: &str, path: &Path) -> Option<Command> {
    if target != ARM64 || cfg!(target_arch = "aarch64") {
        return Some(Command::new(path));
    }
    match qemu_aarch64() {
        Ok(qemu) => {
            let mut c = Command::new(qemu);
            c.arg(path);
            Some(c)
        }
        Err(reason) => {
            runnable(&test_name(), Err(reason));
            None
        }
    }
}

fn build(target: &str) -> PathBuf {
    cargo_build(
        &["--release", "--target", target, "--bin", "prestop-wait"],
        "prestop-wait",
    )
}

/// What the tests need from a 64-bit little-endian ELF file.
struct Elf {
    program_header_types: Vec<ProgramType>,
    section_header_types: Vec<SectionType>,
}

fn parse_elf(path: &Path) -> Elf {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let elf = ElfFile64::<LittleEndian>::parse(&*bytes)
        .unwrap_or_else(|e| panic!("{} is not a 64-bit little-endian ELF: {e}", path.display()));
    let e = elf.endian();
    Elf {
        program_header_types: elf
            .elf_program_headers()
            .iter()
            .map(|p| p.p_type(e))
            .collect(),
        section_header_types: elf
            .elf_section_table()
            .iter()
            .map(|s| s.sh_type(e))
            .collect(),
    }
}

#[test]
fn release_binaries_have_no_elf_interpreter() {
    for (target, path, _) in release_binaries() {
        let elf = parse_elf(path);
        assert!(
            !elf.program_header_types.is_empty(),
            "{}: no program headers",
            path.display()
        );
        // A static-pie binary keeps a PT_DYNAMIC segment (for its own
        // relocations) but has no PT_INTERP: nothing to load from the image.
        assert!(
            !elf.program_header_types.contains(&PT_INTERP),
            "{} has a PT_INTERP program header: it is dynamically linked and \
             needs a libc in the image (program header types: {:?})",
            path.display(),
            elf.program_header_types
        );
        if elf.program_header_types.contains(&PT_DYNAMIC) {
            eprintln!("{target}: static-pie (PT_DYNAMIC, no PT_INTERP)");
        }
    }
}

#[test]
fn release_binaries_are_stripped_and_within_size_budget() {
    for (target, path, _) in release_binaries() {
        let elf = parse_elf(path);
        assert!(
            !elf.section_header_types.contains(&SHT_SYMTAB),
            "{} has a symbol table: `strip = true` is missing from [profile.release]",
            path.display()
        );
        let size = std::fs::metadata(path).unwrap().len();
        assert!(
            size <= MAX_SIZE,
            "{} is {size} bytes ({:.2} MiB), over the {MAX_SIZE}-byte budget",
            path.display(),
            size as f64 / MAX_SIZE as f64
        );
        eprintln!("{target}: {size} bytes ({:.0} KiB)", size as f64 / 1024.0);
    }
}

#[test]
fn release_binaries_are_built_for_their_architecture() {
    for (target, path, arch) in release_binaries() {
        let bytes = std::fs::read(path).unwrap();
        let file = object::File::parse(&*bytes).unwrap();
        assert_eq!(file.architecture(), arch, "{target}: {}", path.display());
    }
}

#[test]
fn release_binaries_run_with_empty_environment() {
    for (target, path, _) in release_binaries() {
        // `env -i`: no PATH, no LD_LIBRARY_PATH, nothing the binary could lean on.
        for args in [&["--help"][..], &["wait", "--help"], &["check", "--help"]] {
            let Some(mut cmd) = command_for(target, path) else {
                return;
            };
            let out = cmd
                .args(args)
                .env_clear()
                .output()
                .expect("run the release binary");
            assert!(
                out.status.success(),
                "{target}: `prestop-wait {}` with an empty environment failed: {:?}\n{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                stdout.contains("Usage"),
                "unexpected help output:\n{stdout}"
            );
        }
        let Some(mut cmd) = command_for(target, path) else {
            return;
        };
        let out = cmd.arg("--version").env_clear().output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("prestop-wait {} ({target})\n", env!("CARGO_PKG_VERSION"))
        );
    }
}

/// Durations (`300ms`, `4s`, `1m30s` split as `1m` `30s`) as `<d>`, and
/// without the lines that say polls are slow or that the last one was cut
/// at the deadline (qemu's are slow): the only things two runs of `wait`
/// over the same fixture may differ in.
fn without_durations(text: &str) -> String {
    let is_duration = |w: &str| {
        let w = w.trim_matches(|c: char| "()[],;".contains(c));
        let digits = w.trim_end_matches(char::is_alphabetic);
        let unit = &w[digits.len()..];
        !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && ["ns", "us", "ms", "s", "m", "h"].contains(&unit)
    };
    text.lines()
        .filter(|l| {
            !l.starts_with("prestop-wait: a poll takes ")
                && !l.starts_with("prestop-wait: the last poll was cut short at the deadline")
        })
        .map(|l| {
            // A duration is one or more words ("25s", "25s 3ms"): each run
            // of them is one `<d>`, so that a run that printed more parts
            // (a slower machine, an emulated one) compares equal.
            let mut words: Vec<&str> = Vec::new();
            for w in l.split(' ') {
                let d = is_duration(w);
                if !(d && words.last() == Some(&"<d>")) {
                    words.push(if d { "<d>" } else { w });
                }
            }
            words.join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The fixture shapes the integration tests use, each with the command
/// lines to compare: an empty pod, Istio's pod, the app visible to the hook
/// (shared PID namespace), an IPv6 pod with `::6` inbound, a table of
/// 2,500 rows across read boundaries, a malformed row, and the node's table.
fn fixture_cases() -> Vec<(&'static str, Fixture, Vec<Vec<&'static str>>)> {
    let checks = |extra: &[&'static str]| -> Vec<Vec<&'static str>> {
        let mut v = vec![
            vec!["check"],
            vec!["check", "--json"],
            vec!["check", "--all"],
            vec!["check", "--json", "--all"],
            vec!["check", "--listen-only", "--json"],
            vec!["check", "--ignore-uid", "1000", "--all"],
            vec!["wait", "--timeout", "0s"],
            vec!["wait", "--timeout", "600ms", "--interval", "100ms"],
        ];
        v.extend(extra.iter().map(|a| vec!["check", a]));
        v
    };
    let mut shared = istio_pod();
    shared.process(40, "server", &["/app/server"], &[201, 203]);
    let mut v6 = Fixture::new();
    v6.socket("[fd00::5]:8080", "[::6]:41000", ESTABLISHED, 1000, 7)
        .socket("[::6]:41000", "[fd00::5]:8080", ESTABLISHED, 1337, 8)
        .socket("[::1]:40000", "[::1]:15001", ESTABLISHED, 1000, 9)
        .socket("[::]:15001", "[::]:0", LISTEN, 1337, 10);
    let mut big = Fixture::new();
    for i in 0..2_500u64 {
        big.socket(
            &format!("10.1.{}.{}:{}", i / 250, i % 250, 20_000 + i),
            "10.9.8.7:443",
            ESTABLISHED,
            if i % 3 == 0 { 1337 } else { 1000 },
            1_000 + i,
        );
    }
    let mut node = istio_pod();
    node.socket("0.0.0.0:10250", "0.0.0.0:0", LISTEN, 0, 500);
    let broken = Fixture::new();
    let mut table = std::fs::read_to_string(broken.table_path("tcp")).unwrap();
    table.push_str("   0: 0100007G:1F90 00000000:0000 0A 0:0 0:0 0 1000 0 7\n");
    std::fs::write(broken.table_path("tcp"), table).unwrap();
    vec![
        ("empty", Fixture::new(), checks(&[])),
        ("istio", istio_pod(), checks(&["--proxy-name=pilot-agent"])),
        ("shared pid", shared, checks(&[])),
        ("ipv6", v6, checks(&[])),
        ("2,500 rows", big, checks(&[])),
        ("node", node, checks(&[])),
        ("malformed", broken, vec![vec!["check"], vec!["wait"]]),
    ]
}

fn output(cmd: &mut Command, f: &Fixture, args: &[&str]) -> Output {
    without_our_env(cmd)
        .args(args)
        .arg("--proc")
        .arg(f.path())
        .output()
        .expect("run prestop-wait")
}

/// The arm64 build under qemu against the host build, on every fixture
/// shape: the same exit code, the same stdout, the same log but for times.
#[test]
fn arm64_binary_gives_the_same_results_on_every_fixture() {
    let Some(arm) = release_binary(ARM64) else {
        return;
    };
    let (mut compared, mut starved_runs) = (0, 0);
    for (name, f, cases) in fixture_cases() {
        for args in cases {
            let Some(mut cmd) = command_for(ARM64, arm) else {
                return;
            };
            let theirs = output(&mut cmd, &f, &args);
            let ours = output(&mut bin(), &f, &args);
            let what = format!("{name}: prestop-wait {}", args.join(" "));
            assert_eq!(code(&theirs), code(&ours), "{what}: {}", stderr(&theirs));
            assert_eq!(stdout(&theirs), stdout(&ours), "{what}");
            // A run starved past its wake time (qemu on a loaded machine)
            // ends with the hold-up's own deadline line, by design: its log
            // says so instead of the sockets, and is not compared.
            let starved = |o: &Output| {
                let e = stderr(o);
                e.contains("the hook was held up for") || e.contains(" before any poll finished")
            };
            if starved(&theirs) || starved(&ours) {
                eprintln!("{what}: held up under load; logs not compared");
                starved_runs += 1;
            } else {
                assert_eq!(
                    without_durations(&stderr(&theirs)),
                    without_durations(&stderr(&ours)),
                    "{what}"
                );
            }
            compared += 1;
        }
    }
    eprintln!("arm64 and host agree on {compared} command lines ({starved_runs} held up)");
    assert!(compared >= 50, "only {compared} command lines compared");
    // Starvation excuses a few logs, not the comparison.
    assert!(
        starved_runs * 5 <= compared,
        "{starved_runs} of {compared} held up"
    );
}

#[test]
fn durations_are_all_that_is_set_aside() {
    assert_eq!(
        without_durations("[1s 500ms] 2 sockets (at 25s); LISTEN 0.0.0.0:8080 uid 1000"),
        "<d> 2 sockets (at <d> LISTEN 0.0.0.0:8080 uid 1000"
    );
    // However many parts a duration printed with.
    assert_eq!(
        without_durations("passed (at 25s 3ms and"),
        without_durations("passed (at 25s and")
    );
    assert_eq!(without_durations("drained after 0s"), "drained after <d>");
    assert_eq!(
        without_durations(
            "a\nprestop-wait: a poll takes 9ms, over 5% of the 100ms interval: polling every 180ms instead\nb"
        ),
        "a\nb"
    );
    assert_eq!(
        without_durations(
            "a\nprestop-wait: the last poll was cut short at the deadline; judging by the one at 100ms\nb"
        ),
        "a\nb"
    );
}

#[test]
fn elf_parser_sees_an_interpreter_in_a_dynamic_binary() {
    // Guards the parser itself: a dynamically linked host binary must show a
    // PT_INTERP header, or the static check above would pass vacuously.
    let Some(dynamic) = ["/bin/sh", "/usr/bin/env", "/bin/ls"]
        .iter()
        .map(Path::new)
        .find(|p| p.exists())
    else {
        runnable(
            &test_name(),
            Err("no /bin/sh, /usr/bin/env or /bin/ls".into()),
        );
        return;
    };
    let elf = parse_elf(dynamic);
    assert!(
        elf.program_header_types.contains(&PT_INTERP),
        "{} should be dynamically linked: {:?}",
        dynamic.display(),
        elf.program_header_types
    );
}

#[test]
fn elf_parser_sees_symbols_in_an_unstripped_binary() {
    // Guards the stripped check: this test executable, built by the dev
    // profile, keeps its symbol table. (`cargo test --release` strips it.)
    if !cfg!(debug_assertions) {
        return;
    }
    let elf = parse_elf(&std::env::current_exe().unwrap());
    assert!(elf.section_header_types.contains(&SHT_SYMTAB));
}

#[test]
fn executable_comes_from_the_binarys_artifact_message() {
    let out = [
        r#"{"reason":"compiler-artifact","target":{"name":"prestop_wait"},"executable":null}"#,
        r#"{"reason":"compiler-artifact","target":{"name":"other"},"executable":"/t/other"}"#,
        "not json: a line of cargo's own",
        r#"{"reason":"compiler-artifact","target":{"name":"prestop-wait"},"executable":"/t/a \"b\"\\c"}"#,
        r#"{"reason":"build-finished","success":true}"#,
    ]
    .join("\n");
    assert_eq!(
        executable(&out, "prestop-wait"),
        Some(PathBuf::from(r#"/t/a "b"\c"#))
    );
    assert_eq!(
        executable(
            &out.lines().take(3).collect::<Vec<_>>().join("\n"),
            "prestop-wait"
        ),
        None
    );
}

#[test]
fn the_target_check_sees_the_host_target() {
    // Guards the check itself: if it never found a target, the static build
    // would be skipped everywhere but CI.
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc -vV");
    let version = String::from_utf8_lossy(&out.stdout);
    let host = version
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .unwrap_or_else(|| panic!("no host in rustc -vV:\n{version}"));
    target_installed(host).unwrap();
}

#[test]
fn a_missing_target_skips_outside_ci_and_fails_under_ci() {
    let missing = "x86_64-unknown-prestop-nonexistent";
    let reason = target_installed(missing).unwrap_err();
    assert!(
        reason.contains(missing) && reason.contains("rustup target add"),
        "{reason}"
    );
    assert!(!runnable_in(false, "t", Err(reason.clone())));
    let under_ci = std::panic::catch_unwind(|| runnable_in(true, "t", Err(reason)));
    assert!(under_ci.is_err(), "CI=true must fail, not skip");
}
