#!/usr/bin/env bash
# Batch modes and COPY on the same embedded server, same run, alternated:
#   100,000 single-row INSERTs with `steadypg batch --sql … --csv …` in independent, pipeline
#   and transaction mode at concurrency 1 and 4, and the same file with `steadypg copy`;
#   `steadypg copy` against `psql \copy` of the same file (whole process, wall clock).
# Prints the median of ROUNDS runs per case and the ratios (targets: pipeline ≥ 5× independent,
# steadypg copy ≥ 0.95× psql \copy).
# Usage: bench/compare_batch.sh [rows=100000] [rounds=3] [batch_size=100]
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-100000}
rounds=${2:-3}
batch_size=${3:-100}
. bench/common.sh
start_sandbox

work=$(mktemp -d "${TMPDIR:-/tmp}/steadypg-batch-bench-XXXXXX")
trap '"$cli" sandbox stop --dir "$sandbox_dir" >/dev/null 2>&1 || true; rm -rf "$sandbox_dir" "$work"' EXIT
csv=$work/rows.csv
awk -v n="$rows" 'BEGIN { for (i = 1; i <= n; i++) printf "%d,\"row %d, with a comma\",%d\n", i, i, i * 7 }' >"$csv"
"$cli" exec "DROP TABLE IF EXISTS bench_batch" >/dev/null
"$cli" exec "CREATE TABLE bench_batch (id int PRIMARY KEY, v text, n int)" >/dev/null
sql='INSERT INTO bench_batch (id, v, n) VALUES ($1, $2, $3)'

now() { date +%s.%N; }
# batch_ms MODE CONCURRENCY: execution time of one batch, from its JSON report.
batch_ms() {
  "$cli" exec "TRUNCATE bench_batch" >/dev/null
  local out
  out=$("$cli" --json batch --sql "$sql" --csv "$csv" --mode "$1" --concurrency "$2" --batch-size "$batch_size" \
          --timeout-ms 3600000)
  echo "$out" | grep -q '"failed":0,' || { echo "batch failed: ${out:0:300}" >&2; exit 1; }
  echo "$out" | sed -E 's/.*"duration_ms":([0-9.]+).*/\1/'
}
# copy_ms TOOL: wall-clock milliseconds of one whole load with `steadypg copy` or `psql \copy`.
copy_ms() {
  "$cli" exec "TRUNCATE bench_batch" >/dev/null
  local t0 t1
  t0=$(now)
  if [ "$1" = steadypg ]; then
    "$cli" copy bench_batch --file "$csv" --format csv >/dev/null
  else
    psql -q -X "$DATABASE_URL" -c "\\copy bench_batch FROM '$csv' WITH (FORMAT csv)" >/dev/null
  fi
  t1=$(now)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", (b - a) * 1000 }'
}

declare -A results
for ((r = 1; r <= rounds; r++)); do
  for c in 1 4; do
    for mode in independent pipeline transaction; do
      ms=$(batch_ms "$mode" "$c")
      results[$mode.$c]+="$ms "
      echo "  round $r: $mode c=$c ${ms} ms" >&2
    done
  done
  for tool in steadypg psql; do
    ms=$(copy_ms "$tool")
    results[copy.$tool]+="$ms "
    echo "  round $r: copy via $tool ${ms} ms" >&2
  done
done

med() { printf "%s\n" $1 | median; }
printf "%s rows, batch size %s, median of %s rounds\n" "$rows" "$batch_size" "$rounds"
printf "%-28s %12s %14s\n" case "ms" "rows/s"
for c in 1 4; do
  for mode in independent pipeline transaction; do
    m=$(med "${results[$mode.$c]}")
    awk -v l="$mode, concurrency $c" -v m="$m" -v n="$rows" 'BEGIN { printf "%-28s %12.1f %14.0f\n", l, m, n / m * 1000 }'
  done
done
for tool in steadypg psql; do
  m=$(med "${results[copy.$tool]}")
  awk -v l="copy via $tool" -v m="$m" -v n="$rows" 'BEGIN { printf "%-28s %12.1f %14.0f\n", l, m, n / m * 1000 }'
done
for c in 1 4; do
  i=$(med "${results[independent.$c]}")
  p=$(med "${results[pipeline.$c]}")
  awk -v c="$c" -v i="$i" -v p="$p" 'BEGIN { printf "pipeline / independent, concurrency %s: %.2fx\n", c, i / p }'
done
s=$(med "${results[copy.steadypg]}")
q=$(med "${results[copy.psql]}")
awk -v s="$s" -v q="$q" 'BEGIN { printf "steadypg copy / psql \\copy (throughput): %.3f\n", q / s }'
