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

# compare_on_off LABEL OFF_CMD ON_CMD: runs the two commands alternately $rounds times (each
# prints ops/s) and prints the medians and the ratio on/off.
compare_on_off() {
  local label=$1 off_cmd=$2 on_cmd=$3 on=() off=() a b r
  for ((r = 1; r <= rounds; r++)); do
    a=$($off_cmd)
    b=$($on_cmd)
    off+=("$a")
    on+=("$b")
    echo "  round $r: off $a, on $b" >&2
  done
  local mon moff
  mon=$(printf "%s\n" "${on[@]}" | median)
  moff=$(printf "%s\n" "${off[@]}" | median)
  awk -v c="$clients" -v l="$label" -v on="$mon" -v off="$moff" \
    'BEGIN { printf "clients %s: %s off %.1f ops/s, on %.1f ops/s, ratio on/off %.3f\n", c, l, off, on, on / off }'
}
