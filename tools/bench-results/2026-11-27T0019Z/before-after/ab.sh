#!/usr/bin/env bash
# A/B on one machine, interleaved: before = 1255b13 (start of this session), after = main.
set -u
LG=/work/perf-target/release/loadgen
declare -A BIN=([before]=/work/before-target/release/phone-verify [after]=/work/perf-target/release/phone-verify)
run() { # name variant db-kind args...
  local name=$1 v=$2 kind=$3; shift 3
  local url
  if [[ $kind == pg ]]; then db=pv_ab_$$; createdb -h 127.0.0.1 -U postgres $db; url=postgres://postgres@127.0.0.1:5432/$db
  else rm -rf /tmp/ab/sq; mkdir -p /tmp/ab/sq; url=sqlite:///tmp/ab/sq/pv.db; fi
  $LG --service-bin ${BIN[$v]} --database-url $url "$@" --json /tmp/ab/$name-$v.json > /tmp/ab/$name-$v.txt 2>&1
  [[ $kind == pg ]] && dropdb -h 127.0.0.1 -U postgres $db
  python3 -c "
import json;d=json.load(open('/tmp/ab/$name-$v.json'))
s=d['service'];print('$name','$v',d.get('flows_per_sec'),'rss',round(s['rss_peak_mib'],1),'anon',round(s['rss_anon_at_peak_mib'],1),'startup',round(s['startup_ms']),'svc_ms_flow',round(s['cpu_ms_per_flow'],3),'pg_ms_flow',d.get('postgres_cpu_ms_per_flow') and round(d['postgres_cpu_ms_per_flow'],3),'errors',d['flows_failed'])"
}
for i in 1 2 3 4 5; do for v in before after; do
  run start-pg-$i $v pg --users 1 --flows 1 --warmup-secs 0
  run start-sq-$i $v sq --users 1 --flows 1 --warmup-secs 0
done; done
for i in 1 2 3; do for v in before after; do
  run u64-$i $v pg --users 64 --warmup-secs 3 --duration-secs 10
done; done
for i in 1 2; do for v in before after; do
  run u256l0-$i $v pg --users 256 --warmup-secs 3 --duration-secs 10
  run u256l100-$i $v pg --users 256 --fake-latency-ms 100 --warmup-secs 3 --duration-secs 10
done; done
