#!/usr/bin/env bash
# steadypg bench vs pgbench on the same embedded server, same schema (scale 10), same query:
# `pgbench -S -M prepared -c N -j N` vs `steadypg bench --workload select --clients N`.
# For each N, ROUNDS alternating rounds of SECONDS each; prints the median ratio steadypg/pgbench.
# Usage: bench/compare_pgbench.sh [seconds=10] [rounds=3] [clients="1 4 8"]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
rounds=${2:-3}
clients=${3:-"1 4 8"}

pgbench=$(ls -d /usr/lib/postgresql/*/bin/pgbench 2>/dev/null | sort -V | tail -1)
[ -x "$pgbench" ] || pgbench=$(command -v pgbench)
. bench/common.sh
start_sandbox


printf "%-8s %-14s %-14s %s\n" clients "pgbench tps" "steadypg ops/s" "ratio"
for n in $clients; do
  ours=()
  theirs=()
  for ((r = 1; r <= rounds; r++)); do
    t=$("$pgbench" -n -S -M prepared -c "$n" -j "$n" -T "$seconds" "$DATABASE_URL" 2>/dev/null |
        awk '/^tps = / {print $3}')
    o=$(ops_per_s --workload select --clients "$n" --seconds "$seconds")
    theirs+=("$t")
    ours+=("$o")
    echo "  N=$n round $r: pgbench $t, steadypg $o" >&2
  done
  mt=$(printf "%s\n" "${theirs[@]}" | median)
  mo=$(printf "%s\n" "${ours[@]}" | median)
  awk -v n="$n" -v t="$mt" -v o="$mo" 'BEGIN { printf "%-8s %-14.1f %-14.1f %.3f\n", n, t, o, o / t }'
done
