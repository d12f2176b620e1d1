#!/usr/bin/env bash
# Builds the routing-quality simulation in release mode and runs it: a seeded
# market of drifting targets with an outage, served by Switchyard's real
# scoring, breakers, local signals, probe schedule and fleet-health
# aggregation in virtual time, against an oracle and three baselines. Takes
# seconds once built.
#
#   ./bench/routing_sim.sh                      # print the report
#   ./bench/routing_sim.sh --write              # ... and put it into bench/README.md
#   ./bench/routing_sim.sh --seed 7 --more-seeds 0 --timeline
#
# Arguments go to switchyard-routing-sim (see --help).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"

cargo build --release -p switchyard-bench --bin switchyard-routing-sim
exec "$target/release/switchyard-routing-sim" "$@"
