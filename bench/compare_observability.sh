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
on=()
off=()
for ((r = 1; r <= rounds; r++)); do
  a=$(ops false error)
  b=$(ops true info)
  off+=("$a")
  on+=("$b")
  echo "  round $r: off $a, on $b" >&2
done
mon=$(printf "%s\n" "${on[@]}" | median)
moff=$(printf "%s\n" "${off[@]}" | median)
awk -v c="$clients" -v on="$mon" -v off="$moff" \
  'BEGIN { printf "clients %s: metrics+logging off %.1f ops/s, on %.1f ops/s, ratio on/off %.3f\n", c, off, on, on / off }'
