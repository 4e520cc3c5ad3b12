//! `cargo xtask dist`: static binaries for both targets built with `cargo
//! auditable`, their tarballs, the CycloneDX SBOM, the OCI image archive
//! and `SHA256SUMS`, all reproducible.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::release::Release;
use crate::util::{self, TARGETS};

pub fn dist(root: &Path, out: &Path) -> Result<()> {
    let rel = Release::find(root)?;
    eprintln!(
        "xtask: prestop-wait {} at {} (SOURCE_DATE_EPOCH {})",
        rel.version,
        &rel.revision[..12.min(rel.revision.len())],
        rel.epoch
    );
    if out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("cannot clear {}", out.display()))?;
    }
    std::fs::create_dir_all(out)?;
    let work = out.join(".work");
    let mut binaries = Vec::new();
    for (triple, arch) in TARGETS {
        let bin = build(&rel, triple)?;
        let name = format!("prestop-wait-{}-{triple}", rel.version);
        let stage = work.join("tar").join(&name);
        std::fs::create_dir_all(&stage)?;
        util::chmod(&stage, 0o755)?;
        std::fs::copy(&bin, stage.join("prestop-wait"))?;
        util::chmod(&stage.join("prestop-wait"), 0o755)?;
        for doc in ["LICENSE", "README.md"] {
            std::fs::copy(root.join(doc), stage.join(doc))?;
            util::chmod(&stage.join(doc), 0o644)?;
        }
        util::deterministic_tar(
            &work.join("tar"),
            &[&name],
            &out.join(rel.tarball(triple)),
            rel.epoch,
            true,
        )?;
        eprintln!("xtask: {}", rel.tarball(triple));
        binaries.push((arch, stage.join("prestop-wait")));
    }
    let sbom = crate::sbom::cyclonedx(&rel)?;
    std::fs::write(out.join(rel.sbom()), sbom)?;
    eprintln!("xtask: {}", rel.sbom());
    std::fs::write(out.join(rel.spdx()), crate::sbom::spdx(&rel)?)?;
    eprintln!("xtask: {}", rel.spdx());
    crate::oci::archive(&rel, &binaries, &work, &out.join(rel.oci()))?;
    eprintln!("xtask: {}", rel.oci());
    let sums = util::write_sums(out, &rel.artifacts())?;
    std::fs::remove_dir_all(&work)?;
    eprint!("xtask: SHA256SUMS\n{sums}");
    Ok(())
}

/// `cargo auditable build` of the static binary for `triple`, paths in it
/// remapped so that where the checkout and the cargo home are does not show.
fn build(rel: &Release, triple: &str) -> Result<PathBuf> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    let target_dir = rel.root.join("target/dist-build");
    let rustflags = format!(
        "--remap-path-prefix={}=/build/prestop-wait --remap-path-prefix={}=/cargo",
        rel.root.display(),
        cargo_home.display()
    );
    let cargo = util::cargo();
    let auditable = Command::new(&cargo)
        .args(["auditable", "--version"])
        .output();
    if !auditable.is_ok_and(|o| o.status.success()) {
        bail!("cargo auditable is not installed: cargo install cargo-auditable --locked");
    }
    util::run_shown(
        Command::new(&cargo)
            .current_dir(&rel.root)
            .args([
                "auditable",
                "build",
                "--release",
                "--locked",
                "--package",
                "prestop-wait",
                "--bin",
                "prestop-wait",
                "--target",
                triple,
            ])
            .env("CARGO_TARGET_DIR", &target_dir)
            .env("RUSTFLAGS", rustflags)
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env("SOURCE_DATE_EPOCH", rel.epoch.to_string()),
    )?;
    Ok(target_dir.join(triple).join("release/prestop-wait"))
}
