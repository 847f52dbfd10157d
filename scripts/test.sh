#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test (unit, integration, fault, package),
# checks the house style (scripts/check_style.sh: clang-format, clang-tidy naming), then runs
# the same tests again under AddressSanitizer + UndefinedBehaviorSanitizer.
# Each test binary starts the PostgreSQL server it needs on loopback and stops it; the
# multi-host suites (ctest label "cluster": streaming standbys, Patroni on etcd) run once, in
# the debug pass.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh

jobs=${STEADYPG_JOBS:-2}

echo "== debug build and tests"
cmake --preset debug >/dev/null
cmake --build --preset debug -j "$jobs"
ctest --preset debug -j "$jobs"

echo "== style: clang-format and clang-tidy naming (STEADYPG_STYLE_SKIP=format,tidy leaves them out)"
scripts/check_style.sh build/debug

if [ "${STEADYPG_SKIP_SANITIZERS:-0}" != "1" ]; then
  echo "== asan-ubsan build and tests"
  cmake --preset asan-ubsan -DSTEADYPG_PACKAGE_TESTS=OFF >/dev/null
  cmake --build --preset asan-ubsan -j "$jobs"
  # The multi-host suites (label cluster: replica sets, Patroni), the PgBouncer suite (label
  # pooler), the monitoring suites with a real Prometheus and Chromium (label monitor) and the
  # autoscaling suite (label autoscale, about 90 s of real time) run in the debug pass only.
  ctest --preset asan-ubsan -j "$jobs" -LE 'cluster|pooler|monitor|autoscale'
fi
if [ "${STEADYPG_SKIP_SANITIZERS:-0}" != "1" ]; then
  echo "== tsan: the pool, client, breaker, budget and batch executor under ThreadSanitizer"
  cmake --preset tsan -DSTEADYPG_PACKAGE_TESTS=OFF >/dev/null
  cmake --build --preset tsan -j "$jobs" --target steadypg_unit_tests steadypg_pool_tests steadypg_batch_tests \
    steadypg_topology_tests steadypg_replica_routing_tests
  ctest --preset tsan -j "$jobs" -R 'pool|circuit_breaker|retry_budget|batch|topology|replica_routing'
fi
echo "== all tests passed"
