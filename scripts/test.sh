#!/usr/bin/env bash
# The project's test command.
#
# Starts throwaway PostgreSQL, Redis and etcd instances (scripts/services.sh),
# builds the workspace binaries that the end-to-end tests spawn, then runs the
# whole suite with cargo-nextest if it is installed, else with cargo test.
# Extra arguments go to the test runner:
#   ./scripts/test.sh                       everything
#   ./scripts/test.sh -E 'test(e2e)'        a nextest filter
#   ./scripts/test.sh -p switchyard-cli     one package (either runner)
# Before the build it tests the Helm chart (scripts/chart_test.py).
# With SWITCHYARD_FUZZ=1 it then runs every fuzz target of the stream parsers
# briefly (scripts/fuzz.sh, SWITCHYARD_FUZZ_BUDGET seconds each, default 10).
# Off by default: the instrumented build of the fuzz crate takes about 12
# minutes from cold on two shared cores (a minute or two after a change to
# the data plane); the run itself takes about a minute.
# Exits with the test runner's status, else the chart test's, else the fuzzing's.
# Whatever it started is stopped, and its temporary directory removed, on
# success, failure or Ctrl-C.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
export SERVICES_LOG_PREFIX=test.sh

log() { printf 'test.sh: %s\n' "$*" >&2; }

workdir=
job=

# shellcheck disable=SC2317  # invoked from a trap
cleanup() {
    local status=$?
    trap - EXIT INT TERM HUP
    if [[ -n $workdir ]]; then
        "$here/services.sh" stop "$workdir" || log "warning: could not stop all services in $workdir"
        rm -rf "$workdir"
    fi
    exit "$status"
}

# The build and the test run are each a job in a process group of its own
# (set -m), so a signal to this script can be passed on to the whole job,
# cargo and the test processes under it, rather than waiting for the job to
# finish on its own as it would for a foreground command.
# shellcheck disable=SC2317  # invoked from a trap
on_signal() {
    local sig=$1 code=$2
    trap - INT TERM HUP
    if [[ -n $job ]]; then
        log "caught SIG$sig, stopping the running job"
        kill -s "$sig" -- "-$job" 2>/dev/null || true
        local deadline=$((SECONDS + 30))
        while kill -0 "$job" 2>/dev/null; do
            if ((SECONDS >= deadline)); then
                log "job still running after 30s, killing it"
                kill -s KILL -- "-$job" 2>/dev/null || true
                break
            fi
            sleep 0.2
        done
        wait "$job" 2>/dev/null || true
        # Anything of the job's left behind (a test process that ignored the
        # signal) is still in its process group.
        kill -s TERM -- "-$job" 2>/dev/null || true
    fi
    exit "$code"
}

trap cleanup EXIT
trap 'on_signal INT 130' INT
trap 'on_signal TERM 143' TERM
trap 'on_signal HUP 129' HUP

# Runs "$@" as that job and returns its status.  Its stdin is /dev/null: a job
# outside the terminal's foreground group that touched the terminal would be
# stopped by the kernel.
run_job() {
    local status=0
    set -m
    "$@" </dev/null &
    job=$!
    set +m
    wait "$job" || status=$?
    job=
    return "$status"
}

workdir=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-test.XXXXXX")
env_lines=$("$here/services.sh" start "$workdir")
eval "$env_lines"
log "SWITCHYARD_TEST_DATABASE_URL=$SWITCHYARD_TEST_DATABASE_URL"
log "SWITCHYARD_TEST_REDIS_URL=$SWITCHYARD_TEST_REDIS_URL"
log "SWITCHYARD_TEST_ETCD_ENDPOINTS=$SWITCHYARD_TEST_ETCD_ENDPOINTS"
eval "$("$here/services.sh" clients "$workdir")"

cd "$root"

# --- Helm chart: rendered with Helm's SDK, validated against the Kubernetes
# schemas (scripts/chart_test.py). A failure fails the run once the Rust tests
# have run too.
chart_status=0
log "testing the Helm chart (scripts/chart_test.py)"
run_job "$SWITCHYARD_TEST_PYTHON" "$here/chart_test.py" || chart_status=$?
log "chart test exited with status $chart_status"
# --- end of the Helm chart step

# cargo honours a caller's CARGO_TARGET_DIR by itself; nothing here sets it.
if [[ -n ${CARGO_TARGET_DIR:-} ]]; then
    log "using CARGO_TARGET_DIR=$CARGO_TARGET_DIR"
fi

log "building workspace binaries"
status=0
run_job cargo build --workspace --bins || status=$?
if ((status != 0)); then
    log "build failed (status $status)"
    exit "$status"
fi

if cargo nextest --version >/dev/null 2>&1; then
    runner=(cargo nextest run --workspace --no-fail-fast)
else
    log "cargo-nextest not found, using cargo test"
    runner=(cargo test --workspace --no-fail-fast)
fi
log "running: ${runner[*]} $*"
run_job "${runner[@]}" "$@" || status=$?
log "test runner exited with status $status"
((status != 0)) || status=$chart_status

if [[ ${SWITCHYARD_FUZZ:-} == 1 ]]; then
    fuzz_status=0
    log "fuzzing the stream parsers (scripts/fuzz.sh ${SWITCHYARD_FUZZ_BUDGET:-10})"
    run_job "$here/fuzz.sh" "${SWITCHYARD_FUZZ_BUDGET:-10}" || fuzz_status=$?
    log "fuzzing exited with status $fuzz_status"
    ((status != 0)) || status=$fuzz_status
fi
exit "$status"
