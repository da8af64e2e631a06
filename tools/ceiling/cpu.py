#!/usr/bin/env python3
"""CPU accounting for the ceiling run, from /proc (no other tools needed).

  cpu.py snap FILE           write a snapshot: machine busy ticks and the postgres processes' ticks
  cpu.py diff FILE SECONDS   compare with now; prints machine busy and postgres CPU in % of one core

Postgres = utime + stime + cutime + cstime of every process named postgres (exited backends are
counted in the postmaster's cutime/cstime once reaped).
"""
import json
import os
import sys


def postgres_ticks():
    total = 0
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            s = open(f"/proc/{p}/stat").read()
        except OSError:
            continue
        if s[s.find("(") + 1 : s.rfind(")")] != "postgres":
            continue
        f = s[s.rfind(")") + 2 :].split()
        total += sum(int(x) for x in f[11:15])
    return total


def machine():
    v = list(map(int, open("/proc/stat").readline().split()[1:9]))
    return sum(v) - v[3] - v[4]


def snap():
    return {"postgres": postgres_ticks(), "machine": machine()}


hz = os.sysconf("SC_CLK_TCK")
if sys.argv[1] == "snap":
    json.dump(snap(), open(sys.argv[2], "w"))
else:
    a, b, secs = json.load(open(sys.argv[2])), snap(), float(sys.argv[3])
    pct = lambda k: (b[k] - a[k]) / hz / secs * 100
    print(f"cpu: machine busy {pct('machine'):.0f} % of {os.cpu_count() * 100} %, postgres {pct('postgres'):.0f} %")
    print(f"postgres_cpu_percent={pct('postgres'):.1f}")
    print(f"machine_cpu_percent={pct('machine'):.1f}")
