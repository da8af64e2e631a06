#!/usr/bin/env python3
"""Checks docker-compose.yml without a Docker engine, then runs its start-up sequence natively.

Static part: the file parses; every ${VAR} it references and every variable it sets for the service is
documented in .env.example (and read by the app); depends_on waits for service_healthy; every service
has a healthcheck; the service's healthcheck is the binary's own `healthcheck` subcommand; .env is
optional; the Dockerfile agrees (port, healthcheck, non-root user).

Native part, the same sequence as `docker compose up`: a fresh database on the local Postgres server
(the compose `postgres` service's role), the service started with the `environment:` of
docker-compose.yml (DATABASE_URL pointed at that database, BIND_ADDR at a free local port), waiting on
the compose healthcheck command, then send-code -> code from the log -> verify -> 200, SIGTERM -> exit 0,
and the database dropped.

Usage: compose_check.py --bin target/debug/phone-verify [--compose-cli /path/to/docker-compose]
Exit status 0 when everything passed, 1 otherwise. Needs PyYAML, psql and curl.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

SERVICE = "phone-verify"
IMAGE_BIN = "/usr/local/bin/phone-verify"
# Read by the app but not through a string literal in src/ (tracing's EnvFilter reads it).
READ_OUTSIDE_CONFIG = {"RUST_LOG"}
PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"

failures: list[str] = []


def ok(msg: str) -> None:
    print(f"  ok    {msg}", flush=True)


def fail(msg: str) -> None:
    print(f"  FAIL  {msg}", flush=True)
    failures.append(msg)


def check(cond: bool, msg: str, why: str = "") -> bool:
    if cond:
        ok(msg)
    else:
        fail(msg + (f": {why}" if why else ""))
    return cond


# ---- interpolation (the compose-spec syntax: $$, $VAR, ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?e}, ...) ----

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def interpolate(text: str, env: dict[str, str], refs: set[str] | None = None) -> str:
    """Expands variables like compose does; collects the names referenced (defaults included) in refs."""
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c != "$":
            out.append(c)
            i += 1
            continue
        nxt = text[i + 1] if i + 1 < len(text) else ""
        if nxt == "$":  # $$ is a literal $
            out.append("$")
            i += 2
        elif nxt == "{":
            depth, j = 1, i + 2
            while j < len(text) and depth:
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                j += 1
            if depth:
                raise ValueError(f"unclosed ${{ in {text!r}")
            body = text[i + 2 : j - 1]
            m = NAME.match(body)
            if not m:
                raise ValueError(f"bad variable reference ${{{body}}} in {text!r}")
            name, rest = m.group(0), body[m.end() :]
            if refs is not None:
                refs.add(name)
            value = env.get(name)
            op = next((o for o in (":-", ":?", ":+", "-", "?", "+") if rest.startswith(o)), None)
            if rest and op is None:
                raise ValueError(f"bad variable reference ${{{body}}} in {text!r}")
            arg = interpolate(rest[len(op) :], env, refs) if op else ""
            unset_or_empty = not value
            if op == ":-":
                value = arg if unset_or_empty else value
            elif op == "-":
                value = arg if value is None else value
            elif op == ":+":
                value = "" if unset_or_empty else arg
            elif op == "+":
                value = "" if value is None else arg
            elif op in (":?", "?") and (unset_or_empty if op == ":?" else value is None):
                raise ValueError(f"{name} is required: {arg}")
            out.append(value or "")
            i = j
        else:
            m = NAME.match(text, i + 1)
            if not m:
                out.append("$")
                i += 1
                continue
            if refs is not None:
                refs.add(m.group(0))
            out.append(env.get(m.group(0), ""))
            i = m.end()
    return "".join(out)


def strings_in(node):
    """Every string value in the parsed YAML (compose interpolates values, not comments or keys)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for v in node.values():
            yield from strings_in(v)
    elif isinstance(node, list):
        for v in node:
            yield from strings_in(v)


def environment_of(service: dict) -> dict[str, str | None]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        parsed: dict[str, str | None] = {}
        for item in env:
            k, sep, v = str(item).partition("=")
            parsed[k] = v if sep else None
        return parsed
    return {str(k): (None if v is None else str(v)) for k, v in env.items()}


def documented_in(env_example: Path) -> set[str]:
    names = set()
    for line in env_example.read_text().splitlines():
        m = re.match(r"\s*#?\s*([A-Z][A-Z0-9_]*)=", line)
        if m:
            names.add(m.group(1))
    return names


def read_by_app(src: Path) -> set[str]:
    names = set(READ_OUTSIDE_CONFIG)
    for f in src.rglob("*.rs"):
        names.update(re.findall(r'"([A-Z][A-Z0-9_]+)"', f.read_text()))
    return names


