#!/usr/bin/env bash
# steadypg bench vs pgbench on the same embedded server, same schema (scale 10), same query:
# `pgbench -S -M prepared -c N -j N` vs `steadypg bench --workload select --clients N`, and the
# pipelined case: a pgbench script of DEPTH selects between \startpipeline and \endpipeline vs
# `steadypg bench --workload pipeline --depth DEPTH` (both counted in statements per second).
# For each N, ROUNDS alternating rounds of SECONDS each; prints the median ratio steadypg/pgbench.
# Usage: bench/compare_pgbench.sh [seconds=10] [rounds=3] [clients="1 4 8"] [depth=16]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
rounds=${2:-3}
clients=${3:-"1 4 8"}
depth=${4:-16}

pgbench=$(ls -d /usr/lib/postgresql/*/bin/pgbench 2>/dev/null | sort -V | tail -1)
[ -x "$pgbench" ] || pgbench=$(command -v pgbench)
. bench/common.sh
start_sandbox


pipeline_script=$sandbox_dir/pipeline.sql
{
  # A random aid per statement over every account, as steadypg bench draws them (pgbench sets
  # :scale to 1 for a custom script, so the range is written out).
  for ((i = 0; i < depth; i++)); do echo "\\set aid$i random(1, $((100000 * bench_scale)))"; done
  echo '\startpipeline'
  for ((i = 0; i < depth; i++)); do echo "SELECT abalance FROM pgbench_accounts WHERE aid = :aid$i;"; done
  echo '\endpipeline'
} >"$pipeline_script"

printf "%-10s %-8s %-16s %-16s %s\n" workload clients "pgbench stmts/s" "steadypg ops/s" "ratio"
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
  awk -v n="$n" -v t="$mt" -v o="$mo" 'BEGIN { printf "%-10s %-8s %-16.1f %-16.1f %.3f\n", "select", n, t, o, o / t }'

  ours=()
  theirs=()
  for ((r = 1; r <= rounds; r++)); do
    t=$("$pgbench" -n -M prepared -f "$pipeline_script" -c "$n" -j "$n" -T "$seconds" "$DATABASE_URL" 2>/dev/null |
        awk -v d="$depth" '/^tps = / {print $3 * d}')
    o=$(ops_per_s --workload pipeline --depth "$depth" --clients "$n" --seconds "$seconds")
    theirs+=("$t")
    ours+=("$o")
    echo "  pipeline N=$n round $r: pgbench $t, steadypg $o" >&2
  done
  mt=$(printf "%s\n" "${theirs[@]}" | median)
  mo=$(printf "%s\n" "${ours[@]}" | median)
  awk -v n="$n" -v t="$mt" -v o="$mo" 'BEGIN { printf "%-10s %-8s %-16.1f %-16.1f %.3f\n", "pipeline", n, t, o, o / t }'
done
