"""The SDK 5 wire protocol, request by request, on every HTTP path (plain-HTTP lane, hypercorn,
Quart alone), against a gateway with default settings (context headers optional).

What is asserted is what the SDK reads: the ``/db`` and ``/storage`` service prefixes reach the
same routes as the root paths; ``count: "exact"`` is the total of matching rows, not the page
size, and ``head`` returns no rows; ``label:name`` renames a column; the findMany AST body
(``select`` object, ``where`` tree, ``orderBy``) reads like the classic one; ``params`` bind
``$1…``; ``GET /health`` reports the release; unsupported service paths answer 404
``not_supported``; ``x-pg-uri`` is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from support.pg import TestPostgres
from support.servers import AthenaServer

TABLE = "sdk5_items"
SCHEMA_SQL = f"""
DROP TABLE IF EXISTS {TABLE};
CREATE TABLE {TABLE} (
    id serial PRIMARY KEY,
    owner text NOT NULL,
    name text NOT NULL,
    qty integer NOT NULL DEFAULT 1,
    note text,
    UNIQUE (owner, name)
);
INSERT INTO {TABLE} (owner, name, qty, note) VALUES
    ('o', 'alpha', 1, 'first'), ('o', 'beta', 5, NULL), ('o', 'gamma', 9, 'x'),
    ('o', 'delta', 12, NULL), ('other', 'zeta', 3, NULL);
