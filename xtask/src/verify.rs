//! `cargo xtask verify` checks a dist directory the way a consumer would,
//! from the artifacts alone; `cargo xtask repro` builds it twice, from
//! fresh clones at different paths, and compares the bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use object::{Object, ObjectSection};
use serde_json::Value;

use crate::release::Release;
use crate::sbom;
use crate::util::{self, TARGETS};

pub fn verify(root: &Path, dir: &Path) -> Result<()> {
    let rel = Release::find(root)?;
    let tmp = Temp::new("verify")?;

    // 1. SHA256SUMS names every artifact, and every sum holds.
    let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).context("no SHA256SUMS")?;
    let mut listed = Vec::new();
    for line in sums.lines() {
        let (sum, name) = line
            .split_once("  ")
            .with_context(|| format!("SHA256SUMS: bad line {line:?}"))?;
        let bytes = std::fs::read(dir.join(name)).with_context(|| format!("{name} is missing"))?;
        ensure!(util::sha256_hex(&bytes) == sum, "{name}: checksum mismatch");
        listed.push(name.to_owned());
    }
    ensure!(
        listed == rel.artifacts(),
        "SHA256SUMS lists {listed:?}, not {:?}",
        rel.artifacts()
    );
    say(format!(
        "SHA256SUMS: {} artifacts, every sum holds",
        listed.len()
    ));

    // 2. Each tarball: the static binary of its architecture with its
    //    dependency list embedded, LICENSE and README.md.
    let mut embedded: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut binaries = BTreeMap::new();
    for (triple, arch) in TARGETS {
        let out = tmp.0.join(triple);
        std::fs::create_dir_all(&out)?;
        util::run(
            Command::new("tar")
                .arg("-xzf")
                .arg(dir.join(rel.tarball(triple)))
                .arg("-C")
                .arg(&out),
        )?;
        let top = format!("prestop-wait-{}-{triple}", rel.version);
        let mut files: Vec<String> = std::fs::read_dir(out.join(&top))
            .with_context(|| format!("{}: no {top}/", rel.tarball(triple)))?
            .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_>>()?;
        files.sort();
        ensure!(
            files == ["LICENSE", "README.md", "prestop-wait"],
            "{}: holds {files:?}",
            rel.tarball(triple)
        );
        let bin = std::fs::read(out.join(&top).join("prestop-wait"))?;
        embedded.insert(arch, check_binary(&bin, triple)?);
        binaries.insert(arch, bin);
        say(format!(
            "{}: static {arch} binary, .dep-v0 present",
            rel.tarball(triple)
        ));
    }
    // The host's binary runs and names its version and target.
    let host = tmp
        .0
        .join(TARGETS[0].0)
        .join(format!("prestop-wait-{}-{}", rel.version, TARGETS[0].0))
        .join("prestop-wait");
    if cfg!(target_arch = "x86_64") {
        let v = util::run(Command::new(&host).arg("--version"))?;
        ensure!(
            v == format!("prestop-wait {} ({})", rel.version, TARGETS[0].0),
            "--version says {v:?}"
        );
        say(v);
    }

    // 3. The SBOM: every linked crate, pinned by Cargo.lock, the same list
    //    cargo auditable embedded in each binary.
    let doc: Value = serde_json::from_slice(&std::fs::read(dir.join(rel.sbom()))?)
        .context("the SBOM is not JSON")?;
    ensure!(doc["bomFormat"] == "CycloneDX", "not a CycloneDX document");
    let lock = sbom::lock_checksums(&rel)?;
    let mut listed = BTreeSet::new();
    for c in doc["components"].as_array().context("no components")? {
        let key = format!(
            "{}@{}",
            c["name"].as_str().unwrap_or_default(),
            c["version"].as_str().unwrap_or_default()
        );
        let sum = c["hashes"][0]["content"].as_str();
        ensure!(
            sum.is_some() && lock.get(&key).map(String::as_str) == sum,
            "SBOM: {key} is not pinned by Cargo.lock with the same checksum"
        );
        ensure!(
            c["licenses"][0]["expression"].is_string(),
            "SBOM: {key} has no license"
        );
        ensure!(
            c["purl"] == format!("pkg:cargo/{key}"),
            "SBOM: {key} has purl {}",
            c["purl"]
        );
        listed.insert(key);
    }
    let main = &doc["metadata"]["component"];
    listed.insert(format!(
        "{}@{}",
        main["name"].as_str().unwrap_or_default(),
        main["version"].as_str().unwrap_or_default()
    ));
    let in_binaries: BTreeSet<String> = embedded.values().flatten().cloned().collect();
    ensure!(
        listed == in_binaries,
        "SBOM and the binaries' .dep-v0 differ: only in the SBOM {:?}, only in binaries {:?}",
        listed.difference(&in_binaries).collect::<Vec<_>>(),
        in_binaries.difference(&listed).collect::<Vec<_>>()
    );
    say(format!(
        "{}: {} crates, each pinned by Cargo.lock and licensed, the same as the binaries embed",
        rel.sbom(),
        listed.len()
    ));
    // The SPDX document lists the same crates, pinned the same.
    let spdx: Value = serde_json::from_slice(&std::fs::read(dir.join(rel.spdx()))?)
        .context("the SPDX SBOM is not JSON")?;
    ensure!(
        spdx["spdxVersion"] == "SPDX-2.3",
        "not an SPDX 2.3 document"
    );
    let mut in_spdx = BTreeSet::new();
    for p in spdx["packages"].as_array().context("SPDX: no packages")? {
        let key = format!(
            "{}@{}",
            p["name"].as_str().unwrap_or_default(),
            p["versionInfo"].as_str().unwrap_or_default()
        );
        if let Some(sum) = lock.get(&key) {
            ensure!(
                p["checksums"][0]["checksumValue"].as_str() == Some(sum.as_str()),
                "SPDX: {key} is not pinned by Cargo.lock with the same checksum"
            );
        }
        in_spdx.insert(key);
    }
    ensure!(
        in_spdx == listed,
        "the SPDX and CycloneDX SBOMs differ: only in SPDX {:?}, only in CycloneDX {:?}",
        in_spdx.difference(&listed).collect::<Vec<_>>(),
        listed.difference(&in_spdx).collect::<Vec<_>>()
    );
    say(format!("{}: the same {} crates", rel.spdx(), in_spdx.len()));

    // 4. The image archive: an OCI layout whose index holds both platforms,
    //    each the matching binary, labelled.
    let oci = tmp.0.join("oci");
    std::fs::create_dir_all(&oci)?;
    util::run(
        Command::new("tar")
            .arg("-xf")
            .arg(dir.join(rel.oci()))
            .arg("-C")
            .arg(&oci),
    )?;
    ensure!(
        oci.join("oci-layout").is_file(),
        "{}: no oci-layout",
        rel.oci()
    );
    let blob = |digest: &str| -> Result<Vec<u8>> {
        let hex = digest
            .strip_prefix("sha256:")
            .with_context(|| format!("digest {digest}"))?;
        let bytes = std::fs::read(oci.join("blobs/sha256").join(hex))
            .with_context(|| format!("blob {digest} is missing"))?;
        ensure!(
            util::sha256_hex(&bytes) == hex,
            "blob {digest} does not match its digest"
        );
        Ok(bytes)
    };
    let json = |bytes: Vec<u8>| -> Result<Value> { Ok(serde_json::from_slice(&bytes)?) };
    let index = json(std::fs::read(oci.join("index.json"))?)?;
    // `manifest push` writes the image index as index.json's one entry.
    let mut manifests = index["manifests"]
        .as_array()
        .context("index.json: no manifests")?
        .clone();
    if manifests.len() == 1
        && manifests[0]["mediaType"] == "application/vnd.oci.image.index.v1+json"
    {
        let inner = json(blob(manifests[0]["digest"].as_str().unwrap_or_default())?)?;
        manifests = inner["manifests"]
            .as_array()
            .context("image index: no manifests")?
            .clone();
    }
    let mut platforms = BTreeSet::new();
    for m in &manifests {
        let arch = m["platform"]["architecture"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        ensure!(
            m["platform"]["os"] == "linux",
            "a manifest for {}",
            m["platform"]
        );
        let manifest = json(blob(m["digest"].as_str().unwrap_or_default())?)?;
        let config = json(blob(
            manifest["config"]["digest"].as_str().unwrap_or_default(),
        )?)?;
        let labels = &config["config"]["Labels"];
        for (k, v) in [
            ("org.opencontainers.image.version", rel.version.as_str()),
            ("org.opencontainers.image.revision", rel.revision.as_str()),
            ("org.opencontainers.image.licenses", "Apache-2.0"),
        ] {
            ensure!(labels[k] == v, "{arch} image: label {k} is {}", labels[k]);
        }
        ensure!(
            labels["org.opencontainers.image.source"].is_string(),
            "{arch}: no source label"
        );
        ensure!(
            config["architecture"] == arch.as_str(),
            "{arch}: config says {}",
            config["architecture"]
        );
        let layers = manifest["layers"].as_array().context("no layers")?;
        ensure!(
            layers.len() == 1,
            "{arch} image: {} layers, not 1",
            layers.len()
        );
        let layer = blob(layers[0]["digest"].as_str().unwrap_or_default())?;
        let file = file_in_layer(&layer, "prestop-wait")?;
        ensure!(
            binaries.get(arch.as_str()) == Some(&file),
            "{arch} image: /prestop-wait is not the {arch} tarball's binary"
        );
        platforms.insert(arch);
    }
    ensure!(
        platforms == BTreeSet::from(["amd64".to_owned(), "arm64".to_owned()]),
        "{}: platforms {platforms:?}",
        rel.oci()
    );
    say(format!(
        "{}: linux/amd64 and linux/arm64, each /prestop-wait the tarball's binary, labelled",
        rel.oci()
    ));
    Ok(())
}

