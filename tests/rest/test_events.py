"""Writes through /rest/v1 reach WebSocket table subscribers, like every other write path."""

from __future__ import annotations

import httpx
import psycopg
from support.servers import AthenaServer
from ws.ws_helpers import connect


async def test_rest_writes_are_published_to_table_subscribers(
    rest_server: AthenaServer, native_headers: dict[str, str], items: psycopg.Connection
) -> None:
    upgrade = {"apikey": native_headers["apikey"], "X-Athena-Client": "athena"}
    async with connect(rest_server, upgrade) as watcher:
        reply = await watcher.request("subscribe", {"table": "rest_items"})
        assert reply["status"] == "success", reply
        async with httpx.AsyncClient(base_url=rest_server.url, headers=native_headers) as http:
            created = await http.post("/rest/v1/rest_items", json={"name": "plum", "qty": 2})
            assert created.status_code == 201
            inserted = await watcher.event()
            assert inserted["operation"] == "insert" and inserted["table"] == "rest_items"
            assert [(r["name"], r["qty"]) for r in inserted["rows"]] == [("plum", 2)]
            await http.patch("/rest/v1/rest_items?name=eq.plum", json={"qty": 3})
            updated = await watcher.event()
            assert updated["operation"] == "update" and updated["rows"][0]["qty"] == 3
            await http.delete("/rest/v1/rest_items?name=eq.plum")
            deleted = await watcher.event()
            assert deleted["operation"] == "delete" and deleted["rows"][0]["name"] == "plum"
            # a rolled-back write is not an event
            await http.delete("/rest/v1/rest_items?id=eq.1", headers={"Prefer": "tx=rollback"})
            await watcher.no_event()
