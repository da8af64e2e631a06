#!/usr/bin/env bash
# phone-verify benchmarks (issue 6): ONE command that builds the service and the load generator
# (release), measures the database ceiling with pgbench, runs the load matrix on Postgres and on
# SQLite, and writes the results (markdown rows for BENCHMARKS.md, plus every run's JSON and log).
#
#   CARGO_TARGET_DIR=/work/perf-target tools/bench.sh [OUT_DIR]
#
# Needs: cargo, python3, a PostgreSQL server on 127.0.0.1:5432 (trust auth for user postgres;
# override with PGHOST/PGPORT/PGUSER) with pgbench, createdb/dropdb and psql on PATH.
# Every database it creates is named pv_bench_* and dropped afterwards. Load goes to 127.0.0.1 only.
#
# Knobs (environment):
#   USERS="16 64 256"  LATENCIES="0 100"  BACKENDS="postgres sqlite"
#   DURATION=12 (measured seconds per run)  WARMUP=3 (seconds, not measured)
#   CEILING_MAX_CLIENTS=64   pgbench clients are min(users, this): the server's max_connections
#                            (100 by default) is shared, so 256 pgbench clients cannot connect.
#   POOL=""                  DATABASE_MAX_CONNECTIONS for the service (empty: its default, 10)
#   SKIP_BUILD=1             use the binaries already built
#   EXTRA=1 (default)        also run the half-rate verify-p99 check and the wrong-code/resend modes
#   SOAK=1                   then run tools/soak.sh (FLOWS=200000, SOAK_USERS=64) into OUT_DIR/soak and
#                            append its summary to results.md (about 1 more minute on this machine)
# Whole matrix with the defaults: about 6 minutes after the build.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
out=${1:-$(mktemp -d /tmp/phone-verify-bench.XXXXXX)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
USERS=${USERS:-16 64 256}
LATENCIES=${LATENCIES:-0 100}
BACKENDS=${BACKENDS:-postgres sqlite}
DURATION=${DURATION:-12}
WARMUP=${WARMUP:-3}
CEILING_MAX_CLIENTS=${CEILING_MAX_CLIENTS:-64}
POOL=${POOL:-}
EXTRA=${EXTRA:-1}
SOAK=${SOAK:-0}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
# shellcheck source=tools/lib.sh
source "$root/tools/lib.sh"

# --- build -------------------------------------------------------------------------------------
python3 "$root/tools/ceiling/gen_flow_sql.py" --check
build_binaries

# --- machine -------------------------------------------------------------------------------------
describe_machine 1 "USERS='$USERS' LATENCIES='$LATENCIES' BACKENDS='$BACKENDS' DURATION=$DURATION WARMUP=$WARMUP CEILING_MAX_CLIENTS=$CEILING_MAX_CLIENTS POOL='${POOL:-default}'" \
  | tee "$out/machine.txt" >&2

pool_args=()
[[ -n $POOL ]] && pool_args=(--service-env "DATABASE_MAX_CONNECTIONS=$POOL")

# --- the database ceiling ------------------------------------------------------------------------
echo '{}' > "$out/ceiling.json"
ceiling_clients=""
for u in $USERS; do
  c=$(( u < CEILING_MAX_CLIENTS ? u : CEILING_MAX_CLIENTS ))
  [[ " $ceiling_clients " == *" $c "* ]] || ceiling_clients="$ceiling_clients $c"
done
for c in $ceiling_clients; do
  log "ceiling: pgbench -c $c, ${WARMUP}s warm-up + ${DURATION}s"
  CEILING_DB=pv_bench_ceiling_c$c "$root/tools/ceiling/run.sh" "$c" "$DURATION" "$WARMUP" \
    > "$out/ceiling-c$c.txt" 2>&1
  log "ceiling: $c clients: $(grep -E '^(tps|cpu:)' "$out/ceiling-c$c.txt" | tr '\n' ' ')"
  python3 - "$out/ceiling.json" "$c" "$out/ceiling-c$c.txt" <<'EOF'
import json, re, sys
p, c, txt = sys.argv[1], sys.argv[2], open(sys.argv[3]).read()
val = lambda k: float(re.search(rf"^{k}=([0-9.]+)", txt, re.M).group(1))
d = json.load(open(p))
d[c] = {k: val(k) for k in ("ceiling_tps", "postgres_cpu_percent", "pgbench_cpu_percent", "machine_cpu_percent")}
json.dump(d, open(p, "w"), indent=1)
EOF
done

# --- load runs -----------------------------------------------------------------------------------
# run NAME BACKEND USERS LATENCY [loadgen args...]
run() {
  local name=$1 backend=$2 users=$3 latency=$4; shift 4
  local url db=""
  if [[ $backend == postgres ]]; then
    db=pv_bench_${name//-/_}
    dropdb --if-exists "$db" 2>/dev/null
    createdb "$db"
    url="postgres://$PGUSER@$PGHOST:$PGPORT/$db"
  else
    rm -rf "$out/$name.sqlite"
    mkdir -p "$out/$name.sqlite"
    url="sqlite://$out/$name.sqlite/pv.db"
  fi
  log "run $name: $backend, $users users, fake latency $latency ms $*"
  "$lg" --service-bin "$svc" --database-url "$url" --users "$users" --fake-latency-ms "$latency" \
    --warmup-secs "$WARMUP" --duration-secs "$DURATION" --label "$name" \
    --json "$out/$name.json" --service-log "$out/$name.log" "${pool_args[@]}" "$@" \
    > "$out/$name.txt" || { cat "$out/$name.txt" >&2; log "run $name FAILED"; }
  sed -n '2p' "$out/$name.txt" >&2 || true
  if [[ -n $db ]]; then dropdb --if-exists "$db"; else rm -rf "$out/$name.sqlite"; fi
}

for backend in $BACKENDS; do
  for u in $USERS; do
    for l in $LATENCIES; do
      run "$backend-u$u-l$l" "$backend" "$u" "$l"
    done
  done
done

if [[ $EXTRA == 1 ]]; then
  # verify p99 at half the saturating rate: the 64-user, 0 ms run above is the saturating one.
  for backend in $BACKENDS; do
    sat=$out/$backend-u64-l0.json
    [[ -f $sat ]] || continue
    rate=$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["flows_per_sec"] / 2, 1))' "$sat")
    run "$backend-u64-l0-halfrate" "$backend" 64 0 --rate "$rate"
  done
  # the other modes, once each (resend: the tool starts the service with RESEND_COOLDOWN_SECONDS=0)
  first=${BACKENDS%% *}
  run "$first-u64-l0-wrongcode" "$first" 64 0 --mode wrong-code
  run "$first-u64-l0-resend" "$first" 64 0 --mode resend
fi

python3 "$root/tools/bench_report.py" "$out" > "$out/results.md"

if [[ $SOAK == 1 ]]; then
  # The soak last, on the binaries just used: it builds nothing and judges errors, not memory.
  log "soak: tools/soak.sh (FLOWS=${FLOWS:-200000}) into $out/soak"
  soak_status=0
  # USERS and WARMUP mean other things here (a list; the matrix's warm-up): give the soak its own.
  USERS=${SOAK_USERS:-64} WARMUP=5 CARGO_TARGET_DIR=$target SKIP_BUILD=1 \
    "$root/tools/soak.sh" "$out/soak" > "$out/soak.out" 2>&1 \
    || soak_status=$?
  {
    echo
    echo "### Soak (tools/soak.sh, exit status $soak_status)"
    echo
    echo '```'
    grep -E '^(flows:|errors:|RSS trend:|soak:)' "$out/soak.out" || true
    echo '```'
  } >> "$out/results.md"
fi

log "results: $out/results.md"
cat "$out/results.md"
