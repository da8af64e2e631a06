#!/usr/bin/env bash
# Fuzzes the live service from its own OpenAPI document with schemathesis (PyPI), on Postgres:
# every check, a bounded number of examples per operation, a fixed seed so a failure reproduces.
#
# One check is left out: positive_data_acceptance ("a schema-valid request must get 2xx"). A phone
# number's validity comes from libphonenumber's metadata, which no JSON Schema can express, so
# schema-valid strings such as "0000" are rightly answered 422 invalid_phone_number.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
EXAMPLES=${ST_EXAMPLES:-50}
venv=/tmp/phone-verify-ci-tools/schemathesis-$SCHEMATHESIS_VERSION
if [ ! -x "$venv/bin/st" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "schemathesis==$SCHEMATHESIS_VERSION"
fi

bin=${PV_BIN:-}
if [ -z "$bin" ]; then
    cargo build --quiet
    bin=target/debug/phone-verify
fi

port=18230
db="pv_schemathesis_$$"
token="schemathesis-internal-token-$$"
log=$(mktemp)
# schemathesis keeps a cache (.schemathesis/: crash files and requests it replays on the next run) and
# Hypothesis its example database (.hypothesis/), both in the working directory. st runs in a scratch
# directory instead, with the cache off: nothing is written into the repository, and a run depends
# on the seed alone, not on what earlier runs left behind.
scratch=$(mktemp -d)
printf '[cache]\nenabled = false\n' >"$scratch/schemathesis.toml"
psql -h 127.0.0.1 -U postgres -qc "create database $db"
cleanup() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    psql -h 127.0.0.1 -U postgres -qc "drop database if exists $db" || true
    rm -f "$log"
    rm -rf "$scratch"
}
# The per-IP limits would turn most of the fuzzing into 429s (all requests come from 127.0.0.1);
# they have their own tests. Everything else runs with its defaults, on the console provider; the
# webhook provider is listed after it (console never fails, so nothing reaches its closed port) so
# that /webhooks/sms/status is mounted and fuzzed too.
env BIND_ADDR="127.0.0.1:$port" \
    DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db" \
    SMS_PROVIDER=console,webhook \
    SMS_WEBHOOK_URL=http://127.0.0.1:9/sms SMS_WEBHOOK_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw \
    INTERNAL_API_TOKEN="$token" \
    TWILIO_ACCOUNT_SID=ACschemathesis TWILIO_AUTH_TOKEN=schemathesis-token PUBLIC_BASE_URL=https://verify.example.com \
    RATE_LIMIT_PER_IP_PER_MINUTE=0 \
    MAX_SENDS_PER_IP_PER_HOUR=0 \
    RUST_LOG=warn \
    "$bin" >"$log" 2>&1 &
pid=$!
trap cleanup EXIT
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "schemathesis: the service exited"; exit 1; }
    sleep 0.1
done

(cd "$scratch" && "$venv/bin/st" --config-file "$scratch/schemathesis.toml" \
    run "http://127.0.0.1:$port/openapi.json" \
    --checks all \
    --exclude-checks positive_data_acceptance \
    --max-examples "$EXAMPLES" \
    --seed 20261126 \
    --header "Authorization: Bearer $token" \
    --no-color)

# A 5xx would have failed the run above (not_a_server_error); the log must not hold an internal error either.
if grep -q 'internal error' "$log"; then
    cat "$log"; echo "schemathesis: the service logged an internal error"; exit 1
fi
