#!/usr/bin/env bash
# Fuzzes the data plane's parsers of outside bytes (provider streams, client
# requests) with cargo-fuzz (libFuzzer).
#
#   ./scripts/fuzz.sh                    every target for 20 s
#   ./scripts/fuzz.sh 300                every target for 5 minutes
#   ./scripts/fuzz.sh 5000runs           every target for 5,000 inputs
#   ./scripts/fuzz.sh 60 openai_stream   one target for a minute
#
# Targets (fuzz/fuzz_targets): sse_decoder, ndjson_decoder, openai_stream,
# anthropic_stream, ollama_stream, request_parser.  Installs cargo-fuzz if it
# is missing.
# The toolchain is stable; cargo-fuzz's sanitizer and coverage flags are
# nightly-only, so they are let through with RUSTC_BOOTSTRAP=1.
#
# Each target starts from the seeds in fuzz/corpus/<target> (checked in, never
# written to) and from what earlier runs found, kept in
# fuzz/target/corpus/<target>.  A failing input is saved under
# fuzz/artifacts/<target>/; replay it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <file>
# Exits non-zero if any target failed; every target is run regardless.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
all_targets=(sse_decoder ndjson_decoder openai_stream anthropic_stream ollama_stream request_parser)

log() { printf 'fuzz.sh: %s\n' "$*" >&2; }

budget=${1:-20}
shift || true
case $budget in
    *runs) limit=(-runs="${budget%runs}") ;;
    *s) limit=(-max_total_time="${budget%s}") ;;
    *) limit=(-max_total_time="$budget") ;;
esac
if [[ ! ${limit[0]#*=} =~ ^[0-9]+$ ]]; then
    log "usage: $0 [seconds | <n>runs] [target...]"
    exit 2
fi
targets=("$@")
((${#targets[@]})) || targets=("${all_targets[@]}")

if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

cd "$root"
export RUSTC_BOOTSTRAP=1
# The fuzz crate keeps its own target directory: its build flags differ from
# the workspace's, so sharing one would only evict each other's artefacts.
unset CARGO_TARGET_DIR

# One build for all targets: per target, cargo would relink each time.
log "building the fuzz targets"
build_start=$SECONDS
cargo fuzz build
log "built in $((SECONDS - build_start)) s"

failed=()
for target in "${targets[@]}"; do
    found=fuzz/target/corpus/$target
    mkdir -p "$found"
    # A target's own dictionary if it has one, else the stream formats'.
    dict=fuzz/dict/$target.dict
    [[ -f $dict ]] || dict=fuzz/dict/streams.dict
    log "running $target (${limit[*]})"
    start=$SECONDS
    # -timeout: one input taking this long is a hang.  -rss_limit_mb: a
    # parser that buffers without bound fails here rather than swapping.
    if cargo fuzz run "$target" "$found" "fuzz/corpus/$target" -- \
        "${limit[@]}" -max_len=8192 -timeout=10 -rss_limit_mb=1024 \
        -dict="$dict" -print_final_stats=1; then
        log "$target passed in $((SECONDS - start)) s"
    else
        log "$target FAILED; the input is under fuzz/artifacts/$target/"
        failed+=("$target")
    fi
done

if ((${#failed[@]})); then
    log "failed: ${failed[*]}"
    exit 1
fi
log "all passed: ${targets[*]}"
