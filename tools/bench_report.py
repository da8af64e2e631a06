#!/usr/bin/env python3
"""Turns a tools/bench.sh output directory into markdown for BENCHMARKS.md: the machine, the
ceiling, the table rows and the issue-6 target checks.

  python3 tools/bench_report.py OUT_DIR
"""

import json
import pathlib
import sys

out = pathlib.Path(sys.argv[1])
ceiling_runs = {int(k): v for k, v in json.loads((out / "ceiling.json").read_text()).items()}
ceiling = {k: v["ceiling_tps"] for k, v in ceiling_runs.items()}
runs = {}
for p in sorted(out.glob("*.json")):
    if p.name == "ceiling.json":
        continue
    runs[p.stem] = json.loads(p.read_text())


def ceil_for(users):
    if not ceiling:
        return None, None
    c = max((c for c in ceiling if c <= users), default=min(ceiling))
    return c, ceiling[c]


def lat(r, ep, q):
    v = r["latency_ms"].get(ep, {}).get(q)
    return "–" if v is None else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def errs(r):
    n = sum(e["count"] for e in r["errors"])
    if n == 0:
        return "0"
    return ", ".join(f'{e["count"]}× {e["status"]} {e["code"]}' for e in r["errors"])


def f1(v, fmt="{:.1f}"):
    return "–" if v is None else fmt.format(v)


def row(name, r):
    s = r["service"]
    users, latency = r["users"], r["fake_latency_ms"]
    c, tps = ceil_for(users)
    ratio = f'{r["flows_per_sec"] / tps:.2f} (c={c})' if tps else "–"
    if r["backend"] != "postgres" and tps:
        ratio += "†"
    bound = f'{r["flows_per_sec"] / (users * 1000 / latency):.2f}' if latency else "–"
    pg_cpu = (
        f'{f1(r.get("postgres_cpu_percent"), "{:.0f}")} / {f1(r.get("postgres_cpu_ms_per_flow"), "{:.2f}")}'
        if r["backend"] == "postgres"
        else "–"
    )
    return (
        f'| {r["backend"]} | {users} | {latency} | {r["flows_per_sec"]:.0f} | {ratio} | {bound} '
        f'| {lat(r, "send_code", "p50")} / {lat(r, "send_code", "p99")} '
        f'| {lat(r, "verify", "p50")} / {lat(r, "verify", "p99")} '
        f'| {errs(r)} | {f1(s["rss_peak_mib"])} ({f1(s.get("rss_anon_at_peak_mib"))} + {f1(s.get("rss_file_at_peak_mib"))}) '
        f'| {f1(s["startup_ms"], "{:.0f}")} '
        f'| {f1(s["cpu_percent"], "{:.0f}")} / {f1(s["cpu_ms_per_flow"], "{:.2f}")} '
        f'| {pg_cpu} '
        f'| {f1(r["loadgen_cpu_percent"], "{:.0f}")} | {f1(r.get("other_cpu_percent"), "{:.0f}")} |'
    )