"""

PATHS = {
    "lane": {},
    "hypercorn": {"lane_http": "false"},
    "quart": {"hot_lane": "false"},
}


@pytest.fixture(scope="module")
def sdk5_table(pg: TestPostgres, data_db: str) -> None:
    with pg.connect(data_db) as conn:
        conn.execute(SCHEMA_SQL)


@pytest.fixture(scope="module", params=list(PATHS))
def server(
    request: pytest.FixtureRequest, athena_factory: Callable[..., AthenaServer], sdk5_table: None
) -> AthenaServer:
    return athena_factory(**PATHS[request.param])


@pytest.fixture
def sdk(server: AthenaServer, admin_key: str) -> Iterator[httpx.Client]:
    """Headers exactly as SDK 5 sends them: the key only as X-Athena-Key, strip-nulls on."""
    with server.client(
        **{
            "X-Athena-Key": admin_key,
            "X-Athena-Client": "athena",
            "X-Strip-Nulls": "true",
            "x-athena-sdk": "xylex-group/athena 5.2.0",
        }
    ) as client:
        yield client


def fetch(sdk: httpx.Client, prefix: str = "/db", **body: Any) -> dict[str, Any]:
    body.setdefault("table_name", TABLE)
    response = sdk.post(f"{prefix}/gateway/fetch", json=body)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


OWNER_O = [
    {"operator": "eq", "column": "owner", "eq_column": "owner", "value": "o", "eq_value": "o"}
]


@pytest.mark.parametrize("prefix", ["", "/db"])
def test_the_db_prefix_serves_the_same_fetch(sdk: httpx.Client, prefix: str) -> None:
    body = fetch(
        sdk,
        prefix,
        columns="name",
        conditions=OWNER_O,
        sort_by={"field": "qty", "direction": "descending"},
    )
    assert [r["name"] for r in body["data"]] == ["delta", "gamma", "beta", "alpha"]


def test_exact_count_is_the_total_not_the_page(sdk: httpx.Client) -> None:
    page = fetch(sdk, columns="*", conditions=OWNER_O, count="exact", limit=1)
    assert len(page["data"]) == 1
    assert page["count"] == 4
    without = fetch(sdk, columns="*", conditions=OWNER_O, limit=1)
    assert without["count"] == 1  # unchanged when no count is asked for


def test_head_returns_the_count_and_no_rows(sdk: httpx.Client) -> None:
    head = fetch(sdk, columns="*", conditions=OWNER_O, count="exact", head=True)
    assert head["data"] == []
    assert head["count"] == 4


def test_bad_count_is_a_clear_400(sdk: httpx.Client) -> None:
    response = sdk.post("/db/gateway/fetch", json={"table_name": TABLE, "count": "lots"})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_request"


def test_column_aliases_rename_output_keys(sdk: httpx.Client) -> None:
    body = fetch(sdk, columns="label:name,qty", conditions=OWNER_O, sort_by={"field": "qty"})
    assert body["data"][0] == {"label": "alpha", "qty": 1}
    unknown = sdk.post("/db/gateway/fetch", json={"table_name": TABLE, "columns": "label:nope"})
    assert unknown.status_code == 400
    assert unknown.json()["code"] == "unknown_column"


def test_find_many_ast_body(sdk: httpx.Client) -> None:
    body = fetch(
        sdk,
        select={"name": True, "qty": True},
        where={"owner": "o", "or": [{"qty": {"gte": 9}}, {"name": {"eq": "alpha"}}]},
        orderBy={"qty": "desc"},
        limit=10,
    )
    assert body["data"] == [
        {"name": "delta", "qty": 12},
        {"name": "gamma", "qty": 9},
        {"name": "alpha", "qty": 1},
    ]
    both_shapes = fetch(
        sdk,
        select={"name": True},
        where={"owner": {"eq": "o"}, "not": {"note": {"is": None}}},
        orderBy=[{"column": "name", "ascending": True}],
    )
    assert [r["name"] for r in both_shapes["data"]] == ["alpha", "gamma"]
    nulls = fetch(sdk, select={"name": True}, where={"owner": "o", "note": None})
    assert sorted(r["name"] for r in nulls["data"]) == ["beta", "delta"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"select": {"name": True, "orders": {"select": {"id": True}}}}, "unknown_relation"),
        ({"where": {"qty": {"between": [1, 2]}}}, "invalid_operator"),
        ({"where": {"orders": {"some": {"id": {"eq": 1}}}}}, "unsupported_operation"),
        ({"orderBy": {"qty": "sideways"}}, "invalid_request"),
        ({"select": {}}, "invalid_request"),
        ({"where": "owner = 'o'"}, "invalid_request"),
    ],
)
def test_find_many_ast_bad_bodies_are_clear_400s(
    sdk: httpx.Client, body: dict[str, Any], code: str
) -> None:
    response = sdk.post("/db/gateway/fetch", json={"table_name": TABLE, **body})
    assert response.status_code == 400, response.text
    assert response.json()["code"] == code


def test_writes_need_no_context_headers_by_default(
    sdk: httpx.Client, data_conn: psycopg.Connection
) -> None:
    name = f"w-{id(sdk)}"
    inserted = sdk.put(
        "/db/gateway/insert",
        json={"table_name": TABLE, "insert_body": {"owner": "w", "name": name}},
    )
    assert inserted.status_code == 200, inserted.text
    row_id = inserted.json()["data"][0]["id"]
    deleted = sdk.request(
        "DELETE", "/db/gateway/delete", json={"table_name": TABLE, "resource_id": str(row_id)}
    )
    assert deleted.status_code == 200, deleted.text
    assert data_conn.execute(
        f"SELECT count(*) FROM {TABLE} WHERE name = %s", (name,)
    ).fetchone() == (0,)


def test_raw_sql_binds_params(sdk: httpx.Client) -> None:
    response = sdk.post(
        "/db/gateway/query",
        json={
            "query": f"SELECT name FROM {TABLE} WHERE owner = $1 AND qty > $2 ORDER BY qty",
            "params": ["o", 4],
        },
    )
    assert response.status_code == 200, response.text
    assert [r["name"] for r in response.json()["data"]] == ["beta", "gamma", "delta"]
    # A value is a value: quotes and semicolons in it are never SQL.
    hostile = sdk.post(
        "/db/gateway/query",
        json={"query": "SELECT $1::text AS v", "params": ["x'; DROP TABLE sdk5_items; --"]},
    )
    assert hostile.json()["data"] == [{"v": "x'; DROP TABLE sdk5_items; --"}]
    arrays = sdk.post(
        "/db/gateway/query",
        json={"query": "SELECT $1::int[] AS a, $2::jsonb AS j", "params": [[1, 2], {"k": [1]}]},
    )
    assert arrays.json()["data"] == [{"a": [1, 2], "j": {"k": [1]}}]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"query": "SELECT $1", "params": "x"}, "invalid_request"),
        ({"query": "SELECT 1; SELECT $1::int", "params": [1]}, "query_failed"),
        ({"query": "SELECT $2::int", "params": [1]}, "query_failed"),
    ],
)
def test_bad_params_are_clear_400s(sdk: httpx.Client, body: dict[str, Any], code: str) -> None:
    response = sdk.post("/db/gateway/query", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == code


def test_query_sql_binds_params(sdk: httpx.Client) -> None:
    response = sdk.post(
        "/query/sql",
        json={
            "driver": "postgresql",
            "db_name": "athena",
            "query": "SELECT $1::int * 2 AS d",
            "params": [21],
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"] == [{"d": 42}]


def test_health_reports_pools_and_the_release(sdk: httpx.Client) -> None:
    for path in ("/health", "/db/health"):
        response = sdk.get(path)
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "ok"
        assert body["pools"]["athena"] == "online"
        release = body["release"]
        assert release["implementation"]["name"] == "athena-python"
        assert body["version"] == release["implementation"]["version"]
        major = int(release["version"].split(".")[0])
        assert major in (4, 5)  # what SDK 5's compatibility check accepts
        if major == 4:  # not 5.0 unless every SDK 5 capability is served
            assert release["missing_routes"]
    root = sdk.get("/db/").json()
    assert root["release"] == sdk.get("/").json()["release"]
    prefixes = {p["prefix"]: p["serves"] for p in root["service_prefixes"]}
    assert "/gateway" in prefixes["/db"] and prefixes["/storage"] == ["/admin/backups"]


def test_storage_prefix_serves_backups_and_names_what_is_not_served(sdk: httpx.Client) -> None:
    # Same route, same answer, with and without the prefix (no S3 configured here: 503).
    plain, prefixed = sdk.get("/admin/backups"), sdk.get("/storage/admin/backups")
    assert prefixed.status_code == plain.status_code
    assert prefixed.json()["code"] == plain.json()["code"]
    for method, path in (
        ("GET", "/storage/storage/catalogs"),
        ("POST", "/storage/files/upload-url"),
        ("GET", "/auth/session"),
    ):
        response = sdk.request(method, path, json={} if method == "POST" else None)
        assert response.status_code == 404, path
        assert response.json()["code"] == "not_supported"
        assert response.json()["data"]["feature"]


def test_a_direct_postgres_uri_is_refused(sdk: httpx.Client) -> None:
    response = sdk.post(
        "/db/gateway/fetch",
        json={"table_name": TABLE},
        headers={"x-pg-uri": "postgresql://postgres@169.254.169.254/postgres"},
    )
    assert response.status_code == 400
    assert response.json()["code"] == "direct_uri_not_allowed"
    assert "169.254" not in response.text  # the URI is never echoed


def test_errors_are_objects_with_a_code(sdk: httpx.Client) -> None:
    response = sdk.post("/db/gateway/fetch", json={"table_name": "no_such_table"})
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == "error" and body["code"] == "unknown_table"
