#!/usr/bin/env bash
# Autoscaling against a fixed pool: `steadypg bench --ramp` (clients step up to N and back
# down) with --pool-mode adaptive and with --pool-mode fixed sized at N (max = min = N), same
# server, alternating rounds. Prints each round's p99 and final connection count, then the
# medians and the p99 ratio adaptive/fixed.
# Usage: bench/compare_autoscale.sh [seconds=20] [rounds=3] [clients=32]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
rounds=${2:-3}
clients=${3:-32}
. bench/common.sh
start_sandbox
field() { sed -E "s/.*\"$1\":([0-9.]+).*/\\1/"; }
run() {
  local out
  out=$("$cli" --json bench --workload select --ramp --clients "$clients" --seconds "$seconds" --pool-mode "$1" || true)
  echo "$(echo "$out" | field p99_ms) $(echo "$out" | field pool_size_final) $(echo "$out" | field errors)"
}
report() { echo "  round $1: $(printf '%-8s' "$2") p99 $3 ms, final connections $4, errors $5" >&2; }
alternate_rounds run report fixed adaptive
read -r mfp mfc _ <<<"$(side_medians fixed)"
read -r map mac _ <<<"$(side_medians adaptive)"
awk -v n="$clients" -v s="$seconds" -v fp="$mfp" -v fc="$mfc" -v ap="$map" -v ac="$mac" \
  'BEGIN { printf "ramp to %s clients, %s s: fixed p99 %.3f ms (%s connections at the end), adaptive p99 %.3f ms (%s connections at the end), p99 ratio adaptive/fixed %.3f\n", n, s, fp, fc, ap, ac, ap / fp }'