# ---- static checks ----------------------------------------------------------------------------------


def static_checks(root: Path, compose_path: Path, compose_cli: str | None) -> dict:
    print(f"== static checks of {compose_path.name}")
    try:
        doc = yaml.safe_load(compose_path.read_text())
    except yaml.YAMLError as e:
        fail(f"{compose_path.name} is not valid YAML: {e}")
        return {}
    if not check(isinstance(doc, dict) and isinstance(doc.get("services"), dict),
                 f"{compose_path.name} parses as YAML and has a services mapping"):
        return {}
    services: dict = doc["services"]

    if compose_cli:
        r = subprocess.run([compose_cli, "-f", str(compose_path), "config", "--quiet"],
                           cwd=root, capture_output=True, text=True)
        version = subprocess.run([compose_cli, "version", "--short"], capture_output=True,
                                 text=True).stdout.strip()
        check(r.returncode == 0,
              f"`docker-compose config --quiet` (Compose {version}, the compose-spec schema and "
              "interpolation) accepts it", (r.stderr or r.stdout).strip())
    else:
        print("  skip  docker-compose CLI not available: compose-spec schema validation skipped")

    # Variables referenced anywhere in the file must be documented.
    documented = documented_in(root / ".env.example")
    refs: set[str] = set()
    try:
        for s in strings_in(doc):
            interpolate(s, {}, refs)
        ok("every variable reference is well formed")
    except ValueError as e:
        fail(f"interpolation: {e}")
    if refs:
        missing = sorted(refs - documented)
        check(not missing, f"referenced variables documented in .env.example: {', '.join(sorted(refs))}",
              f"not documented: {', '.join(missing)}")
    else:
        ok("no ${VAR} references (nothing to document)")

    for name in (SERVICE, "postgres"):
        if not check(isinstance(services.get(name), dict), f"service `{name}` exists"):
            return {}
    svc = services[SERVICE]

    # The service's environment: documented, and actually read by the app (a typo would be ignored).
    env = environment_of(svc)
    app_reads = read_by_app(root / "src")
    for key in env:
        check(key in documented, f"{SERVICE}.environment.{key} is documented in .env.example")
        check(key in app_reads, f"{SERVICE}.environment.{key} is read by the app (found in src/)",
              "no such variable in the source: a typo?")

    # depends_on waits for health, and the dependencies have a healthcheck to wait on.
    for sname, s in services.items():
        deps = s.get("depends_on")
        if deps is None:
            continue
        if not check(isinstance(deps, dict),
                     f"{sname}.depends_on is the long form (with a condition)",
                     "the short list form only waits for the container to start"):
            continue
        for dep, spec in deps.items():
            cond = (spec or {}).get("condition")
            check(cond == "service_healthy", f"{sname}.depends_on.{dep}.condition is service_healthy",
                  f"got {cond!r}")
            check(isinstance(services.get(dep), dict) and "healthcheck" in services[dep],
                  f"{sname} depends on `{dep}`, which has a healthcheck")
    check(isinstance(svc.get("depends_on"), dict) and "postgres" in svc["depends_on"],
          f"{SERVICE} depends on postgres")

    # Every service has a healthcheck.
    for sname, s in services.items():
        hc = s.get("healthcheck") or {}
        test = hc.get("test")
        check(bool(test) and not hc.get("disable") and test != ["NONE"], f"{sname} has a healthcheck",
              "missing or disabled")
    pg_test = (services["postgres"].get("healthcheck") or {}).get("test") or []
    check("pg_isready" in " ".join(pg_test if isinstance(pg_test, list) else [pg_test]),
          "postgres healthcheck runs pg_isready")
    test = (svc.get("healthcheck") or {}).get("test")
    check(test == ["CMD", IMAGE_BIN, "healthcheck"],
          f"{SERVICE} healthcheck is the binary's subcommand: {test}",
          f'expected ["CMD", "{IMAGE_BIN}", "healthcheck"] (the image has no shell or curl)')

    # .env is optional, so `docker compose up` works without one.
    env_file = svc.get("env_file")
    entries = env_file if isinstance(env_file, list) else [env_file] if env_file else []
    dot_env = [e for e in entries if isinstance(e, dict) and e.get("path") == ".env"]
    check(bool(dot_env) and all(e.get("required") is False for e in dot_env),
          f"{SERVICE}.env_file has .env with required: false", f"got {env_file!r}")

    # Build, ports and database wiring.
    check(svc.get("build") in (".", {"context": "."}) and (root / "Dockerfile").is_file(),
          f"{SERVICE} is built from ./Dockerfile")
    db_url = env.get("DATABASE_URL") or ""
    host = urllib.parse.urlsplit(db_url).hostname
    check(db_url.startswith(("postgres://", "postgresql://")) and host in services,
          f"{SERVICE}.environment.DATABASE_URL points at the `{host}` service", db_url)
    bind_port = (env.get("BIND_ADDR") or "0.0.0.0:8080").rsplit(":", 1)[1]
    ports = [str(p) for p in svc.get("ports") or []]
    check(any(p.split(":")[-1].split("/")[0] == bind_port for p in ports),
          f"{SERVICE} publishes container port {bind_port} (BIND_ADDR): {ports}")
    pg_vols = [str(v) for v in services["postgres"].get("volumes") or []]
    named = (doc.get("volumes") or {}).keys()
    check(any(v.split(":")[0] in named for v in pg_vols), f"postgres keeps its data in a named volume: {pg_vols}")

    # The Dockerfile agrees with the compose file.
    dockerfile = (root / "Dockerfile").read_text() if (root / "Dockerfile").is_file() else ""
    check(f"EXPOSE {bind_port}" in dockerfile, f"Dockerfile exposes {bind_port}")
    check(re.search(r'HEALTHCHECK[^\n]*(\\\n[^\n]*)*CMD \["' + re.escape(IMAGE_BIN) + r'", "healthcheck"\]',
                    dockerfile) is not None, "Dockerfile HEALTHCHECK runs the binary's healthcheck subcommand")
    check(re.search(r"^USER (?!root|0\b)", dockerfile, re.M) is not None, "Dockerfile runs as a non-root user")
    return doc


