"""The WebSocket ``gateway.query`` action shares no session with other callers (issue 17, 1).

Planted over the socket, on the shared gateway (a pool of several connections): the DO block
replaces every statement the fast path prepared on the session it runs on; then enough
fetches go over HTTP to have used every pooled connection. None returns the planted rows.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import psycopg
from support.planting import plant_sql
from support.servers import AthenaServer
from ws_helpers import connect

CONTEXT = {"X-User-Id": "u1", "X-Company-Id": "c1", "X-Organization-Id": "o1"}
PLANT = plant_sql("ws_secrets")


async def test_statements_planted_over_the_socket_reach_no_fetch(
    athena: AthenaServer, admin_key: str, seeded_key: Callable[..., str], items: psycopg.Connection
) -> None:
    items.execute("INSERT INTO ws_items (name, qty) VALUES ('pen', 1)")
    items.execute("INSERT INTO ws_secrets (secret) VALUES ('planted-secret')")
    reader = seeded_key(rights=["ws_items.read"])
    body = {"table_name": "ws_items", "conditions": [{"eq_column": "name", "eq_value": "pen"}]}
    headers = {"apikey": reader, "X-Athena-Client": "athena", **CONTEXT}
    async with httpx.AsyncClient(base_url=athena.url, headers=headers) as http:
        for _ in range(3):  # prepared on the connections in use
            assert (await http.post("/gateway/fetch", json=body)).status_code == 200
        async with connect(athena, {"apikey": admin_key, **CONTEXT}) as ws:
            for _ in range(12):  # raw calls land on several sessions of a shared pool
                planted = await ws.request("gateway.query", {"query": PLANT}, client_name="athena")
                assert planted["status"] == "success", planted
        for _ in range(30):  # more than the pool has connections
            response = await http.post("/gateway/fetch", json=body)
            assert response.status_code == 200, response.text
            assert "planted-secret" not in response.text
            assert [row["name"] for row in response.json()["data"]] == ["pen"]
