#!/usr/bin/env bash
# Builds the control plane, the data plane and the failover benchmark in
# release mode, then times how long three control-plane replicas take to
# fail over when their leader is killed (SIGKILL) or stopped (SIGTERM), as
# seen by a snapshot subscriber on every replica, a real data plane under
# a steady client load and the cluster status, and checks that every
# request served during it all has exactly one trace row.
#
#   ./bench/failover.sh                  # print the results
#   ./bench/failover.sh --write          # ... and put them into bench/README.md
#   ./bench/failover.sh --runs 3 --modes kill
#
# Arguments go to switchyard-failover (see --help). The benchmark starts an
# etcd of its own and a fresh database on the Postgres server named by
# SWITCHYARD_TEST_DATABASE_URL; when that is not set, this script starts a
# throwaway one with scripts/services.sh and stops it at the end. The
# benchmark stops everything it started itself; this script stops the
# benchmark if it is interrupted.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"

cargo build --release -p switchyard-control-plane -p switchyard-data-plane -p switchyard-bench \
    --bin switchyard-control-plane --bin switchyard-data-plane --bin switchyard-failover

services=""
bench_pid=""
stop_all() {
    if [[ -n "$bench_pid" ]] && kill -0 "$bench_pid" 2>/dev/null; then
        # The benchmark stops its processes and drops its database on SIGTERM.
        kill -TERM "$bench_pid" 2>/dev/null || true
        wait "$bench_pid" 2>/dev/null || true
    fi
    bench_pid=""
    if [[ -n "$services" ]]; then
        SERVICES_LOG_PREFIX=failover.sh ./scripts/services.sh stop "$services" ||
            echo "failover.sh: warning: could not stop every service in $services" >&2
        rm -rf "$services"
        services=""
    fi
}
trap stop_all EXIT
trap 'stop_all; exit 130' INT TERM

if [[ -z "${SWITCHYARD_TEST_DATABASE_URL:-}" ]]; then
    services="$(mktemp -d "${TMPDIR:-/tmp}/switchyard-failover-services.XXXXXX")"
    # Prints `export VAR=...` lines for Postgres, Redis and etcd; only
    # Postgres is used (the benchmark runs an etcd of its own).
    env_lines="$(SERVICES_LOG_PREFIX=failover.sh ./scripts/services.sh start "$services")"
    eval "$env_lines"
fi

"$target/release/switchyard-failover" \
    --control-plane "$target/release/switchyard-control-plane" \
    --data-plane "$target/release/switchyard-data-plane" \
    "$@" &
bench_pid=$!
status=0
wait "$bench_pid" || status=$?
bench_pid=""
exit "$status"
