#!/usr/bin/env python3
"""Generates tools/ceiling/flow.sql, the pgbench script for the database ceiling, from the SQL the
service runs per flow on Postgres, taken verbatim from src/storage/:

  send   = pg_fraud() + PG_FRAUD_EVENTS + PG_COUNTERS + PG_START_SEND + PG_RECORDS + PG_FRAUD_COLUMNS
           (fraud/, events.rs, counters.rs, verifications/send.rs: Storage::reserve_send on
           Postgres, one statement)
  verify = with checked as (CHECK_UPDATE) PG_CHECK_RECORDS PG_CHECK_FRAUD PG_CHECK_EVENTS
           PG_CHECK_SELECT (verifications/mod.rs, fraud/, events.rs: Storage::check_code, one
           statement)

Each $n placeholder becomes a pgbench variable with an explicit cast to the type sqlx binds for it
(sqlx sends typed parameters; pgbench -M prepared sends untyped ones, so the cast gives the server
the same parameter types and therefore the same plan). The type follows from the `Param` variant
(src/storage/db.rs binds each one as one Postgres type).

The binds are read from the `let params = [...]` lists of reserve_send() and check_code() too, and each bind
expression must be one this script knows: if the statements or their binds change, `--check` fails
(bench.sh runs it) or the mapping below must be updated on purpose.

  python3 tools/ceiling/gen_flow_sql.py          # rewrite flow.sql
  python3 tools/ceiling/gen_flow_sql.py --check  # exit 1 if flow.sql is out of date
"""

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
STORAGE = ROOT / "src" / "storage"
SOURCES = [
    STORAGE / "fraud" / "mod.rs",
    STORAGE / "fraud" / "postgres.rs",
    STORAGE / "counters.rs",
    STORAGE / "events.rs",
    STORAGE / "verifications" / "send.rs",
    STORAGE / "verifications" / "mod.rs",
]
TARGET = ROOT / "tools" / "ceiling" / "flow.sql"
FROM = "src/storage/fraud/, events.rs, counters.rs and verifications/"

# Param variant -> the Postgres type db.rs binds it as
PARAM_TYPES = {
    "Text": "text",  # &str
    "Int4": "int4",  # i32
    "Int8": "int8",  # i64
    "Bool": "bool",
    "Uuid": "uuid",
    "Bytes": "bytea",  # Option<&[u8]>
    "Time": "timestamptz",  # OffsetDateTime
    "Float": "float8",  # f64
}

# bind expression -> pgbench variable
SEND_BINDS = {
    "send.phone.as_ref()": "phone",
    "send.new_verification_id": "vid",
    "send.code_hash.as_deref()": "hash",
    "send.expires_at": "expires",
    "send.send_id": "sid",
    "send.now": "now",
    "send.now - send.cooldown": "cooldown_start",
    "send.now - HOUR": "hour_ago",
    "i64::from(send.max_sends_per_hour)": "max_sends",
    "ip_key": "ip_key",  # "" with the IP cap off
    "ip_max": "ip_max",  # 0 = off
    "window": "window",
    "country_key": "country_key",
    "country_max": "country_max",
    'send.phone.region().unwrap_or("XX")': "country",
    "send.channel.as_str()": "channel",
    'send.provider.unwrap_or("")': "provider",
    # The fraud guard: -D fraud_mode=0 (off), 1 (monitor) or 2 (enforce); the slot of now.
    "fraud.mode": "fraud_mode",
    "fraud.prefix": "prefix",
    "fraud.slot": "slot",
    "fraud.position": "position",
    "RING_SLOTS as i32": "ring",
    "fraud.min_per_prefix": "min_prefix",
    "fraud.min_per_country": "min_country",
    "fraud.ratio": "ratio",
    "fraud.block_until": "block_until",
    # Events: -D events=false (off, the default) or true (EVENTS_WEBHOOK_URL set).
    "self.events": "events",
}
# Variables that must differ per flow, where a -D constant would not: a verification id and a message
# id per send (the primary keys of verification_record and message), derived from the flow's unique
# number. A constant verification id made every flow update one verification_record row, and the
# ceiling measured that row's lock instead of the statements.
# The prefix is per flow too: the fraud guard's row of the number's first digits, as the service's
# prefixes are for its numbers.
PER_FLOW = {"vid": "md5(:phone::text || 'v')::uuid", "sid": "md5(:phone::text)::uuid", "prefix": "left(:phone::text, 6)"}
CHECK_BINDS = {
    "check.phone.as_ref()": "phone",
    "Some(&check.code_hash)": "hash",
    "check.now": "now",
    "check.max_attempts as i32": "max_attempts",
    "&check.fraud_keys.prefix": "prefix",
    "&check.fraud_keys.country": "country",
    "RING_SLOTS as i32": "ring",
    "self.events": "events",
}


