//! The shipped artifact: `cargo build --release`, with no extra flags, must
//! produce a statically linked (no ELF interpreter), stripped binary of at most
//! 1 MiB that runs with an empty environment.
//!
//! The test runs `cargo build --release` itself (with the same cargo, the same
//! environment and so the same `CARGO_TARGET_DIR` and `.cargo/config.toml`) and
//! takes the binary's path from cargo's JSON messages, so it checks exactly
//! what a user's plain `cargo build --release` produces, wherever the target
//! directory is. When the release binary is already built, this is a no-op.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The size budget from the README: 1 MiB for the stripped binary.
const MAX_SIZE: u64 = 1024 * 1024;

const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const SHT_SYMTAB: u32 = 2;

/// Builds the release binary once per test process and returns its path.
fn release_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = Command::new(cargo)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args([
                "build",
                "--release",
                "--bin",
                "prestop-wait",
                "--message-format=json-render-diagnostics",
            ])
            .output()
            .expect("run cargo build --release");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "cargo build --release failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            stdout
        );
        let exe = stdout
            .lines()
            .filter(|l| l.contains(r#""reason":"compiler-artifact""#))
            .filter(|l| l.contains(r#""name":"prestop-wait""#))
            .find_map(|l| json_string_field(l, "executable"))
            .unwrap_or_else(|| panic!("no executable in cargo's output:\n{stdout}"));
        PathBuf::from(exe)
    })
}

/// Extracts `"key":"value"` from one line of cargo's JSON output (paths only
/// need `\\` and `\"` unescaped). `"key":null` gives `None`.
fn json_string_field(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let mut value = String::new();
    let mut chars = line[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(value),
            '\\' => value.push(chars.next()?),
            c => value.push(c),
        }
    }
    None
}

/// What the test needs from a 64-bit little-endian ELF file.
struct Elf {
    program_header_types: Vec<u32>,
    section_header_types: Vec<u32>,
}

fn u16_at(b: &[u8], off: usize) -> usize {
    u16::from_le_bytes(b[off..off + 2].try_into().unwrap()) as usize
}
fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], off: usize) -> usize {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap()) as usize
}

fn parse_elf(b: &[u8]) -> Elf {
    assert!(b.len() >= 64, "too short for an ELF header");
    assert_eq!(&b[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(b[4], 2, "not a 64-bit ELF (EI_CLASS)");
    assert_eq!(b[5], 1, "not a little-endian ELF (EI_DATA)");
    // The 4-byte type field at `field` in each of `num` entries of `entsize`
    // bytes from `off`.
    let table = |off: usize, entsize: usize, num: usize, field: usize| -> Vec<u32> {
        assert!(entsize >= field + 4 || num == 0, "bad entry size {entsize}");
        assert!(off + entsize * num <= b.len(), "header table out of file");
        (0..num)
            .map(|i| u32_at(b, off + i * entsize + field))
            .collect()
    };
    // e_phoff @0x20, e_shoff @0x28, e_phentsize @0x36, e_phnum @0x38,
    // e_shentsize @0x3a, e_shnum @0x3c; p_type and sh_type are the first
    // 4 bytes of their entries (sh_type after the 4-byte sh_name).
    let program_header_types = table(u64_at(b, 0x20), u16_at(b, 0x36), u16_at(b, 0x38), 0);
    let shoff = u64_at(b, 0x28);
    let (shentsize, shnum) = (u16_at(b, 0x3a), u16_at(b, 0x3c));
    let section_header_types = if shoff == 0 {
        Vec::new()
    } else {
        table(shoff, shentsize, shnum, 4)
    };
    Elf {
        program_header_types,
        section_header_types,
    }
}

#[test]
fn release_binary_has_no_elf_interpreter() {
    let path = release_binary();
    let bytes = std::fs::read(path).unwrap();
    let elf = parse_elf(&bytes);
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
    let path = release_binary();
    let bytes = std::fs::read(path).unwrap();
    let elf = parse_elf(&bytes);
    assert!(
        !elf.section_header_types.contains(&SHT_SYMTAB),
        "{} has a symbol table: `strip = true` is missing from [profile.release]",
        path.display()
    );
    let size = bytes.len() as u64;
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
    let path = release_binary();
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
        return;
    };
    let bytes = std::fs::read(dynamic).unwrap();
    if bytes.get(4) != Some(&2) {
        return; // not a 64-bit host binary; nothing to compare against
    }
    let elf = parse_elf(&bytes);
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
    let bytes = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    let elf = parse_elf(&bytes);
    assert!(elf.section_header_types.contains(&SHT_SYMTAB));
    assert!(!elf.program_header_types.contains(&PT_INTERP));
}

#[test]
fn json_field_extraction() {
    let line = r#"{"reason":"compiler-artifact","target":{"name":"prestop-wait"},"executable":"/t/a \"b\"\\c"}"#;
    assert_eq!(
        json_string_field(line, "executable").as_deref(),
        Some(r#"/t/a "b"\c"#)
    );
    assert_eq!(
        json_string_field(r#"{"executable":null}"#, "executable"),
        None
    );
}
