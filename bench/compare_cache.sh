#!/usr/bin/env bash
# Cached point reads against uncached ones: `steadypg bench --workload select --keys 1000`
# without a cache, with the in-process cache, with Redis and with both (local+redis://) (a redis-server of this script's own
# on a free loopback port), same server, alternating rounds; prints the median ops/s of each and
# the ratios cached/uncached, with the cached runs' hit ratio.
# Usage: bench/compare_cache.sh [seconds=5] [rounds=3] [clients=4] [keys=1000]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
rounds=${2:-3}
clients=${3:-4}
keys=${4:-1000}
. bench/common.sh
start_sandbox

redis_dir=$(mktemp -d "${TMPDIR:-/tmp}/steadypg-bench-redis-XXXXXX")
redis_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
/usr/bin/redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
  --dir "$redis_dir" --logfile "$redis_dir/redis.log" &
redis_pid=$!
trap 'kill "$redis_pid" 2>/dev/null || true; wait "$redis_pid" 2>/dev/null || true; rm -rf "$redis_dir";
      "$cli" sandbox stop --dir "$sandbox_dir" >/dev/null 2>&1 || true; rm -rf "$sandbox_dir"' EXIT
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$redis_port") 2>/dev/null && break
  sleep 0.05
done
redis_url="redis://127.0.0.1:$redis_port/0"

run() { "$cli" --json bench --workload select --clients "$clients" --seconds "$seconds" --keys "$keys" "$@"; }
field() { sed -E "s/.*\"$1\":([0-9.]+).*/\1/"; }
measure() {
  local out
  if [[ $1 == none ]]; then
    run | field ops_per_s
  else
    case $1 in
      local) out=$(run --cache local) ;;
      redis) out=$(run --cache "$redis_url") ;;
      two) out=$(run --cache "local+$redis_url") ;;
    esac
    echo "$(field ops_per_s <<<"$out") $(field cache_hit_ratio <<<"$out")"
  fi
}
report() {
  [[ $2 == two ]] || return 0
  local a=${last_run[none]} b bh c ch
  read -r b bh <<<"${last_run[local]}"
  read -r c ch <<<"${last_run[redis]}"
  echo "  round $1: uncached $a, local $b (hit ratio $bh), redis $c (hit ratio $ch), local+redis $3 (hit ratio $4)" >&2
}
alternate_rounds measure report none local redis two
mn=$(side_medians none)
read -r ml hl <<<"$(side_medians local)"
read -r mr hr <<<"$(side_medians redis)"
read -r mt ht <<<"$(side_medians two)"
awk -v c="$clients" -v k="$keys" -v n="$mn" -v l="$ml" -v r="$mr" -v t="$mt" -v hl="$hl" -v hr="$hr" -v ht="$ht" 'BEGIN {
  printf "clients %s, %s hot keys: uncached %.1f ops/s, local %.1f ops/s (hit ratio %s), redis %.1f ops/s (hit ratio %s), local+redis %.1f ops/s (hit ratio %s)\n", c, k, n, l, hl, r, hr, t, ht
  printf "ratio local/uncached %.2f, redis/uncached %.2f, local+redis/uncached %.2f\n", l / n, r / n, t / n }'
