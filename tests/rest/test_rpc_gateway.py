"""Athena RS 3.x function routes: POST /gateway/rpc and GET/POST /rpc/{fn}, in the gateway
envelope, shaped the way the SDK (@xylex-group/athena) sends them; the same lookup, rights and
errors as /rest/v1/rpc."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from support.keys import seed_key
from support.pg import TestPostgres
from support.servers import AthenaServer

SQL = Callable[..., list[dict[str, Any]]]


@pytest.fixture
def gw(rest_server: AthenaServer, admin_key: str, functions: str) -> Iterator[httpx.Client]:
    headers = {"apikey": admin_key, "X-Athena-Client": "athena"}
    with httpx.Client(base_url=rest_server.url, headers=headers) as client:
        yield client


def test_gateway_rpc_with_filters_order_paging_and_count(gw: httpx.Client, sql: SQL) -> None:
    res = gw.post(
        "/gateway/rpc",
        json={
            "function": "rpc_planets_like",
            "args": {"needle": "r"},
            "select": "name,moons",
            "filters": [{"column": "kind", "operator": "eq", "value": "rocky"}],
            "order": {"column": "moons", "ascending": False},
            "limit": 2,
            "offset": 0,
            "count": "exact",
        },
    )
    assert res.status_code == 200, res.text
    body = res.json()
    expected = sql(
        "SELECT name, moons FROM rpc_planets_like('r') WHERE kind = 'rocky' "
        "ORDER BY moons DESC LIMIT 2"
    )
    assert body["status"] == "success"
    assert body["data"] == expected == [{"name": "Mars", "moons": 2}, {"name": "Earth", "moons": 1}]
    total = sql("SELECT count(*) AS n FROM rpc_planets_like('r') WHERE kind = 'rocky'")[0]["n"]
    assert body["count"] == total == 4


def test_gateway_rpc_in_and_is_filters(gw: httpx.Client) -> None:
    res = gw.post(
        "/gateway/rpc",
        json={
            "function_name": "rpc_all_planets",
            "select": "id",
            "filters": [
                {"column": "name", "operator": "in", "value": ["Venus", "Mars", "Pluto"]},
                {"column": "star_id", "operator": "is", "value": None},
            ],
        },
    )
    assert res.json()["data"] == []
    res = gw.post(
        "/gateway/rpc",
        json={
            "function": "rpc_all_planets",
            "select": "id",
            "order": {"column": "id"},
            "filters": [{"column": "name", "operator": "in", "value": ["Venus", "Mars"]}],
        },
    )
    assert res.json()["data"] == [{"id": 2}, {"id": 4}]


def test_gateway_rpc_scalar_void_and_errors(
    gw: httpx.Client, pg: TestPostgres, functions: str
) -> None:
    assert (
        gw.post("/gateway/rpc", json={"function": "rpc_add", "args": {"a": 5, "b": 6}}).json()[
            "data"
        ]
        == 11
    )
    with pg.connect(functions) as conn:
        conn.execute("TRUNCATE rpc_log")
        void = gw.post("/gateway/rpc", json={"function": "rpc_note", "args": {"msg": "gw"}})
        assert void.status_code == 200 and void.json()["data"] is None
        assert conn.execute("SELECT msg FROM rpc_log").fetchall() == [("gw",)]
    missing = gw.post("/gateway/rpc", json={"function": "rpc_nope", "args": {}})
    assert missing.status_code == 404
    assert missing.json()["code"] == "unknown_function"
    assert missing.json()["data"]["postgrest_code"] == "PGRST202"
    bad = gw.post("/gateway/rpc", json={"args": {}})
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_request"
    bad_op = gw.post(
        "/gateway/rpc",
        json={"function": "rpc_all_planets", "filters": [{"column": "id", "operator": "nope"}]},
    )
    assert bad_op.status_code == 400 and bad_op.json()["code"] == "invalid_operator"


def test_get_rpc_route_as_the_sdk_builds_it(gw: httpx.Client, sql: SQL) -> None:
    # the SDK's GET form: arguments and filters in the query, count/head/order as keys
    res = gw.get(
        "/rpc/rpc_planets_like",
        params=[
            ("needle", "a"), ("select", "name"), ("count", "exact"), ("limit", "2"),
            ("order", "name.desc"), ("kind", "eq.rocky"),
        ],
    )  # fmt: skip
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["data"] == sql(
        "SELECT name FROM rpc_planets_like('a') WHERE kind = 'rocky' ORDER BY name DESC LIMIT 2"
    )
    assert body["count"] == 3  # Earth, Mars, Proxima b
    head = gw.get("/rpc/rpc_planets_like", params={"needle": "a", "count": "exact", "head": "true"})
    assert head.json()["data"] == [] and head.json()["count"] == 4


def test_get_rpc_is_read_only_post_is_not(
    gw: httpx.Client, pg: TestPostgres, functions: str
) -> None:
    with pg.connect(functions) as conn:
        conn.execute("TRUNCATE rpc_log")
        refused = gw.get("/rpc/rpc_note", params={"msg": "x"})
        assert refused.status_code >= 400 and refused.json()["status"] == "error"
        assert conn.execute("SELECT count(*) FROM rpc_log").fetchone() == (0,)
        done = gw.post("/rpc/rpc_note", json={"msg": "posted"})
        assert done.status_code == 200
        assert conn.execute("SELECT msg FROM rpc_log").fetchall() == [("posted",)]


def test_post_rpc_route_takes_arguments_or_the_whole_payload(gw: httpx.Client) -> None:
    assert gw.post("/rpc/rpc_add", json={"a": 1, "b": 2}).json()["data"] == 3
    full = gw.post(
        "/rpc/rpc_planets_like",
        json={"args": {"needle": "sat"}, "select": "name"},
    )
    assert full.json()["data"] == [{"name": "Saturn"}]


def test_same_rights_as_rest(rest_server: AthenaServer, catalog_uri: str, functions: str) -> None:
    def call(key: str) -> httpx.Response:
        return httpx.post(
            f"{rest_server.url}/gateway/rpc",
            json={"function": "rpc_add", "args": {"a": 1, "b": 1}},
            headers={"apikey": key, "X-Athena-Client": "athena"},
        )

    denied = call(seed_key(catalog_uri, rights=["*.*", "rpc_add.read", "gateway.*"]))
    assert denied.status_code == 403 and denied.json()["code"] == "insufficient_rights"
    assert call(seed_key(catalog_uri, rights=["rpc_add.execute"])).json()["data"] == 2
