#!/usr/bin/env bash
# What a feature costs: the same load (tools/loadgen, flow mode) with the feature off and on,
# interleaved round by round on one machine in one sitting, so the ratio compares like with like.
#
#   CARGO_TARGET_DIR=/work/perf-target tools/bench_features.sh [OUT_DIR]
#
# Knobs (environment):
#   FEATURES="fraud"        which features (see below): fraud, events, or both
#   BACKENDS="postgres"     USERS=64  LATENCY=0 (fake Twilio, ms)  DURATION=12  WARMUP=3  ROUNDS=3
#   SKIP_BUILD=1            use the binaries already built
# Features, as pairs of service environments (off, on):
#   fraud: FRAUD_GUARD=off vs FRAUD_GUARD=enforce. The floors are set out of reach so that the
#          guard counts and checks every send and every approval but never refuses: the load's
#          first 64 concurrent sends to one prefix would otherwise exceed the default floor of 20
#          before any code is verified, and a block would end the run.
#   baseline: another build of the service (off: the binary at BASELINE_BIN, e.g. a release build of
#          an earlier commit) vs this one (on), both with the service's defaults: a before/after
#          of a change, interleaved like the features. BASELINE_ENV="K=V ..." sets variables for
#          both (e.g. FRAUD_GUARD=off, to see a change apart from the fraud guard).
#   events: EVENTS_WEBHOOK_URL unset vs set, pointed at a receiver that this script starts (a
#          Python http.server answering 204 to every POST): each flow's approval writes its event in
#          the verify statement and the dispatcher delivers it, so "on" pays for the outbox rows,
#          the claims and deletes, the signed POSTs and the receiver's CPU on this machine too.
# Prints one line per run and, at the end, the median flows/s per variant and their ratio;
# OUT_DIR keeps each run's JSON, text report and service log, and summary.md.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
out=${1:-$(mktemp -d /tmp/phone-verify-features.XXXXXX)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
FEATURES=${FEATURES:-fraud}
BACKENDS=${BACKENDS:-postgres}
USERS=${USERS:-64}
LATENCY=${LATENCY:-0}
DURATION=${DURATION:-12}
WARMUP=${WARMUP:-3}
ROUNDS=${ROUNDS:-3}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}

log() { printf '[features %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
# shellcheck source=tools/lib.sh
source "$root/tools/lib.sh"
build_binaries
describe_machine 1 "FEATURES='$FEATURES' BACKENDS='$BACKENDS' USERS=$USERS LATENCY=$LATENCY DURATION=$DURATION WARMUP=$WARMUP ROUNDS=$ROUNDS" \
  | tee "$out/machine.txt" >&2

# The events receiver, started only when FEATURES names events: a free port, a 204 to every POST.
receiver_pid=""
stop_receiver() { [[ -n $receiver_pid ]] && kill "$receiver_pid" 2>/dev/null || true; }
trap stop_receiver EXIT
if [[ " $FEATURES " == *" events "* ]]; then
  receiver_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  python3 - "$receiver_port" <<'PY' &
import http.server, sys
class Receiver(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real backend would
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Receiver).serve_forever()
PY
  receiver_pid=$!
  for _ in $(seq 1 50); do
    curl -fsS -o /dev/null -X POST "http://127.0.0.1:$receiver_port/" 2>/dev/null && break
    sleep 0.1
  done
  curl -fsS -o /dev/null -X POST "http://127.0.0.1:$receiver_port/" \
    || { log "the events receiver did not start"; exit 2; }
  log "events receiver on 127.0.0.1:$receiver_port (pid $receiver_pid)"
fi

if [[ " $FEATURES " == *" baseline "* && ! -x ${BASELINE_BIN:-} ]]; then
  log "FEATURES names baseline: set BASELINE_BIN to the earlier build's phone-verify"; exit 2
fi

variant_env() { # FEATURE off|on -> --service-env arguments
  case "$1:$2" in
    baseline:*) for kv in ${BASELINE_ENV:-}; do printf -- '--service-env %s ' "$kv"; done ;;
    fraud:off) echo "--service-env FRAUD_GUARD=off" ;;
    fraud:on) echo "--service-env FRAUD_GUARD=enforce --service-env FRAUD_MIN_UNVERIFIED_PER_PREFIX=1000000 --service-env FRAUD_MIN_UNVERIFIED_PER_COUNTRY=1000000" ;;
    events:off) echo "" ;;
    # The Standard Webhooks library's test secret: the receiver does not check signatures.
    events:on) echo "--service-env EVENTS_WEBHOOK_URL=http://127.0.0.1:$receiver_port/events --service-env EVENTS_WEBHOOK_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" ;;
    *) log "unknown feature $1"; exit 2 ;;
  esac
}

