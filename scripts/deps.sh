#!/usr/bin/env bash
# Installs the Debian packages steadypg needs (DESIGN §2) that are missing.
# Idempotent and fast when nothing is missing.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libpq-dev postgresql postgresql-contrib postgresql-15-hypopg
  nlohmann-json3-dev libfmt-dev libcli11-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  clang-format clang-tidy
  prometheus
  patroni etcd-server etcd-client
  pgbouncer
  libcpp-httplib-dev chromium nodejs
  redis-server libhiredis-dev
)
# Debian's nodejs comes without npm (its own package); NodeSource's nodejs includes it.
command -v npm >/dev/null 2>&1 || packages+=(npm)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$status" = "installed" ] || missing+=("$p")
done

# The dashboard's browser test drives Debian's chromium with playwright-core from npm (the
# version pinned in tests/browser/package-lock.json; it never downloads a browser).
browser_modules() {
  local dir
  dir="$(cd "$(dirname "$0")/.." && pwd)/tests/browser"
  if [ ! -d "$dir/node_modules/playwright-core" ]; then
    echo "deps: npm ci in tests/browser" >&2
    (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
}

if [ ${#missing[@]} -eq 0 ]; then
  browser_modules
  exit 0
fi

echo "deps: installing ${missing[*]}" >&2
if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "deps: missing packages ${missing[*]}; run as root or install them first" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The Debian postgresql package starts a system cluster on port 5432, and pgbouncer a service on
# port 6432; steadypg never uses either (its tests start their own).
browser_modules
