#!/usr/bin/env bash
# Runs a test binary as an ordinary user: as root, via the unprivileged `postgres` account;
# otherwise as the current user. Exits 77 (skipped) when the binary is not reachable by that
# account (a build directory under a private home, say).
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
  exec "$@"
fi
if ! id postgres >/dev/null 2>&1; then
  echo "no postgres account to run as; skipping" >&2
  exit 77
fi
if ! runuser -u postgres -- test -x "$1"; then
  echo "$1 is not reachable by the postgres account; skipping" >&2
  exit 77
fi
exec runuser -u postgres -- env TMPDIR=/tmp "$@"
