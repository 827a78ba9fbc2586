"""Mixed load against a gateway while one of its PostgreSQL servers is stopped and started.

Shared by ``tests/resilience/test_faults.py`` (short outage) and ``scripts/faults`` (the 10 s
outage of issue 11). Every request's outcome is recorded; the verdict is computed from the
records and a direct look at the database afterwards.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
from psycopg import sql


@dataclass
class Outcome:
    kind: str  # insert | fetch
    started: float
    seconds: float
    status: int  # 0 = transport error / timeout
    code: str | None
    row_id: str | None = None


@dataclass
class LoadRun:
    base_url: str
    headers: dict[str, str]
    table: str
    threads: int = 8
    request_timeout: float = 30.0
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _worker(self, n: int) -> None:
        counter = itertools.count()
        with httpx.Client(
            base_url=self.base_url, headers=self.headers, timeout=self.request_timeout
        ) as client:
            while not self._stop.is_set():
                i = next(counter)
                if i % 2 == 0:
                    row_id = f"{n}-{i}-{secrets.token_hex(4)}"
                    outcome = self._call(
                        client,
                        "insert",
                        "PUT",
                        "/gateway/insert",
                        {"table_name": self.table, "insert_body": {"id": row_id, "note": "load"}},
                        row_id,
                    )
                else:
                    outcome = self._call(
                        client,
                        "fetch",
                        "POST",
                        "/gateway/fetch",
                        {"table_name": self.table, "columns": ["id"], "limit": 5},
                        None,
                    )
                with self._lock:
                    self.outcomes.append(outcome)

    def _call(
        self,
        client: httpx.Client,
        kind: str,
        method: str,
        path: str,
        body: dict[str, Any],
        row_id: str | None,
    ) -> Outcome:
        started = time.monotonic()
        try:
            response = client.request(method, path, json=body)
            code = None
            if response.status_code >= 400:
                try:
                    code = response.json().get("code")
                except ValueError:
                    code = "not_json"
            return Outcome(
                kind, started, time.monotonic() - started, response.status_code, code, row_id
            )
        except httpx.HTTPError as exc:
            return Outcome(kind, started, time.monotonic() - started, 0, type(exc).__name__, row_id)

    def run_with_fault(
        self,
        *,
        warmup: float,
        outage: float,
        after: float,
        stop_db: Callable[[], None],
        start_db: Callable[[], None],
    ) -> dict[str, float]:
        """Load → stop_db → wait ``outage`` → start_db → load ``after`` more seconds."""
        workers = [
            threading.Thread(target=self._worker, args=(n,), daemon=True)
            for n in range(self.threads)
        ]
        for w in workers:
            w.start()
        time.sleep(warmup)
        stop_db()
        down_at = time.monotonic()  # the server has finished shutting down
        time.sleep(outage)
        restart_at = time.monotonic()
        start_db()
        up_at = time.monotonic()
        time.sleep(after)
        self._stop.set()
        for w in workers:
            w.join(self.request_timeout + 5)
        return {"down_at": down_at, "restart_at": restart_at, "up_at": up_at}


def verdict(
    run: LoadRun, marks: dict[str, float], conn: psycopg.Connection, unavailable_code: str
) -> dict[str, Any]:
    """Summarise a run: statuses, latency while down, recovery time, lost and half-applied writes."""
    outcomes = run.outcomes
    by_status = Counter(f"{o.status} {o.code or ''}".strip() for o in outcomes)
    down_at, up_at = marks["down_at"], marks["up_at"]
    # Requests that started while the database was down (stop had returned, start not yet
    # called). Those that also *ended* before the restart must have failed cleanly; those still
    # waiting for a connection when it came back may rightly succeed.
    during = [o for o in outcomes if down_at <= o.started <= marks["restart_at"]]
    ended_down = [o for o in during if o.started + o.seconds <= marks["restart_at"]]
    after_ok = sorted(
        o.started + o.seconds for o in outcomes if o.started >= up_at and o.status < 400
    )
    first_ok_after = (after_ok[0] - up_at) if after_ok else None
    acked = {o.row_id for o in outcomes if o.kind == "insert" and 200 <= o.status < 300}
    failed = {
        o.row_id for o in outcomes if o.kind == "insert" and (o.status >= 400 or o.status == 0)
    }
    query = sql.SQL("SELECT id FROM {}").format(sql.Identifier(run.table))
    present = {r[0] for r in conn.execute(query).fetchall()}
    return {
        "requests": len(outcomes),
        "by_status": dict(by_status),
        "server_errors_500": sum(1 for o in outcomes if o.status == 500),
        "during_outage": len(during),
        "during_outage_statuses": dict(
            Counter(f"{o.status} {o.code or ''}".strip() for o in during)
        ),
        "ended_during_outage_statuses": dict(
            Counter(f"{o.status} {o.code or ''}".strip() for o in ended_down)
        ),
        "during_outage_max_latency_s": max((o.seconds for o in during), default=0.0),
        "unavailable_code_seen": any(o.code == unavailable_code for o in during),
        "recovery_seconds": first_ok_after,
        "acked_inserts": len(acked),
        "lost_writes": len(acked - present),
        "errored_inserts": len(failed),
        "errored_but_present": len(failed & present),
    }
