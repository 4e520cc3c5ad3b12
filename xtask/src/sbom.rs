//! The SBOMs, CycloneDX 1.6 and SPDX 2.3 (both JSON): every crate linked
//! into the binary (for either target), with its version, license, package
//! URL and the checksum Cargo.lock pins, from `cargo metadata`'s resolved
//! graph. Proc-macro crates and build dependencies run at compile time and
//! are not linked, so they are not listed. CI checks both with the
//! CycloneDX and SPDX projects' own validators (`.ci/validate-sbom.py`).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::release::{Release, source_url};
use crate::util::{self, TARGETS};

/// A crate of the dependency closure.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Crate {
    pub name: String,
    pub version: String,
    pub license: Option<String>,
    /// Whether it comes from crates.io (else: the workspace itself).
    pub registry: bool,
    /// The names@versions it depends on, linked ones only.
    pub deps: BTreeSet<String>,
}

impl Crate {
    pub fn key(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
    pub fn purl(&self) -> String {
        format!("pkg:cargo/{}@{}", self.name, self.version)
    }
}

/// The crates linked into `prestop-wait` for any release target, by key.
/// (`cargo metadata` may fetch the manifests of crates another platform
/// needs, as the build fetches those it needs: from the registry only.)
pub fn linked(rel: &Release) -> Result<BTreeMap<String, Crate>> {
    let mut all = BTreeMap::new();
    for (triple, _) in TARGETS {
        let cargo = util::cargo();
        let out = util::run(
            Command::new(cargo)
                .current_dir(&rel.root)
                .args([
                    "metadata",
                    "--format-version",
                    "1",
                    "--locked",
                    "--filter-platform",
                    triple,
                ])
                .env_remove("RUSTFLAGS"),
        )?;
        let meta: Value = serde_json::from_str(&out).context("cargo metadata is not JSON")?;
        walk(&meta, &mut all)?;
    }
    Ok(all)
}

/// From the root package through normal dependencies, skipping proc-macros.
fn walk(meta: &Value, all: &mut BTreeMap<String, Crate>) -> Result<()> {
    let packages: BTreeMap<&str, &Value> = meta["packages"]
        .as_array()
        .context("no packages")?
        .iter()
        .filter_map(|p| Some((p["id"].as_str()?, p)))
        .collect();
    let nodes: BTreeMap<&str, &Value> = meta["resolve"]["nodes"]
        .as_array()
        .context("no resolve graph")?
        .iter()
        .filter_map(|n| Some((n["id"].as_str()?, n)))
        .collect();
    let root = packages
        .values()
        .find(|p| p["name"] == "prestop-wait")
        .and_then(|p| p["id"].as_str())
        .context("no prestop-wait package")?;
    let is_proc_macro = |id: &str| {
        packages[id]["targets"]
            .as_array()
            .is_some_and(|ts| ts.iter().all(|t| t["kind"] == json!(["proc-macro"])))
    };
    let mut stack = vec![root];
    let mut seen = BTreeSet::new();
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        let p = packages[id];
        let mut deps = BTreeSet::new();
        for d in nodes[id]["deps"].as_array().into_iter().flatten() {
            let normal = d["dep_kinds"]
                .as_array()
                .is_some_and(|ks| ks.iter().any(|k| k["kind"].is_null()));
            let dep = d["pkg"].as_str().context("a dep without pkg")?;
            if normal && !is_proc_macro(dep) {
                let dp = packages[dep];
                deps.insert(format!(
                    "{}@{}",
                    dp["name"].as_str().unwrap_or_default(),
                    dp["version"].as_str().unwrap_or_default()
                ));
                stack.push(dep);
            }
        }
        let c = Crate {
            name: p["name"].as_str().unwrap_or_default().to_owned(),
            version: p["version"].as_str().unwrap_or_default().to_owned(),
            license: p["license"].as_str().map(str::to_owned),
            registry: p["source"]
                .as_str()
                .is_some_and(|s| s.starts_with("registry+")),
            deps,
        };
        all.entry(c.key())
            .and_modify(|e: &mut Crate| e.deps.extend(c.deps.iter().cloned()))
            .or_insert(c);
    }
    Ok(())
}

