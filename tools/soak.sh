#!/usr/bin/env bash
# phone-verify soak: a long run of full flows against ONE service process, to show that memory does
# not grow beyond noise and that nothing fails. Builds the service and the load generator (release),
# starts the service on a fresh database through tools/loadgen, runs FLOWS measured flows (send-code ->
# code from the fake Twilio -> verify, each on a fresh number) after a warm-up, and writes:
#   OUT/soak.json  loadgen's JSON (with rss_trace_summary)     OUT/soak.txt  its text report
#   OUT/soak.csv   the RSS trace, one row per second of the measured flows:
#                  elapsed_s,flows,errors,vmrss_kib,rss_anon_kib,rss_file_kib
#   OUT/soak.log   the service's JSON log                      OUT/machine.txt  machine and knobs
#
#   CARGO_TARGET_DIR=/work/perf-target tools/soak.sh [OUT_DIR]      (OUT_DIR default: a mktemp dir)
#
# Needs: cargo, python3; for BACKEND=postgres a PostgreSQL server on 127.0.0.1:5432 (trust auth for
# user postgres; override with PGHOST/PGPORT/PGUSER) with createdb/dropdb/psql on PATH. The database
# is named pv_bench_soak_<pid> and dropped on exit (the SQLite file is deleted on exit).
#
# Knobs (environment):
#   FLOWS=200000    measured flows        USERS=64   virtual users       WARMUP=5 (seconds, not measured)
#   BACKEND=postgres | sqlite             FAKE_LATENCY=0 (ms the fake Twilio adds per message)
#   POOL=""         DATABASE_MAX_CONNECTIONS for the service (empty: its default)
#   MAX_SECS=3600   loadgen's time limit for the measured flows (a safety bound; hitting it fails)
#   SKIP_BUILD=1    use the binaries already built
#
# What it checks (exit status 1 if any fails): loadgen succeeded; all FLOWS flows completed and were
# approved; no error in or outside the measured window (by endpoint/status/code in soak.txt); the
# service stopped cleanly on SIGTERM (exit code 0); no ERROR line in the service log.
# What it prints, not judges: the "RSS trend:" line, the mean VmRSS of the first and the last 10 % of
# the 100 ms samples and the least-squares slope of VmRSS over the second half of the run in KiB per
# 10,000 flows (regressed on flows, so it does not depend on the rate). Growth shows as a slope that
# stays clearly positive as FLOWS grows; allocator noise is a few hundred KiB either way.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
out=${1:-$(mktemp -d /tmp/phone-verify-soak.XXXXXX)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
FLOWS=${FLOWS:-200000}
USERS=${USERS:-64}
WARMUP=${WARMUP:-5}
BACKEND=${BACKEND:-postgres}
FAKE_LATENCY=${FAKE_LATENCY:-0}
POOL=${POOL:-}
MAX_SECS=${MAX_SECS:-3600}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}

log() { printf '[soak %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
# shellcheck source=tools/lib.sh
source "$root/tools/lib.sh"

case $BACKEND in
  postgres|sqlite) ;;
  *) echo "BACKEND must be postgres or sqlite, not '$BACKEND'" >&2; exit 2 ;;
esac

# --- build -------------------------------------------------------------------------------------
build_binaries

