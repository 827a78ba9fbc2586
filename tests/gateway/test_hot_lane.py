"""The hot lane (athena/http/hot_lane.py) serves the gateway routes and /ping in front of Quart.

A request with a chunked body is handed to Quart instead, so sending the same request both ways
compares the two paths over the real server: a user must not be able to tell them apart.
"""

from __future__ import annotations

import re
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from support.servers import AthenaServer

REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")


def _chunked(body: bytes) -> Iterator[bytes]:
    """httpx sends a generator with Transfer-Encoding: chunked, which the lane leaves to Quart."""
    yield body


def _both_ways(
    client: httpx.Client, method: str, path: str, body: bytes, **kw: Any
) -> tuple[httpx.Response, httpx.Response]:
    lane = client.request(method, path, content=body, **kw)
    quart = client.request(method, path, content=_chunked(body), **kw)
    assert "transfer-encoding" not in lane.request.headers
    assert quart.request.headers.get("transfer-encoding") == "chunked"
    return lane, quart


def _same(lane: httpx.Response, quart: httpx.Response) -> Any:
    assert lane.status_code == quart.status_code, (lane.text, quart.text)
    assert lane.headers["content-type"] == quart.headers["content-type"]
    assert REQUEST_ID.match(lane.headers["x-request-id"])
    assert REQUEST_ID.match(quart.headers["x-request-id"])
    assert lane.json() == quart.json()
    assert int(lane.headers["content-length"]) == len(lane.content)
    return lane.json()


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b'{"table_name":"gw_products","columns":["sku"],"sort_by":{"field":"sku"},"limit":2}',
         200, None),
        (b'{"table_name":"gw_products","conditions":[{"eq_column":"sku","eq_value":"C-3"}]}',
         200, None),
        (b'{"table_name":"gw_nowhere"}', 400, "unknown_table"),
        (b'{"table_name":"gw_products","columns":["nope"]}', 400, "unknown_column"),
        (b'{"table_name": ', 400, "invalid_json"),
        (b"[1, 2]", 400, "invalid_request"),
        (b"", 400, "invalid_json"),
    ],
)  # fmt: skip
def test_fetch_answers_the_same_on_both_paths(
    gw: httpx.Client, body: bytes, status: int, code: str | None
) -> None:
    lane, quart = _both_ways(gw, "POST", "/gateway/fetch", body)
    answer = _same(lane, quart)
    assert lane.status_code == status
    if code is None:
        assert answer["status"] == "success" and answer["count"] == len(answer["data"]) > 0
    else:
        assert answer["status"] == "error" and answer["code"] == code


def test_auth_failures_are_the_same_on_both_paths(athena: AthenaServer, gw_schema: None) -> None:
    body = b'{"table_name":"gw_products"}'
    with athena.client(**{"X-Athena-Client": "athena"}) as client:
        _same(*_both_ways(client, "POST", "/gateway/fetch", body))
        assert client.post("/gateway/fetch", content=body).json()["code"] == "api_key_required"
    with athena.client(apikey="ath_nosuchkey0000.secret", **{"X-Athena-Client": "athena"}) as c:
        lane, quart = _both_ways(c, "POST", "/gateway/fetch", body)
        assert lane.status_code == 401
        _same(lane, quart)


def test_writes_go_through_on_both_paths(gw: httpx.Client, db: psycopg.Connection) -> None:
    owner = f"lane-{uuid.uuid4().hex[:8]}"
    for n, send in enumerate((lambda b: b, _chunked)):
        body = f'{{"table_name":"gw_items","insert_body":{{"owner":"{owner}","name":"n{n}"}}}}'
        response = gw.put("/gateway/insert", content=send(body.encode()))
        assert response.status_code == 200, response.text
        assert response.json()["data"][0]["name"] == f"n{n}"
    rows = db.execute("SELECT name FROM gw_items WHERE owner = %s ORDER BY name", [owner])
    assert [r[0] for r in rows] == ["n0", "n1"]

    update = (
        f'{{"table_name":"gw_items","conditions":[{{"eq_column":"owner","eq_value":"{owner}"}}],'
        '"update_body":{"qty":7}}'
    ).encode()
    lane, quart = _both_ways(gw, "POST", "/gateway/update", update)
    assert lane.json()["count"] == quart.json()["count"] == 2
    delete = (
        f'{{"table_name":"gw_items","conditions":[{{"eq_column":"owner","eq_value":"{owner}"}}]}}'
    ).encode()
    assert gw.request("DELETE", "/gateway/delete", content=delete).json()["count"] == 2
    assert db.execute("SELECT count(*) FROM gw_items WHERE owner = %s", [owner]).fetchone() == (0,)


