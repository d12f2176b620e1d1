#!/usr/bin/env bash
# Builds the rate-limiter benchmark in release mode, then times what the data
# plane's rate limiter adds to a request against Redis on loopback: one
# admission (four limits, one script call) and its settlement, from one
# caller and from 8 at once, and for comparison with Redis unreachable and
# with no Redis at all.
#
#   ./bench/limits.sh                  # print the results
#   ./bench/limits.sh --write          # ... and put them into bench/README.md
#   ./bench/limits.sh --calls 50000 --concurrency 16
#
# Arguments go to switchyard-limits (see --help). It uses the Redis named by
# SWITCHYARD_TEST_REDIS_URL; when that is not set, this script starts a
# throwaway redis-server on a free loopback port (no persistence) and stops
# it at the end, also on Ctrl-C.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"

cargo build --release -p switchyard-bench --bin switchyard-limits

redis_pid=""
redis_dir=""
bench_pid=""
# shellcheck disable=SC2317  # invoked from a trap
stop_all() {
    if [[ -n "$bench_pid" ]] && kill -0 "$bench_pid" 2>/dev/null; then
        kill -TERM "$bench_pid" 2>/dev/null || true
        wait "$bench_pid" 2>/dev/null || true
    fi
    bench_pid=""
    if [[ -n "$redis_pid" ]]; then
        kill -TERM "$redis_pid" 2>/dev/null || true
        wait "$redis_pid" 2>/dev/null || true
        redis_pid=""
    fi
    if [[ -n "$redis_dir" ]]; then
        rm -rf "$redis_dir"
        redis_dir=""
    fi
}
trap stop_all EXIT
trap 'stop_all; exit 130' INT TERM

if [[ -z "${SWITCHYARD_TEST_REDIS_URL:-}" ]]; then
    command -v redis-server >/dev/null || {
        echo "limits.sh: redis-server is not installed (apt-get install redis-server)" >&2
        exit 1
    }
    redis_dir="$(mktemp -d "${TMPDIR:-/tmp}/switchyard-limits-redis.XXXXXX")"
    if command -v python3 >/dev/null; then
        port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    else
        port=$((20000 + RANDOM % 20000))
    fi
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$redis_dir" >"$redis_dir/redis.log" 2>&1 &
    redis_pid=$!
    for _ in $(seq 100); do
        [[ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" == PONG ]] && break
        sleep 0.1
    done
    [[ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" == PONG ]] || {
        echo "limits.sh: redis-server did not start; its log:" >&2
        cat "$redis_dir/redis.log" >&2
        exit 1
    }
    export SWITCHYARD_TEST_REDIS_URL="redis://127.0.0.1:$port"
fi

"$target/release/switchyard-limits" "$@" &
bench_pid=$!
status=0
wait "$bench_pid" || status=$?
bench_pid=""
exit "$status"
