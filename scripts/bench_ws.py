#!/usr/bin/env python3
"""Benchmark the WebSocket gateway: fetch throughput and event fan-out latency.

    .venv/bin/python scripts/bench_ws.py [--seconds 5] [--rounds 3] [--subscribers 100]
                                         [--events 200] [--json out.json]

Starts its own embedded PostgreSQL (catalog + data database) and two ``python -m athena serve``
processes sharing them, on loopback. Then, against gateway A:

1. ``gateway.fetch`` (10 rows of a 1000-row table, random page) over ONE socket, with 16 requests
   in flight (the per-connection limit) — and with 1 in flight, for latency;
2. the same over 32 sockets, one request in flight on each (32 concurrent);
3. ``POST /gateway/fetch`` with the same body over 32 keep-alive HTTP connections, one request
   in flight on each (the HTTP figure, same run, same server; rounds alternate 1-3 and report
   medians);
4. event fan-out: ``--subscribers`` sockets subscribe to a table; one writer inserts ``--events``
   rows one by one over HTTP (``PUT /gateway/insert``), ``--event-interval`` seconds apart; for every delivery the latency from the
   insert's acknowledgement (HTTP response received) to the event's arrival is recorded — it is
   negative when the event arrives before the ack (publishing happens before the response is
   written). Run once with the subscribers on A (local delivery) and once on gateway B (across
   instances through PostgreSQL NOTIFY). Also reported: latency from sending the insert.

The load generator runs in this process (trio + trio-websocket + httpx), on the same machine;
on a small shared machine it competes with the gateway for CPU, so figures are lower bounds.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio
from trio_websocket import open_websocket_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from support.pg import TestPostgres  # noqa: E402
from support.servers import AthenaServer  # noqa: E402

ADMIN_KEY = "bench_admin_" + secrets.token_hex(16)
ROWS = 1000
CONTEXT = {"X-User-Id": "bench", "X-Company-Id": "bench", "X-Organization-Id": "bench"}
HEADERS = {"apikey": ADMIN_KEY, "X-Athena-Client": "bench", **CONTEXT}


def fetch_body() -> dict[str, Any]:
    return {
        "table_name": "bench_items",
        "sort_by": {"field": "id", "direction": "asc"},
        "limit": 10,
        "offset": random.randrange(0, ROWS - 10),
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- set-up ------------------------------------------------------------------------------------


def start(base: Path) -> tuple[TestPostgres, AthenaServer, AthenaServer]:
    pg = TestPostgres.start(base / "pg")
    catalog = pg.create_database("bench_catalog", owner="postgres")
    data = pg.create_database("bench")
    with pg.connect(data) as conn:
        conn.execute("CREATE TABLE bench_items (id serial PRIMARY KEY, name text, qty int)")
        conn.execute(
            "INSERT INTO bench_items (name, qty) SELECT 'item ' || g, g FROM generate_series(1, %s) g",
            (ROWS,),
        )
        conn.execute(
            "CREATE TABLE bench_events (id serial PRIMARY KEY, seq int, sent double precision)"
        )
        conn.execute("ANALYZE bench_items")
    env = {
        "ATHENA_CATALOG_URI": pg.superuser_uri(catalog),
        "ATHENA_KEY_12": ADMIN_KEY,
        "ATHENA_CLIENTS": json.dumps({"bench": {"pg_uri": pg.app_uri(data)}}),
        # the fan-out test opens 100+ sockets that only listen: keep them from idling out
        "ATHENA_WS_IDLE_TIMEOUT_S": "600",
        "ATHENA_WS_PING_INTERVAL_S": "0",
    }
    a = AthenaServer(base / "a", env).start(timeout=60)
    b = AthenaServer(base / "b", env).start(timeout=60)
    return pg, a, b


def ws_url(server: AthenaServer) -> str:
    return f"ws://127.0.0.1:{server.port}/wss/gateway"


def upgrade_headers() -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in HEADERS.items()]


# -- throughput --------------------------------------------------------------------------------


async def ws_window(server: AthenaServer, seconds: float, window: int, out: list[float]) -> int:
    """One socket keeping ``window`` fetches in flight for ``seconds``; returns replies."""
    async with open_websocket_url(ws_url(server), extra_headers=upgrade_headers()) as ws:
        await ws.get_message()  # connection message
        sent_at: dict[str, float] = {}
        serial = 0

        async def send_one() -> None:
            nonlocal serial
            serial += 1
            rid = str(serial)
            sent_at[rid] = time.perf_counter()
            message = {"request_id": rid, "action": "gateway.fetch", "body": fetch_body()}
            await ws.send_message(json.dumps(message))

        for _ in range(window):
            await send_one()
        done = 0
        deadline = time.perf_counter() + seconds
        while True:
            reply = json.loads(await ws.get_message())
            if reply.get("status") != "success":
                raise RuntimeError(f"fetch failed: {reply}")
            out.append(time.perf_counter() - sent_at.pop(str(reply["request_id"])))
            done += 1
            if time.perf_counter() < deadline:
                await send_one()
            elif not sent_at:
                return done


async def run_ws(server: AthenaServer, seconds: float, sockets: int, window: int) -> dict:
    latencies: list[float] = []
    totals: list[int] = []

    async def one() -> None:
        totals.append(await ws_window(server, seconds, window, latencies))

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(sockets):
            nursery.start_soon(one)
    elapsed = time.perf_counter() - started
    return summary(sum(totals), elapsed, latencies)


class RawHttp:
    """A minimal HTTP/1.1 keep-alive client on a trio stream.

    httpx costs more CPU per request than the gateway spends serving a small fetch, and on a
    shared machine that cost lands on the same cores; a raw request keeps the client's share
    comparable to trio-websocket's, so the HTTP and WebSocket figures compare the server.
    """

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def post_json(self, port: int, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
        payload = json.dumps(body).encode()
        head = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}",
                "Content-Type: application/json", f"Content-Length: {len(payload)}"]  # fmt: skip
        head += [f"{k}: {v}" for k, v in HEADERS.items()]
        await self.stream.send_all(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        while b"\r\n\r\n" not in self.buffer:
            await self._fill()
        header_block, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = header_block.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        while len(self.buffer) < length:
            await self._fill()
        content, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, content

    async def _fill(self) -> None:
        chunk = await self.stream.receive_some(65536)
        if not chunk:
            raise RuntimeError("the server closed the connection")
        self.buffer += chunk


async def run_http(server: AthenaServer, seconds: float, concurrency: int) -> dict:
    """``concurrency`` keep-alive connections, one request in flight on each."""
    latencies: list[float] = []
    count = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal count
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            client = RawHttp(stream)
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                status, content = await client.post_json(
                    server.port, "/gateway/fetch", fetch_body()
                )
                if status != 200:
                    raise RuntimeError(f"fetch failed: {content[:200]!r}")
                latencies.append(time.perf_counter() - started)
                count += 1

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(worker)
    elapsed = time.perf_counter() - started
    return summary(count, elapsed, latencies)


def summary(count: int, elapsed: float, latencies: list[float]) -> dict:
    return {
        "requests": count,
        "req_per_s": round(count / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.5) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
    }


# -- fan-out -----------------------------------------------------------------------------------


async def run_fanout(
    writer: AthenaServer,
    listeners_on: AthenaServer,
    subscribers: int,
    events: int,
    interval: float = 0.05,
) -> dict:
    acked: dict[int, float] = {}
    sent: dict[int, float] = {}
    arrivals: list[tuple[int, float]] = []
    ready = 0
    all_ready = trio.Event()
    finished = trio.Event()

    async def subscriber() -> None:
        nonlocal ready
        async with open_websocket_url(
            ws_url(listeners_on), extra_headers=upgrade_headers(), message_queue_size=64
        ) as ws:
            await ws.get_message()
            await ws.send_message(
                json.dumps(
                    {"request_id": "s", "action": "subscribe", "body": {"table": "bench_events"}}
                )
            )
            reply = json.loads(await ws.get_message())
            if reply.get("status") != "success":
                raise RuntimeError(f"subscribe failed: {reply}")
            ready += 1
            if ready == subscribers:
                all_ready.set()
            got = 0
            while got < events:
                message = json.loads(await ws.get_message())
                if message.get("type") == "event":
                    arrivals.append((message["rows"][0]["seq"], time.perf_counter()))
                    got += 1
        if len(arrivals) == subscribers * events:
            finished.set()

    async with trio.open_nursery() as nursery:
        for _ in range(subscribers):
            nursery.start_soon(subscriber)
        with trio.fail_after(60):
            await all_ready.wait()
        await trio.sleep(0.5)
        async with httpx.AsyncClient(base_url=writer.url, headers=HEADERS) as http:
            for seq in range(events):
                sent[seq] = time.perf_counter()
                response = await http.put(
                    "/gateway/insert",
                    json={"table_name": "bench_events", "insert_body": {"seq": seq}},
                )
                acked[seq] = time.perf_counter()
                if response.status_code != 200:
                    raise RuntimeError(f"insert failed: {response.text}")
                await trio.sleep(interval)  # paced: this measures latency, not throughput
        with trio.fail_after(60):
            await finished.wait()

    from_ack = [(t - acked[seq]) * 1000 for seq, t in arrivals]
    from_send = [(t - sent[seq]) * 1000 for seq, t in arrivals]
    return {
        "deliveries": len(arrivals),
        "ack_to_delivery_p50_ms": round(percentile(from_ack, 0.5), 2),
        "ack_to_delivery_p99_ms": round(percentile(from_ack, 0.99), 2),
        "send_to_delivery_p50_ms": round(percentile(from_send, 0.5), 2),
        "send_to_delivery_p99_ms": round(percentile(from_send, 0.99), 2),
        "insert_roundtrip_p50_ms": round(
            statistics.median((acked[s] - sent[s]) * 1000 for s in acked), 2
        ),
    }


# -- main --------------------------------------------------------------------------------------


async def bench(a: AthenaServer, b: AthenaServer, args: argparse.Namespace) -> dict:
    results: dict[str, Any] = {}
    s = args.seconds
    await run_ws(a, 1.0, 4, 4)  # warm-up: pools, statement cache, introspection
    await run_http(a, 1.0, 8)

    # Throughput scenarios alternate within each round, so that drift on a shared machine hits
    # all of them alike; the medians over rounds are reported.
    scenarios = {
        "ws_1_socket_16_in_flight": lambda: run_ws(a, s, 1, 16),
        "ws_1_socket_1_in_flight": lambda: run_ws(a, s, 1, 1),
        "ws_32_sockets": lambda: run_ws(a, s, 32, 1),
        "http_32_connections": lambda: run_http(a, s, 32),
    }
    rounds: dict[str, list[dict]] = {name: [] for name in scenarios}
    names = list(scenarios)
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            got = await scenarios[name]()
            rounds[name].append(got)
            print(f"  round {r + 1} {name}: {got}", file=sys.stderr, flush=True)
    for name, runs in rounds.items():
        results[name] = {
            key: statistics.median(run[key] for run in runs)
            for key in ("req_per_s", "p50_ms", "p99_ms")
        } | {"rounds_req_per_s": [run["req_per_s"] for run in runs]}

    for name, listeners in (("fanout_local", a), ("fanout_cross_instance", b)):
        print(f"  {name} …", file=sys.stderr, flush=True)
        results[name] = await run_fanout(
            a, listeners, args.subscribers, args.events, args.event_interval
        )
        print(f"    {results[name]}", file=sys.stderr, flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument(
        "--event-interval", type=float, default=0.05, help="seconds between inserts (fan-out)"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="athena-bench-ws-"))
    print(f"starting PostgreSQL and two gateways in {base} …", file=sys.stderr, flush=True)
    pg, a, b = start(base)
    try:
        results = trio.run(bench, a, b, args)
    finally:
        a.stop()
        b.stop()
        pg.stop()
    results["machine"] = {"cpus": os.cpu_count(), "load_average_1m": os.getloadavg()[0]}
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