def test_request_id_metrics_and_request_log(
    gw: httpx.Client, catalog_conn: psycopg.Connection
) -> None:
    request_id = f"lane-{uuid.uuid4().hex}"
    body = b'{"table_name":"gw_products","limit":1}'
    response = gw.post("/gateway/fetch", content=body, headers={"x-request-id": request_id})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == request_id

    metrics = gw.get("/metrics").text
    assert re.search(
        r'athena_requests_total\{client="athena",method="POST",route="/gateway/fetch",'
        r'status="200"\} [1-9]',
        metrics,
    ), "lane requests are counted"

    deadline = time.monotonic() + 15
    row = None
    while time.monotonic() < deadline and row is None:
        row = catalog_conn.execute(
            "SELECT route, method, status_code, client_name, table_name, operation "
            "FROM athena.gateway_request_log WHERE request_id = %s",
            [request_id],
        ).fetchone()
        time.sleep(0.2)
    assert row == ("/gateway/fetch", "POST", 200, "athena", "gw_products", "fetch")


def test_ping_in_the_lane_and_what_it_hands_to_quart(athena: AthenaServer) -> None:
    with httpx.Client(base_url=athena.url) as client:
        ping = client.get("/ping")
        assert ping.status_code == 200 and ping.text == "pong"
        assert ping.headers["content-type"] == "text/plain; charset=utf-8"
        assert REQUEST_ID.match(ping.headers["x-request-id"])
        head = client.head("/ping")  # not a lane route: Quart answers it like any GET route
        assert head.status_code == 200 and head.content == b""
        wrong = client.get("/gateway/fetch")
        assert wrong.status_code == 405
        assert wrong.json()["code"] == "method_not_allowed"
        assert "POST" in wrong.headers["allow"]
        slash = client.post("/gateway/fetch/", content=b"{}")
        assert slash.status_code in (404, 405, 308)


def test_limits_apply_in_the_lane(athena_factory: Callable[..., AthenaServer]) -> None:
    server = athena_factory(rate_limit_per_ip="1", rate_limit_burst="3", max_body_bytes="2048")
    with httpx.Client(base_url=server.url) as client:
        body = b'{"table_name":"gw_products"}'
        too_long = client.post("/gateway/fetch", params={"q": "x" * 9000}, content=body)
        assert too_long.status_code == 414 and too_long.json()["code"] == "uri_too_long"
        big = client.post("/gateway/fetch", content=b'{"x":"' + b"y" * 4096 + b'"}')
        assert big.status_code == 413 and big.json()["code"] == "payload_too_large"
        statuses = [client.post("/gateway/fetch", content=body).status_code for _ in range(6)]
        assert 429 in statuses, statuses
        limited = client.post("/gateway/fetch", content=body)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert limited.json()["code"] == "rate_limited"
        assert client.get("/ping").status_code == 200, "liveness is never limited"


def test_client_leaving_mid_body_does_not_hurt_the_server(gw: httpx.Client) -> None:
    host, port = gw.base_url.host, gw.base_url.port
    for _ in range(5):
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.sendall(
                b"POST /gateway/fetch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b'Content-Length: 1000\r\n\r\n{"table_name":'
            )
    response = gw.post("/gateway/fetch", content=b'{"table_name":"gw_products","limit":1}')
    assert response.status_code == 200 and response.json()["count"] == 1
