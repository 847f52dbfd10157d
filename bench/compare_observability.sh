#!/usr/bin/env bash
# The cost of metrics and info-level logging: `steadypg bench --workload select` with
# POSTGRESQL_METRICS_ENABLED=true/false, same server, alternating rounds; median ratio on/off.
# Usage: bench/compare_observability.sh [seconds=10] [rounds=3] [clients=4]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
rounds=${2:-3}
clients=${3:-4}
. bench/common.sh
start_sandbox
ops() { POSTGRESQL_METRICS_ENABLED=$1 ops_per_s --workload select --clients "$clients" --seconds "$seconds" \
          --log-level "$2" 2>/dev/null; }
off_run() { ops false error; }
on_run() { ops true info; }
compare_on_off "metrics+logging" off_run on_run
