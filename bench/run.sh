#!/usr/bin/env bash
# Builds the control plane, the data plane and the benchmark in release
# mode, then measures the gateway's (the data plane's) overhead over a
# zero-latency mock provider on loopback, with the two planes running as
# separate processes as they are deployed.
#
#   ./bench/run.sh                 # print the results table
#   ./bench/run.sh --write         # ... and put it into bench/README.md
#   ./bench/run.sh --requests 20000 --concurrency 64
#   ./bench/run.sh --sweep 1,16,64 --streams 500
#
# Arguments go to switchyard-bench (see --help). The benchmark starts and stops
# both planes itself; this script stops the benchmark if it is interrupted.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"

cargo build --release -p switchyard-control-plane -p switchyard-data-plane -p switchyard-bench

# The memory test opens 1,000 streams at once (--streams): about two file
# descriptors per stream in the benchmark (client and mock) and two in the
# data plane, which inherits this limit. Raise the soft limit towards the hard
# one if it is lower than that needs; the report shows the limits in force.
want_files=8192
soft="$(ulimit -Sn)"
if [[ "$soft" != unlimited ]] && (( soft < want_files )); then
    hard="$(ulimit -Hn)"
    if [[ "$hard" == unlimited ]] || (( hard >= want_files )); then
        ulimit -Sn "$want_files"
    else
        ulimit -Sn "$hard"
        echo "run.sh: open-file limit is $hard (hard); 1,000 streams need about 4,000" >&2
    fi
fi

bench_pid=""
stop_bench() {
    if [[ -n "$bench_pid" ]] && kill -0 "$bench_pid" 2>/dev/null; then
        # The benchmark stops both planes when it gets SIGTERM.
        kill -TERM "$bench_pid" 2>/dev/null || true
        wait "$bench_pid" 2>/dev/null || true
    fi
}
trap stop_bench EXIT
trap 'stop_bench; exit 130' INT TERM

"$target/release/switchyard-bench" \
    --data-plane "$target/release/switchyard-data-plane" \
    --control-plane "$target/release/switchyard-control-plane" \
    "$@" &
bench_pid=$!
status=0
wait "$bench_pid" || status=$?
bench_pid=""
exit "$status"