/// `(name, version) -> checksum` from Cargo.lock.
pub fn lock_checksums(rel: &Release) -> Result<BTreeMap<String, String>> {
    let lock = std::fs::read_to_string(rel.root.join("Cargo.lock"))?;
    let mut out = BTreeMap::new();
    for block in lock.split("[[package]]").skip(1) {
        let field = |k: &str| {
            block.lines().find_map(|l| {
                l.strip_prefix(&format!("{k} = \""))
                    .and_then(|v| v.strip_suffix('"'))
            })
        };
        if let (Some(n), Some(v), Some(c)) = (field("name"), field("version"), field("checksum")) {
            out.insert(format!("{n}@{v}"), c.to_owned());
        }
    }
    Ok(out)
}

/// The crate the SBOMs describe, in its own closure.
fn root(crates: &BTreeMap<String, Crate>) -> Result<&Crate> {
    crates
        .values()
        .find(|c| c.name == "prestop-wait")
        .context("prestop-wait is not in its own closure")
}

/// The CycloneDX document, pretty-printed, keys in a fixed order.
pub fn cyclonedx(rel: &Release) -> Result<String> {
    let (crates, sums) = (linked(rel)?, lock_checksums(rel)?);
    let root = root(&crates)?;
    let component = |c: &Crate, kind: &str| {
        let mut v = json!({
            "type": kind,
            "bom-ref": c.purl(),
            "name": c.name,
            "version": c.version,
            "purl": c.purl(),
        });
        if let Some(l) = &c.license {
            v["licenses"] = json!([{ "expression": l }]);
        }
        if let Some(sum) = sums.get(&c.key()) {
            v["hashes"] = json!([{ "alg": "SHA-256", "content": sum }]);
        }
        v
    };
    let components: Vec<Value> = crates
        .values()
        .filter(|c| c.name != "prestop-wait")
        .map(|c| component(c, "library"))
        .collect();
    let dependencies: Vec<Value> = crates
        .values()
        .map(|c| {
            json!({
                "ref": c.purl(),
                "dependsOn": c.deps.iter().map(|d| format!("pkg:cargo/{d}")).collect::<Vec<_>>(),
            })
        })
        .collect();
    // A serial number of its own per release, the same on every rebuild.
    let h = util::sha256_hex(format!("{}@{}", rel.revision, rel.version).as_bytes());
    let serial = format!(
        "urn:uuid:{}-{}-5{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    );
    let mut main = component(root, "application");
    main["externalReferences"] = json!([{ "type": "vcs", "comment": format!("commit {}", rel.revision), "url": source_url() }]);
    let doc = json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": serial,
        "version": 1,
        "metadata": {
            "timestamp": util::rfc3339(rel.epoch),
            "tools": { "components": [{ "type": "application", "name": "cargo xtask dist", "version": rel.version }] },
            "component": main,
        },
        "components": components,
        "dependencies": dependencies,
    });
    Ok(serde_json::to_string_pretty(&doc)? + "\n")
}

/// An SPDX id for a crate: letters, digits, `.` and `-` only.
fn spdx_id(c: &Crate) -> String {
    let clean: String = c
        .key()
        .chars()
        .map(|ch| {
            if ch.is_ascii_alphanumeric() || ch == '.' || ch == '-' {
                ch
            } else {
                '-'
            }
        })
        .collect();
    format!("SPDXRef-Package-{clean}")
}

/// Where SPDX says the workspace's own crate comes from: the repository at
/// the release's commit (`git+URL@COMMIT`), or `NOASSERTION` where the
/// build was not told its source (`DIST_SOURCE_URL` unset).
fn workspace_location(rel: &Release) -> String {
    let url = source_url();
    if url.starts_with("https://") {
        format!("git+{url}@{}", rel.revision)
    } else {
        "NOASSERTION".into()
    }
}

