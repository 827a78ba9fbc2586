#!/usr/bin/env python3
"""Benchmark ``/rest/v1``: a primary-key lookup and a 100-row page with one embedded relation.

    .venv/bin/python scripts/bench_rest.py [--seconds 10] [--concurrency 32] [--rows 100000]

Starts its own embedded PostgreSQL and ``python -m athena serve`` on loopback, seeds ``t``
(``--rows`` rows, each pointing at one of 1000 ``owners``), then drives each scenario with a
closed loop of ``--concurrency`` keep-alive connections for ``--seconds`` and reports req/s and
latency percentiles (p50/p99) and the gateway's CPU time per request (from /proc, which a busy
machine does not distort the way it distorts req/s), next to the same server's ``/ping`` as a
baseline. Responses are PostgREST-native (``X-Athena-Rest-Format:
postgrest``), i.e. what a stock PostgREST client receives.

    GET /rest/v1/t?id=eq.X                                     (X random per request)
    GET /rest/v1/t?select=id,label,amount,owner:owners(name)&order=id&limit=100&offset=Y
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
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
from _benchkit import stop_gateway, tree_cpu_seconds  # noqa: E402

from athena.db.embedded import EmbeddedPostgres  # noqa: E402

ADMIN_KEY = "bench_admin_" + secrets.token_hex(16)
OWNERS = 1000


def seed(uri: str, rows: int) -> None:
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("CREATE TABLE owners (id int PRIMARY KEY, name text NOT NULL)")
        conn.execute(
            sql.SQL(
                "INSERT INTO owners SELECT g, 'owner ' || g FROM generate_series(1, {}) g"
            ).format(sql.Literal(OWNERS))
        )
        conn.execute(
            "CREATE TABLE t (id int PRIMARY KEY, label text, amount numeric, "
            "owner_id int REFERENCES owners(id))"
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO t SELECT g, 'item ' || g, g * 1.5, 1 + g % {} "
                "FROM generate_series(1, {}) g"
            ).format(sql.Literal(OWNERS), sql.Literal(rows))
        )
        conn.execute("ANALYZE owners; ANALYZE t")


def start_gateway(
    data_dir: Path, catalog_uri: str, data_uri: str, profile: str | None = None
) -> tuple:
    # --profile: the event-loop thread under cProfile (written when the server exits cleanly)
    return launch(
        data_dir,
        {
            "ATHENA_CATALOG_URI": catalog_uri,
            "ATHENA_KEY_12": ADMIN_KEY,
            "ATHENA_CLIENTS": json.dumps({"bench": {"pg_uri": data_uri}}),
        },
        python_args=("-m", "cProfile", "-o", profile) if profile else (),
    )


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


HEADERS = {
    "apikey": ADMIN_KEY,
    "X-Athena-Client": "bench",
    "X-Athena-Rest-Format": "postgrest",
}


class LeanConnection:
    """A minimal keep-alive HTTP/1.1 client on a trio stream.

    httpx costs more CPU per request than the gateway itself; on a 2-core machine the load
    generator would then be what is measured. This one only writes a request and reads
    ``Content-Length`` bytes back.
    """

    def __init__(self, stream: trio.SocketStream, host: str) -> None:
        self.stream = stream
        self.host = host
        self.buffer = b""
        self.head = "".join(f"{k}: {v}\r\n" for k, v in HEADERS.items())

    async def get(self, path: str) -> tuple[int, bytes]:
        request = f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n{self.head}\r\n"
        await self.stream.send_all(request.encode())
        while b"\r\n\r\n" not in self.buffer:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buffer += chunk
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            rest += chunk
        self.buffer = rest[length:]
        return status, rest[:length]


async def drive(url: str, make_path, seconds: float, concurrency: int, check) -> dict:
    host, port = url.removeprefix("http://").split(":")
    latencies: list[float] = []
    failed = 0
    # correctness first, with a real client
    async with httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=30) as c:
        for _ in range(20):
            response = await c.get(make_path())
            response.raise_for_status()
            check(response)
    warmed = 0
    go = trio.Event()
    deadline = 0.0

    async def worker() -> None:
        nonlocal failed, warmed, deadline
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            conn = LeanConnection(stream, f"{host}:{port}")
            await conn.get(make_path())  # warm this connection
            warmed += 1
            if warmed == concurrency:  # the clock starts when every connection is ready
                deadline = trio.current_time() + seconds
                go.set()
            await go.wait()
            while trio.current_time() < deadline:
                started = time.perf_counter()
                status, _body = await conn.get(make_path())
                elapsed = time.perf_counter() - started
                if status == 200:
                    latencies.append(elapsed)
                else:
                    failed += 1

    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(worker)
    latencies.sort()
    return {
        "requests": len(latencies),
        "failed": failed,
        "rps": len(latencies) / seconds,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--profile", help="run the gateway under cProfile, stats to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work directory and logs")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="athena-bench-rest-"))
    pg = EmbeddedPostgres(work / "pg")
    pg.lock()
    pg.start()
    results: dict[str, dict] = {}
    try:
        with psycopg.connect(pg.uri(), autocommit=True) as conn:
            for db in ("bench_catalog", "bench_data"):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
        seed(pg.uri("bench_data"), args.rows)
        proc, url, log = start_gateway(
            work, pg.uri("bench_catalog"), pg.uri("bench_data"), args.profile
        )
        rng = random.Random(5)
        rows = args.rows

        def by_id() -> str:
            return f"/rest/v1/t?id=eq.{rng.randint(1, rows)}"

        def page() -> str:
            offset = rng.randint(0, max(0, rows - 100))
            return (
                "/rest/v1/t?select=id,label,amount,owner:owners(name)"
                f"&order=id&limit=100&offset={offset}"
            )

        def ping() -> str:
            return "/ping"

        def pong(response: httpx.Response) -> None:
            assert response.text == "pong"

        def one_row(response: httpx.Response) -> None:
            assert len(response.json()) == 1, response.text

        def embedded_page(response: httpx.Response) -> None:
            body = response.json()
            assert len(body) == 100 and body[0]["owner"]["name"].startswith("owner"), body[:1]

        try:
            for name, make, check in (
                # the same server's floor on this machine, to read the other numbers against
                ("GET /ping (baseline)", ping, pong),
                ("GET /rest/v1/t?id=eq.X", by_id, one_row),
                ("GET 100 rows + embedded owner", page, embedded_page),
            ):
                cpu_before = tree_cpu_seconds(proc.pid)
                result = trio.run(drive, url, make, args.seconds, args.concurrency, check)
                cpu = tree_cpu_seconds(proc.pid) - cpu_before
                # warm-up requests are a handful; dividing by the timed ones slightly overstates
                result["gateway_cpu_us_per_req"] = cpu / max(1, result["requests"]) * 1e6
                results[name] = result
                print(
                    f"{name:34s} {result['rps']:8.1f} req/s   p50 {result['p50_ms']:6.1f} ms"
                    f"   p99 {result['p99_ms']:6.1f} ms   gateway CPU"
                    f" {result['gateway_cpu_us_per_req']:5.0f} us/req"
                    f"   ({result['failed']} non-200)",
                    flush=True,
                )
        finally:
            stop_gateway(proc, log)
    finally:
        pg.stop()
        pg.unlock()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)  # ~70 MB of PostgreSQL data per run
    print(
        f"\n{args.rows} rows in t, {OWNERS} owners; concurrency {args.concurrency}, "
        f"{args.seconds:g} s per scenario; one gateway worker process; CPU count {os.cpu_count()}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
