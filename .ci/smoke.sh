#!/usr/bin/env bash
# Follows the README as a new user would: start the service with no configuration (SQLite, console
# provider), send a code, copy it from the log, verify it. Then the same on Postgres.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet
bin="$PWD/target/debug/phone-verify"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

run_walkthrough() {
    local name=$1 port=$2
    shift 2
    local log="$work/$name.log"
    if curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then
        echo "$name: something already listens on port $port"; exit 1
    fi
    (cd "$work" && exec env -i PATH="$PATH" HOME="$HOME" BIND_ADDR="127.0.0.1:$port" "$@" "$bin" >"$log" 2>&1) &
    local pid=$!
    for _ in $(seq 1 100); do
        curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
        kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "$name: the service exited"; exit 1; }
        sleep 0.1
    done
    curl -fsS "http://127.0.0.1:$port/healthz"; echo
    curl -fsS "http://127.0.0.1:$port/readyz"; echo

    local phone="+1 (212) 555-$(( RANDOM % 9000 + 1000 ))"
    curl -fsS -X POST "http://127.0.0.1:$port/api/auth/phone/send-code" \
        -H 'content-type: application/json' -d "{\"phone_number\": \"$phone\"}"; echo
    local code
    code=$(grep -o 'code="[0-9]*"' "$log" | tail -1 | tr -dc '0-9' || true)
    [ -n "$code" ] || { cat "$log"; echo "$name: no code in the log"; exit 1; }
    local answer
    answer=$(curl -sS -X POST "http://127.0.0.1:$port/api/auth/phone/verify" \
        -H 'content-type: application/json' -d "{\"phone_number\": \"$phone\", \"code\": \"$code\"}")
    echo "$answer"
    echo "$answer" | grep -q '"status":"approved"' || { cat "$log"; echo "$name: verify failed"; exit 1; }

    # SIGTERM stops it cleanly.
    kill -TERM "$pid"
    wait "$pid" || { cat "$log"; echo "$name: exit status $? after SIGTERM"; exit 1; }
    grep -q 'stopped' "$log" || { cat "$log"; echo "$name: no clean stop"; exit 1; }
    # The full number must not reach the log, only its last four digits.
    local digits
    digits=$(echo "$phone" | tr -dc '0-9')
    if grep -q "$digits" "$log"; then cat "$log"; echo "$name: the full number is in the log"; exit 1; fi
    echo "$name: walk-through passed"
}

run_walkthrough sqlite 18080
[ -f "$work/data/phone-verify.db" ] || { echo "sqlite: data/phone-verify.db was not created"; exit 1; }

db="pv_smoke_$$"
psql -h 127.0.0.1 -U postgres -qc "drop database if exists $db" -c "create database $db"
run_walkthrough postgres 18081 DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db"
psql -h 127.0.0.1 -U postgres -qc "drop database $db"
