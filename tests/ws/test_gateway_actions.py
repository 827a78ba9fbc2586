"""gateway.* over the socket: the same services, envelopes, auth and rights as HTTP."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import psycopg
import trio
from support.servers import AthenaServer
from ws_helpers import connect

CONTEXT = {"X-User-Id": "u1", "X-Company-Id": "c1", "X-Organization-Id": "o1"}
ENVELOPE_ONLY = ("type", "request_id", "action")


def _envelope(reply: dict) -> dict:
    """The reply minus what only the socket adds: what HTTP returns for the same call."""
    return {k: v for k, v in reply.items() if k not in ENVELOPE_ONLY}


async def test_every_action_runs_the_http_services_with_the_http_envelope(
    athena: AthenaServer, admin_key: str, items: psycopg.Connection
) -> None:
    upgrade = {"apikey": admin_key, "X-Athena-Client": "athena", **CONTEXT}
    async with connect(athena, upgrade) as ws:
        inserted = await ws.request(
            "gateway.insert",
            {
                "table_name": "ws_items",
                "insert_body": [{"name": "pen", "qty": 3}, {"name": "ink", "qty": 5}],
            },
            request_id="ins-1",
        )
        assert inserted["type"] == "reply"
        assert inserted["request_id"] == "ins-1"
        assert inserted["action"] == "gateway.insert"
        assert inserted["status"] == "success"
        assert inserted["message"] == "Data inserted successfully"
        assert inserted["count"] == 2
        assert [r["name"] for r in inserted["data"]] == ["pen", "ink"]
        assert items.execute("SELECT count(*) FROM ws_items").fetchone() == (2,)

        fetch_body = {"table_name": "ws_items", "sort_by": {"field": "id", "direction": "asc"}}
        fetched = await ws.request("gateway.fetch", fetch_body)
        async with httpx.AsyncClient(base_url=athena.url, headers=upgrade) as http:
            over_http = (await http.post("/gateway/fetch", json=fetch_body)).json()
        assert _envelope(fetched) == over_http
        assert [r["qty"] for r in fetched["data"]] == [3, 5]

        updated = await ws.request(
            "gateway.update",
            {
                "table_name": "ws_items",
                "update_body": {"qty": 9},
                "conditions": [{"eq_column": "name", "eq_value": "pen"}],
            },
        )
        assert updated["message"] == "Data updated successfully"
        assert updated["count"] == 1
        assert updated["data"][0]["qty"] == 9

        queried = await ws.request(
            "gateway.query", {"query": "SELECT name, qty FROM ws_items ORDER BY id"}
        )
        assert queried["status"] == "success"
        assert queried["data"] == [{"name": "pen", "qty": 9}, {"name": "ink", "qty": 5}]
        assert queried["meta"]["returned_row_count"] == 2

        deleted = await ws.request(
            "gateway.delete",
            {"table_name": "ws_items", "conditions": [{"eq_column": "name", "eq_value": "ink"}]},
        )
        assert deleted["message"] == "Data deleted successfully"
        assert deleted["count"] == 1
        assert items.execute("SELECT name FROM ws_items").fetchall() == [("pen",)]


async def test_service_errors_use_the_http_codes_and_keep_the_socket(
    athena: AthenaServer, admin_key: str, items: psycopg.Connection
) -> None:
    async with connect(athena, {"apikey": admin_key}) as ws:
        no_client = await ws.request("gateway.fetch", {"table_name": "ws_items"})
        assert no_client["code"] == "missing_client_header"
        assert no_client["status"] == "error"
        unknown = await ws.request(
            "gateway.fetch", {"table_name": "ws_items"}, client_name="no_such_client"
        )
        assert unknown["code"] == "unknown_client"
        no_table = await ws.request(
            "gateway.fetch", {"table_name": "ws_nope"}, client_name="athena"
        )
        assert no_table["code"] == "unknown_table"
        no_context = await ws.request(
            "gateway.insert",
            {"table_name": "ws_items", "insert_body": {"name": "x"}},
            client_name="athena",
        )
        assert no_context["code"] == "missing_context_header"
        bad_sql_body = {"query": "SELEC nonsense"}
        bad_sql = await ws.request("gateway.query", bad_sql_body, client_name="athena")
        assert bad_sql["status"] == "error"
        assert bad_sql["code"] == "query_failed"
        headers = {"apikey": admin_key, "X-Athena-Client": "athena"}
        async with httpx.AsyncClient(base_url=athena.url, headers=headers) as http:
            over_http = await http.post("/gateway/query", json=bad_sql_body)
        assert _envelope(bad_sql) == over_http.json()
        assert (await ws.request("ping"))["status"] == "success"


async def test_auth_failures_and_rights_match_http(
    athena: AthenaServer, seeded_key: Callable[..., str], items: psycopg.Connection
) -> None:
    reader = seeded_key(rights=["ws_items.read"])
    other_client = seeded_key(rights=["*"], client="some_other_client")
    body = {"table_name": "ws_items"}
    async with connect(athena, {"X-Athena-Client": "athena"}) as ws:
        assert (await ws.request("gateway.fetch", body))["code"] == "api_key_required"
        bad = await ws.request("gateway.fetch", body, headers={"apikey": "ath_0000.nope"})
        assert bad["code"] == "invalid_api_key"
        ok = await ws.request("gateway.fetch", body, headers={"apikey": reader})
        assert ok["status"] == "success"
        bearer = await ws.request(
            "gateway.fetch", body, headers={"Authorization": f"Bearer {reader}"}
        )
        assert bearer["status"] == "success"
        denied = await ws.request(
            "gateway.fetch", {"table_name": "ws_secrets"}, headers={"apikey": reader}
        )
        assert denied["code"] == "insufficient_rights"
        assert denied["data"]["required_right"] == "ws_secrets.read"
        no_write = await ws.request(
            "gateway.insert",
            {"table_name": "ws_items", "insert_body": {"name": "x"}},
            headers={"apikey": reader, **CONTEXT},
        )
        assert no_write["code"] == "insufficient_rights"
        mismatch = await ws.request("gateway.fetch", body, headers={"apikey": other_client})
        assert mismatch["code"] == "api_key_client_mismatch"
        no_query = await ws.request(
            "gateway.query", {"query": "SELECT 1"}, headers={"apikey": reader}
        )
        assert no_query["code"] == "insufficient_rights"


async def test_message_headers_override_the_upgrade_headers(
    athena: AthenaServer, seeded_key: Callable[..., str], items: psycopg.Connection
) -> None:
    reader = seeded_key(rights=["ws_items.read"])
    async with connect(athena, {"apikey": "ath_0000.revoked", "X-Athena-Client": "nope"}) as ws:
        with_upgrade_only = await ws.request("gateway.fetch", {"table_name": "ws_items"})
        assert with_upgrade_only["code"] == "unknown_client"
        fixed = await ws.request(
            "gateway.fetch",
            {"table_name": "ws_items"},
            client_name="athena",
            headers={"APIKEY": reader},  # header names are case-insensitive
        )
        assert fixed["status"] == "success"


async def test_requests_on_one_socket_run_concurrently_and_reply_out_of_order(
    athena: AthenaServer, admin_key: str
) -> None:
    async with connect(athena, {"apikey": admin_key, "X-Athena-Client": "athena"}) as ws:
        slow = await ws.send("gateway.query", {"query": "SELECT pg_sleep(1.0) AS slept"})
        fast = await ws.send("gateway.query", {"query": "SELECT 42 AS answer"})
        first = await ws.receive()
        assert first["request_id"] == fast
        assert first["data"] == [{"answer": 42}]
        assert (await ws.reply(slow))["status"] == "success"

        # Eight half-second sleeps on one socket take about half a second, not four.
        started = trio.current_time()
        ids = [
            await ws.send("gateway.query", {"query": f"SELECT pg_sleep(0.5), {n} AS n"})
            for n in range(8)
        ]
        replies = [await ws.reply(rid) for rid in ids]
        elapsed = trio.current_time() - started
        assert [r["data"][0]["n"] for r in replies] == list(range(8))
        assert elapsed < 2.5, f"requests were serialized ({elapsed:.2f}s)"


async def test_request_log_records_each_message(
    athena: AthenaServer,
    admin_key: str,
    catalog_conn: psycopg.Connection,
    items: psycopg.Connection,
) -> None:
    async with connect(athena, {"apikey": admin_key, "X-Athena-Client": "athena"}) as ws:
        reply = await ws.request(
            "gateway.fetch", {"table_name": "ws_items"}, request_id="ws-log-check-1"
        )
        assert reply["status"] == "success"
        denied = await ws.request(
            "gateway.fetch", {"table_name": "ws_nope"}, request_id="ws-log-check-2"
        )
        assert denied["code"] == "unknown_table"
    rows: list[tuple] = []
    with trio.fail_after(10):
        while len(rows) < 2:
            await trio.sleep(0.2)
            rows = catalog_conn.execute(
                """SELECT request_id, route, method, status_code, client_name, table_name,
                          error_code, api_key_public_id
                     FROM athena.gateway_request_log
                    WHERE request_id IN ('ws-log-check-1', 'ws-log-check-2')
                    ORDER BY request_id"""
            ).fetchall()
    assert rows[0][:6] == (
        "ws-log-check-1",
        "/wss/gateway",
        "gateway.fetch",
        200,
        "athena",
        "ws_items",
    )
    assert rows[0][7] == "admin"
    assert rows[1][3] == 400
    assert rows[1][6] == "unknown_table"