/// The binary is an ELF of `triple`'s machine, static (no interpreter),
/// with cargo auditable's `.dep-v0`; returns its runtime crates.
fn check_binary(bytes: &[u8], triple: &str) -> Result<BTreeSet<String>> {
    let elf = object::File::parse(bytes).context("not an ELF file")?;
    let want = if triple.starts_with("x86_64") {
        object::Architecture::X86_64
    } else {
        object::Architecture::Aarch64
    };
    ensure!(
        elf.architecture() == want,
        "{triple}: built for {:?}",
        elf.architecture()
    );
    ensure!(
        elf.section_by_name(".interp").is_none(),
        "{triple}: dynamically linked (has .interp)"
    );
    let section = elf
        .section_by_name(".dep-v0")
        .context("no .dep-v0 section: not built with cargo auditable")?;
    let mut text = String::new();
    flate2::read::ZlibDecoder::new(section.data()?)
        .read_to_string(&mut text)
        .context(".dep-v0 is not zlib")?;
    let deps: Value = serde_json::from_str(&text).context(".dep-v0 is not JSON")?;
    Ok(deps["packages"]
        .as_array()
        .context(".dep-v0: no packages")?
        .iter()
        .filter(|p| p["kind"] != "build")
        .map(|p| {
            format!(
                "{}@{}",
                p["name"].as_str().unwrap_or_default(),
                p["version"].as_str().unwrap_or_default()
            )
        })
        .collect())
}

