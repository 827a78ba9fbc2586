"""Benchmark of the data gateway (issues 4 and 20). Run it with ``scripts/bench``.

Starts its own embedded PostgreSQL and its own gateway(s) on loopback, seeds 100k rows, then
measures at the same concurrency (32 connections by default), with 1 and with 2 workers:

    (p) the peer: FastAPI + asyncpg on uvicorn (uvloop, httptools), GET /items/{id}
        (scripts/bench_peer/, from its own venv) — what a team would hand-write
    (a) POST /gateway/fetch by primary key        (r) GET /rest/v1/bench_items?id=eq.N
    (b) a 100-row page (keyset, sorted)           (c) PUT /gateway/insert of one row
    (e) GET /ping (the HTTP framework alone)      (d) (a)'s exact SQL through a psycopg pool

and prints every scenario's ratio to the peer *of the same round and worker count* (only ratios
within one run mean anything on a shared machine). ``--rounds N`` repeats the whole set,
alternating the peer and the gateway, and reports min and median. Once more with
``ATHENA_LANE_HTTP=false``
(hypercorn's HTTP/1.1 for every request, the framework the a/e target was set against). The load generator is ``wrk`` (C, cheap; Lua
scripts build the POST bodies). Requests carry an ordinary API key bound to client ``athena``
with only the rights they need (made through the admin API), so the key check is measured too.
(d) is driven by Python threads, each borrowing from one psycopg ``ConnectionPool``: the
gateway's statement, minus the gateway.

Prints req/s, p50 and p99 for each, the ratios a/e and a/d, and writes the numbers as JSON into
``bench-results/``. Nothing here is a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
from _benchkit import tree_cpu_seconds
from psycopg import sql
from psycopg_pool import ConnectionPool

from athena.db.catalog import ensure_login_role
from athena.db.embedded import EmbeddedPostgres, free_port
from athena.query.fetch import fetch_statement

ROOT = Path(__file__).resolve().parents[1]
APP_ROLE = "athena_app"
TABLE = "bench_items"

SEED_SQL = """
DROP TABLE IF EXISTS bench_items, bench_inserts;
CREATE TABLE bench_items (
    id bigint PRIMARY KEY,
    name text NOT NULL,
    qty integer NOT NULL,
    price numeric(10,2),
    active boolean NOT NULL,
    created_at timestamptz NOT NULL,
    note text
);
INSERT INTO bench_items
SELECT g, 'item ' || g, g % 1000, (g % 10000) / 100.0, g % 3 <> 0,
       timestamptz '2024-01-01' + g * interval '1 minute',
       CASE WHEN g % 5 = 0 THEN NULL ELSE 'note ' || g END
  FROM generate_series(1, %s) g;
