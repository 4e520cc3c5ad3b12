//! What a release is made from, and what its artifacts are called: read by
//! every step of `dist` and by `verify`, so it sits below them all.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::util::{self, TARGETS};

/// What a dist is made from, found once.
pub struct Release {
    pub root: PathBuf,
    pub version: String,
    pub revision: String,
    pub epoch: u64,
}

impl Release {
    pub fn find(root: &Path) -> Result<Release> {
        let manifest = std::fs::read_to_string(root.join("Cargo.toml"))?;
        let version = manifest
            .split("[package]")
            .nth(1)
            .and_then(|p| {
                p.lines().find_map(|l| {
                    l.strip_prefix("version = \"")
                        .and_then(|v| v.strip_suffix('"'))
                })
            })
            .context("no version in Cargo.toml's [package]")?
            .to_owned();
        Ok(Release {
            root: root.to_path_buf(),
            version,
            revision: util::revision(root)?,
            epoch: util::source_date_epoch(root)?,
        })
    }

    pub fn tarball(&self, triple: &str) -> String {
        format!("prestop-wait-{}-{triple}.tar.gz", self.version)
    }

    pub fn sbom(&self) -> String {
        format!("prestop-wait-{}.cdx.json", self.version)
    }

    pub fn spdx(&self) -> String {
        format!("prestop-wait-{}.spdx.json", self.version)
    }

    pub fn oci(&self) -> String {
        format!("prestop-wait-{}-oci.tar", self.version)
    }

    /// Every artifact `SHA256SUMS` covers, in its order.
    pub fn artifacts(&self) -> Vec<String> {
        let mut all: Vec<String> = TARGETS.iter().map(|(t, _)| self.tarball(t)).collect();
        all.push(self.sbom());
        all.push(self.spdx());
        all.push(self.oci());
        all.sort();
        all
    }
}

/// Where the source lives, for the SBOM and the image labels: the release
/// workflow passes its repository as `DIST_SOURCE_URL`.
pub fn source_url() -> String {
    std::env::var("DIST_SOURCE_URL").unwrap_or_else(|_| "unknown".into())
}
