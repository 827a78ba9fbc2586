"""Absurdly nested input is a 400 with a clear code on every path, never a RecursionError → 500.

Logic trees (``or=(…)`` on /rest/v1, ``or``/``not`` expressions in gateway conditions) and
embeds in ``select`` are bounded by the grammar (``MAX_NESTING``); JSON bodies and WebSocket
messages nested past what the decoder can follow are refused as invalid JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from support.pg import TestPostgres
from support.servers import AthenaServer
from trio_websocket import open_websocket_url

TABLE = "nest_items"
DEEP = 1000  # past the recursion limit, within the 8 KiB query-string limit


@pytest.fixture(scope="module")
def server(
    athena_factory: Callable[..., AthenaServer], pg: TestPostgres, data_db: str
) -> AthenaServer:
    with pg.connect(data_db) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id int PRIMARY KEY, doc jsonb)")
    return athena_factory(require_context_headers="false")


@pytest.fixture
def client(server: AthenaServer, admin_key: str) -> Iterator[httpx.Client]:
    with server.client(apikey=admin_key, **{"X-Athena-Client": "athena"}) as http:
        yield http


def _tree(depth: int) -> str:
    return "(" + "or(" * depth + "id.eq.1" + ")" * depth + ")"


NATIVE = {"X-Athena-Rest-Format": "postgrest"}


@pytest.mark.parametrize("depth", [33, DEEP])
def test_rest_logic_trees(client: httpx.Client, depth: int) -> None:
    ok = client.get(f"/rest/v1/{TABLE}", params={"or": _tree(30)})
    assert ok.status_code == 200, ok.text  # 31 levels: within the bound
    envelope = client.get(f"/rest/v1/{TABLE}", params={"or": _tree(depth)})
    assert envelope.status_code == 400, envelope.text
    assert envelope.json()["data"]["postgrest_code"] == "PGRST100"
    native = client.get(f"/rest/v1/{TABLE}", params={"or": _tree(depth)}, headers=NATIVE)
    assert native.status_code == 400 and native.json()["code"] == "PGRST100"
    assert "nest" in native.json()["details"]


def test_rest_select_embeds(client: httpx.Client) -> None:
    select = "id," + "a(" * DEEP + "id" + ")" * DEEP
    response = client.get(f"/rest/v1/{TABLE}", params={"select": select}, headers=NATIVE)
    assert response.status_code == 400 and response.json()["code"] == "PGRST100"


def _nested_json(depth: int) -> bytes:
    return b'{"id": 1, "doc": ' + b"[" * depth + b"]" * depth + b"}"


def test_rest_json_body(client: httpx.Client) -> None:
    for headers in ({}, NATIVE):
        response = client.post(
            f"/rest/v1/{TABLE}",
            content=_nested_json(100_000),
            headers={**headers, "content-type": "application/json"},
        )
        assert response.status_code == 400, response.text
        code = response.json()["code"]
        assert code == ("PGRST102" if headers else "invalid_json")


@pytest.mark.parametrize("path", ["/gateway/fetch", "/gateway/insert"])
def test_gateway_bodies(client: httpx.Client, path: str) -> None:
    method = "PUT" if path == "/gateway/insert" else "POST"
    body = b'{"table_name": "' + TABLE.encode() + b'", "insert_body": ' + _nested_json(100_000)
    body += b', "conditions": [{"operator": "or", "value": "' + _tree(DEEP).encode() + b'"}]}'
    response = client.request(
        method, path, content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400 and response.json()["code"] == "invalid_json"
    conditions = [{"operator": "or", "value": _tree(DEEP)}]
    response = client.post("/gateway/fetch", json={"table_name": TABLE, "conditions": conditions})
    assert response.status_code == 400 and response.json()["code"] == "invalid_request"
    assert "nested deeper" in response.json()["message"]


async def test_websocket_message(server: AthenaServer, admin_key: str) -> None:
    async with open_websocket_url(f"ws://127.0.0.1:{server.port}/wss/gateway") as ws:
        await ws.get_message()  # the hello
        await ws.send_message(
            '{"request_id":"deep","action":"gateway.fetch","body":'
            + "[" * 100_000
            + "]" * 100_000
            + "}"
        )
        reply: dict[str, Any] = json.loads(await ws.get_message())
        assert reply["status"] == "error" and reply["code"] == "invalid_json", reply
        message = {
            "request_id": "ok", "action": "gateway.fetch", "client_name": "athena",
            "headers": {"apikey": admin_key}, "body": {"table_name": TABLE},
        }  # fmt: skip
        await ws.send_message(json.dumps(message))
        assert json.loads(await ws.get_message())["status"] == "success"
