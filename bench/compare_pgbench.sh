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

scripts/deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "${STEADYPG_JOBS:-2}" --target steadypg_cli >/dev/null
cli=$PWD/build/release/apps/steadypg/steadypg
pgbench=$(ls -d /usr/lib/postgresql/*/bin/pgbench 2>/dev/null | sort -V | tail -1)
[ -x "$pgbench" ] || pgbench=$(command -v pgbench)

dir=$(mktemp -d "${TMPDIR:-/tmp}/steadypg-compare-XXXXXX")
trap '"$cli" sandbox stop --dir "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
export DATABASE_URL=$("$cli" sandbox start --dir "$dir")
"$cli" bench --init --scale 10 >/dev/null

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

printf "%-8s %-14s %-14s %s\n" clients "pgbench tps" "steadypg ops/s" "ratio"
for n in $clients; do
  ours=()
  theirs=()
  for ((r = 1; r <= rounds; r++)); do
    t=$("$pgbench" -n -S -M prepared -c "$n" -j "$n" -T "$seconds" "$DATABASE_URL" 2>/dev/null |
        awk '/^tps = / {print $3}')
    o=$("$cli" --json bench --workload select --clients "$n" --seconds "$seconds" |
        sed -E 's/.*"ops_per_s":([0-9.]+).*/\1/')
    theirs+=("$t")
    ours+=("$o")
    echo "  N=$n round $r: pgbench $t, steadypg $o" >&2
  done
  mt=$(printf "%s\n" "${theirs[@]}" | median)
  mo=$(printf "%s\n" "${ours[@]}" | median)
  awk -v n="$n" -v t="$mt" -v o="$mo" 'BEGIN { printf "%-8s %-14.1f %-14.1f %.3f\n", n, t, o, o / t }'
done
