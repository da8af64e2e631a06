#!/usr/bin/env bash
# The database ceiling: pgbench running exactly the service's per-flow SQL (flow.sql, generated from
# the Postgres statements in src/storage/) on a fresh database with the service's migrations,
# -M prepared, over TCP.
# One pgbench transaction = one send statement + one verify statement = one flow.
#
#   tools/ceiling/run.sh CLIENTS [SECONDS] [WARMUP_SECONDS]
#
# Prints pgbench's output, the CPU used meanwhile (postgres_cpu_percent=, pgbench_cpu_percent=,
# machine_cpu_percent=; 100 = one core) and, as the last line, "ceiling_tps=<transactions/s>".
# Environment: PGHOST (127.0.0.1), PGPORT (5432), PGUSER (postgres), PGBENCH (pgbench), EVENTS (false),
# PGBENCH_THREADS (2), CEILING_DB (pv_bench_ceiling_<pid>; created, then dropped), FRAUD_MODE (the
# fraud guard: 0 off, 1 monitor, 2 enforce, with floors out of reach as in tools/bench_features.sh;
# default 1, the service's default outside production).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
clients=${1:?usage: run.sh CLIENTS [SECONDS] [WARMUP_SECONDS]}
seconds=${2:-12}
warmup=${3:-3}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
pgbench=${PGBENCH:-pgbench}
command -v "$pgbench" >/dev/null || pgbench=/usr/lib/postgresql/15/bin/pgbench
threads=${PGBENCH_THREADS:-2}
(( threads > clients )) && threads=$clients
db=${CEILING_DB:-pv_bench_ceiling_$$}

python3 "$here/gen_flow_sql.py" --check >&2

dropdb --if-exists "$db" 2>/dev/null
createdb "$db"
trap 'dropdb --if-exists "$db" || true' EXIT
for f in "$root"/migrations/postgres/*.sql; do
  psql -q -v ON_ERROR_STOP=1 -d "$db" -f "$f" >/dev/null
done

# The binds as the service computes them (reserve_send()/check_code() in src/storage/), caps off:
# now, now - RESEND_COOLDOWN_SECONDS (30), now - 1 h, now + CODE_TTL_SECONDS (600), the clock hour.
now_s=$(date -u +%s)
ts() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%S.000Z; }
# The fraud guard's slot of now: 60 slots per FRAUD_WINDOW_MINUTES (1440), so 24-minute slots.
slot=$(( now_s / (24 * 60) ))
vars=(
  -D "now=$(ts "$now_s")"
  -D "cooldown_start=$(ts $((now_s - 30)))"
  -D "hour_ago=$(ts $((now_s - 3600)))"
  -D "expires=$(ts $((now_s + 600)))"
  -D "window=$(ts $((now_s / 3600 * 3600)))"
  # an HMAC-SHA256 is 32 bytes
  -D 'hash=\x8d969eef6ecad3c29a3a629280e686cf0c3f5d5a86aff3ca12020c923adc6c92'
  -D max_sends=5 -D max_attempts=5
  # The service binds "" as the keys with the caps off; pgbench refuses an empty -D value, and a
  # key is never read while its cap is 0.
  -D ip_key=- -D ip_max=0 -D country_key=- -D country_max=0
  -D country=US -D channel=sms -D provider=twilio-messaging
  -D "fraud_mode=${FRAUD_MODE:-1}" -D "slot=$slot" -D "position=$(( slot % 60 + 1 ))" -D ring=60
  -D min_prefix=1000000 -D min_country=1000000 -D ratio=1.0 -D "block_until=$(ts $((now_s + 43200)))"
  -D seq=0
  # Events on (true: the approvals' events are written, as with EVENTS_WEBHOOK_URL set) or off.
  -D "events=${EVENTS:-false}"
)

run() { # base seconds
  "$pgbench" -n -M prepared -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -c "$clients" -j "$threads" \
    -T "$2" -f "$here/flow.sql" "${vars[@]}" -D "base=$1" "$db"
}

if (( warmup > 0 )); then
  run 10000000000000 "$warmup" >/dev/null
fi
# CPU of the measured run: the Postgres processes (from /proc) and pgbench itself (bash's `time`).
cpu_snap=$(mktemp)
python3 "$here/cpu.py" snap "$cpu_snap"
TIMEFORMAT='%R %U %S'
{ time run 20000000000000 "$seconds" > "$cpu_snap.out"; } 2> "$cpu_snap.time"
out=$(cat "$cpu_snap.out")
echo "$out"
read -r wall user sys < <(tail -1 "$cpu_snap.time")
python3 "$here/cpu.py" diff "$cpu_snap" "$wall"
python3 -c "print(f'pgbench_cpu_percent={($user + $sys) / $wall * 100:.1f}')"
rm -f "$cpu_snap" "$cpu_snap.out" "$cpu_snap.time"
# Every flow must have found its row: the verify updated one row per transaction.
approved=$(psql -Atq -d "$db" -c "select count(*) from verification where status = 'approved'")
pending=$(psql -Atq -d "$db" -c "select count(*) from verification where status <> 'approved'")
echo "rows: approved=$approved not_approved=$pending"
tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out" | head -1)
echo "ceiling_tps=$tps"
