#!/usr/bin/env bash
# round trips per statement: strace the service's only Postgres backend over 4 s of load
bin=$1; tag=$2
db=pv_rt_$tag; dropdb -h 127.0.0.1 -U postgres --if-exists $db; createdb -h 127.0.0.1 -U postgres $db
/work/perf-target/release/loadgen --service-bin $bin --database-url postgres://postgres@127.0.0.1:5432/$db \
  --users 4 --warmup-secs 2 --duration-secs 8 --service-env DATABASE_MAX_CONNECTIONS=1 > /tmp/rt-$tag.txt 2>&1 &
lgpid=$!
sleep 3
pid=$(psql -h 127.0.0.1 -U postgres -Atc "select pid from pg_stat_activity where datname='$db' and application_name='phone-verify' limit 1")
x0=$(psql -h 127.0.0.1 -U postgres -Atc "select xact_commit from pg_stat_database where datname='$db'")
timeout -s INT 4 strace -c -p $pid -e trace=sendto,recvfrom,epoll_wait,read,write 2> /tmp/rt-$tag.strace
x1=$(psql -h 127.0.0.1 -U postgres -Atc "select xact_commit from pg_stat_database where datname='$db'")
wait $lgpid
echo "$tag backend=$pid commits=$((x1-x0)) (includes our 2 psql reads)"
grep -E 'sendto|recvfrom|epoll_wait|read|write' /tmp/rt-$tag.strace
dropdb -h 127.0.0.1 -U postgres --if-exists $db
