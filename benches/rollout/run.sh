#!/usr/bin/env bash
# benches/rollout/run.sh: the whole rollout benchmark (see rollout.py), about
# half an hour on 2 cores; writes docs/rollout.md and docs/rollout.svg.
# Needs root, haproxy, nginx, wrk, curl, ab (apache2-utils), h2load
# (nghttp2-client). Knobs go through to rollout.py: run.sh --kinds curl ...
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/target-bench}
(cd "$ROOT" && cargo build --release --quiet --target x86_64-unknown-linux-musl)
BIN=$CARGO_TARGET_DIR/x86_64-unknown-linux-musl/release/prestop-wait
exec /usr/bin/python3 "$HERE/rollout.py" --bin "$BIN" --json "${JSON:-/tmp/rollouts.json}" \
    --docs "$ROOT/docs" "$@"
