#!/usr/bin/env bash
# benches/rollout/run.sh: the whole rollout benchmark (see rollout.py): every
# client kind under every traffic shape, quiesce and sleep N on the same
# draws, 100 rollouts each; `--dry-run` prints how long it will take
# (about 2.5 h on 2 cores with --slots 20). Writes docs/rollout.md and
# docs/rollout.svg. Needs root; installs what it lacks (Debian packages).
# Knobs go through to rollout.py: run.sh --clients curl --rollouts 20 ...
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
need=()
for t in haproxy:haproxy nginx:nginx-light wrk:wrk ab:apache2-utils curl:curl nsenter:util-linux ip:iproute2; do
  command -v "${t%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${t%%:*}" ] || need+=("${t#*:}")
done
/usr/bin/python3 -c 'import h2' >/dev/null 2>&1 || need+=(python3-h2)
if [ ${#need[@]} -gt 0 ]; then
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${need[@]}"
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/target-bench}
(cd "$ROOT" && cargo build --release --quiet --target x86_64-unknown-linux-musl)
BIN=$CARGO_TARGET_DIR/x86_64-unknown-linux-musl/release/prestop-wait
exec /usr/bin/python3 "$HERE/rollout.py" --bin "$BIN" --json "${JSON:-/tmp/rollouts.json}" \
    --docs "$ROOT/docs" --slots "${SLOTS:-20}" "$@"
