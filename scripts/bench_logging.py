#!/usr/bin/env python3
"""What do the request log and the metrics cost? Gateway fetch throughput with and without them.

    .venv/bin/python scripts/bench_logging.py [--seconds 30] [--slice 2] [--concurrency 8] [--pairs 2]

Starts a throwaway PostgreSQL and two gateways side by side on one catalog: one with the request
log writer enabled (the default), one with ``ATHENA_REQUEST_LOG_ENABLED=false``. The same
closed-loop load (``--concurrency`` connections) drives them in alternating slices of
``--slice`` seconds until each has had ``--seconds``: on a shared, noisy machine any drift in
background load then hits both modes alike. This is repeated for ``--pairs`` fresh pairs,
swapping which gateway starts first (position bias showed up in an A/A run). The target is ``POST /gateway/fetch`` (10 rows of a
1000-row table), or ``GET /rest/v1/{table}`` when the server has no ``/gateway/fetch``; the
report says which.

Metrics cannot be switched off (every request is counted), so their cost is measured directly:
the time of one ``Metrics.observe`` + ``RequestLog.record`` call in-process, as a share of the
measured time per request.
"""

from __future__ import annotations

import argparse
import json
import secrets
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

from _benchkit import start_gateway as launch  # noqa: E402
from _benchkit import stop_gateway  # noqa: E402

from athena.db.embedded import EmbeddedPostgres  # noqa: E402

ADMIN_KEY = "bench_admin_" + secrets.token_hex(16)
TABLE = "bench_items"


def start_gateway(data_dir: Path, catalog_uri: str, data_uri: str, log_enabled: bool) -> tuple:
    return launch(
        data_dir,
        {
            "ATHENA_CATALOG_URI": catalog_uri,
            "ATHENA_KEY_12": ADMIN_KEY,
            "ATHENA_CLIENTS": json.dumps({"bench": {"pg_uri": data_uri}}),
            "ATHENA_REQUEST_LOG_ENABLED": "true" if log_enabled else "false",
        },
    )


def pick_target(url: str) -> tuple[str, str, dict | None]:
    paths = {r["path"] for r in httpx.get(f"{url}/", timeout=10).json()["routes"]}
    if "/gateway/fetch" in paths:
        return "POST", "/gateway/fetch", {"table_name": TABLE, "limit": 10}
    return "GET", f"/rest/v1/{TABLE}?limit=10", None


HEADERS = {"X-Athena-Client": "bench", "X-User-Id": "bench"}


async def drive_slice(
    client: httpx.AsyncClient, target: tuple, seconds: float, concurrency: int
) -> tuple[int, int]:
    """Closed-loop load for ``seconds``: (answered 200, anything else)."""
    method, path, body = target
    done = failed = 0
    deadline = trio.current_time() + seconds

    async def worker() -> None:
        nonlocal done, failed
        while trio.current_time() < deadline:
            response = await client.request(method, path, json=body)
            if response.status_code == 200:
                done += 1
            else:
                failed += 1

    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(worker)
    return done, failed


async def compare(urls: dict[bool, str], target: tuple, args: argparse.Namespace) -> dict:
    """Alternate slices between the two gateways; totals per mode."""
    limits = httpx.Limits(
        max_connections=args.concurrency, max_keepalive_connections=args.concurrency
    )
    headers = {"apikey": ADMIN_KEY, **HEADERS}
    totals = {True: [0, 0, 0.0], False: [0, 0, 0.0]}  # done, failed, seconds
    clients = {
        mode: httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30)
        for mode, url in urls.items()
    }
    try:
        method, path, body = target
        for client in clients.values():  # warm pools, caches and connections
            for _ in range(50):
                (await client.request(method, path, json=body)).raise_for_status()
        slices = max(1, round(args.seconds / args.slice))
        for n in range(slices):
            for mode in (True, False) if n % 2 == 0 else (False, True):
                started = trio.current_time()
                done, failed = await drive_slice(
                    clients[mode], target, args.slice, args.concurrency
                )
                totals[mode][0] += done
                totals[mode][1] += failed
                totals[mode][2] += trio.current_time() - started
    finally:
        for client in clients.values():
            await client.aclose()
    return totals


def hot_path_cost_us(n: int = 200_000) -> float:
    """Microseconds of one Metrics.observe + RequestLog.record, as after_request does it."""
    from athena.context import CallContext
    from athena.observability.metrics import Metrics
    from athena.observability.request_log import RequestLog

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
    parser.add_argument("--seconds", type=float, default=30.0, help="load per mode")
    parser.add_argument("--slice", type=float, default=2.0, help="length of one slice")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=2, help="runs, swapping start order")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="athena-bench-log-"))
    pg = EmbeddedPostgres(work / "pg")
    pg.lock()
    pg.start()
    gateways: list[tuple] = []
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
        grand = {True: [0, 0, 0.0], False: [0, 0, 0.0]}
        for pair in range(args.pairs):
            # Swap which gateway starts first (and so holds the once-per-deployment leases)
            # between pairs: an A/A run showed a position bias larger than the effect measured.
            order = (True, False) if pair % 2 == 0 else (False, True)
            urls: dict[bool, str] = {}
            gateways = []
            for enabled in order:
                proc, url, log = start_gateway(
                    work, pg.uri("bench_catalog"), pg.uri("bench_data"), enabled
                )
                gateways.append((proc, log))
                urls[enabled] = url
            target = pick_target(urls[True])
            totals = trio.run(compare, urls, target, args)
            for proc, log in gateways:
                stop_gateway(proc, log)
            gateways = []
            rate = {m: totals[m][0] / totals[m][2] for m in totals}
            print(
                f"pair {pair + 1} (log {'on' if order[0] else 'off'} started first):"
                f" on {rate[True]:.1f} req/s, off {rate[False]:.1f} req/s",
                flush=True,
            )
            for mode in grand:
                for i in range(3):
                    grand[mode][i] += totals[mode][i]
        totals = grand  # the gateways are stopped: shutdown flushed their request logs
        with psycopg.connect(pg.uri("bench_catalog"), autocommit=True) as conn:
            logged = conn.execute(
                "SELECT count(*) FROM athena.gateway_request_log WHERE user_id = 'bench'"
            ).fetchone()[0]
    finally:
        for proc, log in gateways:
            stop_gateway(proc, log)
        pg.stop()
        pg.unlock()

    on = totals[True][0] / totals[True][2]
    off = totals[False][0] / totals[False][2]
    cost = hot_path_cost_us()
    per_request_us = 1e6 / on if on else float("nan")
    print(f"target: {target[0]} {target[1]}")
    print(
        f"load: {args.concurrency} connections, {totals[True][2]:.0f} s per mode"
        f" in alternating {args.slice:g} s slices, {args.pairs} pairs of gateways"
    )
    print(f"with request log:    {on:8.1f} req/s  ({totals[True][1]} non-200)")
    print(f"without request log: {off:8.1f} req/s  ({totals[False][1]} non-200)")
    print(f"request log cost:    {(off - on) / off * 100:+.1f} % of throughput")
    sent = 50 * args.pairs + totals[True][0] + totals[True][1]  # warm-up included
    print(f"log rows written:    {logged} of {sent} requests to the gateway with the log on")
    print(
        f"hot path (metrics.observe + request_log.record): {cost:.1f} us per request"
        f" = {cost / per_request_us * 100:.2f} % of the {per_request_us:.0f} us per request"
    )


if __name__ == "__main__":
    main()