/// The SPDX 2.3 document: the same crates and dependencies as
/// [`cyclonedx`], pretty-printed, keys in a fixed order.
pub fn spdx(rel: &Release) -> Result<String> {
    let (crates, sums) = (linked(rel)?, lock_checksums(rel)?);
    let root = root(&crates)?;
    let package = |c: &Crate| {
        let mut v = json!({
            "name": c.name,
            "SPDXID": spdx_id(c),
            "versionInfo": c.version,
            "downloadLocation": if c.registry {
                format!("https://crates.io/api/v1/crates/{}/{}/download", c.name, c.version)
            } else {
                workspace_location(rel)
            },
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": c.license.clone().unwrap_or_else(|| "NOASSERTION".into()),
            "copyrightText": "NOASSERTION",
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": c.purl(),
            }],
            "primaryPackagePurpose": if c.name == "prestop-wait" { "APPLICATION" } else { "LIBRARY" },
        });
        if let Some(sum) = sums.get(&c.key()) {
            v["checksums"] = json!([{ "algorithm": "SHA256", "checksumValue": sum }]);
        }
        v
    };
    let mut packages = vec![package(root)];
    packages.extend(
        crates
            .values()
            .filter(|c| c.name != "prestop-wait")
            .map(package),
    );
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": spdx_id(root),
    })];
    for c in crates.values() {
        for d in &c.deps {
            if let Some(dep) = crates.get(d) {
                relationships.push(json!({
                    "spdxElementId": spdx_id(c),
                    "relationshipType": "DEPENDS_ON",
                    "relatedSpdxElement": spdx_id(dep),
                }));
            }
        }
    }
    let h = util::sha256_hex(format!("spdx {}@{}", rel.revision, rel.version).as_bytes());
    let doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("prestop-wait-{}", rel.version),
        "documentNamespace": format!("https://spdx.org/spdxdocs/prestop-wait-{}-{}", rel.version, &h[..32]),
        "creationInfo": {
            "created": util::rfc3339(rel.epoch),
            "creators": [format!("Tool: cargo-xtask-dist-{}", rel.version)],
        },
        "packages": packages,
        "relationships": relationships,
    });
    Ok(serde_json::to_string_pretty(&doc)? + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_closure_is_what_is_linked_and_cargo_lock_pins_it() {
        let rel = Release::find(&util::repo_root().unwrap()).unwrap();
        let all = linked(&rel).unwrap();
        let has = |name: &str| all.values().any(|c| c.name == name);
        for name in [
            "prestop-wait",
            "clap",
            "rustix",
            "procfs",
            "anyhow",
            "humantime",
        ] {
            assert!(has(name), "{name} is linked");
        }
        // Compile-time only (proc-macros and what only they use), the test
        // suite's and xtask's own: none is in the binary.
        for name in [
            "clap_derive",
            "syn",
            "proc-macro2",
            "quote",
            "tempfile",
            "serde_json",
            "sha2",
        ] {
            assert!(!has(name), "{name} is not linked");
        }
        let sums = lock_checksums(&rel).unwrap();
        for c in all.values().filter(|c| c.registry) {
            assert_eq!(sums.get(&c.key()).map(String::len), Some(64), "{}", c.key());
        }
    }

    #[test]
    fn the_spdx_document_lists_what_the_cyclonedx_one_does() {
        let rel = Release::find(&util::repo_root().unwrap()).unwrap();
        let cdx: Value = serde_json::from_str(&cyclonedx(&rel).unwrap()).unwrap();
        let spdx: Value = serde_json::from_str(&spdx(&rel).unwrap()).unwrap();
        assert_eq!(cdx["specVersion"], "1.6");
        assert_eq!(spdx["spdxVersion"], "SPDX-2.3");
        let key = |n: &Value, v: &Value| format!("{}@{}", n.as_str().unwrap(), v.as_str().unwrap());
        let mut in_cdx: BTreeSet<String> = cdx["components"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| key(&c["name"], &c["version"]))
            .collect();
        let main = &cdx["metadata"]["component"];
        in_cdx.insert(key(&main["name"], &main["version"]));
        let packages = spdx["packages"].as_array().unwrap();
        let in_spdx: BTreeSet<String> = packages
            .iter()
            .map(|p| key(&p["name"], &p["versionInfo"]))
            .collect();
        assert_eq!(in_cdx, in_spdx);
        // Ids are unique and of SPDX's alphabet; every relationship names
        // packages that are there.
        let ids: BTreeSet<&str> = packages
            .iter()
            .map(|p| p["SPDXID"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), packages.len());
        assert!(ids.iter().all(|id| {
            id.strip_prefix("SPDXRef-")
                .unwrap()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        }));
        for r in spdx["relationships"].as_array().unwrap() {
            let to = r["relatedSpdxElement"].as_str().unwrap();
            assert!(ids.contains(to), "{r}");
        }
    }
}
