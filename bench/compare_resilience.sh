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
on=()
off=()
for ((r = 1; r <= rounds; r++)); do
  a=$(ops --no-resilience)
  b=$(ops)
  off+=("$a")
  on+=("$b")
  echo "  round $r: off $a, on $b" >&2
done
mon=$(printf "%s\n" "${on[@]}" | median)
moff=$(printf "%s\n" "${off[@]}" | median)
awk -v c="$clients" -v on="$mon" -v off="$moff" \
  'BEGIN { printf "clients %s: resilience off %.1f ops/s, on %.1f ops/s, ratio on/off %.3f\n", c, off, on, on / off }'
