"""A statement that outlives the hard deadline is 504 on every path that runs one.

PostgreSQL's ``statement_timeout`` normally ends a slow statement first; the hard deadline
(``Database.run``: pool timeout + statement timeout + grace, kept from the event loop) is what
still answers when the server cannot, e.g. a backend that hangs. The test makes one hang for
real: the statement waits on a lock the test holds, and the test stops that backend
(SIGSTOP) before ``statement_timeout`` can fire. Every path maps the deadline through the one
database error boundary (``athena/db/errors.py``), so each must answer 504 — ``/rest/v1`` used
to answer 500 ``internal_error``.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import trio
from support.pg import TestPostgres
from support.servers import AthenaServer
from trio_websocket import open_websocket_url

TABLE = "eb_deadline"
STATEMENT_TIMEOUT_MS = 1500  # time enough to find and stop the backend before it fires


@pytest.fixture(scope="module")
def server(
    athena_factory: Callable[..., AthenaServer], pg: TestPostgres, data_db: str
) -> AthenaServer:
    with pg.connect(data_db) as conn:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (id int PRIMARY KEY, name text);"
            f"INSERT INTO {TABLE} VALUES (1, 'one') ON CONFLICT DO NOTHING"
        )
    return athena_factory(
        statement_timeout_ms=str(STATEMENT_TIMEOUT_MS), pool_timeout_s="1",
        require_context_headers="false",
    )  # fmt: skip


@contextmanager
def hung_statement(pg: TestPostgres, data_db: str) -> Iterator[Callable[[], None]]:
    """Hold a lock on the table; ``freeze()`` stops the backend that waits for it."""
    stopped: list[int] = []
    with pg.connect(data_db) as holder, pg.connect(data_db) as observer:
        holder.autocommit = False
        holder.execute(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE")

        def freeze() -> None:
            deadline = time.monotonic() + STATEMENT_TIMEOUT_MS / 1000 * 0.6
            while time.monotonic() < deadline:
                row = observer.execute(
                    "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND query LIKE %s AND pid <> pg_backend_pid()",
                    (f"%{TABLE}%",),
                ).fetchone()
                if row is not None:
                    os.kill(row[0], signal.SIGSTOP)
                    stopped.append(row[0])
                    return
                time.sleep(0.005)
            raise AssertionError("the gateway's statement never waited on the lock")

        try:
            yield freeze
        finally:
            for pid in stopped:
                os.kill(pid, signal.SIGCONT)
            holder.rollback()


def _while_hung(pg: TestPostgres, data_db: str, call: Callable[[], httpx.Response]) -> Any:
    with hung_statement(pg, data_db) as freeze, ThreadPoolExecutor(1) as pool:
        pending = pool.submit(call)
        freeze()
        started = time.monotonic()
        response = pending.result(timeout=30)
        waited = time.monotonic() - started
    return response, waited


@pytest.fixture
def client(server: AthenaServer, admin_key: str) -> Iterator[httpx.Client]:
    with server.client(apikey=admin_key, **{"X-Athena-Client": "athena"}) as http:
        http.timeout = 30
        yield http


def test_gateway_fetch(client: httpx.Client, pg: TestPostgres, data_db: str) -> None:
    body = {"table_name": TABLE}
    assert client.post("/gateway/fetch", json=body).status_code == 200  # warm caches
    response, _ = _while_hung(pg, data_db, lambda: client.post("/gateway/fetch", json=body))
    assert response.status_code == 504, response.text
    assert response.json()["code"] == "statement_timeout"
    assert client.post("/gateway/fetch", json=body).status_code == 200


@pytest.mark.parametrize("native", [False, True], ids=["envelope", "postgrest"])
def test_rest(client: httpx.Client, pg: TestPostgres, data_db: str, native: bool) -> None:
    headers = {"X-Athena-Rest-Format": "postgrest"} if native else {}
    path = f"/rest/v1/{TABLE}?select=id,name"
    assert client.get(path, headers=headers).status_code == 200
    response, _ = _while_hung(pg, data_db, lambda: client.get(path, headers=headers))
    assert response.status_code == 504, response.text
    if native:
        assert response.json()["code"] == "57014"  # PostgreSQL's own statement_timeout code
    else:
        assert response.json()["code"] == "statement_timeout"
    assert client.get(path, headers=headers).status_code == 200


async def test_wss_gateway(
    server: AthenaServer, admin_key: str, pg: TestPostgres, data_db: str
) -> None:
    url = f"ws://127.0.0.1:{server.port}/wss/gateway"
    message = {
        "action": "gateway.fetch", "client_name": "athena",
        "headers": {"apikey": admin_key}, "body": {"table_name": TABLE},
    }  # fmt: skip

    async def ask(ws: Any, request_id: str) -> dict[str, Any]:
        await ws.send_message(json.dumps({**message, "request_id": request_id}))
        with trio.fail_after(30):
            while True:
                doc = json.loads(await ws.get_message())
                if doc.get("type") == "reply" and doc.get("request_id") == request_id:
                    return doc

    async with open_websocket_url(url) as ws:
        await ws.get_message()  # the hello
        assert (await ask(ws, "warm"))["status"] == "success"
        with hung_statement(pg, data_db) as freeze:
            await ws.send_message(json.dumps({**message, "request_id": "hung"}))
            await trio.to_thread.run_sync(freeze)
            with trio.fail_after(30):
                while True:
                    reply = json.loads(await ws.get_message())
                    if reply.get("request_id") == "hung":
                        break
        assert reply["status"] == "error" and reply["code"] == "statement_timeout", reply
        assert (await ask(ws, "after"))["status"] == "success"
