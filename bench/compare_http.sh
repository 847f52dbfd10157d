#!/usr/bin/env bash
# The cost of the monitoring endpoint: `steadypg bench --workload select` with --http on (polled
# every second by 5 pollers doing what a dashboard page does, and scraped every second by a real
# Prometheus) against the same run without it; same server, alternating rounds; median ratio on/off.
# Usage: bench/compare_http.sh [seconds=10] [rounds=5] [clients=4]
# Ports: STEADYPG_BENCH_HTTP_PORT (19187) for the endpoint, STEADYPG_BENCH_PROM_PORT (19090).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
rounds=${2:-5}
clients=${3:-4}
http_port=${STEADYPG_BENCH_HTTP_PORT:-19187}
prom_port=${STEADYPG_BENCH_PROM_PORT:-19090}
. bench/common.sh

for p in "$http_port" "$prom_port"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "compare_http: port $p is in use; set STEADYPG_BENCH_HTTP_PORT / STEADYPG_BENCH_PROM_PORT" >&2
    exit 2
  fi
done

start_sandbox
prom_dir=$(mktemp -d "${TMPDIR:-/tmp}/steadypg-bench-prom-XXXXXX")
prom_pid=
cleanup() {
  [ -n "$prom_pid" ] && kill "$prom_pid" 2>/dev/null && wait "$prom_pid" 2>/dev/null || true
  rm -rf "$prom_dir"
  "$cli" sandbox stop --dir "$sandbox_dir" >/dev/null 2>&1 || true
  rm -rf "$sandbox_dir"
}
trap cleanup EXIT
cat >"$prom_dir/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: steadypg
    scrape_timeout: 900ms
    static_configs:
      - targets: ['127.0.0.1:$http_port']
YAML
/usr/bin/prometheus --config.file="$prom_dir/prometheus.yml" --storage.tsdb.path="$prom_dir/tsdb" \
  --web.listen-address="127.0.0.1:$prom_port" --log.level=error >"$prom_dir/log" 2>&1 &
prom_pid=$!

# One page: loads / once, then /api/snapshot every second (as the page's script does).
poller() {
  curl -s -o /dev/null "http://127.0.0.1:$http_port/" || true
  while true; do
    curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$http_port/api/snapshot" || true
    sleep 1
  done
}

bench_run() { ops_per_s --workload select --clients "$clients" --seconds "$seconds" "$@" 2>/dev/null; }
off_run() { bench_run; }
on_run() {
  local pids=() i out
  for ((i = 0; i < 5; i++)); do
    poller &
    pids+=($!)
  done
  out=$("$cli" --json --http "127.0.0.1:$http_port" bench --workload select --clients "$clients" \
    --seconds "$seconds" 2>/dev/null | sed -E 's/.*"ops_per_s":([0-9.]+).*/\1/')
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  echo "$out"
}
compare_on_off "http endpoint (5 pollers at 1/s + Prometheus at 1 s)" off_run on_run
# The scrapes did happen: Prometheus's own count of samples scraped from the endpoint.
curl -s "http://127.0.0.1:$prom_port/api/v1/query?query=count_over_time(up%7Bjob%3D%22steadypg%22%7D%5B1h%5D)" |
  sed -E 's/.*"value":\[[^,]*,"([0-9.]+)".*/scrapes attempted by Prometheus: \1/' >&2
curl -s "http://127.0.0.1:$prom_port/api/v1/query?query=sum_over_time(up%7Bjob%3D%22steadypg%22%7D%5B1h%5D)" |
  sed -E 's/.*"value":\[[^,]*,"([0-9.]+)".*/scrapes that succeeded (runs with the endpoint on): \1/' >&2
