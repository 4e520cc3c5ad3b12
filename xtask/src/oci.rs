//! The OCI image archive: the Dockerfile's `bin` target for linux/amd64 and
//! linux/arm64, built by podman offline (the builder stage replaced by a
//! directory holding each static binary, as tests/podman.rs does), pushed
//! as one image index into an OCI layout, and archived the same way every
//! time. `--timestamp` pins the images' creation time and their layers'
//! file times, so the blobs, and so their digests, repeat.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use crate::release::{Release, source_url};
use crate::util;

/// A podman with a store of its own under `dir` (removed on drop), run as
/// tests/podman.rs runs it: vfs storage, cgroupfs, no systemd.
struct Podman {
    dir: PathBuf,
}

impl Podman {
    fn new(dir: PathBuf) -> Result<Podman> {
        for d in ["store", "run", "tmp"] {
            std::fs::create_dir_all(dir.join(d))?;
        }
        std::fs::write(
            dir.join("containers.conf"),
            "[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\nruntime = \"runc\"\n",
        )?;
        Ok(Podman { dir })
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .arg("--root")
            .arg(self.dir.join("store"))
            .arg("--runroot")
            .arg(self.dir.join("run"))
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
            ])
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Result<String> {
        util::run(self.cmd().args(args))
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self
            .cmd()
            .args(["rmi", "--all", "--force"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Builds the `bin` image for each `(arch, binary)` and writes the archive.
pub fn archive(rel: &Release, binaries: &[(&str, PathBuf)], work: &Path, out: &Path) -> Result<()> {
    // Under /tmp with a short name: podman refuses a runroot path over 50
    // characters, which a checkout's target/ easily is.
    let pm = Podman::new(std::env::temp_dir().join(format!("pw-oci-{}", std::process::id())))
        .context("cannot set up podman's store")?;
    pm.run(&["--version"])
        .context("podman is needed for the image (Debian: apt-get install podman runc)")?;
    let list = format!("localhost/prestop-wait:{}", rel.version);
    let labels = [
        format!("org.opencontainers.image.version={}", rel.version),
        format!("org.opencontainers.image.revision={}", rel.revision),
        format!("org.opencontainers.image.source={}", source_url()),
        "org.opencontainers.image.licenses=Apache-2.0".to_owned(),
        "org.opencontainers.image.title=prestop-wait".to_owned(),
    ];
    pm.run(&["manifest", "create", &list])?;
    for (arch, bin) in binaries {
        let ctx = work.join("ctx").join(arch);
        std::fs::create_dir_all(&ctx)?;
        std::fs::copy(bin, ctx.join("prestop-wait"))?;
        util::chmod(&ctx.join("prestop-wait"), 0o755)?;
        let tag = format!("{list}-{arch}");
        let builder = format!("builder={}", ctx.display());
        let dockerfile = rel.root.join("Dockerfile");
        let epoch = rel.epoch.to_string();
        let platform = format!("linux/{arch}");
        let mut args = vec![
            "build",
            "--quiet",
            "--platform",
            &platform,
            "--build-context",
            &builder,
            "--target",
            "bin",
            "--timestamp",
            &epoch,
            "--identity-label=false",
            "-t",
            &tag,
            "-f",
        ];
        let dockerfile = dockerfile.to_string_lossy().into_owned();
        args.push(&dockerfile);
        for l in &labels {
            args.extend(["--label", l.as_str()]);
        }
        let root = rel.root.to_string_lossy().into_owned();
        args.push(&root);
        pm.run(&args)?;
        pm.run(&[
            "manifest",
            "add",
            &list,
            &format!("containers-storage:{tag}"),
        ])?;
    }
    let layout_parent = work.join("oci");
    let layout = layout_parent.join("image");
    std::fs::create_dir_all(&layout_parent)?;
    pm.run(&[
        "manifest",
        "push",
        "--all",
        "--format",
        "oci",
        &list,
        &format!("oci:{}", layout.display()),
    ])?;
    // The layout's files are content-addressed; only the archive's own
    // metadata (order, times, owners) could differ, and is pinned here.
    for e in walk(&layout)? {
        util::chmod(&e, if e.is_dir() { 0o755 } else { 0o644 })?;
    }
    // The layout at the archive's root, as `oci-archive:` readers expect.
    util::deterministic_tar(
        &layout,
        &["blobs", "index.json", "oci-layout"],
        out,
        rel.epoch,
        false,
    )
}

fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if out[i].is_dir() {
            for e in std::fs::read_dir(&out[i])? {
                out.push(e?.path());
            }
        }
        i += 1;
    }
    Ok(out)
}
