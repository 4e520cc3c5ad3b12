//! Small helpers: running commands, hashing, the source date.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// The two release targets, with their OCI architecture names.
pub const TARGETS: [(&str, &str); 2] = [
    ("x86_64-unknown-linux-musl", "amd64"),
    ("aarch64-unknown-linux-musl", "arm64"),
];

/// The workspace root: the parent of this package's manifest directory.
pub fn repo_root() -> Result<PathBuf> {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let root = here.parent().context("xtask has no parent directory")?;
    Ok(root.canonicalize()?)
}

/// The cargo that runs us (`cargo xtask` sets `CARGO`), for the commands
/// we run in turn.
pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Runs `cmd`; fails with its stderr when it fails. Returns stdout.
pub fn run(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Runs `cmd` with its output on ours (long builds show progress).
pub fn run_shown(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes `dir/SHA256SUMS` over `names` (in `dir`), as `sha256sum` does;
/// returns its text.
pub fn write_sums(dir: &Path, names: &[String]) -> Result<String> {
    let mut sums = String::new();
    for name in names {
        let bytes = std::fs::read(dir.join(name)).with_context(|| format!("cannot read {name}"))?;
        sums.push_str(&format!("{}  {name}\n", sha256_hex(&bytes)));
    }
    std::fs::write(dir.join("SHA256SUMS"), &sums)?;
    Ok(sums)
}

/// The moment every timestamp of a release is set to: `SOURCE_DATE_EPOCH`
/// when set (the reproducible-builds convention), else the commit's time.
pub fn source_date_epoch(root: &Path) -> Result<u64> {
    if let Ok(v) = std::env::var("SOURCE_DATE_EPOCH") {
        return v
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not seconds"));
    }
    let out =
        run(Command::new("git")
            .current_dir(root)
            .args(["log", "-1", "--format=%ct", "HEAD"]))?;
    out.parse()
        .with_context(|| format!("git log gave {out:?} as the commit time"))
}

/// The commit being released.
pub fn revision(root: &Path) -> Result<String> {
    run(Command::new("git")
        .current_dir(root)
        .args(["rev-parse", "HEAD"]))
}

/// Seconds since the epoch as RFC 3339 UTC (`2026-11-30T19:21:11Z`).
pub fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Writes a tar of `names` (inside `parent`) to `out`, made the same way
/// every time: names sorted, owner 0, times `epoch`, gzip without a name or
/// time of its own when `gzip`.
pub fn deterministic_tar(
    parent: &Path,
    names: &[&str],
    out: &Path,
    epoch: u64,
    gzip: bool,
) -> Result<()> {
    let tar = Command::new("tar")
        .current_dir(parent)
        .args([
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--format=gnu",
            &format!("--mtime=@{epoch}"),
            "-cf",
            "-",
        ])
        .args(names)
        .output()
        .context("cannot run tar (GNU tar)")?;
    if !tar.status.success() {
        bail!("tar failed: {}", String::from_utf8_lossy(&tar.stderr));
    }
    let bytes = if gzip {
        let mut gz = flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut gz, &tar.stdout)?;
        gz.finish()?
    } else {
        tar.stdout
    };
    std::fs::write(out, bytes).with_context(|| format!("cannot write {}", out.display()))
}

/// Sets a file's mode: the tarballs carry modes, so they must not depend on
/// the umask of whoever ran the build.
pub fn chmod(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_066_471), "2026-11-30T19:21:11Z");
    }
}