CREATE TABLE bench_inserts (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    qty integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
ANALYZE bench_items;
"""

LUA_HEADERS = """
wrk.headers["Content-Type"] = "application/json"
wrk.headers["apikey"] = "{key}"
wrk.headers["X-Athena-Client"] = "athena"
wrk.headers["X-User-Id"] = "bench"
wrk.headers["X-Company-Id"] = "bench"
wrk.headers["X-Organization-Id"] = "bench"
math.randomseed(os.time())
"""

LUA = {
    "rest_pk": """
request = function()
  local id = math.random(1, {rows})
  return wrk.format("GET", "/rest/v1/bench_items?id=eq." .. id)
end
""",
    "peer_pk": """
request = function()
  local id = math.random(1, {rows})
  return wrk.format("GET", "/items/" .. id)
end
""",
    "fetch_pk": """
request = function()
  local id = math.random(1, {rows})
  return wrk.format("POST", "/gateway/fetch", nil,
    '{{"table_name":"bench_items","conditions":[{{"eq_column":"id","eq_value":"' .. id .. '"}}]}}')
end
""",
    "page_100": """
request = function()
  local after = math.random(0, {rows} - 100)
  return wrk.format("POST", "/gateway/fetch", nil,
    '{{"table_name":"bench_items","conditions":[{{"column":"id","operator":"gt","value":' .. after ..
    '}}],"sort_by":{{"field":"id","direction":"asc"}},"limit":100}}')
end
""",
    "insert": """
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("PUT", "/gateway/insert", nil,
    '{{"table_name":"bench_inserts","insert_body":{{"name":"row ' .. counter .. '","qty":' .. (counter % 100) .. '}}}}')
end
""",
}


# -- the pieces --------------------------------------------------------------------------------


def start_postgres(work: Path) -> tuple[EmbeddedPostgres, str, str, str]:
    """An embedded server with a catalog database and a data database owned by the app role."""
    server = EmbeddedPostgres(work / "pg")
    server.lock()
    server.start()
    password = secrets.token_hex(12)
    with psycopg.connect(server.uri(), autocommit=True) as conn:
        ensure_login_role(conn, APP_ROLE, password)
        for name, owner in (("bench_catalog", "postgres"), ("bench_data", APP_ROLE)):
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(owner)
                )
            )
    catalog = server.uri("bench_catalog")
    data = server.uri("bench_data", user=APP_ROLE, password=password)
    return server, catalog, data, password


def seed(data_uri: str, rows: int) -> None:
    with psycopg.connect(data_uri, autocommit=True) as conn:
        conn.execute(SEED_SQL.replace("%s", str(int(rows))).encode())


class Server:
    """A server subprocess on a free loopback port, answering ``GET /ping``."""

    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def wait_until_up(self, what: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{what} exited early:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/ping", timeout=1).text == "pong":
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise SystemExit(f"{what} did not start within 60 s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Gateway(Server):
    """``athena serve`` as a subprocess on a free loopback port."""

    def __init__(
        self, work: Path, catalog: str, data: str, key: str, workers: int,
        extra_env: dict[str, str] | None = None, cwd: Path | None = None,
    ) -> None:  # fmt: skip
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ATHENA_")}
        env.update(
            {
                "ATHENA_CATALOG_URI": catalog,
                "ATHENA_KEY_12": key,
                "ATHENA_CLIENTS": json.dumps({"athena": {"pg_uri": data}}),
                "ATHENA_POOL_MAX_SIZE": os.environ.get("ATHENA_POOL_MAX_SIZE", "16"),
                "ATHENA_POOL_MIN_SIZE": os.environ.get("ATHENA_POOL_MIN_SIZE", "8"),
                **(extra_env or {}),
            }
        )
        data_dir = work / f"gateway-{self.port}"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = data_dir / "server.log"
        cmd = [
            sys.executable, "-m", "athena", "serve", "--port", str(self.port),
            "--data-dir", str(data_dir), "--workers", str(workers),
        ]  # fmt: skip
        with open(self.log_path, "wb") as log:
            # cwd: ``python -m`` puts it first on sys.path, ahead of PYTHONPATH — a gateway
            # from another source tree must run from that tree
            self.proc = subprocess.Popen(
                cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT
            )
        self.wait_until_up("gateway")


class Peer(Server):
    """The FastAPI + asyncpg peer (scripts/bench_peer/app.py) from its own venv, under uvicorn."""

    def __init__(self, work: Path, data: str, key: str, workers: int) -> None:
        venv = peer_venv()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("ATHENA_")},
            "PEER_DSN": data,
            "PEER_KEY": key,
            "PEER_POOL": os.environ.get("ATHENA_POOL_MAX_SIZE", "16"),
        }
        self.log_path = work / f"peer-{self.port}.log"
        cmd = [
            str(venv / "bin" / "uvicorn"), "app:app", "--host", "127.0.0.1",
            "--port", str(self.port), "--workers", str(workers), "--loop", "uvloop",
            "--http", "httptools", "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                cmd, env=env, cwd=ROOT / "scripts" / "bench_peer", stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.wait_until_up("peer")


def peer_venv() -> Path:
    """bench-results/peer-venv with scripts/bench_peer/requirements.txt (made once)."""
    venv = ROOT / "bench-results" / "peer-venv"
    requirements = ROOT / "scripts" / "bench_peer" / "requirements.txt"
    stamp = venv / ".requirements"
    if stamp.exists() and stamp.read_text() == requirements.read_text():
        return venv
    print("creating the peer's venv (FastAPI, uvicorn, uvloop, httptools, asyncpg) …", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
         "-r", str(requirements)],
        check=True,
    )  # fmt: skip
    stamp.write_text(requirements.read_text())
    return venv


def create_bench_key(url: str, admin_key: str) -> str:
    """A key bound to client ``athena`` holding bench_items.read and bench_inserts.write."""
    admin = {"apikey": admin_key}
    rights = ["bench_items.read", "bench_inserts.write"]
    with httpx.Client(base_url=url, headers=admin, timeout=30) as http:
        for right in rights:
            made = http.post("/admin/api-key-rights", json={"name": right})
            if made.status_code not in (200, 201, 409):
                raise SystemExit(f"cannot define right {right}: {made.text}")
        made = http.post(
            "/admin/api-keys", json={"name": "bench", "client_name": "athena", "rights": rights}
        )
        if made.status_code != 201:
            raise SystemExit(f"cannot create the bench key: {made.text}")
        return str(made.json()["api_key"])


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        return float("nan")
    return float(match.group(1)) * _UNITS[match.group(2)]


def run_wrk(
    url: str, script: Path | None, *, connections: int, duration: int, threads: int
) -> dict[str, Any]:
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        "--timeout",
        "10s",
    ]
    if script is not None:
        cmd += ["-s", str(script)]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(0) if errors else None,
    }


def run_direct(data_uri: str, *, rows: int, connections: int, duration: int) -> dict[str, Any]:
    """(d): the statement of (a), rendered by the same builder, through a psycopg pool."""
    shape = (("public", TABLE), None, (("cmp", "id", "eq", False),), (), False)
    statement = fetch_statement(shape)
    pool = ConnectionPool(
        data_uri, min_size=connections, max_size=connections, open=True,
        kwargs={"autocommit": True},
    )  # fmt: skip
    pool.wait(30)
    latencies: list[list[float]] = [[] for _ in range(connections)]
    stop_at = time.perf_counter() + duration
    import random

    def worker(slot: int) -> None:
        rng = random.Random(slot)
        mine = latencies[slot]
        while True:
            started = time.perf_counter()
            if started >= stop_at:
                return
            with pool.connection() as conn:
                conn.execute(statement, [str(rng.randint(1, rows)), 100, 0]).fetchone()
            mine.append(time.perf_counter() - started)

    began = time.perf_counter()
    workers = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    elapsed = time.perf_counter() - began
    pool.close()
    merged = sorted(x for chunk in latencies for x in chunk)
    return {
        "rps": len(merged) / elapsed,
        "p50_ms": merged[len(merged) // 2] * 1000,
        "p99_ms": merged[int(len(merged) * 0.99)] * 1000,
        "non_2xx": 0,
        "socket_errors": None,
    }


def _stats(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return ordered[0], ordered[len(ordered) // 2]


# (label, script, path suffix) of the gateway scenarios, measured with 1 and with 2 workers.
GATEWAY_SCENARIOS = [
    ("a fetch by pk", "fetch_pk", ""),
    ("r rest by id", "rest_pk", ""),
    ("b 100-row page", "page_100", ""),
    ("c insert one row", "insert", ""),
    ("e GET /ping", None, "/ping"),
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--warmup", type=int, default=5, help="seconds of load before each")
    parser.add_argument("--rounds", type=int, default=1, help="repeat everything N times")
    parser.add_argument("--skip-workers", action="store_true", help="skip the --workers 2 runs")
    parser.add_argument("--skip-peer", action="store_true", help="skip the FastAPI peer")
    parser.add_argument(
        "--skip-hypercorn", action="store_true", help="skip the ATHENA_LANE_HTTP=false runs"
    )
    parser.add_argument(
        "--tracing", action="store_true",
        help="only measure (a) and (r) with OpenTelemetry tracing off and on (to a loopback "
        "OTLP/HTTP receiver), alternating (--repeat rounds)",
    )  # fmt: skip
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the --tracing runs")
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="with --tracing: also run a gateway from this source tree (e.g. a checkout of the "
        "commit before tracing existed), to show what tracing off costs",
    )
    parser.add_argument(
        "--before-src", type=Path,
        help="with --tracing: also run gateways from this source tree with tracing off and on "
        "(e.g. an export of main), for a before/after within one run",
    )  # fmt: skip
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is required (scripts/bench installs it with apt-get when missing)")
    if args.tracing:
        tracing_overhead(args)
        return

    work = Path(tempfile.mkdtemp(prefix="athena-bench-"))
    key = "bench_admin_" + secrets.token_hex(16)
    peer_key = "peer_" + secrets.token_hex(16)
    pg, catalog, data, _ = start_postgres(work)
    pg_pid = int((pg.pgdata / "postmaster.pid").read_text().split()[0])
    # label → one result per round
    results: dict[str, list[dict[str, Any]]] = {}
    server: Server | None = None
    try:
        print(f"seeding {args.rows} rows …", flush=True)
        seed(data, args.rows)
        scripts: dict[str, Path] = {}

        def measure(label: str, url: str, script: Path | None) -> None:
            # warm-up: pools grown, statements prepared on every connection, caches loaded —
            # with 2 workers that takes longer than 2 s, which the first numbers showed
            run_wrk(
                url, script, connections=args.connections, duration=args.warmup,
                threads=args.threads,
            )  # fmt: skip
            assert server is not None
            # The warm-up's connections close before the measured ones open, as a client pool
            # does not reconnect all at once: otherwise the workers balance the new connections
            # against old ones still closing.
            time.sleep(1)
            cpu_before = tree_cpu_seconds(server.proc.pid)
            pg_before = tree_cpu_seconds(pg_pid)
            r = run_wrk(
                url, script, connections=args.connections, duration=args.duration,
                threads=args.threads,
            )  # fmt: skip
            # CPU the server spent per request: unlike req/s it hardly depends on what else
            # runs on the machine, so it is the fairer number on a shared box. PostgreSQL's
            # (the postmaster and its backends) shows what the database itself costs a request:
            # on 2 cores, server + PostgreSQL + wrk share them, which bounds req/s.
            cpu = tree_cpu_seconds(server.proc.pid) - cpu_before
            pg_cpu = tree_cpu_seconds(pg_pid) - pg_before
            served = max(1.0, r["rps"] * args.duration)
            r["server_cpu_us_per_req"] = cpu / served * 1e6
            r["pg_cpu_us_per_req"] = pg_cpu / served * 1e6
            results.setdefault(label, []).append(r)
            print(f"  {label:<32} {r['rps']:>9.0f} req/s  p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms"
                  f"  non-2xx {r['non_2xx']}  server CPU {r['server_cpu_us_per_req']:.0f} us/req"
                  f"  PostgreSQL CPU {r['pg_cpu_us_per_req']:.0f} us/req",
                  flush=True)  # fmt: skip

        worker_counts = (1,) if args.skip_workers else (1, 2)
        for round_no in range(args.rounds):
            print(f"round {round_no + 1} of {args.rounds}", flush=True)
            for workers in worker_counts:
                suffix = "" if workers == 1 else " (2 workers)"
                # Alternate who goes first, so neither always meets a warmer or colder machine.
                order = ["peer", "gateway"] if round_no % 2 == 0 else ["gateway", "peer"]
                for who in order:
                    if who == "peer":
                        if args.skip_peer:
                            continue
                        server = Peer(work, data, peer_key, workers)
                        print(f"peer with --workers {workers} on {server.url}", flush=True)
                        if "peer_pk" not in scripts:
                            path = work / "peer_pk.lua"
                            path.write_text(
                                LUA_HEADERS.format(key=peer_key)
                                + LUA["peer_pk"].format(rows=args.rows)
                            )
                            scripts["peer_pk"] = path
                        measure(f"p peer by id{suffix}", server.url, scripts["peer_pk"])
                    else:
                        server = Gateway(work, catalog, data, key, workers)
                        print(f"gateway with --workers {workers} on {server.url}", flush=True)
                        if "fetch_pk" not in scripts:
                            # An ordinary client-bound key holding only the rights it needs,
                            # so the measured path includes the real key check.
                            bench_key = create_bench_key(server.url, key)
                            for name, body in LUA.items():
                                if name == "peer_pk":
                                    continue
                                path = work / f"{name}.lua"
                                path.write_text(
                                    LUA_HEADERS.format(key=bench_key) + body.format(rows=args.rows)
                                )
                                scripts[name] = path
                        for label, script, path_suffix in GATEWAY_SCENARIOS:
                            measure(
                                f"{label}{suffix}", server.url + path_suffix,
                                scripts[script] if script else None,
                            )  # fmt: skip
                    server.stop()
                    server = None
        if not args.skip_hypercorn:
            server = Gateway(work, catalog, data, key, 1, {"ATHENA_LANE_HTTP": "false"})
            print(f"gateway with ATHENA_LANE_HTTP=false on {server.url}", flush=True)
            measure("a fetch by pk (hypercorn)", server.url, scripts["fetch_pk"])
            measure("e GET /ping (hypercorn)", f"{server.url}/ping", None)
            server.stop()
            server = None
        print("direct psycopg pool (same SQL as a) …", flush=True)
        run_direct(data, rows=args.rows, connections=args.connections, duration=2)
        results["d psycopg pool, same SQL"] = [
            run_direct(data, rows=args.rows, connections=args.connections, duration=args.duration)
        ]
    finally:
        if server is not None:
            server.stop()
        pg.stop()
        pg.unlock()

    report(results, args)
    out_dir = ROOT / "bench-results"
    out_dir.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (out_dir / f"bench-{stamp}.json").write_text(json.dumps(results, indent=2))
    shutil.rmtree(work, ignore_errors=True)


def report(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> None:
    """The table (min / median over rounds) and each scenario's ratio to the peer."""
    print()
    print(
        f"| measurement (c={args.connections}, {args.duration}s, {args.rounds} round(s)) "
        "| req/s min | req/s median | p99 ms median | x peer (median of per-round ratios) "
        "| server CPU us/req | PostgreSQL CPU us/req |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, runs in results.items():
        rps_min, rps_med = _stats([r["rps"] for r in runs])
        _, p99_med = _stats([r["p99_ms"] for r in runs])
        cpu = runs[-1].get("server_cpu_us_per_req")
        peer_label = "p peer by id" + (" (2 workers)" if "(2 workers)" in label else "")
        peer_runs = results.get(peer_label)
        ratio = "-"
        if peer_runs and not label.startswith(("p ", "d ")) and "hypercorn" not in label:
            ratios = [r["rps"] / p["rps"] for r, p in zip(runs, peer_runs, strict=False)]
            ratio = f"{_stats(ratios)[1]:.2f}"
        cpu_text = f"{cpu:.0f}" if cpu is not None else "-"
        pg_cpu = runs[-1].get("pg_cpu_us_per_req")
        pg_text = f"{pg_cpu:.0f}" if pg_cpu is not None else "-"
        print(
            f"| {label} | {rps_min:.0f} | {rps_med:.0f} | {p99_med:.1f} | {ratio} | {cpu_text} "
            f"| {pg_text} |"
        )
    fetch = results.get("a fetch by pk")
    if fetch:
        a = _stats([r["rps"] for r in fetch])[1]
        for label in ("b 100-row page", "c insert one row", "r rest by id"):
            if label in results:
                print(
                    f"{label} / a fetch by pk = {_stats([r['rps'] for r in results[label]])[1] / a:.2f}"
                )
        if not args.skip_workers:
            for label, _, _ in GATEWAY_SCENARIOS:
                one, two = results.get(label), results.get(f"{label} (2 workers)")
                if one and two:
                    ratio = _stats([r["rps"] for r in two])[1] / _stats([r["rps"] for r in one])[1]
                    print(f"{label}: 2 workers / 1 worker = {ratio:.2f}")


class _OtlpSink:
    """An OTLP/HTTP receiver on loopback: decodes every export (as a collector would) and
    counts its spans, so that a gateway dropping spans cannot look cheap."""

    def __init__(self) -> None:
        import http.server
        import threading

        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        self.spans = 0
        lock = threading.Lock()
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a collector

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = trace_service_pb2.ExportTraceServiceRequest()
                request.ParseFromString(body)
                count = sum(
                    len(scope.spans)
                    for resource in request.resource_spans
                    for scope in resource.scope_spans
                )
                with lock:
                    sink.spans += count
                reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


TRACING_SCENARIOS = (("a fetch by pk", "fetch_pk"), ("r rest by id", "rest_pk"))


def tracing_overhead(args: argparse.Namespace) -> None:
    """(a) and (r) through gateways with tracing off, on (exporting to a loopback OTLP
    receiver), on with 5% sampling, and — with --before-src / --baseline-src — from other source
    trees; measured in alternation, ``--repeat`` rounds, so that a noisy machine shifts all of
    them alike. Ratios are within one round; the summary gives their min and median."""
    work = Path(tempfile.mkdtemp(prefix="athena-bench-tracing-"))
    key = "bench_admin_" + secrets.token_hex(16)
    pg, catalog, data, _ = start_postgres(work)
    sink = _OtlpSink()
    gateways: dict[str, Gateway] = {}
    rounds: list[dict[str, dict[str, dict[str, Any]]]] = []
    try:
        print(f"seeding {args.rows} rows …", flush=True)
        seed(data, args.rows)
        # A short schedule delay, so that each measurement's spans reach the receiver before
        # the next starts (under load the batch size, not the delay, triggers the exports).
        on = {
            "ATHENA_TRACING": "true",
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink.url,
            "OTEL_BSP_SCHEDULE_DELAY": "1000",
        }
        variants: dict[str, tuple[dict[str, str], Path | None]] = {
            "off": ({"ATHENA_TRACING": "false"}, None),
            "on": (on, None),
            # What operators may run at volume: a sampled fraction of traces (here 5%).
            "on 5%": (
                {**on, "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                 "OTEL_TRACES_SAMPLER_ARG": "0.05"},
                None,
            ),
        }  # fmt: skip
        for label, src in (("before", args.before_src), ("baseline", args.baseline_src)):
            if src is not None:
                tree = src.resolve()
                variants[f"{label} off"] = (
                    {"ATHENA_TRACING": "false", "PYTHONPATH": str(tree)},
                    tree,
                )
                if label == "before":
                    variants["before on"] = ({**on, "PYTHONPATH": str(tree)}, tree)
        for name, (env, cwd) in variants.items():
            gateways[name] = Gateway(work, catalog, data, key, 1, env, cwd=cwd)
        bench_key = create_bench_key(gateways["off"].url, key)
        scripts: dict[str, Path] = {}
        for label, lua in TRACING_SCENARIOS:
            scripts[label] = work / f"{lua}.lua"
            scripts[label].write_text(
                LUA_HEADERS.format(key=bench_key) + LUA[lua].format(rows=args.rows)
            )
        for gateway in gateways.values():  # warm-up: pools, prepared statements, caches
            for script in scripts.values():
                run_wrk(gateway.url, script, connections=args.connections, duration=args.warmup,
                        threads=args.threads)  # fmt: skip
        time.sleep(2)  # the warm-up's spans exported
        for i in range(args.repeat):
            results: dict[str, dict[str, dict[str, Any]]] = {}
            for label, script in scripts.items():
                results[label] = {}
                order = list(gateways.items())
                if i % 2:  # alternate the order too: no variant always runs first
                    order.reverse()
                for name, gateway in order:
                    time.sleep(1)
                    spans_before = sink.spans
                    cpu_before = tree_cpu_seconds(gateway.proc.pid)
                    r = run_wrk(gateway.url, script, connections=args.connections,
                                duration=args.duration, threads=args.threads)  # fmt: skip
                    # The last batch is exported (1 s schedule delay) before the CPU is read,
                    # whatever the variant: all count the same idle time after the load.
                    time.sleep(1.3)
                    cpu = tree_cpu_seconds(gateway.proc.pid) - cpu_before
                    requests = max(1.0, r["rps"] * args.duration)
                    r["gateway_cpu_us_per_req"] = cpu / requests * 1e6
                    r["spans_per_req"] = (sink.spans - spans_before) / requests
                    results[label][name] = r
                    print(f"  round {i + 1} {label:<14} tracing {name:<11} {r['rps']:>7.0f} req/s"
                          f"  p99 {r['p99_ms']:6.2f} ms  non-2xx {r['non_2xx']}"
                          f"  CPU {r['gateway_cpu_us_per_req']:5.0f} us/req"
                          f"  spans/req {r['spans_per_req']:.2f}", flush=True)  # fmt: skip
            rounds.append(results)
    finally:
        for gateway in gateways.values():
            gateway.stop()
        sink.close()
        pg.stop()
        pg.unlock()
    print_tracing_summary(rounds, list(gateways))
    out_dir = ROOT / "bench-results"
    out_dir.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (out_dir / f"bench-tracing-{stamp}.json").write_text(json.dumps(rounds, indent=2))
    shutil.rmtree(work, ignore_errors=True)


def print_tracing_summary(
    rounds: list[dict[str, dict[str, dict[str, Any]]]], names: list[str]
) -> None:
    """Per scenario and variant: CPU µs/request and req/s (min / median over the rounds), and
    each variant's ratio to ``off`` (on/off, before on/before off) of the same round."""
    reference = {name: ("before off" if name.startswith("before") else "off") for name in names}
    print()
    print("| scenario | tracing | CPU us/req min / median | req/s min / median | spans/req "
          "| CPU ratio to off, min / median | req/s ratio to off, min / median |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|")
    for label, _ in TRACING_SCENARIOS:
        for name in names:
            runs = [r[label][name] for r in rounds]
            cpu = _stats([x["gateway_cpu_us_per_req"] for x in runs])
            rps = _stats([x["rps"] for x in runs])
            spans = _stats([x["spans_per_req"] for x in runs])[1]
            base = reference[name]
            if base == name:
                ratios = "- | -"
            else:
                cpu_r = _stats([r[label][name]["gateway_cpu_us_per_req"]
                                / r[label][base]["gateway_cpu_us_per_req"] for r in rounds])  # fmt: skip
                rps_r = _stats([r[label][name]["rps"] / r[label][base]["rps"] for r in rounds])
                ratios = f"{cpu_r[0]:.3f} / {cpu_r[1]:.3f} | {rps_r[0]:.3f} / {rps_r[1]:.3f}"
            print(f"| {label} | {name} | {cpu[0]:.0f} / {cpu[1]:.0f} | {rps[0]:.0f} / {rps[1]:.0f}"
                  f" | {spans:.2f} | {ratios} |")  # fmt: skip


if __name__ == "__main__":
    main()