# ---- native start-up sequence -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psql(sql: str) -> None:
    subprocess.run(["psql", "-h", PG_HOST, "-p", str(PG_PORT), "-U", PG_USER, "-d", "postgres",
                    "-v", "ON_ERROR_STOP=1", "-qc", sql], check=True, capture_output=True, text=True)


def http(method: str, url: str, body: dict | None = None) -> tuple[int, dict | str]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"content-type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def healthcheck_subcommand_supported(binary: str) -> bool:
    """Runs `phone-verify healthcheck` against a port where nothing listens, in a scratch directory.

    A binary that has the subcommand answers 1 at once. One without it ignores the argument and starts
    the service instead (logs "listening"): then it is stopped, and the caller falls back to curl.
    """
    with tempfile.TemporaryDirectory(prefix="pv-probe-") as d:
        log = Path(d, "probe.log")
        env = {"PATH": os.environ["PATH"], "HOME": d, "BIND_ADDR": f"127.0.0.1:{free_port()}",
               "DATABASE_URL": f"sqlite://{d}/probe.db", "SMS_PROVIDER": "console"}
        with log.open("w") as out:
            proc = subprocess.Popen([binary, "healthcheck"], cwd=d, env=env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                text = log.read_text(errors="replace")
                if "listening" in text:
                    return False
                if proc.poll() is not None:
                    if proc.returncode == 0:
                        fail("`phone-verify healthcheck` exited 0 although nothing listens on its port")
                    return True
                time.sleep(0.05)
            return False
        finally:
            stop(proc)


def native_run(root: Path, doc: dict, binary: str) -> None:
    print("== the compose start-up sequence, natively (no Docker engine here)")
    svc = doc["services"][SERVICE]
    compose_env = environment_of(svc)
    env = {"PATH": os.environ["PATH"]}
    for k, v in compose_env.items():
        if v is None:  # `- KEY` without a value: taken from the shell, like compose does
            if k in os.environ:
                env[k] = os.environ[k]
        else:
            env[k] = interpolate(v, dict(os.environ))
    print("  env_file .env is optional (required: false) and not read here: the run uses the"
          " environment: block only")

    db = f"pv_compose_{os.getpid()}"
    port = free_port()
    url = urllib.parse.urlsplit(env["DATABASE_URL"])
    env["DATABASE_URL"] = urllib.parse.urlunsplit(
        (url.scheme, f"{PG_USER}@{PG_HOST}:{PG_PORT}", f"/{db}", url.query, ""))
    env["BIND_ADDR"] = f"127.0.0.1:{port}"
    print(f"  environment from docker-compose.yml, rewritten for this host: "
          f"DATABASE_URL={env['DATABASE_URL']} (was {compose_env['DATABASE_URL']}), "
          f"BIND_ADDR={env['BIND_ADDR']} (was {compose_env.get('BIND_ADDR')})")

    # depends_on: postgres: service_healthy -> the postgres healthcheck, against the local server.
    r = subprocess.run(["pg_isready", "-h", PG_HOST, "-p", str(PG_PORT)], capture_output=True, text=True)
    if not check(r.returncode == 0, f"postgres is healthy (pg_isready -h {PG_HOST} -p {PG_PORT})",
                 r.stdout.strip()):
        return

    # The compose healthcheck, with the image's binary path mapped to the binary under test.
    test = svc["healthcheck"]["test"]
    if isinstance(test, str):
        test = ["CMD-SHELL", test]
    if test[0] == "CMD":
        health_cmd = [binary if a == IMAGE_BIN else a for a in test[1:]]
    else:
        health_cmd = ["sh", "-c", " ".join(test[1:]).replace(IMAGE_BIN, shlex.quote(binary))]
    if test == ["CMD", IMAGE_BIN, "healthcheck"] and not healthcheck_subcommand_supported(binary):
        health_cmd = ["curl", "-fsS", "-o", "/dev/null", f"http://127.0.0.1:{port}/healthz"]
        print("  note  this binary has no `healthcheck` subcommand yet (it started the service instead):"
              f" falling back to {' '.join(health_cmd)}")
    health_timeout = 5

    work = Path(tempfile.mkdtemp(prefix="pv-compose-"))
    log = work / "phone-verify.log"
    proc = None
    try:
        psql(f"drop database if exists {db}")
        psql(f"create database {db}")
        ok(f"created database {db} on {PG_HOST}:{PG_PORT}")

        # cwd is a scratch directory: no .env from the repository is picked up by dotenvy.
        with log.open("w") as out:
            proc = subprocess.Popen([binary], cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        started = time.monotonic()
        healthy = False
        while time.monotonic() - started < 60:
            if proc.poll() is not None:
                break
            try:
                r = subprocess.run(health_cmd, env=env, capture_output=True, timeout=health_timeout)
                healthy = r.returncode == 0
            except subprocess.TimeoutExpired:
                healthy = False
            if healthy:
                break
            time.sleep(0.2)
        waited = time.monotonic() - started
        why = (f"the service exited with status {proc.returncode}" if proc.poll() is not None
               else f"still unhealthy after {waited:.0f} s")
        if not check(healthy, f"healthy by the compose healthcheck `{' '.join(health_cmd)}` "
                              f"({waited:.1f} s after start)",
                     f"{why}; log:\n{log.read_text(errors='replace')}"):
            return
        status, body = http("GET", f"http://127.0.0.1:{port}/readyz")
        check(status == 200, f"GET /readyz -> {status} {body}")
        tables = subprocess.run(["psql", "-h", PG_HOST, "-p", str(PG_PORT), "-U", PG_USER, "-d", db, "-Atc",
                                 "select count(*) from _sqlx_migrations where success"],
                                capture_output=True, text=True)
        check(tables.returncode == 0 and int(tables.stdout.strip() or 0) > 0,
              f"migrations applied at start ({tables.stdout.strip()} in _sqlx_migrations)",
              tables.stderr.strip())

        phone = f"+1212555{random.randint(1000, 9999)}"
        status, body = http("POST", f"http://127.0.0.1:{port}/api/auth/phone/send-code", {"phone_number": phone})
        if not check(status == 200 and isinstance(body, dict) and body.get("status") == "pending",
                     f"send-code {phone} -> {status} {body}"):
            return
        code = None
        deadline = time.monotonic() + 5
        while code is None and time.monotonic() < deadline:
            m = re.findall(r'to=\S*' + phone[-4:] + r' code="(\d+)"', log.read_text(errors="replace"))
            code = m[-1] if m else None
            if code is None:
                time.sleep(0.05)
        if not check(code is not None, f"code read from the console provider's log line: {code}",
                     log.read_text(errors="replace")):
            return
        status, body = http("POST", f"http://127.0.0.1:{port}/api/auth/phone/verify",
                            {"phone_number": phone, "code": code})
        check(status == 200 and isinstance(body, dict) and body.get("status") == "approved",
              f"verify -> {status} {body}")

        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            rc = None
        check(rc == 0, f"SIGTERM -> clean exit (status {rc})", log.read_text(errors="replace"))
    finally:
        if proc is not None:
            stop(proc)
        try:
            psql(f"drop database if exists {db} with (force)")
            ok(f"dropped database {db}")
        except subprocess.CalledProcessError as e:
            fail(f"dropping database {db}: {e.stderr.strip()}")
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True, help="the phone-verify binary")
    ap.add_argument("--compose-cli", help="a docker-compose binary for `config --quiet` (no engine needed)")
    ap.add_argument("--root", default=Path(__file__).resolve().parent.parent, type=Path)
    args = ap.parse_args()
    root = args.root.resolve()
    binary = str(Path(args.bin).resolve())

    doc = static_checks(root, root / "docker-compose.yml", args.compose_cli)
    if failures:
        print(f"compose check: {len(failures)} static check(s) failed; not starting the service")
        return 1
    native_run(root, doc, binary)
    if failures:
        print(f"compose check: FAILED ({len(failures)} failure(s))")
        return 1
    print("compose check: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
