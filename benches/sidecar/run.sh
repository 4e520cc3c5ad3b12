#!/usr/bin/env bash
# benches/sidecar/run.sh: the whole sidecar benchmark (see sidecar.py): the
# proxy's preStop strategies on the same job lengths, 100 rollouts each and
# 10 with a job past the grace period; `--dry-run` prints how long it will
# take. Writes docs/sidecar.md and docs/sidecar.svg. Needs root; installs
# what it lacks (Debian packages). Knobs go through to sidecar.py.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
need=()
for t in haproxy:haproxy nginx:nginx-light netstat:net-tools nsenter:util-linux ip:iproute2; do
  command -v "${t%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${t%%:*}" ] || need+=("${t#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${need[@]}"
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/target-bench}
(cd "$ROOT" && cargo build --release --quiet --target x86_64-unknown-linux-musl)
BIN=$CARGO_TARGET_DIR/x86_64-unknown-linux-musl/release/prestop-wait
exec /usr/bin/python3 "$HERE/sidecar.py" --bin "$BIN" --json "${JSON:-/tmp/sidecar.json}" \
    --docs "$ROOT/docs" --slots "${SLOTS:-14}" "$@"
