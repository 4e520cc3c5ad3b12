#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS each (default 60).
#
#   fuzz/run.sh                 # all targets, 60 s each
#   fuzz/run.sh 300             # all targets, 5 min each
#   fuzz/run.sh 300 parse_line  # one target
#   fuzz/run.sh replay          # replay fuzz/regressions/<target>/* once (no fuzzing)
#   PRESTOP_FUZZ_SKIP_KNOWN=1 fuzz/run.sh 300   # skip inputs hitting already-reported
#                                               # bugs (fuzz/regressions/README.md)
#
# Needs the nightly toolchain (`rustup toolchain install nightly`); installs
# cargo-fuzz from crates.io when it is missing. Builds for the host glibc
# target in fuzz/target. New corpus entries go to fuzz/corpus/<target>, crashes to
# fuzz/artifacts/<target>; seeds in fuzz/seeds/<target> are read, not written.
# Exits non-zero when any target found a crash.
set -uo pipefail

cd "$(dirname "$0")"
ALL_TARGETS=(parse_line socket_inode read_table json netlink)
HOST=x86_64-unknown-linux-gnu

mode=fuzz
secs=60
if [[ ${1:-} == replay ]]; then
    mode=replay
    shift
elif [[ ${1:-} =~ ^[0-9]+$ ]]; then
    secs=$1
    shift
fi
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${ALL_TARGETS[@]}")

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "run.sh: needs a nightly toolchain: rustup toolchain install nightly" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "run.sh: installing cargo-fuzz (takes a few minutes)" >&2
    cargo install cargo-fuzz --locked || exit 2
fi

# read_table writes its input under $TMPDIR; keep that inside fuzz/target,
# one directory per run so concurrent runs do not remove each other's.
mkdir -p target/tmp
TMPDIR="$(mktemp -d "$PWD/target/tmp/run.XXXXXX")" || exit 2
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT

# cargo fuzz sets RUST_BACKTRACE=1 for panic reports; that also makes anyhow
# capture a backtrace for every parse error, which cuts throughput ~10x.
export RUST_LIB_BACKTRACE=0

dict_for() {
    case $1 in
        parse_line | read_table) echo dict/tcp.dict ;;
        socket_inode) echo dict/socket_inode.dict ;;
        json) echo dict/json.dict ;;
    esac
}

failed=()
for t in "${targets[@]}"; do
    if [[ $mode == replay ]]; then
        shopt -s nullglob
        files=(regressions/"$t"/*)
        shopt -u nullglob
        [[ ${#files[@]} -gt 0 ]] || continue
        echo "=== $t: replaying ${#files[@]} regression input(s)"
        cargo +nightly fuzz run --debug-assertions --target "$HOST" "$t" "${files[@]}" -- -runs=1 \
            || failed+=("$t")
        continue
    fi
    mkdir -p "corpus/$t"
    echo "=== $t: ${secs}s"
    start=$(date +%s)
    cargo +nightly fuzz run --debug-assertions --target "$HOST" "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
        -dict="$(dict_for "$t")" \
        || failed+=("$t")
    echo "=== $t: finished after $(($(date +%s) - start))s"
done

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "run.sh: failures in: ${failed[*]} (see fuzz/artifacts/)" >&2
    exit 1
fi
