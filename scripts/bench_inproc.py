"""The application's own CPU per request, without hypercorn, sockets or a load generator.

Run: ``.venv/bin/python scripts/bench_inproc.py [--requests 6000] [--concurrency 32] [--quart]``

Starts an embedded PostgreSQL with the same 100k-row table as ``scripts/bench``, opens the
gateway's runtime in this process and calls its ASGI application directly from ``concurrency``
trio tasks: GET /ping, POST /gateway/fetch by primary key, and a 100-row page. With ``--quart``
the requests skip the hot lane and go through the Quart application, for comparison.

On a shared machine this is the steadiest measure of what the gateway's own code costs (the
wrk numbers of ``scripts/bench`` also carry hypercorn, the kernel and whatever else runs).
Prints CPU µs per request and latency percentiles; nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
from bench import seed, start_postgres

Scope = dict[str, Any]


async def call(
    app: Any, method: str, path: str, body: bytes, headers: list, sink: bytearray | None = None
) -> int:
    """One HTTP request through ``app``; returns the status."""
    path, _, query = path.partition("?")
    scope: Scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query.encode(),
        "root_path": "", "client": ("127.0.0.1", 5555), "server": ("127.0.0.1", 80),
        "headers": headers + ([(b"content-length", str(len(body)).encode())] if body else []),
        "extensions": {},
    }  # fmt: skip
    delivered = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif sink is not None and message["type"] == "http.response.body":
            sink.extend(message.get("body", b""))

    await app(scope, receive, send)
    return status


async def measure(app: Any, name: str, make: Any, requests: int, concurrency: int) -> None:
    latencies: list[float] = []
    per_task = requests // concurrency

    async def worker() -> None:
        for _ in range(per_task):
            method, path, body, headers = make()
            started = time.perf_counter()
            status = await call(app, method, path, body, headers)
            latencies.append(time.perf_counter() - started)
            if status not in (200, 201):
                raise SystemExit(f"{name}: status {status}")

    cpu, wall = time.process_time(), time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(worker)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    latencies.sort()
    done = len(latencies)
    print(
        f"  {name:<16} CPU {cpu / done * 1e6:6.0f} µs/req   {done / wall:7.0f} req/s   "
        f"p50 {latencies[done // 2] * 1e3:6.2f} ms   p99 {latencies[int(done * 0.99)] * 1e3:6.2f} ms",
        flush=True,
    )


async def run(args: argparse.Namespace, catalog: str, data: str, key: str) -> None:
    from athena.config import load_settings
    from athena.http.gate import create_asgi
    from athena.runtime import Runtime

    settings = load_settings()
    runtime = await Runtime.open(settings, admin_key=key, catalog_uri=catalog)
    lane = create_asgi(runtime)
    app = lane.app if args.quart else lane
    quart = lane
    while not hasattr(quart, "startup"):  # under the wrappers (SDK prefixes, tracing)
        quart = quart.app
    headers = [
        (b"content-type", b"application/json"), (b"apikey", key.encode()),
        (b"x-athena-client", b"athena"), (b"host", b"127.0.0.1"),
    ]  # fmt: skip

    def ping() -> tuple[str, str, bytes, list]:
        return "GET", "/ping", b"", [(b"host", b"127.0.0.1")]

    def fetch_pk() -> tuple[str, str, bytes, list]:
        row = random.randint(1, args.rows)
        body = {"table_name": "bench_items", "conditions": [{"eq_column": "id", "eq_value": row}]}
        return "POST", "/gateway/fetch", json.dumps(body).encode(), headers

    def page() -> tuple[str, str, bytes, list]:
        after = random.randint(0, args.rows - 100)
        body = {
            "table_name": "bench_items", "limit": 100, "sort_by": {"field": "id"},
            "conditions": [{"column": "id", "operator": "gt", "value": after}],
        }  # fmt: skip
        return "POST", "/gateway/fetch", json.dumps(body).encode(), headers

    def insert() -> tuple[str, str, bytes, list]:
        body = {
            "table_name": "bench_inserts",
            "insert_body": {"name": "n" + str(random.randint(1, 10**9)), "qty": 1},
        }
        return "PUT", "/gateway/insert", json.dumps(body).encode(), headers

    def rest_pk() -> tuple[str, str, bytes, list]:
        row = random.randint(1, args.rows)
        return "GET", f"/rest/v1/bench_items?id=eq.{row}", b"", rest_headers

    rest_headers = [h for h in headers if h[0] != b"content-type"]
    rest_headers.append((b"x-athena-rest-format", b"postgrest"))
    scenarios = {
        "ping": ping, "fetch by pk": fetch_pk, "rest by pk": rest_pk, "100-row page": page,
        "insert": insert,
    }  # fmt: skip
    chosen = args.only or list(scenarios)
    async with trio.open_nursery() as nursery:
        runtime.start_background(nursery)
        await quart.startup()
        if args.ordinary_key:
            # A client-bound key holding only the rights it needs: the measured path includes the
            # real key check (hash, rights), as scripts/bench's wrk runs do.
            rights = ["bench_items.read", "bench_inserts.write"]
            for path, payload in (
                *(("/admin/api-key-rights", {"name": right}) for right in rights),
                ("/admin/api-keys", {"name": "bench", "client_name": "athena", "rights": rights}),
            ):
                answer = bytearray()
                status = await call(
                    app, "POST", path, json.dumps(payload).encode(), headers, answer
                )
                if status not in (200, 201, 409):
                    raise SystemExit(f"{path}: {status} {answer.decode()}")
            ordinary = json.loads(answer)["api_key"].encode()
            headers[:] = [(k, ordinary if k == b"apikey" else v) for k, v in headers]
            rest_headers[:] = [(k, ordinary if k == b"apikey" else v) for k, v in rest_headers]
        for name in chosen:
            make = scenarios[name]
            await measure(app, name, make, args.requests // 4, args.concurrency)  # warm-up
            if args.profile:
                import cProfile

                profiler = cProfile.Profile(time.process_time)  # CPU, not wall time
                profiler.enable()
                await measure(app, name, make, args.requests, args.concurrency)
                profiler.disable()
                target = f"{args.profile}.{name.replace(' ', '_')}"
                profiler.dump_stats(target)
                print(f"  profile of {name!r} in {target}", flush=True)
            else:
                await measure(app, name, make, args.requests, args.concurrency)
        nursery.cancel_scope.cancel()
    await runtime.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--quart", action="store_true", help="through Quart, not the hot lane")
    parser.add_argument(
        "--only",
        action="append",
        choices=["ping", "fetch by pk", "rest by pk", "100-row page", "insert"],
        help="run only this scenario (repeatable)",
    )
    parser.add_argument("--profile", help="cProfile each scenario, stats to FILE.<scenario>")
    parser.add_argument(
        "--ordinary-key",
        action="store_true",
        help="requests carry an ordinary key with bench_items.read (the admin key otherwise)",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="athena-bench-inproc-"))
    key = "bench_admin_" + secrets.token_hex(16)
    pg, catalog, data, _ = start_postgres(work)
    try:
        seed(data, args.rows)
        os.environ.update(
            {
                "ATHENA_CATALOG_URI": catalog,
                "ATHENA_CLIENTS": json.dumps({"athena": {"pg_uri": data}}),
                "ATHENA_POOL_MIN_SIZE": "16",
                "ATHENA_POOL_MAX_SIZE": "16",
                "ATHENA_DATA_DIR": str(work / "gateway"),
                "ATHENA_KEY_12": key,
            }
        )
        from athena.config import load_settings
        from athena.serving.parent import migrate_catalog

        migrate_catalog(catalog, load_settings())
        print(f"in-process, {args.concurrency} concurrent tasks, "
              f"{'Quart' if args.quart else 'hot lane'}:", flush=True)  # fmt: skip
        trio.run(run, args, catalog, data, key)
    finally:
        pg.stop()
        pg.unlock()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
