# Shared by the bench/compare_*.sh scripts (sourced, not run).
# start_sandbox: deps + Release CLI + a throwaway server with pgbench's schema at scale 10;
# sets $cli and DATABASE_URL and stops the server on exit.
start_sandbox() {
  scripts/deps.sh
  cmake --preset release >/dev/null
  cmake --build --preset release -j "${STEADYPG_JOBS:-2}" --target steadypg_cli >/dev/null
  cli=$PWD/build/release/apps/steadypg/steadypg
  sandbox_dir=$(mktemp -d "${TMPDIR:-/tmp}/steadypg-bench-XXXXXX")
  trap '"$cli" sandbox stop --dir "$sandbox_dir" >/dev/null 2>&1 || true; rm -rf "$sandbox_dir"' EXIT
  DATABASE_URL=$("$cli" sandbox start --dir "$sandbox_dir")
  export DATABASE_URL
  bench_scale=10
  "$cli" bench --init --scale "$bench_scale" >/dev/null
}

# median: the median of the numbers on stdin.
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# ops_per_s ARGS…: ops_per_s of one `steadypg --json bench …` run.
ops_per_s() { "$cli" --json bench "$@" | sed -E 's/.*"ops_per_s":([0-9.]+).*/\1/'; }

# alternate_rounds MEASURE REPORT SIDE…: $rounds rounds; in each, for every SIDE in order,
# `MEASURE SIDE` prints the run's figures on one line (separated by spaces) and
# `REPORT ROUND SIDE FIGURE…` reports them. ${last_run[SIDE]} holds SIDE's latest figures (a
# REPORT may use the other sides' of the same round); side_medians SIDE, afterwards, the
# median of each figure over SIDE's runs.
declare -A last_run runs_of
alternate_rounds() {
  local measure=$1 report=$2 r side line figures
  shift 2
  last_run=() runs_of=()
  for ((r = 1; r <= rounds; r++)); do
    for side in "$@"; do
      line=$("$measure" "$side")
      last_run[$side]=$line
      runs_of[$side]+="$line"$'\n'
      read -ra figures <<<"$line"
      "$report" "$r" "$side" "${figures[@]}"
    done
  done
}

# side_medians SIDE: the median of each figure of SIDE's runs in the last alternate_rounds,
# separated by spaces.
side_medians() {
  local n i out=()
  n=$(head -n 1 <<<"${runs_of[$1]}" | wc -w)
  for ((i = 1; i <= n; i++)); do
    out+=("$(awk -v i="$i" 'NF { print $i }' <<<"${runs_of[$1]}" | median)")
  done
  echo "${out[*]}"
}

# compare_on_off LABEL OFF_CMD ON_CMD: runs the two commands alternately $rounds times (each
# prints ops/s) and prints the medians and the ratio on/off.
on_off_measure() { if [[ $1 == off ]]; then $off_cmd; else $on_cmd; fi; }
on_off_report() { if [[ $2 == on ]]; then echo "  round $1: off ${last_run[off]}, on $3" >&2; fi; }
compare_on_off() {
  local label=$1 off_cmd=$2 on_cmd=$3 mon moff
  alternate_rounds on_off_measure on_off_report off on
  mon=$(side_medians on)
  moff=$(side_medians off)
  awk -v c="$clients" -v l="$label" -v on="$mon" -v off="$moff" \
    'BEGIN { printf "clients %s: %s off %.1f ops/s, on %.1f ops/s, ratio on/off %.3f\n", c, l, off, on, on / off }'
}