# --- database ----------------------------------------------------------------------------------
db="" sqlite_dir="" lg_pid=""
cleanup() {
  # Interrupted mid-run: stop loadgen and the service it started (its only child).
  if [[ -n $lg_pid ]] && kill -0 "$lg_pid" 2>/dev/null; then
    pkill -TERM -P "$lg_pid" 2>/dev/null || true
    kill -TERM "$lg_pid" 2>/dev/null || true
    wait "$lg_pid" 2>/dev/null || true
  fi
  if [[ -n $db ]]; then dropdb --if-exists --force "$db" || log "could not drop database $db"; fi
  if [[ -n $sqlite_dir ]]; then rm -rf "$sqlite_dir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
if [[ $BACKEND == postgres ]]; then
  db=pv_bench_soak_$$
  dropdb --if-exists "$db" 2>/dev/null
  createdb "$db"
  url="postgres://$PGUSER@$PGHOST:$PGPORT/$db"
else
  sqlite_dir=$out/soak.sqlite
  rm -rf "$sqlite_dir"
  mkdir -p "$sqlite_dir"
  url="sqlite://$sqlite_dir/pv.db"
fi

describe_machine "$([[ $BACKEND == postgres ]] && echo 1 || echo 0)" \
  "FLOWS=$FLOWS USERS=$USERS WARMUP=$WARMUP BACKEND=$BACKEND FAKE_LATENCY=$FAKE_LATENCY POOL='${POOL:-default}' MAX_SECS=$MAX_SECS" \
  > "$out/machine.txt"

pool_args=()
[[ -n $POOL ]] && pool_args=(--service-env "DATABASE_MAX_CONNECTIONS=$POOL")

# --- the soak ------------------------------------------------------------------------------------
log "soak: $BACKEND, $USERS users, $FLOWS flows after ${WARMUP}s warm-up, fake latency $FAKE_LATENCY ms; results in $out"
# In the background + wait, so that INT/TERM reach the traps at once (cleanup stops the run).
rc=0
"$lg" --service-bin "$svc" --database-url "$url" --users "$USERS" --fake-latency-ms "$FAKE_LATENCY" \
  --warmup-secs "$WARMUP" --flows "$FLOWS" --max-secs "$MAX_SECS" --label "soak-$BACKEND" \
  --json "$out/soak.json" --service-log "$out/soak.log" --rss-trace "$out/soak.csv" "${pool_args[@]}" \
  > "$out/soak.txt" &
lg_pid=$!
wait "$lg_pid" || rc=$?
lg_pid=""
if [[ $rc != 0 ]]; then
  cat "$out/soak.txt" >&2
  log "loadgen FAILED (exit $rc)"
  exit 1
fi

sed -n '2p' "$out/soak.txt"
grep '^RSS trend:' "$out/soak.txt" || true
# Judge the run from the JSON; print every problem found.
status=0
python3 - "$out/soak.json" "$out/soak.log" "$FLOWS" <<'EOF' || status=1
import json, sys
r = json.load(open(sys.argv[1]))
want = int(sys.argv[3])
problems = []
errors = sum(e["count"] for e in r["errors"])
if errors:
    problems.append(f"{errors} errors in the measured window: " + ", ".join(
        f'{e["endpoint"]} {e["status"]} {e["code"]}: {e["count"]}' for e in r["errors"]))
if r["errors_outside_window"]:
    problems.append(f'{r["errors_outside_window"]} errors outside the measured window (warm-up)')
if r["flows_failed"]:
    problems.append(f'{r["flows_failed"]} flows failed')
if r["flows_ok"] + r["flows_failed"] < want:
    problems.append(f'only {r["flows_ok"] + r["flows_failed"]} of {want} flows ran (MAX_SECS reached?)')
svc = r["service"]
if svc["exit_code"] != 0:
    problems.append(f'service exit code {svc["exit_code"]} on SIGTERM (None: killed or unknown)')
def level(line):
    try:
        return json.loads(line).get("level")
    except ValueError:
        return None
error_lines = [l for l in open(sys.argv[2]) if level(l) == "ERROR"]
if error_lines:
    problems.append(f"{len(error_lines)} ERROR lines in the service log, first: {error_lines[0].strip()[:300]}")
if svc["log_warnings"]:
    print(f'note: {len(svc["log_warnings"])} WARN/ERROR lines in the service log (see soak.txt)', file=sys.stderr)
t = r.get("rss_trace_summary")
if t:
    print(f'soak: {r["flows_ok"]} flows in {r["window_secs"]:.0f} s ({r["flows_per_sec"]:.0f}/s), '
          f'errors {errors + r["errors_outside_window"]}, RSS {t["first_10pct_mean_mib"]:.1f} -> '
          f'{t["last_10pct_mean_mib"]:.1f} MiB ({t["growth_mib"]:+.2f}), second-half slope '
          + ("?" if t["second_half_slope_kib_per_10k_flows"] is None
             else f'{t["second_half_slope_kib_per_10k_flows"]:+.1f}')
          + ' KiB per 10k flows')
for p in problems:
    print(f"soak FAILED: {p}", file=sys.stderr)
sys.exit(1 if problems else 0)
EOF
log "results: $out (soak.txt, soak.json, soak.csv, soak.log)"
exit $status
