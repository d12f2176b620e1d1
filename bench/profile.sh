#!/usr/bin/env bash
# Counts the instructions the data plane spends per request, with valgrind's
# callgrind: repeatable where wall-clock CPU time is not.
#
#   ./bench/profile.sh                     # 2,000 JSON and 2,000 streamed requests
#   ./bench/profile.sh --requests 500      # fewer (arguments go to switchyard-bench)
#
# Builds the data plane in release mode with debug symbols (a `profiling`
# profile that inherits `release`, so the release binaries stay as they are),
# then runs the benchmark's four main scenarios at concurrency 4 with the data
# plane under callgrind. The counters are zeroed after each warm-up and dumped
# once the scenario's traces are stored, so a dump holds the measured requests
# only: parsing, routing, the upstream call, the response and reporting the
# trace. The control plane runs normally. Prints the instructions per request
# by function (exclusive and inclusive) for the JSON and the streamed requests
# through the gateway; the profiles stay in $out for a closer look
# (callgrind_annotate --inclusive=yes, kcachegrind).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
out="$target/callgrind/$(date +%Y%m%d-%H%M%S)"
requests=2000

mkdir -p "$out"
command -v valgrind >/dev/null || { echo "profile.sh: valgrind is not installed" >&2; exit 1; }

cargo build --profile profiling \
    --config 'profile.profiling.inherits="release"' \
    --config 'profile.profiling.debug=true' \
    -p switchyard-data-plane
cargo build --release -p switchyard-control-plane -p switchyard-bench

bench_pid=""
stop_bench() {
    if [[ -n "$bench_pid" ]] && kill -0 "$bench_pid" 2>/dev/null; then
        kill -TERM "$bench_pid" 2>/dev/null || true
        wait "$bench_pid" 2>/dev/null || true
    fi
}
trap stop_bench EXIT
trap 'stop_bench; exit 130' INT TERM

# Later arguments win, so "$@" can change any of these.
"$target/release/switchyard-bench" \
    --data-plane "$target/profiling/switchyard-data-plane" \
    --control-plane "$target/release/switchyard-control-plane" \
    --callgrind "$out" \
    --requests "$requests" --warmup 200 --concurrency 4 \
    "$@" >"$out/report.md" &
bench_pid=$!
wait "$bench_pid"
bench_pid=""

# The summary (instructions per request by function) ends the report.
sed -n '/^Callgrind, data plane/,$p' "$out/report.md"
echo
echo "report and profiles in $out (callgrind_annotate --inclusive=yes <profile> for more)"
