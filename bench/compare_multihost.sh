#!/usr/bin/env bash
# The per-call cost of routing: a point SELECT on the primary through a single-host client and
# through a client given the primary and a streaming standby (prober running, every call routed),
# same servers, alternating rounds; prints the median ratio multi/single (docs/cluster.md).
# Usage: bench/compare_multihost.sh [seconds=1] [rounds=15] [clients=4]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake --preset release -DSTEADYPG_BUILD_BENCH=ON >/dev/null
cmake --build --preset release -j "${STEADYPG_JOBS:-2}" --target steadypg_bench_multihost >/dev/null
build/release/bench/steadypg_bench_multihost "${1:-1}" "${2:-15}" "${3:-4}"
