#!/usr/bin/env python3
"""What do the request log and the metrics cost? Gateway fetch throughput with and without them.

    .venv/bin/python scripts/bench_logging.py [--seconds 10] [--concurrency 16] [--rounds 3]

Starts a throwaway PostgreSQL and, per round, two gateways in turn on the same catalog: one with
the request log writer enabled (the default) and one with ``ATHENA_REQUEST_LOG_ENABLED=false``.
Each is driven by the same closed-loop load (``--concurrency`` connections, ``--seconds`` each)
against ``POST /gateway/fetch`` (10 rows of a 1000-row table) — or ``GET /rest/v1/{table}`` when
the server has no ``/gateway/fetch`` yet; the report says which. Rounds alternate the two modes so
that drift on a shared machine hits both; medians are reported.

Metrics cannot be switched off (every request is counted), so their cost is measured directly:
the time of one ``Metrics.observe`` + ``RequestLog.record`` call in-process, as a share of the
measured time per request.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg
import trio
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from athena.db.embedded import EmbeddedPostgres, free_port  # noqa: E402

ADMIN_KEY = "bench_admin_" + secrets.token_hex(16)
TABLE = "bench_items"


def start_gateway(data_dir: Path, catalog_uri: str, data_uri: str, log_enabled: bool) -> tuple:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATHENA_")}
    env.update(
        {
            "ATHENA_CATALOG_URI": catalog_uri,
            "ATHENA_KEY_12": ADMIN_KEY,
            "ATHENA_CLIENTS": json.dumps({"bench": {"pg_uri": data_uri}}),
            "ATHENA_REQUEST_LOG_ENABLED": "true" if log_enabled else "false",
        }
    )
    log = open(data_dir / f"gateway-{port}.log", "ab")  # closed by stop_gateway
    proc = subprocess.Popen(
        [sys.executable, "-m", "athena", "serve", "--port", str(port), "--data-dir",
         str(data_dir / f"gw-{port}")],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gateway exited early; see {log.name}")
        try:
            if httpx.get(f"{url}/ping", timeout=1).text == "pong":
                return proc, url, log
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("gateway did not start")


def stop_gateway(proc: subprocess.Popen, log: object) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()  # type: ignore[attr-defined]


def pick_target(url: str) -> tuple[str, str, dict | None]:
    paths = {r["path"] for r in httpx.get(f"{url}/", timeout=10).json()["routes"]}
    if "/gateway/fetch" in paths:
        return "POST", "/gateway/fetch", {"table_name": TABLE, "limit": 10}
    return "GET", f"/rest/v1/{TABLE}?limit=10", None


async def drive(url: str, target: tuple, seconds: float, concurrency: int) -> tuple[int, int]:
    method, path, body = target
    headers = {"apikey": ADMIN_KEY, "X-Athena-Client": "bench", "X-User-Id": "bench"}
    done = failed = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as c:
        for _ in range(20):  # warm the pools and caches
            (await c.request(method, path, json=body)).raise_for_status()
        deadline = trio.current_time() + seconds

        async def worker() -> None:
            nonlocal done, failed
            while trio.current_time() < deadline:
                response = await c.request(method, path, json=body)
                if response.status_code == 200:
                    done += 1
                else:
                    failed += 1

        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(worker)
    return done, failed


def hot_path_cost_us(n: int = 200_000) -> float:
    """Microseconds of one Metrics.observe + RequestLog.record, as after_request does it."""
    from athena.context import CallContext
    from athena.metrics import Metrics
    from athena.services.request_log import RequestLog

    async def run() -> float:
        metrics = Metrics()
        rlog = RequestLog(None, n + 1, 500, 1.0, metrics.request_log_dropped.inc)  # type: ignore[arg-type]
        ctx = CallContext.from_pairs(
            [("x-user-id", "u"), ("x-athena-client", "bench")],
            route="/gateway/fetch", method="POST", remote_addr="127.0.0.1",
        )  # fmt: skip
        ctx.client_name, ctx.table_name, ctx.operation = "bench", TABLE, "fetch"
        started = time.perf_counter()
        for _ in range(n):
            metrics.observe("/gateway/fetch", "POST", 200, "bench", 0.004)
            rlog.record(ctx, 200, 0.004)
        return (time.perf_counter() - started) / n * 1e6

    return trio.run(run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="athena-bench-log-"))
    pg = EmbeddedPostgres(work / "pg")
    pg.lock()
    pg.start()
    try:
        with psycopg.connect(pg.uri(), autocommit=True) as conn:
            for db in ("bench_catalog", "bench_data"):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
        with psycopg.connect(pg.uri("bench_data"), autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, label text, amount numeric)").format(
                    sql.Identifier(TABLE)
                )
            )
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} SELECT g, 'item ' || g, g * 1.5 FROM generate_series(1, 1000) g"
                ).format(sql.Identifier(TABLE))
            )
        results: dict[bool, list[float]] = {True: [], False: []}
        target = None
        for round_no in range(args.rounds):
            for enabled in (True, False) if round_no % 2 == 0 else (False, True):
                proc, url, log = start_gateway(
                    work, pg.uri("bench_catalog"), pg.uri("bench_data"), enabled
                )
                try:
                    target = target or pick_target(url)
                    done, failed = trio.run(drive, url, target, args.seconds, args.concurrency)
                finally:
                    stop_gateway(proc, log)
                rps = done / args.seconds
                results[enabled].append(rps)
                print(
                    f"round {round_no + 1}: log {'on ' if enabled else 'off'}  {rps:8.1f} req/s"
                    f"  ({failed} non-200)",
                    flush=True,
                )
        with psycopg.connect(pg.uri("bench_catalog"), autocommit=True) as conn:
            logged = conn.execute("SELECT count(*) FROM athena.gateway_request_log").fetchone()[0]
    finally:
        pg.stop()
        pg.unlock()

    on, off = statistics.median(results[True]), statistics.median(results[False])
    cost = hot_path_cost_us()
    per_request_us = 1e6 / on if on else float("nan")
    assert target is not None
    print()
    print(
        f"target: {target[0]} {target[1]}  concurrency {args.concurrency}, {args.seconds:g} s x {args.rounds} rounds"
    )
    print(f"median with request log:    {on:8.1f} req/s")
    print(f"median without request log: {off:8.1f} req/s")
    print(f"request log cost:           {(off - on) / off * 100:+.1f} % of throughput")
    print(f"log rows written (log on):  {logged}")
    print(
        f"hot path (metrics.observe + request_log.record): {cost:.2f} us per request"
        f" = {cost / per_request_us * 100:.2f} % of {per_request_us:.0f} us per request"
    )


if __name__ == "__main__":
    main()
