#!/usr/bin/env bash
# The cost of metrics and info-level logging: `steadypg bench --workload select` with
# POSTGRESQL_METRICS_ENABLED=true/false, same server, alternating rounds; median ratio on/off.
# Usage: bench/compare_observability.sh [seconds=10] [rounds=3] [clients=4]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
rounds=${2:-3}
clients=${3:-4}
scripts/deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "${STEADYPG_JOBS:-2}" --target steadypg_cli >/dev/null
cli=$PWD/build/release/apps/steadypg/steadypg
dir=$(mktemp -d "${TMPDIR:-/tmp}/steadypg-observability-XXXXXX")
trap '"$cli" sandbox stop --dir "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
export DATABASE_URL=$("$cli" sandbox start --dir "$dir")
"$cli" bench --init --scale 10 >/dev/null
ops() { POSTGRESQL_METRICS_ENABLED=$1 "$cli" --json --log-level "$2" bench --workload select --clients "$clients" \
          --seconds "$seconds" | sed -E 's/.*"ops_per_s":([0-9.]+).*/\1/'; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
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
  'BEGIN { printf "clients %s: metrics off %.1f ops/s, on %.1f ops/s, ratio on/off %.3f\n", c, off, on, on / off }'
