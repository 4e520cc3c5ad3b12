//! `cargo xtask`: release tooling for prestop-wait, offline.
//!
//!     cargo xtask dist [--out DIR]   the release artifacts (default target/dist)
//!     cargo xtask verify [DIR]       check a dist directory
//!     cargo xtask repro              dist in two fresh clones of HEAD at different
//!                                    paths; the artifacts must be byte-identical
//!
//! What `dist` writes, and why each piece: docs/release.md.

mod dist;
mod oci;
mod release;
mod sbom;
mod util;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = util::repo_root()?;
    let default_out = root.join("target/dist");
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["dist"] => dist::dist(&root, &default_out),
        ["dist", "--out", out] => dist::dist(&root, &PathBuf::from(out)),
        ["verify"] => verify::verify(&root, &default_out),
        ["verify", dir] => verify::verify(&root, &PathBuf::from(dir)),
        ["repro"] => verify::repro(&root),
        _ => bail!(
            "usage: cargo xtask dist [--out DIR] | verify [DIR] | repro (got {:?})",
            args
        ),
    }
}