run() { # NAME BACKEND BINARY [loadgen args...]
  local name=$1 backend=$2 bin=$3 url db=""; shift 3
  if [[ $backend == postgres ]]; then
    db=pv_bench_${name//-/_}
    dropdb --if-exists "$db" 2>/dev/null
    createdb "$db"
    url="postgres://$PGUSER@$PGHOST:$PGPORT/$db"
  else
    rm -rf "$out/$name.sqlite" && mkdir -p "$out/$name.sqlite"
    url="sqlite://$out/$name.sqlite/pv.db"
  fi
  "$lg" --service-bin "$bin" --database-url "$url" --users "$USERS" --fake-latency-ms "$LATENCY" \
    --warmup-secs "$WARMUP" --duration-secs "$DURATION" --label "$name" \
    --json "$out/$name.json" --service-log "$out/$name.log" "$@" > "$out/$name.txt" \
    || { cat "$out/$name.txt" >&2; log "run $name FAILED"; }
  log "$name: $(sed -n '2p' "$out/$name.txt")"
  if [[ -n $db ]]; then dropdb --if-exists "$db"; else rm -rf "$out/$name.sqlite"; fi
}

for feature in $FEATURES; do
  for backend in $BACKENDS; do
    for round in $(seq 1 "$ROUNDS"); do
      # Alternate which variant goes first, so a drift over the sitting favours neither.
      order="off on"; (( round % 2 == 0 )) && order="on off"
      for v in $order; do
        # shellcheck disable=SC2046
        bin=$svc
        [[ $feature == baseline && $v == off ]] && bin=$BASELINE_BIN
        run "$feature-$backend-$v-r$round" "$backend" "$bin" $(variant_env "$feature" "$v")
      done
    done
  done
done

python3 - "$out" "$FEATURES" "$BACKENDS" <<'PY' | tee "$out/summary.md"
import json, pathlib, statistics, sys
out, features, backends = pathlib.Path(sys.argv[1]), sys.argv[2].split(), sys.argv[3].split()
print("| feature | backend | off: flows/s (runs) | on: flows/s (runs) | on / off | flow p99 ms off / on | service CPU ms/flow off / on | Postgres CPU ms/flow off / on | failed flows off / on |")
print("|---|---|---|---|---|---|---|---|---|")
for f in features:
    for b in backends:
        res = {}
        for v in ("off", "on"):
            runs = [json.loads(p.read_text()) for p in sorted(out.glob(f"{f}-{b}-{v}-r*.json"))]
            res[v] = runs
        med = lambda v, key: statistics.median(key(r) for r in res[v]) if res[v] else float("nan")
        fps = lambda r: r["flows_per_sec"]
        p99 = lambda r: r["latency_ms"]["flow"]["p99"]
        cpu = lambda r: r["service"]["cpu_ms_per_flow"]
        pg = lambda r: r["postgres_cpu_ms_per_flow"]
        failed = lambda v: sum(r["flows_failed"] for r in res[v])
        runs = lambda v: ", ".join(f"{fps(r):.0f}" for r in res[v])
        def safe(v, key):
            try:
                return f"{med(v, key):.2f}"
            except (KeyError, TypeError):
                return "?"
        ratio = med("on", fps) / med("off", fps) if res["off"] and res["on"] else float("nan")
        print(f"| {f} | {b} | {med('off', fps):.0f} ({runs('off')}) | {med('on', fps):.0f} ({runs('on')}) "
              f"| {ratio:.3f} | {safe('off', p99)} / {safe('on', p99)} | {safe('off', cpu)} / {safe('on', cpu)} "
              f"| {safe('off', pg)} / {safe('on', pg)} | {failed('off')} / {failed('on')} |")
PY
