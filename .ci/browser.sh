#!/usr/bin/env bash
# Browser end-to-end test of examples/web/index.html in Debian's Chromium (playwright-core):
#  1. the service allows the page's origin (CORS_ALLOWED_ORIGINS): type a number, send, copy the code
#     from the service's log, verify: the page must say "verified";
#  2. the service does not allow it: the page must show "could not reach" and never "verified".
# Each run gets its own service (SQLite in a temp dir, console provider). Screenshots are kept and
# their paths printed. PV_BIN=/path/to/phone-verify skips `cargo build`.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${PV_BIN:-}" ]; then
    cargo build --quiet
    PV_BIN=target/debug/phone-verify
fi
bin=$(realpath "$PV_BIN")
[ -x "$bin" ] || { echo "browser: no executable at PV_BIN=$PV_BIN"; exit 1; }

if [ ! -x /usr/bin/chromium ]; then
    echo "== installing Debian's chromium"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium >/dev/null
fi
echo "== $(/usr/bin/chromium --version 2>/dev/null | head -1)"
echo "== npm ci (e2e/: playwright-core only, no browser download)"
(cd e2e && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)

work=$(mktemp -d /tmp/pv-browser.XXXXXX)
shots="$work/screenshots"
mkdir -p "$shots"
pids=()
cleanup() {
    local rc=$?
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [ "$rc" -eq 0 ]; then
        rm -rf "$work"/run-* "$work"/page-server.log
    else
        echo "browser: FAILED; logs kept in $work"
    fi
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_http URL PID NAME: polls URL until it answers 2xx, for at most 30 s, failing early if PID died.
wait_http() {
    local url=$1 pid=$2 name=$3 deadline=$((SECONDS + 30))
    until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || { echo "browser: $name exited before answering $url"; return 1; }
        [ "$SECONDS" -lt "$deadline" ] || { echo "browser: $name did not answer $url within 30 s"; return 1; }
        sleep 0.1
    done
}

# The example page, served as static files on 127.0.0.1 only.
page_port=$(free_port)
python3 -m http.server "$page_port" --bind 127.0.0.1 --directory examples/web >"$work/page-server.log" 2>&1 &
page_pid=$!
pids+=("$page_pid")
wait_http "http://127.0.0.1:$page_port/index.html" "$page_pid" "the page server"
origin="http://127.0.0.1:$page_port"
echo "== example page served at $origin/"

# start_service NAME [VAR=VALUE...]: a fresh service (SQLite, console provider) on a free port;
# sets svc_pid, svc_port, svc_log.
start_service() {
    local name=$1
    shift
    local dir="$work/run-$name"
    mkdir -p "$dir"
    svc_port=$(free_port)
    svc_log="$dir/phone-verify.log"
    (cd "$dir" && exec env -i PATH="$PATH" HOME="$dir" BIND_ADDR="127.0.0.1:$svc_port" \
        DATABASE_URL="sqlite://$dir/phone-verify.db" SMS_PROVIDER=console "$@" "$bin") >"$svc_log" 2>&1 &
    svc_pid=$!
    pids+=("$svc_pid")
    wait_http "http://127.0.0.1:$svc_port/readyz" "$svc_pid" "the service ($name)" || { cat "$svc_log"; return 1; }
    echo "== service ($name) ready on 127.0.0.1:$svc_port ${*:-(no CORS origin allowed)}"
}

# stop_service: SIGTERM, and the service must exit 0 within 10 s.
stop_service() {
    kill -TERM "$svc_pid"
    local deadline=$((SECONDS + 10))
    while kill -0 "$svc_pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    local rc=0
    wait "$svc_pid" || rc=$?
    [ "$rc" -eq 0 ] || { cat "$svc_log"; echo "browser: the service exited with status $rc after SIGTERM"; return 1; }
}

run_browser() {
    local expect=$1 shot=$2
    timeout 120 node e2e/browser-test.mjs --page "$origin/?api=http://127.0.0.1:$svc_port" \
        --log "$svc_log" --expect "$expect" --screenshot "$shot" ||
        { echo "--- service log"; cat "$svc_log"; return 1; }
}

echo "== run 1: origin allowed (CORS_ALLOWED_ORIGINS=$origin)"
start_service allowed CORS_ALLOWED_ORIGINS="$origin"
run_browser verified "$shots/verified.png"
stop_service

echo "== run 2: origin not allowed"
start_service blocked
run_browser unreachable "$shots/cors-blocked.png"
stop_service

echo "== browser test summary"
echo "  origin allowed:     page says verified            screenshot $shots/verified.png"
echo "  origin not allowed: page says could not reach     screenshot $shots/cors-blocked.png"
echo "browser test: 2 passed, 0 failed"
