#!/usr/bin/env bash
# The cost of the resilience pipeline: `steadypg bench --workload select` with and without it,
# same server, alternating rounds; prints the median ratio on/off.
# Usage: bench/compare_resilience.sh [seconds=10] [rounds=3] [clients=4]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
rounds=${2:-3}
clients=${3:-4}
. bench/common.sh
start_sandbox
ops() { ops_per_s --workload select --clients "$clients" --seconds "$seconds" "$@"; }
off_run() { ops --no-resilience; }
on_run() { ops; }
compare_on_off "resilience" off_run on_run
