#!/usr/bin/env bash
# Runs the whole suite (README's `cargo test`, with CI=true so that a skip
# fails) RUNS times in a row, stopping at the first failure, optionally with
# every core loaded by stress-ng beside it. Each run's output is kept in
# OUT/run-N.log; the last line says how many passed in a row.
#
#   scripts/flake-hunt.sh 20             # 20 runs
#   LOAD=1 scripts/flake-hunt.sh 10      # 10 runs, stress-ng --cpu $(nproc)
#   OUT=/tmp/hunt scripts/flake-hunt.sh 5
#
# Needs what .ci/run installs (root, nginx, haproxy, podman, qemu-user,
# stress-ng for LOAD=1).
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
out=${OUT:-target/flake-hunt}
mkdir -p "$out"
stress=
cleanup() { [ -z "$stress" ] || kill "$stress" 2>/dev/null; }
trap cleanup EXIT
if [ "${LOAD:-0}" = 1 ]; then
  command -v stress-ng >/dev/null || { echo "flake-hunt: LOAD=1 needs stress-ng (apt-get install stress-ng)" >&2; exit 2; }
  # Bounded: the hunt's own trap stops it sooner.
  stress-ng --cpu "$(nproc)" --timeout 6h --quiet &
  stress=$!
fi
# Build once, so that each run's time is the tests'.
CI=true cargo test --no-run --quiet >/dev/null 2>&1 || { echo "flake-hunt: the build fails" >&2; exit 2; }
passed=0
for i in $(seq 1 "$runs"); do
  start=$(date +%s)
  if CI=true cargo test >"$out/run-$i.log" 2>&1; then
    passed=$((passed + 1))
    echo "run $i: passed in $(( $(date +%s) - start ))s"
  else
    echo "run $i: FAILED in $(( $(date +%s) - start ))s (load=${LOAD:-0}); see $out/run-$i.log:"
    grep -E "^test .* FAILED|panicked at" "$out/run-$i.log" | head -20
    echo "flake-hunt: $passed passed in a row, then a failure"
    exit 1
  fi
done
echo "flake-hunt: $passed of $runs passed in a row (load=${LOAD:-0})"
