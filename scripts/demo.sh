#!/usr/bin/env bash
# The main job: installs what is missing, builds (Release), starts an embedded throwaway
# PostgreSQL (unless DATABASE_URL is set), shows steadypg at work, and stops the server.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "${STEADYPG_JOBS:-2}" --target steadypg_cli
cli=build/release/apps/steadypg/steadypg

sandbox_dir=""
cleanup() {
  if [ -n "$sandbox_dir" ]; then
    "$cli" sandbox stop --dir "$sandbox_dir" >/dev/null || true
    rm -rf "$sandbox_dir"
  fi
}
trap cleanup EXIT

if [ -z "${DATABASE_URL:-}" ]; then
  sandbox_dir=$(mktemp -d "${TMPDIR:-/tmp}/steadypg-demo-XXXXXX")
  echo "== starting an embedded throwaway PostgreSQL in $sandbox_dir"
  DATABASE_URL=$("$cli" sandbox start --dir "$sandbox_dir")
  export DATABASE_URL
fi

echo "== steadypg ping"
"$cli" ping
echo "== steadypg exec (a parameterized query)"
"$cli" exec "SELECT n, n * n AS square, md5(n::text) AS hash FROM generate_series(1, \$1) AS n" -p 5
echo "== steadypg exec --json"
"$cli" exec --json "SELECT version() AS server, \$1::int + \$2::int AS sum" -p 40 -p 2
echo "== done"
