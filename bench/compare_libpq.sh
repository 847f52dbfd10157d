#!/usr/bin/env bash
# steadypg::connection vs a raw libpq loop, same query, same server, alternating rounds.
# Usage: bench/compare_libpq.sh [seconds-per-round] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake --preset release -DSTEADYPG_BUILD_BENCH=ON >/dev/null
cmake --build --preset release -j "${STEADYPG_JOBS:-2}" --target steadypg_bench_connection_vs_libpq
build/release/bench/steadypg_bench_connection_vs_libpq "${1:-5}" "${2:-3}"
