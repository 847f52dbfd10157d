#!/usr/bin/env bash
# The main job: installs what is missing, builds (Release) and runs `steadypg demo`, which
# starts an embedded throwaway PostgreSQL (unless DATABASE_URL is set), shows the pool, a
# batch, an outage with retries and the circuit breaker, a slow query, health, info and
# metrics, then stops and removes the server. Extra arguments go to the demo (--json).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "${STEADYPG_JOBS:-2}" --target steadypg_cli
exec build/release/apps/steadypg/steadypg demo "$@"
