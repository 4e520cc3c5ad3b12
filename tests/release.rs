//! The shipped artifact: the static release build, `cargo build --release
//! --target x86_64-unknown-linux-musl`, must produce a statically linked (no
//! ELF interpreter), stripped binary of at most 1 MiB that runs with an empty
//! environment.
//!
//! The test runs that build itself (with the same cargo, the same
//! environment and so the same `CARGO_TARGET_DIR`) and takes the binary's
//! path from cargo's JSON messages, so it checks exactly what the documented
//! command produces, wherever the target directory is. When the binary is
//! already built, this is a no-op. Without the musl standard library
//! (rustup's default toolchain has only the host target) the tests skip,
//! except under `CI=true`, where .ci/install-deps.sh has installed it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{runnable, runnable_in, test_name};
use object::LittleEndian;
use object::elf::{PT_DYNAMIC, PT_INTERP, ProgramType, SHT_SYMTAB, SectionType};
use object::read::elf::{ElfFile64, ProgramHeader, SectionHeader};
use serde_json::Value;

/// The size budget from the README: 1 MiB for the stripped binary.
const MAX_SIZE: u64 = 1024 * 1024;

const TARGET: &str = "x86_64-unknown-linux-musl";

/// `Err(reason)` unless the active toolchain has the standard library for
/// `target`. Asks the `rustc` that cargo runs here (rustup picks the
/// toolchain by directory) for its sysroot.
fn target_installed(target: &str) -> Result<(), String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(&rustc)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", rustc.to_string_lossy()))?;
    if !out.status.success() {
        return Err(format!(
            "rustc --print sysroot failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let lib = Path::new(&sysroot)
        .join("lib/rustlib")
        .join(target)
        .join("lib");
    if lib.is_dir() {
        Ok(())
    } else {
        Err(format!(
            "the {target} standard library is not installed ({} is missing); \
             `rustup target add {target}` or .ci/install-deps.sh installs it",
            lib.display()
        ))
    }
}

/// The static release binary, built once per test process; `None` (after
/// printing why, or panicking under CI=true) when the target is missing.
fn release_binary() -> Option<&'static Path> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BIN.get_or_init(|| target_installed(TARGET).map(|()| build(TARGET)));
    match built {
        Ok(path) => Some(path),
        Err(reason) => {
            runnable(&test_name(), Err(reason.clone()));
            None
        }
    }
}

fn build(target: &str) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "build",
            "--release",
            "--target",
            target,
            "--bin",
            "prestop-wait",
            "--message-format=json-render-diagnostics",
        ])
        .output()
        .expect("run cargo build --release");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cargo build --release --target {target} failed:\n{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr),
    );
    executable(&stdout).unwrap_or_else(|| panic!("no executable in cargo's output:\n{stdout}"))
}

/// The `executable` of the prestop-wait binary's `compiler-artifact`
/// message in cargo's JSON output (one message a line).
fn executable(cargo_stdout: &str) -> Option<PathBuf> {
    cargo_stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "prestop-wait")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
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
fn release_binary_has_no_elf_interpreter() {
    let Some(path) = release_binary() else {
        return;
    };
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
        eprintln!("{}: static-pie (PT_DYNAMIC, no PT_INTERP)", path.display());
    }
}

#[test]
fn release_binary_is_stripped_and_within_size_budget() {
    let Some(path) = release_binary() else {
        return;
    };
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
    eprintln!(
        "release binary: {} bytes ({:.0} KiB)",
        size,
        size as f64 / 1024.0
    );
}

#[test]
fn release_binary_runs_with_empty_environment() {
    let Some(path) = release_binary() else {
        return;
    };
    // `env -i`: no PATH, no LD_LIBRARY_PATH, nothing the binary could lean on.
    for args in [&["--help"][..], &["wait", "--help"], &["check", "--help"]] {
        let out = Command::new(path)
            .args(args)
            .env_clear()
            .output()
            .expect("run the release binary");
        assert!(
            out.status.success(),
            "`prestop-wait {}` with an empty environment failed: {:?}\n{}",
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
    assert_eq!(executable(&out), Some(PathBuf::from(r#"/t/a "b"\c"#)));
    assert_eq!(
        executable(&out.lines().take(3).collect::<Vec<_>>().join("\n")),
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