def die(msg):
    sys.exit(f"gen_flow_sql: {msg}\n  (src/storage/ changed? update tools/ceiling/gen_flow_sql.py)")


def constants(src):
    # Postgres texts are `&str` constants named PG_…; shared ones are `Sql::same(..)`.
    found = dict(re.findall(r'const (PG_\w+|CHECK_UPDATE): &str = r#"(.*?)"#;', src, re.S))
    found.update(re.findall(r'const (\w+): Sql = Sql::same\(\s*r#"(.*?)"#,?\s*\);', src, re.S))
    for name in ("PG_FRAUD_HEAD", "PG_FRAUD_SCOPE", "PG_FRAUD_TAIL", "PG_FRAUD_EVENTS", "PG_COUNTERS",
                 "PG_START_SEND", "PG_RECORDS", "PG_FRAUD_COLUMNS", "CHECK_UPDATE", "PG_CHECK_RECORDS",
                 "PG_CHECK_FRAUD", "PG_CHECK_EVENTS", "PG_CHECK_SELECT"):
        if name not in found:
            die(f"constant {name} not found")
    return found


def pg_fraud(src, c):
    """fraud/postgres.rs's pg_fraud(): PG_FRAUD_SCOPE filled in from each row of PG_FRAUD_SCOPES."""
    m = re.search(r"const PG_FRAUD_SCOPES: \[\[&str; 5\]; 2\] = \[(.*?)\n\];", src, re.S)
    if not m:
        die("PG_FRAUD_SCOPES not found")
    rows = re.findall(r'\[\s*"(.*?)",\s*"(.*?)",\s*"(.*?)",\s*"(.*?)",\s*"(.*?)",?\s*\]', m.group(1), re.S)
    if len(rows) != 2:
        die("PG_FRAUD_SCOPES: expected 2 rows")
    body = fn_body(src, "pg_fraud", fn=True)
    for part in ('"{cte}", cte', '"{scope}", scope', '"{key}", key', '"{floor}", floor', '"{gate}", gate',
                 "PG_FRAUD_HEAD.to_string()", "sql.push(',')", "sql.push_str(PG_FRAUD_TAIL)"):
        if part not in body:
            die(f"pg_fraud() no longer has `{part}`")
    sql = c["PG_FRAUD_HEAD"]
    for cte, scope, key, floor, gate in rows:
        filled = c["PG_FRAUD_SCOPE"]
        for name, value in (("cte", cte), ("scope", scope), ("key", key), ("floor", floor), ("gate", gate)):
            filled = filled.replace("{" + name + "}", value)
        sql += "," + filled
    return sql + c["PG_FRAUD_TAIL"]


def fn_body(src, name, fn=False):
    # `fn=True`: a plain function rather than an async one.
    kind = "fn" if fn else "async fn"
    m = re.search(rf"\n( *)(?:pub(?:\([^)]*\))? )?{kind} {name}\(", src)
    if not m:
        die(f"fn {name} not found")
    end = src.find(f"\n{m.group(1)}}}\n", m.end())
    return src[m.start() : end]


def binds(body, mapping, what):
    m = re.search(r"let params = \[\n(.*?)\n\s*\];", body, re.S)
    if not m:
        die(f"{what}: no `let params = [...]` list")
    out = []
    for line in m.group(1).splitlines():
        line = line.strip()
        if not line or line.startswith("//"):
            continue
        item = re.fullmatch(r"Param::(\w+)\((.*)\),", line)
        if not item:
            die(f"{what}: cannot read bind `{line}`")
        variant, expr = item.groups()
        if variant not in PARAM_TYPES:
            die(f"{what}: unknown Param variant `{variant}`")
        if expr not in mapping:
            die(f"{what}: unknown bind expression `{expr}`")
        out.append((expr, (mapping[expr], PARAM_TYPES[variant])))
    return out


