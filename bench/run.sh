#!/usr/bin/env bash
# Builds the gateway and the benchmark in release mode, then measures the
# gateway's overhead over a zero-latency mock provider on loopback.
#
#   ./bench/run.sh                 # print the results table
#   ./bench/run.sh --write         # ... and put it into bench/README.md
#   ./bench/run.sh --requests 20000 --concurrency 64
#
# Arguments go to switchyard-bench (see --help). The benchmark starts and stops
# the gateway itself; this script stops the benchmark if it is interrupted.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"

cargo build --release -p switchyard-cli
cargo build --release -p switchyard-bench

bench_pid=""
stop_bench() {
    if [[ -n "$bench_pid" ]] && kill -0 "$bench_pid" 2>/dev/null; then
        # The benchmark kills its gateway when it gets SIGTERM.
        kill -TERM "$bench_pid" 2>/dev/null || true
        wait "$bench_pid" 2>/dev/null || true
    fi
}
trap stop_bench EXIT
trap 'stop_bench; exit 130' INT TERM

"$target/release/switchyard-bench" --gateway "$target/release/switchyard" "$@" &
bench_pid=$!
status=0
wait "$bench_pid" || status=$?
bench_pid=""
exit "$status"
