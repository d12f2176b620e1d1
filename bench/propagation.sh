#!/usr/bin/env bash
# Builds the control plane and the propagation benchmark in release mode, then
# times how long a registry change takes to be acknowledged by 20 simulated
# data planes holding snapshot streams to the real control plane (a separate
# process on loopback), and how many trace records a second fleet-health
# aggregation keeps up with on one core (in process).
#
#   ./bench/propagation.sh                  # print the results
#   ./bench/propagation.sh --write          # ... and put them into bench/README.md
#   ./bench/propagation.sh --changes 500 --subscribers 50
#
# Arguments go to switchyard-propagation (see --help). The benchmark starts and
# stops the control plane itself; this script stops the benchmark if it is
# interrupted.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"

cargo build --release -p switchyard-control-plane -p switchyard-bench \
    --bin switchyard-control-plane --bin switchyard-propagation

bench_pid=""
stop_bench() {
    if [[ -n "$bench_pid" ]] && kill -0 "$bench_pid" 2>/dev/null; then
        # The benchmark stops the control plane when it gets SIGTERM.
        kill -TERM "$bench_pid" 2>/dev/null || true
        wait "$bench_pid" 2>/dev/null || true
    fi
}
trap stop_bench EXIT
trap 'stop_bench; exit 130' INT TERM

"$target/release/switchyard-propagation" \
    --control-plane "$target/release/switchyard-control-plane" \
    "$@" &
bench_pid=$!
status=0
wait "$bench_pid" || status=$?
bench_pid=""
exit "$status"