/// The bytes of `name` in a gzip'd tar layer.
fn file_in_layer(layer: &[u8], name: &str) -> Result<Vec<u8>> {
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(layer).read_to_end(&mut tar)?;
    let mut at = 0;
    while at + 512 <= tar.len() {
        let header = &tar[at..at + 512];
        if header.iter().all(|&b| b == 0) {
            break;
        }
        let field = |r: std::ops::Range<usize>| {
            let f = &header[r];
            String::from_utf8_lossy(&f[..f.iter().position(|&b| b == 0).unwrap_or(f.len())])
                .into_owned()
        };
        let path = field(0..100);
        let size = usize::from_str_radix(field(124..136).trim(), 8).context("a tar size")?;
        let data = at + 512;
        if path.trim_start_matches("./") == name {
            return Ok(tar[data..data + size].to_vec());
        }
        at = data + size.div_ceil(512) * 512;
    }
    bail!("no {name} in the layer")
}

fn say(line: String) {
    eprintln!("xtask verify: {line}");
}

/// A directory under /tmp, removed on drop (also after a failure).
struct Temp(PathBuf);

impl Temp {
    fn new(what: &str) -> Result<Temp> {
        let dir = std::env::temp_dir().join(format!("prestop-wait-{what}-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        Ok(Temp(dir))
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `dist` in two fresh clones of HEAD, at paths of different lengths, each
/// with its own target directory; every artifact must be byte-identical.
/// Then the first is verified.
pub fn repro(root: &Path) -> Result<()> {
    let dirty = util::run(
        Command::new("git")
            .current_dir(root)
            .args(["status", "--porcelain"]),
    )?;
    if !dirty.is_empty() {
        eprintln!("xtask repro: uncommitted changes are not in the clones; building HEAD");
    }
    let tmp = Temp::new("repro")?;
    let clones = [
        tmp.0.join("a/prestop-wait"),
        tmp.0.join("b/a/longer/path/to/prestop-wait"),
    ];
    let mut sums = Vec::new();
    for clone in &clones {
        util::run(
            Command::new("git")
                .args(["clone", "--quiet", "--no-local"])
                .arg(root)
                .arg(clone),
        )?;
        eprintln!("xtask repro: cargo xtask dist in {}", clone.display());
        let cargo = util::cargo();
        util::run_shown(
            Command::new(cargo)
                .current_dir(clone)
                .args(["xtask", "dist"])
                .env_remove("CARGO_TARGET_DIR"),
        )?;
        sums.push(std::fs::read_to_string(
            clone.join("target/dist/SHA256SUMS"),
        )?);
    }
    let rel = Release::find(&clones[0])?;
    for name in rel.artifacts() {
        let a = std::fs::read(clones[0].join("target/dist").join(&name))?;
        let b = std::fs::read(clones[1].join("target/dist").join(&name))?;
        ensure!(a == b, "{name} differs between the two clones");
    }
    ensure!(sums[0] == sums[1], "SHA256SUMS differ");
    eprint!(
        "xtask repro: both clones gave byte-identical artifacts:\n{}",
        sums[0]
    );
    let dist = clones[0].join("target/dist");
    verify(&clones[0], &dist)?;
    verify_catches_tampering(&clones[0], &dist)?;
    // CI checks the SBOMs with other tools after this (.ci/run).
    if let Some(keep) = std::env::var_os("REPRO_KEEP") {
        let keep = PathBuf::from(keep);
        std::fs::create_dir_all(&keep)?;
        for e in std::fs::read_dir(&dist)? {
            let e = e?;
            if e.file_type()?.is_file() {
                std::fs::copy(e.path(), keep.join(e.file_name()))?;
            }
        }
        eprintln!("xtask repro: the artifacts kept in {}", keep.display());
    }
    Ok(())
}

/// `verify` must fail on a dist that was tampered with, each time for the
/// right reason: a byte of a tarball changed, and a crate dropped from the
/// SBOM with SHA256SUMS made to match.
fn verify_catches_tampering(root: &Path, dist: &Path) -> Result<()> {
    let rel = Release::find(root)?;
    let tmp = Temp::new("tamper")?;
    let copy = |dir: &Path| -> Result<()> {
        std::fs::create_dir_all(dir)?;
        for e in std::fs::read_dir(dist)? {
            let e = e?;
            std::fs::copy(e.path(), dir.join(e.file_name()))?;
        }
        Ok(())
    };
    let a = tmp.0.join("byte");
    copy(&a)?;
    let tarball = a.join(rel.tarball(TARGETS[0].0));
    let mut bytes = std::fs::read(&tarball)?;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&tarball, bytes)?;
    expect_refused(verify(root, &a), "checksum mismatch")?;
    let b = tmp.0.join("sbom");
    copy(&b)?;
    let path = b.join(rel.sbom());
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    doc["components"]
        .as_array_mut()
        .context("no components")?
        .pop();
    std::fs::write(&path, serde_json::to_string_pretty(&doc)?)?;
    util::write_sums(&b, &rel.artifacts())?;
    expect_refused(verify(root, &b), "SBOM and the binaries' .dep-v0 differ")?;
    eprintln!("xtask repro: verify refuses a changed byte and an SBOM missing a crate");
    Ok(())
}

fn expect_refused(got: Result<()>, why: &str) -> Result<()> {
    match got {
        Ok(()) => bail!("verify accepted a tampered dist (expected: {why})"),
        Err(e) if format!("{e:#}").contains(why) => Ok(()),
        Err(e) => bail!("verify refused a tampered dist for another reason than {why:?}: {e:#}"),
    }
}
