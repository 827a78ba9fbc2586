"""Postgres functions over /rest/v1/rpc/{fn}, as PostgREST serves them, through postgrest-py
and raw HTTP; every answer checked against the same function called in SQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from postgrest import APIError, CountMethod, SyncPostgrestClient
from support.pg import TestPostgres
from support.servers import AthenaServer

SQL = Callable[..., list[dict[str, Any]]]


@pytest.fixture
def rpc(pgrst: SyncPostgrestClient, functions: str) -> SyncPostgrestClient:
    return pgrst


@pytest.fixture
def raw(
    rest_server: AthenaServer, native_headers: dict[str, str], functions: str
) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{rest_server.url}/rest/v1", headers=native_headers) as client:
        yield client


@pytest.fixture
def log(pg: TestPostgres, functions: str) -> Iterator[psycopg.Connection]:
    with pg.connect(functions) as conn:
        conn.execute("TRUNCATE rpc_log RESTART IDENTITY")
        yield conn


# -- set-returning functions read like tables ---------------------------------------------------


def test_post_with_arguments_matches_sql(rpc: SyncPostgrestClient, sql: SQL) -> None:
    res = rpc.rpc("rpc_planets_like", {"needle": "ar"}).select("name").order("id").execute()
    expected = sql("SELECT name FROM rpc_planets_like('ar') ORDER BY id")
    assert res.data == expected and [r["name"] for r in res.data] == ["Earth", "Mars"]


def test_get_with_arguments_in_the_query_string(rpc: SyncPostgrestClient, sql: SQL) -> None:
    res = rpc.rpc("rpc_planets_like", {"needle": "ur"}, get=True).select("id,name").execute()
    assert res.data == sql("SELECT id, name FROM rpc_planets_like('ur')")
    assert {r["name"] for r in res.data} == {"Mercury", "Saturn"}


def test_filters_order_and_limit_apply_to_the_result(rpc: SyncPostgrestClient, sql: SQL) -> None:
    res = (
        rpc.rpc("rpc_all_planets", {})
        .select("name,moons")
        .eq("kind", "rocky")
        .order("moons", desc=True)
        .order("name")
        .limit(2)
        .execute()
    )
    expected = sql(
        "SELECT name, moons FROM rpc_all_planets() WHERE kind = 'rocky' "
        "ORDER BY moons DESC, name LIMIT 2"
    )
    assert res.data == expected == [{"name": "Mars", "moons": 2}, {"name": "Earth", "moons": 1}]


def test_range_pages_the_result(rpc: SyncPostgrestClient, sql: SQL) -> None:
    res = rpc.rpc("rpc_all_planets", {}).select("id").order("id").range(2, 4).execute()
    assert res.data == sql("SELECT id FROM rpc_all_planets() ORDER BY id OFFSET 2 LIMIT 3")
    assert [r["id"] for r in res.data] == [3, 4, 5]


def test_single_answers_one_object(rpc: SyncPostgrestClient) -> None:
    res = rpc.rpc("rpc_all_planets", {}).select("name,kind").eq("id", 5).single().execute()
    assert res.data == {"name": "Jupiter", "kind": "giant"}
    with pytest.raises(APIError) as info:
        rpc.rpc("rpc_all_planets", {}).select("name").eq("kind", "giant").single().execute()
    assert info.value.code == "PGRST116"


def test_get_with_exact_count(rpc: SyncPostgrestClient, sql: SQL) -> None:
    res = (
        rpc.rpc("rpc_planets_like", {"needle": "e"}, get=True, count=CountMethod.exact)
        .select("name")
        .order("id")
        .limit(2)
        .execute()
    )
    total = sql("SELECT count(*) AS n FROM rpc_planets_like('e')")[0]["n"]
    assert res.count == total == 4
    assert res.data == [{"name": "Mercury"}, {"name": "Venus"}]


def test_head_counts_without_a_body(rpc: SyncPostgrestClient, raw: httpx.Client) -> None:
    res = rpc.rpc("rpc_planets_like", {"needle": "a"}, head=True, count=CountMethod.exact).execute()
    assert res.count == 4 and res.data == []
    head = raw.head("/rpc/rpc_planets_like?needle=a", headers={"Prefer": "count=exact"})
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-range"] == "0-3/4"


def test_embeds_from_a_set_of_a_table(rpc: SyncPostgrestClient) -> None:
    res = (
        rpc.rpc("rpc_planets_like", {"needle": "proxima"}).select("name,rpc_stars(name)").execute()
    )
    assert res.data == [{"name": "Proxima b", "rpc_stars": {"name": "Proxima"}}]


def test_table_returning_function(raw: httpx.Client, sql: SQL) -> None:
    res = raw.get("/rpc/rpc_kinds", params={"order": "kind", "planets": "gt.2"})
    assert res.status_code == 200
    assert res.json() == sql(
        "SELECT kind, planets, moons FROM rpc_kinds() WHERE planets > 2 ORDER BY kind"
    )


def test_set_of_scalars_is_an_array_of_values(raw: httpx.Client) -> None:
    assert raw.post("/rpc/rpc_series", json={"n": 4}).json() == [1, 2, 3, 4]
    # the values are filtered through the function's own name, as PostgREST does
    res = raw.get(
        "/rpc/rpc_series", params={"n": "6", "rpc_series": "gt.3", "order": "rpc_series.desc"}
    )
    assert res.json() == [6, 5, 4]


# -- single values --------------------------------------------------------------------------


def test_scalar_result_is_the_value(rpc: SyncPostgrestClient, raw: httpx.Client) -> None:
    assert rpc.rpc("rpc_add", {"a": 2, "b": 40}).execute().data == 42
    assert raw.get("/rpc/rpc_add", params={"a": "1", "b": "2"}).json() == 3
    assert raw.post("/rpc/rpc_tags", json={"tags": ["x", "y", "z"]}).json() == 3
    assert raw.get("/rpc/rpc_tags", params={"tags": "{x,y}"}).json() == 2


def test_single_composite_is_an_object(raw: httpx.Client) -> None:
    res = raw.get("/rpc/rpc_planet", params={"pid": "3", "select": "name,moons"})
    assert res.json() == {"name": "Earth", "moons": 1}


def test_overloads_are_chosen_by_argument_names(raw: httpx.Client) -> None:
    assert raw.post("/rpc/rpc_greet", json={"who": "Ada"}).json() == "hello Ada"
    both = raw.post("/rpc/rpc_greet", json={"first": "Ada", "last": "Lovelace"})
    assert both.json() == "hello Ada Lovelace!"
    defaulted = raw.get("/rpc/rpc_greet?first=Ada&last=King&punct=?")
    assert defaulted.json() == "hello Ada King?"


def test_single_json_body(raw: httpx.Client) -> None:
    # a single unnamed json parameter receives the whole body
    assert raw.post("/rpc/rpc_echo", json={"any": [1, 2]}).json() == {"any": [1, 2]}
    # Prefer: params=single-object passes the body to the one json/jsonb parameter
    res = raw.post(
        "/rpc/rpc_keys", json={"a": 1, "b": 2, "c": 3}, headers={"Prefer": "params=single-object"}
    )
    assert res.json() == 3
    # NaN is not JSON: PGRST102, as any other body that is not JSON (a nesting bomb too)
    odd = raw.post("/rpc/rpc_echo", content=b'{"any": NaN}')
    assert odd.status_code == 400 and odd.json()["code"] == "PGRST102", odd.text
    deep = raw.post("/rpc/rpc_echo", content=b"[" * 100_000 + b"]" * 100_000)
    assert deep.status_code == 400 and deep.json()["code"] == "PGRST102", deep.text


# -- writes, void, errors ---------------------------------------------------------------------


def test_void_function_answers_204_and_writes(raw: httpx.Client, log: psycopg.Connection) -> None:
    res = raw.post("/rpc/rpc_note", json={"msg": "hi"})
    assert res.status_code == 204 and res.content == b""
    assert log.execute("SELECT msg FROM rpc_log").fetchall() == [("hi",)]


def test_get_runs_read_only(raw: httpx.Client, log: psycopg.Connection) -> None:
    res = raw.get("/rpc/rpc_note", params={"msg": "sneaky"})
    assert res.status_code == 405
    assert res.json()["code"] == "25006"
    assert log.execute("SELECT count(*) FROM rpc_log").fetchone() == (0,)


def test_unknown_function_is_pgrst202_with_a_hint(raw: httpx.Client) -> None:
    res = raw.post("/rpc/rpc_add_numbers", json={"a": 1})
    assert res.status_code == 404
    body = res.json()
    assert body["code"] == "PGRST202"
    assert (
        body["message"]
        == "Could not find the function public.rpc_add_numbers(a) in the schema cache"
    )
    wrong_args = raw.post("/rpc/rpc_add", json={"a": 1, "c": 2}).json()
    assert wrong_args["code"] == "PGRST202"
    assert wrong_args["hint"] == "Perhaps you meant to call the function public.rpc_add(a, b)"


def test_function_errors_pass_through(raw: httpx.Client) -> None:
    res = raw.post("/rpc/rpc_fail", json={"msg": "now"})
    assert res.status_code == 400
    body = res.json()
    assert (body["code"], body["message"], body["hint"]) == ("P0001", "refused: now", "ask nicely")


def test_new_function_is_found_without_a_restart(
    raw: httpx.Client, pg: TestPostgres, functions: str
) -> None:
    with pg.connect(functions) as conn:
        conn.execute("DROP FUNCTION IF EXISTS rpc_fresh()")
        assert raw.get("/rpc/rpc_fresh").json()["code"] == "PGRST202"
        conn.execute("CREATE FUNCTION rpc_fresh() RETURNS text LANGUAGE sql AS $$ SELECT 'new' $$")
    assert raw.get("/rpc/rpc_fresh").json() == "new"


# -- rights ---------------------------------------------------------------------------------------


def test_table_rights_never_grant_a_function(
    rest_server: AthenaServer, catalog_uri: str, functions: str
) -> None:
    from support.keys import seed_key

    def call(key: str) -> httpx.Response:
        headers = {"apikey": key, "X-Athena-Client": "athena", "X-Athena-Rest-Format": "postgrest"}
        return httpx.post(
            f"{rest_server.url}/rest/v1/rpc/rpc_add", json={"a": 1, "b": 1}, headers=headers
        )

    tables_only = seed_key(catalog_uri, rights=["*.*", "rpc_add.*", "gateway.read"])
    denied = call(tables_only)
    assert denied.status_code == 403 and denied.json()["code"] == "42501"
    assert call(seed_key(catalog_uri, rights=["rpc_add.execute"])).json() == 2
    assert call(seed_key(catalog_uri, rights=["rpc.*"])).json() == 2
    assert call(seed_key(catalog_uri, rights=["rpc_greet.execute"])).status_code == 403