HEADER = (
    "| backend | users | fake latency (ms) | flows/s | ÷ ceiling | ÷ (users ÷ latency) "
    "| send-code p50 / p99 (ms) | verify p50 / p99 (ms) | errors | peak RSS (MiB) (anon + file) "
    "| start-up to ready (ms) | service CPU % / ms per flow | Postgres CPU % / ms per flow "
    "| loadgen CPU % | other CPU % |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)

print("### Machine\n")
print("```")
print((out / "machine.txt").read_text().rstrip())
print("```\n")

print("### Database ceiling (pgbench, tools/ceiling/flow.sql, -M prepared, TCP)\n")
print("| pgbench clients | flows/s (transactions/s) | Postgres CPU % / ms per flow | pgbench CPU % | machine busy % |\n"
      "|---|---|---|---|---|")
for c in sorted(ceiling):
    r = ceiling_runs[c]
    print(f'| {c} | {r["ceiling_tps"]:.0f} | {r["postgres_cpu_percent"]:.0f} / '
          f'{r["postgres_cpu_percent"] / 100 * 1000 / r["ceiling_tps"]:.2f} | {r["pgbench_cpu_percent"]:.0f} '
          f'| {r["machine_cpu_percent"]:.0f} |')
print()

main = [n for n in runs if n.count("-") == 2]
extra = [n for n in runs if n not in main]


def order(n):
    r = runs[n]
    return (r["backend"] != "postgres", r["users"], r["fake_latency_ms"], n)


print("### Load matrix (mode flow)\n")
print(HEADER)
for n in sorted(main, key=order):
    print(row(n, runs[n]))
print()
if extra:
    print("### Other runs (half the saturating rate; wrong-code and resend modes)\n")
    print("| run | mode | rate (flows/s) | flows/s | verify p50 / p99 (ms) | verify (wrong code) p99 (ms) "
          "| resend-code p50 / p99 (ms) | errors | peak RSS (MiB) |\n|---|---|---|---|---|---|---|---|---|")
    for n in sorted(extra, key=order):
        r = runs[n]
        print(f'| {n} | {r["mode"]} | {f1(r["rate"])} | {r["flows_per_sec"]:.0f} '
              f'| {lat(r, "verify", "p50")} / {lat(r, "verify", "p99")} | {lat(r, "verify_wrong", "p99")} '
              f'| {lat(r, "resend_code", "p50")} / {lat(r, "resend_code", "p99")} '
              f'| {errs(r)} | {f1(r["service"]["rss_peak_mib"])} |')
    print()
print("† SQLite rows are divided by the Postgres ceiling too, for scale only: it is not their database.\n")
print("CPU columns: % of one core over the measured window, from /proc (2 cores = 200 %). Postgres = all "
      "processes named postgres; other = everything else that ran on the machine meanwhile (noise).\n")

# --- targets ---------------------------------------------------------------------------------------
print("### Targets (issue 6)\n")
print("| target | measured | met? |\n|---|---|---|")


def verdict(ok):
    return "**met**" if ok else "**missed**"


r = runs.get("postgres-u64-l0")
c, tps = ceil_for(64)
if r and tps:
    ratio = r["flows_per_sec"] / tps
    print(f'| Postgres, 0 ms, 64 users: flows/s ≥ 60 % of the ceiling | {r["flows_per_sec"]:.0f} ÷ {tps:.0f} '
          f'(pgbench -c {c}) = {ratio:.0%} | {verdict(ratio >= 0.6)} |')
for backend in ("postgres", "sqlite"):
    h = runs.get(f"{backend}-u64-l0-halfrate")
    if h:
        p99 = h["latency_ms"].get("verify", {}).get("p99")
        print(f'| {backend}: verify p99 < 10 ms at half the saturating rate ({h["rate"]} flows/s, 64 users) '
              f'| p99 {p99:.2f} ms | {verdict(p99 is not None and p99 < 10)} |')
for n in sorted(main, key=order):
    r = runs[n]
    if r["fake_latency_ms"]:
        bound = r["users"] * 1000 / r["fake_latency_ms"]
        share = r["flows_per_sec"] / bound
        print(f'| {r["backend"]}, {r["users"]} users, {r["fake_latency_ms"]} ms: ≥ 90 % of users ÷ latency '
              f'({bound:.0f}/s) | {r["flows_per_sec"]:.0f}/s = {share:.0%} | {verdict(share >= 0.9)} |')
for n in sorted(main, key=order):
    r = runs[n]
    if r["users"] == 256:
        rss = r["service"]["rss_peak_mib"]
        print(f'| {r["backend"]}, 256 users, {r["fake_latency_ms"]} ms: peak RSS < 40 MiB | {rss:.1f} MiB '
              f'(VmHWM {r["service"]["vm_hwm_mib"]:.1f}) | {verdict(rss < 40)} |')
for backend in ("postgres", "sqlite"):
    ups = [runs[n]["service"]["startup_ms"] for n in runs if runs[n]["backend"] == backend
           and runs[n]["service"]["startup_ms"] is not None]
    if ups:
        ups.sort()
        print(f"| {backend}: start-up to a ready /readyz < 300 ms (fresh database, migrations applied) "
              f"| median {ups[len(ups) // 2]:.0f} ms, max {ups[-1]:.0f} ms over {len(ups)} starts "
              f"| {verdict(ups[-1] < 300)} |")