def substitute(sql, bound, what):
    used = sorted({int(n) for n in re.findall(r"\$(\d+)", sql)})
    if used != list(range(1, len(bound) + 1)):
        die(f"{what}: placeholders {used} do not match {len(bound)} binds")
    params = [p for _, p in bound]

    def repl(m):
        var, typ = params[int(m.group(1)) - 1]
        return PER_FLOW.get(var, f":{var}::{typ}")

    return re.sub(r"\$(\d+)", repl, sql)


def generate():
    src = "\n".join(path.read_text() for path in SOURCES)
    c = constants(src)
    if '"{}{PG_FRAUD_EVENTS}{PG_COUNTERS}{PG_START_SEND}{PG_RECORDS}{PG_FRAUD_COLUMNS}",' not in fn_body(src, "send_postgres"):
        die("send_postgres() no longer runs pg_fraud() + PG_FRAUD_EVENTS + PG_COUNTERS + PG_START_SEND + PG_RECORDS + PG_FRAUD_COLUMNS")
    if '"with checked as ({CHECK_UPDATE}){PG_CHECK_RECORDS}{PG_CHECK_FRAUD}{PG_CHECK_EVENTS}{PG_CHECK_SELECT}"' not in fn_body(src, "check_code_sql", fn=True):
        die("check_code_sql() no longer builds the Postgres check from CHECK_UPDATE + PG_CHECK_RECORDS + PG_CHECK_FRAUD + PG_CHECK_EVENTS + PG_CHECK_SELECT")
    if "send_postgres(pool, send, &params, window)" not in fn_body(src, "reserve_send"):
        die("reserve_send() no longer passes all its params to send_postgres()")
    if ".fetch_optional(check_code_sql(), &params)" not in fn_body(src, "check_code"):
        die("check_code() no longer runs check_code_sql()")
    send_binds = binds(fn_body(src, "reserve_send"), SEND_BINDS, "send")
    check_binds = binds(fn_body(src, "check_code"), CHECK_BINDS, "verify")
    send_sql = substitute(
        pg_fraud(src, c) + c["PG_FRAUD_EVENTS"] + c["PG_COUNTERS"] + c["PG_START_SEND"] + c["PG_RECORDS"]
        + c["PG_FRAUD_COLUMNS"],
        send_binds,
        "send",
    )
    check_sql = substitute(
        "with checked as (" + c["CHECK_UPDATE"] + ")" + c["PG_CHECK_RECORDS"] + c["PG_CHECK_FRAUD"]
        + c["PG_CHECK_EVENTS"] + c["PG_CHECK_SELECT"],
        check_binds,
        "verify",
    )

    def bind_doc(bound):
        return "\n".join(f"--   ${i}: {e}  ->  :{v}::{t}" for i, (e, (v, t)) in enumerate(bound, 1))

    return f"""-- GENERATED by tools/ceiling/gen_flow_sql.py from {FROM}: do not edit.
-- One pgbench transaction = one flow = the two statements the service runs per flow on Postgres, in
-- autocommit like the service: the send (pg_fraud() + PG_FRAUD_EVENTS + PG_COUNTERS + PG_START_SEND + PG_RECORDS +
-- PG_FRAUD_COLUMNS, as Storage::reserve_send runs it) and the verify (CHECK_UPDATE + PG_CHECK_RECORDS + PG_CHECK_FRAUD +
-- PG_CHECK_EVENTS + PG_CHECK_SELECT, as Storage::check_code runs it). Run with -M prepared over TCP; run.sh passes the
-- -D variables (times computed like the service's binds, caps off as in the benchmark, the fraud guard as FRAUD_MODE
-- says, events as EVENTS says).
--
-- send binds:
{bind_doc(send_binds)}
-- verify binds:
{bind_doc(check_binds)}
--
-- A fresh number per flow, unique across clients (fewer than 1,000): :base + a per-client counter *
-- 1,000 + client_id. Like the load tool's numbers, all of a run's numbers share their first six
-- characters, so every flow counts in one fraud-guard prefix as well as one country.
\\set seq :seq + 1
\\set phone :base + :seq * 1000 + :client_id
{send_sql.strip()};
{check_sql.strip()};
"""


def main():
    text = generate()
    if "--check" in sys.argv[1:]:
        if not TARGET.exists() or TARGET.read_text() != text:
            sys.exit(f"gen_flow_sql: tools/ceiling/flow.sql is out of date with {FROM}; "
                     "run python3 tools/ceiling/gen_flow_sql.py")
        print(f"flow.sql matches {FROM}")
    else:
        TARGET.write_text(text)
        print(f"wrote {TARGET.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
