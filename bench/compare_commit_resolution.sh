#!/usr/bin/env bash
# The cost of resolvable commits: client::transaction(fn) (two statements and a commit on
# pgbench's schema) with resolution on and off, same server, alternating rounds; prints the
# median ratio on/off (docs/resilience.md#resolving-a-lost-commit).
# Usage: bench/compare_commit_resolution.sh [seconds=1] [rounds=21] [clients=4] [fast|durable]
# (durable: the embedded server syncs each commit to disk, as production servers do).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake --preset release -DSTEADYPG_BUILD_BENCH=ON >/dev/null
cmake --build --preset release -j "${STEADYPG_JOBS:-2}" --target steadypg_bench_commit_resolution >/dev/null
build/release/bench/steadypg_bench_commit_resolution "${1:-1}" "${2:-21}" "${3:-4}" "${4:-fast}"
