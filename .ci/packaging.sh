#!/usr/bin/env bash
# Packaging checks: the compose file (statically, then its start-up sequence natively on the local
# Postgres) and the browser example (Chromium end-to-end, CORS allowed and not allowed).
# Run from anywhere; builds the debug binary unless PV_BIN points at one.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${PV_BIN:-}" ]; then
    cargo build --quiet
    PV_BIN=target/debug/phone-verify
fi
export PV_BIN

echo "=== packaging: docker-compose.yml (no engine: static checks + native start-up sequence)"
bash .ci/compose-check.sh
echo "=== packaging: browser example (examples/web) end to end"
bash .ci/browser.sh
echo "=== packaging: passed"
