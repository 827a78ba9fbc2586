"""Raw SQL (``/gateway/query``, ``/query/sql``), client routing, rights, limits, timeouts."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator

import httpx
import psycopg
import pytest
from support.servers import AthenaServer


def test_gateway_query_returns_last_statement_and_meta(gw: httpx.Client) -> None:
    tag = "q-" + secrets.token_hex(4)
    response = gw.post(
        "/gateway/query",
        json={
            "query": f"INSERT INTO gw_burst (n, tag) VALUES (1, '{tag}'), (2, '{tag}');"
            f" UPDATE gw_burst SET n = n + 10 WHERE tag = '{tag}';"
            f" SELECT n, tag, 1.50::numeric AS price, '2024-01-01T00:00:00Z'::timestamptz AS at,"
            f" NULL::text AS nothing FROM gw_burst WHERE tag = '{tag}' ORDER BY n"
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success"
    assert body["meta"] == {
        "backend": "postgresql",
        "returned_row_count": 2,
        "rows_affected": 4,
        "statement_count": 3,
    }
    assert body["data"] == [
        {"n": 11, "tag": tag, "price": 1.5, "at": "2024-01-01T00:00:00+00:00", "nothing": None},
        {"n": 12, "tag": tag, "price": 1.5, "at": "2024-01-01T00:00:00+00:00", "nothing": None},
    ]


def test_raw_results_json_has_no_number_for_are_still_json(gw: httpx.Client) -> None:
    # A bare NaN/Infinity went out (no client's JSON parser accepts it), and a numeric of more
    # than 4,300 digits was a 500: Python would not print it as an int.
    response = gw.post(
        "/gateway/query",
        json={
            "query": "SELECT 'NaN'::float8 AS a, 'Infinity'::float8 AS b, '-Infinity'::float4 AS c,"
            " ARRAY['NaN'::float8, 1.5] AS arr, 'NaN'::numeric AS d, 2.5::float8 AS e,"
            " repeat('9', 5000)::numeric AS big, 12::numeric AS small"
        },
    )
    assert response.status_code == 200, response.text
    row = json.loads(response.text, parse_constant=_no_constant)["data"][0]  # strict JSON
    assert row == {
        "a": "NaN", "b": "Infinity", "c": "-Infinity", "arr": ["NaN", 1.5], "d": "NaN",
        "e": 2.5, "big": "9" * 5000, "small": 12,
    }  # fmt: skip


def _no_constant(name: str) -> None:
    raise AssertionError(f"not JSON: a bare {name}")


def test_gateway_query_is_one_transaction(gw: httpx.Client, db: psycopg.Connection) -> None:
    tag = "tx-" + secrets.token_hex(4)
    response = gw.post(
        "/gateway/query",
        json={"query": f"INSERT INTO gw_burst (n, tag) VALUES (1, '{tag}'); SELECT 1/0"},
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_input"  # division by zero is a data exception
    assert db.execute("SELECT count(*) FROM gw_burst WHERE tag = %s", (tag,)).fetchone() == (0,)


def test_gateway_query_errors_do_not_echo_sql(gw: httpx.Client) -> None:
    response = gw.post("/gateway/query", json={"query": "SELEC secret_token FROM nowhere"})
    assert response.status_code == 400
    assert response.json()["code"] == "query_failed"
    assert "secret_token" not in response.json()["message"]
    missing = gw.post("/gateway/query", json={"query": "SELECT * FROM gw_no_such_table"})
    assert missing.json()["code"] == "unknown_table"
    assert gw.post("/gateway/query", json={}).json()["code"] == "invalid_request"


def test_session_state_does_not_leak_between_raw_queries(gw: httpx.Client) -> None:
    for _ in range(3):  # more requests than it takes to see the same pooled connection again
        gw.post(
            "/gateway/query", json={"query": "SET statement_timeout = 1; SET search_path = nowhere"}
        )
    for _ in range(6):
        response = gw.post(
            "/gateway/query",
            json={
                "query": "SELECT current_setting('search_path') AS sp, pg_sleep(0.01)::text AS s"
            },
        )
        assert response.status_code == 200, response.text
        assert response.json()["data"][0]["sp"] != "nowhere"


def test_ddl_through_raw_query_refreshes_the_schema_cache(gw: httpx.Client) -> None:
    name = "gw_ddl_" + secrets.token_hex(3)
    created = gw.post(
        "/gateway/query", json={"query": f"CREATE TABLE {name} (id int PRIMARY KEY, v text)"}
    )
    assert created.status_code == 200, created.text
    try:
        gw.put(
            "/gateway/insert", json={"table_name": name, "insert_body": {"id": 1, "v": "x"}}
        ).raise_for_status()
        gw.post("/gateway/query", json={"query": f"ALTER TABLE {name} ADD COLUMN w int DEFAULT 7"})
        fetched = gw.post("/gateway/fetch", json={"table_name": name, "columns": "id,w"})
        assert fetched.json()["data"] == [{"id": 1, "w": 7}]
    finally:
        gw.post("/gateway/query", json={"query": f"DROP TABLE {name}"})


def test_query_sql_drivers(gw: httpx.Client) -> None:
    for driver in ("postgresql", "supabase"):
        response = gw.post(
            "/query/sql",
            json={
                "query": "SELECT sku FROM gw_products ORDER BY sku LIMIT 2",
                "driver": driver,
                "db_name": "athena",
            },
        )
        assert response.status_code == 200, response.text
        assert response.json()["data"] == [{"sku": "A-1"}, {"sku": "B-2"}]
        assert response.json()["meta"]["backend"] == "postgresql"
    scylla = gw.post(
        "/query/sql",
        json={"query": "SELECT now() FROM system.local", "driver": "athena", "db_name": "x"},
    )
    assert scylla.status_code == 503
    assert scylla.json()["message"] == "Athena/Scylla unavailable"
    assert scylla.json()["code"] == "scylla_unavailable"
    other = gw.post(
        "/query/sql", json={"query": "SELECT 1", "driver": "mysql", "db_name": "athena"}
    )
    assert other.status_code == 400
    assert other.json()["code"] == "unsupported_driver"
    unknown = gw.post(
        "/query/sql", json={"query": "SELECT 1", "driver": "postgresql", "db_name": "nope"}
    )
    assert unknown.status_code == 400
    assert unknown.json()["code"] == "unknown_client"


# -- routing and rights ------------------------------------------------------------------------


def test_client_header_missing_or_unknown(
    athena: AthenaServer, gw_schema: None, admin_key: str
) -> None:
    with athena.client(apikey=admin_key) as client:
        missing = client.post("/gateway/fetch", json={"table_name": "gw_products"})
        assert missing.status_code == 400
        assert missing.json()["code"] == "missing_client_header"
        assert missing.json()["data"]["details"]["missing_header"] == "X-Athena-Client"
        unknown = client.post(
            "/gateway/fetch",
            json={"table_name": "gw_products"},
            headers={"X-Athena-Client": "ghost"},
        )
        assert unknown.status_code == 400
        assert unknown.json()["code"] == "unknown_client"


@pytest.fixture
def keyed(athena: AthenaServer, gw_schema: None) -> Callable[[str], httpx.Client]:
    made: list[httpx.Client] = []

    def make(key: str) -> httpx.Client:
        client = athena.client(
            apikey=key,
            **{
                "X-Athena-Client": "athena",
                "X-User-Id": "u",
                "X-Company-Id": "c",
                "X-Organization-Id": "o",
            },
        )
        made.append(client)
        return client

    yield make  # type: ignore[misc]
    for client in made:
        client.close()


def test_table_rights_are_enforced(
    keyed: Callable[[str], httpx.Client], seeded_key: Callable[..., str], db: psycopg.Connection
) -> None:
    reader = keyed(seeded_key(rights=["gw_products.read"]))
    assert reader.post("/gateway/fetch", json={"table_name": "gw_products"}).status_code == 200
    denied = reader.post("/gateway/fetch", json={"table_name": "gw_items"})
    assert denied.status_code == 403
    assert denied.json()["code"] == "insufficient_rights"
    write = reader.put(
        "/gateway/insert", json={"table_name": "gw_victim", "insert_body": {"v": "sneaky"}}
    )
    assert write.status_code == 403
    delete = reader.request(
        "DELETE", "/gateway/delete", json={"table_name": "gw_victim", "resource_id": 1}
    )
    assert delete.status_code == 403
    query = reader.post("/gateway/query", json={"query": "DELETE FROM gw_victim"})
    assert query.status_code == 403
    assert db.execute("SELECT count(*) FROM gw_victim").fetchone() == (2,)
    writer = keyed(seeded_key(rights=["gateway.write", "gw_victim.read"]))
    ok = writer.post(
        "/gateway/update",
        json={
            "table_name": "gw_victim",
            "update_body": {"v": "two"},
            "conditions": [{"eq_column": "v", "eq_value": "two"}],
        },
    )
    assert ok.status_code == 200
    querier = keyed(seeded_key(rights=["gateway.query"]))
    assert querier.post("/gateway/query", json={"query": "SELECT 1 AS one"}).json()["data"] == [
        {"one": 1}
    ]


def test_no_key_is_401(athena: AthenaServer, gw_schema: None) -> None:
    with athena.client(**{"X-Athena-Client": "athena"}) as client:
        response = client.post("/gateway/fetch", json={"table_name": "gw_products"})
        assert response.status_code == 401
        assert response.json()["code"] == "api_key_required"


# -- limits and timeouts (a second gateway with tight settings) ------------------------------


@pytest.fixture(scope="module")
def tight(athena_factory: Callable[..., AthenaServer], gw_schema: None) -> AthenaServer:
    from athena.db.embedded import free_port

    return athena_factory(
        statement_timeout_ms="300", max_result_rows="3", max_result_bytes="4000",
        require_context_headers="false", scylla_hosts=f"127.0.0.1:{free_port()}",
    )  # fmt: skip


@pytest.fixture
def tight_client(tight: AthenaServer, admin_key: str) -> Iterator[httpx.Client]:
    with tight.client(apikey=admin_key, **{"X-Athena-Client": "athena"}) as client:
        yield client


def test_result_caps_are_413(tight_client: httpx.Client) -> None:
    three = tight_client.post("/gateway/fetch", json={"table_name": "gw_products", "limit": 3})
    assert three.status_code == 200 and three.json()["count"] == 3
    four = tight_client.post("/gateway/fetch", json={"table_name": "gw_products", "limit": 4})
    assert four.status_code == 413
    assert four.json()["code"] == "result_too_large"
    raw = tight_client.post(
        "/gateway/query", json={"query": "SELECT g FROM generate_series(1, 10) g"}
    )
    assert raw.status_code == 413
    wide = tight_client.post("/gateway/query", json={"query": "SELECT repeat('x', 5000) AS blob"})
    assert wide.status_code == 413


def test_writes_are_not_hidden_behind_the_result_cap(
    tight_client: httpx.Client, db: psycopg.Connection
) -> None:
    tag = "cap-" + secrets.token_hex(4)
    response = tight_client.put(
        "/gateway/insert",
        json={"table_name": "gw_burst", "insert_body": [{"n": i, "tag": tag} for i in range(5)]},
    )
    assert response.status_code == 200, response.text  # 5 rows > the cap of 3: still reported
    assert response.json()["count"] == 5
    assert db.execute("SELECT count(*) FROM gw_burst WHERE tag = %s", (tag,)).fetchone() == (5,)
    raw_tag = "rawcap-" + secrets.token_hex(4)
    raw = tight_client.post(
        "/gateway/query",
        json={
            "query": "INSERT INTO gw_burst (n, tag) SELECT g, %s FROM generate_series(1, 5) g "
            "RETURNING *".replace("%s", f"'{raw_tag}'")
        },
    )
    assert raw.status_code == 413  # a raw statement's oversized result rolls it back
    assert db.execute("SELECT count(*) FROM gw_burst WHERE tag = %s", (raw_tag,)).fetchone() == (0,)


def test_statement_timeout_is_504(tight_client: httpx.Client) -> None:
    response = tight_client.post("/gateway/query", json={"query": "SELECT pg_sleep(2)"})
    assert response.status_code == 504
    assert response.json()["code"] == "statement_timeout"
    assert tight_client.post("/gateway/query", json={"query": "SELECT 1 AS ok"}).status_code == 200


def test_context_headers_can_be_switched_off(
    tight_client: httpx.Client, db: psycopg.Connection
) -> None:
    tag = "ctx-" + secrets.token_hex(4)
    response = tight_client.put(
        "/gateway/insert", json={"table_name": "gw_burst", "insert_body": {"n": 1, "tag": tag}}
    )
    assert response.status_code == 200, response.text


def test_unreachable_client_is_503(
    athena_factory: Callable[..., AthenaServer], admin_key: str
) -> None:
    from athena.db.embedded import free_port

    dead = f"postgresql://nobody:pw@127.0.0.1:{free_port()}/nothing"
    server = athena_factory(
        clients={"dead": {"pg_uri": dead}}, pool_timeout_s="1", connect_timeout_s="1"
    )
    with server.client(apikey=admin_key, **{"X-Athena-Client": "dead"}) as client:
        response = client.post("/gateway/fetch", json={"table_name": "anything"})
        assert response.status_code == 503
        assert response.json()["code"] == "client_unavailable"
        assert "nobody:pw" not in response.text


def test_repeated_multi_statement_queries_and_deallocate_all_keep_working(gw: httpx.Client) -> None:
    # psycopg prepares a statement after a few identical runs; a multi-statement text can never
    # be prepared, and a caller's DEALLOCATE ALL must not break the gateway's prepared statements.
    for _ in range(8):
        response = gw.post("/gateway/query", json={"query": "SELECT 1 AS a; SELECT 2 AS b"})
        assert response.json()["data"] == [{"b": 2}], response.text
    for _ in range(8):
        discard = gw.post("/gateway/query", json={"query": "DEALLOCATE ALL"})
        assert discard.status_code == 200, discard.text
        fetched = gw.post(
            "/gateway/fetch",
            json={
                "table_name": "gw_products",
                "conditions": [{"eq_column": "sku", "eq_value": "A-1"}],
            },
        )
        assert fetched.status_code == 200, fetched.text


def test_configured_but_unreachable_scylla_is_503(tight_client: httpx.Client) -> None:
    response = tight_client.post(
        "/query/sql",
        json={
            "query": "SELECT release_version FROM system.local",
            "driver": "athena",
            "db_name": "ks",
        },
    )
    assert response.status_code == 503, response.text
    assert response.json()["message"] == "Athena/Scylla unavailable"
    assert tight_client.get("/").json()["athena_scylladb"] == "offline"


def test_tables_and_columns_added_outside_athena_are_found_at_once(
    gw: httpx.Client, db: psycopg.Connection
) -> None:
    name = "gw_evolving_" + secrets.token_hex(3)
    assert gw.post("/gateway/fetch", json={"table_name": name}).json()["code"] == "unknown_table"
    db.execute(f"CREATE TABLE {name} (id int PRIMARY KEY)")
    try:
        db.execute(f"INSERT INTO {name} VALUES (1)")
        # no waiting: a miss asks the catalog whether the table exists now
        assert gw.post("/gateway/fetch", json={"table_name": name}).status_code == 200
        db.execute(f"ALTER TABLE {name} ADD COLUMN label text DEFAULT 'new'")
        response = gw.post("/gateway/fetch", json={"table_name": name, "columns": "id,label"})
        assert response.status_code == 200, response.text
        assert response.json()["data"] == [{"id": 1, "label": "new"}]
        missing = gw.post("/gateway/fetch", json={"table_name": name, "columns": "nope"})
        assert missing.json()["code"] == "unknown_column"
    finally:
        db.execute(f"DROP TABLE {name}")
