#!/usr/bin/env bash
# COPY out on the same embedded server, same run, alternated: `steadypg copy TABLE --to FILE`
# against `psql -c "\copy TABLE to FILE"` of the same table (pgbench_accounts at scale 10,
# 1,000,000 rows), whole process, wall clock. Prints the median of ROUNDS runs per tool and
# the throughput ratio steadypg/psql (target ≥ 0.95), and checks both files are identical.
# Usage: bench/compare_copy_out.sh [rounds=3] [format=text|csv]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
format=${2:-text}
. bench/common.sh
start_sandbox

work=$(mktemp -d "${TMPDIR:-/tmp}/steadypg-copy-out-bench-XXXXXX")
trap '"$cli" sandbox stop --dir "$sandbox_dir" >/dev/null 2>&1 || true; rm -rf "$sandbox_dir" "$work"' EXIT
table=pgbench_accounts
rows=$("$cli" exec "SELECT count(*) FROM $table" | tail -n 1)

now() { date +%s.%N; }
# out_ms TOOL: wall-clock milliseconds of one whole export with `steadypg copy` or `psql \copy`.
out_ms() {
  local t0 t1 file=$work/$1.out
  rm -f "$file"
  t0=$(now)
  if [ "$1" = steadypg ]; then
    "$cli" copy "$table" --to "$file" --format "$format" >/dev/null
  else
    psql -q -X "$DATABASE_URL" -c "\\copy $table TO '$file' WITH (FORMAT $format)" >/dev/null
  fi
  t1=$(now)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", (b - a) * 1000 }'
}

s_runs=() q_runs=()
for ((r = 1; r <= rounds; r++)); do
  s=$(out_ms steadypg)
  q=$(out_ms psql)
  s_runs+=("$s")
  q_runs+=("$q")
  echo "  round $r: steadypg ${s} ms, psql ${q} ms" >&2
done
cmp -s "$work/steadypg.out" "$work/psql.out" || { echo "the two exports differ" >&2; exit 1; }
size=$(stat -c %s "$work/steadypg.out")

s=$(printf "%s\n" "${s_runs[@]}" | median)
q=$(printf "%s\n" "${q_runs[@]}" | median)
printf "%s: %s rows, %.1f MiB (%s), median of %s rounds\n" "$table" "$rows" "$(awk -v b="$size" 'BEGIN { print b / 1048576 }')" \
  "$format" "$rounds"
printf "%-24s %12s %14s\n" tool "ms" "rows/s"
awk -v m="$s" -v n="$rows" 'BEGIN { printf "%-24s %12.1f %14.0f\n", "steadypg copy --to", m, n / m * 1000 }'
awk -v m="$q" -v n="$rows" 'BEGIN { printf "%-24s %12.1f %14.0f\n", "psql \\copy to", m, n / m * 1000 }'
awk -v s="$s" -v q="$q" 'BEGIN { printf "steadypg copy --to / psql \\copy to (throughput): %.3f\n", q / s }'
