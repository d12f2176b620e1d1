#!/usr/bin/env bash
# Builds the trace-store benchmark in release mode, then times how many
# traces a second the control plane's store takes into Postgres (batches of
# 256 from one writer and from 4 concurrent ones) and how fast ListTraces
# answers its common filters with 1,000,000 traces stored.
#
#   ./bench/trace_store.sh                  # print the results
#   ./bench/trace_store.sh --write          # ... and put them into bench/README.md
#   ./bench/trace_store.sh --traces 200000 --runs 50
#
# Arguments go to switchyard-trace-store (see --help). The benchmark runs the
# store in process on a fresh database of its own on the Postgres server
# named by SWITCHYARD_TEST_DATABASE_URL and drops it at the end; when that is
# not set, this script starts a throwaway server with scripts/services.sh and
# stops it at the end. This script stops the benchmark if it is interrupted.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"

cargo build --release -p switchyard-bench --bin switchyard-trace-store

services=""
bench_pid=""
stop_all() {
    if [[ -n "$bench_pid" ]] && kill -0 "$bench_pid" 2>/dev/null; then
        # The benchmark drops its database on SIGTERM.
        kill -TERM "$bench_pid" 2>/dev/null || true
        wait "$bench_pid" 2>/dev/null || true
    fi
    bench_pid=""
    if [[ -n "$services" ]]; then
        SERVICES_LOG_PREFIX=trace_store.sh ./scripts/services.sh stop "$services" ||
            echo "trace_store.sh: warning: could not stop every service in $services" >&2
        rm -rf "$services"
        services=""
    fi
}
trap stop_all EXIT
trap 'stop_all; exit 130' INT TERM

if [[ -z "${SWITCHYARD_TEST_DATABASE_URL:-}" ]]; then
    services="$(mktemp -d "${TMPDIR:-/tmp}/switchyard-trace-store-services.XXXXXX")"
    # Prints `export VAR=...` lines for Postgres, Redis and etcd; only
    # Postgres is used.
    env_lines="$(SERVICES_LOG_PREFIX=trace_store.sh ./scripts/services.sh start "$services")"
    eval "$env_lines"
fi

"$target/release/switchyard-trace-store" "$@" &
bench_pid=$!
status=0
wait "$bench_pid" || status=$?
bench_pid=""
exit "$status"
