"""The application's own CPU per request, without hypercorn, sockets or a load generator.

Run: ``.venv/bin/python scripts/bench_inproc.py [--requests 6000] [--concurrency 32] [--quart]
[--tracing --rounds N]``

Starts an embedded PostgreSQL with the same 100k-row table as ``scripts/bench``, opens the
gateway's runtime in this process and calls its ASGI application directly from ``concurrency``
trio tasks: GET /ping, POST /gateway/fetch by primary key, and a 100-row page. With ``--quart``
the requests skip the hot lane and go through the Quart application, for comparison. With
``--tracing`` each scenario is measured ``--rounds`` times with OpenTelemetry tracing off and on
in alternation, in this one process, exporting to an OTLP/HTTP receiver in a subprocess (whose
CPU is not counted; the export thread's is, and is also shown apart), and a table of the on/off
ratios closes the run.

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


def _thread_cpu(native_id: int | None) -> float:
    """user+system CPU seconds of one thread of this process (0 when there is none)."""
    if native_id is None:
        return 0.0
    stat = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def _export_thread() -> int | None:
    """The tracing export thread's id: opentelemetry-sdk's BatchSpanProcessor thread (or one
    named ``athena-otlp-export``, the native exporter tried on the ``tracing`` branch)."""
    import threading

    for thread in threading.enumerate():
        if thread.name == "athena-otlp-export" or thread.name.startswith("OtelBatch"):
            return thread.native_id
    return None


# The OTLP/HTTP receiver of --tracing, in its own process: accepts every export, drops it.
_SINK = """
import http.server
class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


async def measure(
    app: Any, name: str, make: Any, requests: int, concurrency: int
) -> dict[str, float]:
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

    from athena.observability import tracing

    exporter = _export_thread() if tracing.TRACER is not None else None
    export_cpu = _thread_cpu(exporter)
    cpu, wall = time.process_time(), time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(worker)
    if _export_thread() is not None:
        # With tracing on, what is queued is exported (and counted) before the clock stops;
        # off, the same pause, so that both count the background work (the request log's
        # flush) that follows a measurement.
        await trio.sleep(1.2)  # the 1 s schedule delay --tracing sets
        wall += 1.2  # not counted as serving time
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    export_cpu = _thread_cpu(exporter) - export_cpu
    latencies.sort()
    done = len(latencies)
    label = name + (" (tracing on)" if exporter else " (tracing off)" if _export_thread() else "")
    print(
        f"  {label:<30} CPU {cpu / done * 1e6:6.0f} µs/req   {done / wall:7.0f} req/s   "
        f"p50 {latencies[done // 2] * 1e3:6.2f} ms   p99 {latencies[int(done * 0.99)] * 1e3:6.2f} ms"
        + (f"   export thread {export_cpu / done * 1e6:5.1f} µs/req" if exporter else ""),
        flush=True,
    )
    return {"cpu_us": cpu / done * 1e6, "rps": done / wall, "export_us": export_cpu / done * 1e6}


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
    from athena.observability import tracing

    exporter = tracing.TRACER
    toggled: dict[str, dict[bool, list[dict[str, float]]]] = {}
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
            elif args.tracing:
                # Tracing off and on in alternation, in this one process (same caches, same
                # pools): TRACER is what every call site looks at.
                for i in range(args.rounds):
                    for on in (False, True) if i % 2 == 0 else (True, False):
                        tracing.TRACER = exporter if on else None
                        r = await measure(app, name, make, args.requests, args.concurrency)
                        toggled.setdefault(name, {}).setdefault(on, []).append(r)
                tracing.TRACER = exporter
            else:
                for _ in range(args.rounds):
                    await measure(app, name, make, args.requests, args.concurrency)
        nursery.cancel_scope.cancel()
    await runtime.aclose()
    if toggled:
        summary(toggled)


def summary(toggled: dict[str, dict[bool, list[dict[str, float]]]]) -> None:
    """Tracing on against off: CPU µs/request and req/s (min / median over the rounds), and
    the on/off ratio of each round (min / median)."""

    def stats(values: list[float]) -> str:
        ordered = sorted(values)
        return f"{ordered[0]:.0f} / {ordered[len(ordered) // 2]:.0f}"

    def ratio(values: list[float]) -> str:
        ordered = sorted(values)
        return f"{ordered[0]:.3f} / {ordered[len(ordered) // 2]:.3f}"

    print()
    print("| scenario | CPU us/req off | CPU us/req on | of which export thread | on/off CPU "
          "| req/s off | req/s on | on/off req/s |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, runs in toggled.items():
        off, on = runs[False], runs[True]
        print(
            f"| {name} | {stats([r['cpu_us'] for r in off])} | {stats([r['cpu_us'] for r in on])}"
            f" | {stats([r['export_us'] for r in on])}"
            f" | {ratio([b['cpu_us'] / a['cpu_us'] for a, b in zip(off, on, strict=True)])}"
            f" | {stats([r['rps'] for r in off])} | {stats([r['rps'] for r in on])}"
            f" | {ratio([b['rps'] / a['rps'] for a, b in zip(off, on, strict=True)])} |"
        )


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
    parser.add_argument(
        "--tracing", action="store_true",
        help="OpenTelemetry tracing off and on in alternation (--rounds pairs), in one process",
    )  # fmt: skip
    parser.add_argument("--rounds", type=int, default=1, help="measurements of each scenario")
    args = parser.parse_args()
    sink = None
    if args.tracing:
        import subprocess
        import sys

        sink = subprocess.Popen([sys.executable, "-c", _SINK], stdout=subprocess.PIPE, text=True)
        assert sink.stdout is not None
        port = sink.stdout.readline().strip()
        os.environ.update(
            ATHENA_TRACING="true",
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}",
            OTEL_BSP_SCHEDULE_DELAY="1000",
        )
    else:
        os.environ["ATHENA_TRACING"] = "false"
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
        if args.tracing:
            from athena.observability import tracing

            tracing.setup(load_settings())
        trio.run(run, args, catalog, data, key)
    finally:
        if sink is not None:
            sink.kill()
        pg.stop()
        pg.unlock()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
