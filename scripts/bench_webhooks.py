#!/usr/bin/env python3
"""Webhook delivery latency and dispatch throughput, over real servers on loopback.

Two gateway instances share a catalog and a client database (``scripts/_rig.py``); a keep-alive
HTTP receiver on loopback records when each event arrives.

1. latency: paced single-row inserts (no queue builds up), write answered → receiver, p50/p99;
2. throughput: a burst of inserts from both instances into 1 webhook (one sender: in order),
   then into 4 webhooks on 4 tables (4 senders), deliveries per second at the receiver.

    scripts/bench_webhooks.py [--paced 300] [--burst 2000]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from _rig import start_rig
from support.servers import AthenaServer

from athena.db.embedded import free_port

ARRIVED: dict[str, float] = {}
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        now = time.time()
        note = json.loads(body)["rows"][0]["note"]
        with LOCK:
            ARRIVED.setdefault(note, now)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--paced", type=int, default=300)
    parser.add_argument("--burst", type=int, default=2000)
    args = parser.parse_args()

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    rig = start_rig(
        outbound_allow_http="true",
        outbound_allow_cidrs="127.0.0.0/8",
        webhook_refresh_seconds="0.2",
        webhook_poll_seconds="0.5",
    )
    second = AthenaServer(rig.server.data_dir.parent / "athena-2", rig.server.env).start()
    instances = [rig.server, second]
    admin = {"X-Athena-Admin-Key": "ops-admin-key"}
    tables = ["ops_items"] + [f"ops_items_{i}" for i in range(1, 4)]
    with rig.client_pg.connect(rig.db) as conn:
        for t in tables[1:]:
            conn.execute(f"CREATE TABLE {t} (id text PRIMARY KEY, note text)")
    try:
        with httpx.Client(base_url=rig.server.url, headers=admin) as api:
            for t in tables:
                api.post(
                    "/admin/webhooks",
                    json={"name": t, "url": f"http://127.0.0.1:{port}/h", "client_name": "ops",
                          "table_name": t, "events": ["gateway.insert"]},
                ).raise_for_status()  # fmt: skip
        time.sleep(1.0)
        clients = [httpx.Client(base_url=s.url, headers=rig.headers, timeout=30) for s in instances]

        def insert(i: int, table: str, note: str) -> float:
            clients[i % 2].put(
                "/gateway/insert",
                json={"table_name": table, "insert_body": {"id": note, "note": note}},
            ).raise_for_status()
            return time.time()

        # 1. latency, paced at ~50 writes/s
        written: dict[str, float] = {}
        for i in range(args.paced):
            written[f"p{i}"] = insert(i, "ops_items", f"p{i}")
            time.sleep(0.02)
        deadline = time.time() + 60
        while time.time() < deadline and not all(k in ARRIVED for k in written):
            time.sleep(0.05)
        lat = [(ARRIVED[k] - written[k]) * 1000 for k in written]
        print(f"latency (paced, {args.paced} writes, 2 instances): p50 {statistics.median(lat):.1f} ms, "
              f"p99 {pct(lat, 0.99):.1f} ms, max {max(lat):.1f} ms")  # fmt: skip

        # 2. throughput
        for label, used in (("1 webhook", tables[:1]), ("4 webhooks", tables)):
            notes = [f"{label[0]}b{i}" for i in range(args.burst)]

            def worker(k: int, notes: list[str] = notes, used: list[str] = used) -> None:
                for i in range(k, len(notes), 4):
                    insert(i, used[i % len(used)], notes[i])

            start = time.time()
            threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wrote = time.time() - start
            deadline = time.time() + 300
            while time.time() < deadline and not all(n in ARRIVED for n in notes):
                time.sleep(0.05)
            arrivals = sorted(ARRIVED[n] for n in notes)
            span = arrivals[-1] - start
            print(f"throughput ({label}, {args.burst} writes from 2 instances): writes took "
                  f"{wrote:.2f} s; all delivered {span:.2f} s after the first write: "
                  f"{args.burst / span:.0f} deliveries/s")  # fmt: skip
        for c in clients:
            c.close()
    finally:
        second.stop()
        rig.close()
        server.shutdown()


if __name__ == "__main__":
    main()
