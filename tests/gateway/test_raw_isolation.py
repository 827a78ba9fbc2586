"""Raw SQL shares no session state with anyone (issue 17, finding 1), over the real server.

A gateway with ONE pooled connection, so that on a gateway where raw SQL borrowed the shared
pool, the fast path and the raw call would certainly meet on the same session. Its client has
a database of its own: the ALTER … SET attempts below would, if they succeeded, change what every
new session of that database starts with.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql
from support.keys import seed_key
from support.pg import APP_ROLE, TestPostgres
from support.planting import plant_sql
from support.servers import AthenaServer

SCHEMA = """
CREATE TABLE iso_orders (id int PRIMARY KEY, item text NOT NULL);
INSERT INTO iso_orders VALUES (1, 'anvil'), (2, 'bolt');
CREATE TABLE iso_secrets (id int PRIMARY KEY, ssn text NOT NULL);
INSERT INTO iso_secrets VALUES (1, 'ssn-123-45-6789');
CREATE TABLE iso_log (id serial PRIMARY KEY, v text);
"""

PLANT = plant_sql("iso_secrets", guess=True)


@pytest.fixture(scope="module")
def iso_db(pg: TestPostgres) -> Iterator[str]:
    name = pg.create_database()
    with pg.connect(name) as conn:
        conn.execute(SCHEMA)
    yield name
    with psycopg.connect(pg.superuser_uri(), autocommit=True) as conn:
        reset_settings(conn, name)
    pg.drop_database(name)


def reset_settings(conn: psycopg.Connection, database: str) -> None:
    """Undo what a gateway that let ALTER … SET through would have left (cleanup only)."""
    conn.execute(sql.SQL("ALTER DATABASE {} RESET ALL").format(sql.Identifier(database)))
    conn.execute(
        sql.SQL("ALTER ROLE {} IN DATABASE {} RESET ALL").format(
            sql.Identifier(APP_ROLE), sql.Identifier(database)
        )
    )


@pytest.fixture(scope="module")
def one_conn(athena_factory: Callable[..., AthenaServer], pg: TestPostgres, iso_db: str) -> Any:
    return athena_factory(
        clients={"iso": {"pg_uri": pg.app_uri(iso_db)}},
        ATHENA_POOL_MIN_SIZE="1",
        ATHENA_POOL_MAX_SIZE="1",
    )


@pytest.fixture
def client_for(
    one_conn: AthenaServer, catalog_uri: str
) -> Iterator[Callable[[list[str]], httpx.Client]]:
    made: list[httpx.Client] = []

    def make(rights: list[str]) -> httpx.Client:
        client = one_conn.client(
            apikey=seed_key(catalog_uri, rights=rights),
            **{
                "X-Athena-Client": "iso",
                "X-User-Id": "user-1",
                "X-Company-Id": "company-1",
                "X-Organization-Id": "org-1",
            },
        )
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def fetch_orders(reader: httpx.Client) -> httpx.Response:
    # A condition with a text value: the fast path (a prepared statement through libpq).
    return reader.post(
        "/gateway/fetch",
        json={
            "table_name": "iso_orders",
            "conditions": [{"eq_column": "item", "eq_value": "anvil"}],
        },
    )


def test_raw_sql_cannot_plant_a_statement_the_fast_path_runs(
    client_for: Callable[[list[str]], httpx.Client],
) -> None:
    reader = client_for(["iso_orders.read"])
    querier = client_for(["gateway.query"])
    for _ in range(2):  # prepared on the (only) pooled connection
        first = fetch_orders(reader)
        assert first.status_code == 200, first.text
    expected = first.json()["data"]
    assert expected == [{"id": 1, "item": "anvil"}]
    planted = querier.post("/gateway/query", json={"query": PLANT})
    assert planted.status_code == 200, planted.text
    for _ in range(3):
        after = fetch_orders(reader)
        assert after.status_code == 200, after.text
        assert after.json()["data"] == expected
        assert "ssn-123" not in after.text
    # The statement behind /gateway/query's own fast path is not reachable either.
    assert querier.post("/gateway/query", json={"query": "SELECT 1 AS one"}).json()["data"] == [
        {"one": 1}
    ]


def test_session_state_left_by_raw_sql_reaches_no_later_call(
    client_for: Callable[[list[str]], httpx.Client],
) -> None:
    querier = client_for(["gateway.query"])
    left = querier.post(
        "/gateway/query",
        json={
            "query": "DO $$ BEGIN EXECUTE 'PREPARE iso_planted AS SELECT 42';"
            " PERFORM set_config('search_path', 'nowhere', false);"
            " EXECUTE 'CREATE TEMP TABLE iso_tmp (x int)'; END $$;"
            " SET application_name = 'planted'; LISTEN iso_channel;"
            " SELECT pg_advisory_lock(4242)"
        },
    )
    assert left.status_code == 200, left.text
    for _ in range(3):
        seen = querier.post(
            "/gateway/query",
            json={
                "query": "SELECT (SELECT count(*) FROM pg_prepared_statements) AS prepared,"
                " current_setting('search_path') AS search_path,"
                " current_setting('application_name') AS app,"
                " to_regclass('pg_temp.iso_tmp') IS NULL AS no_temp,"
                " (SELECT count(*) FROM pg_listening_channels()) AS listening,"
                " (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                "   AND pid = pg_backend_pid()) AS locks"
            },
        )
        assert seen.status_code == 200, seen.text
        row = seen.json()["data"][0]
        assert row["prepared"] == 0
        assert row["search_path"] != "nowhere"
        assert row["app"] != "planted"
        assert row["no_temp"] is True
        assert row["listening"] == 0 and row["locks"] == 0


def new_session_settings(pg: TestPostgres, database: str) -> tuple[str, str]:
    with pg.connect(database) as conn:
        row = conn.execute(
            "SELECT current_setting('search_path'), current_setting('default_transaction_read_only')"
        ).fetchone()
    assert row is not None
    return row[0], row[1]


@pytest.mark.parametrize(
    "statement",
    [
        "ALTER ROLE CURRENT_USER IN DATABASE {db} SET search_path = nowhere",
        "ALTER DATABASE {db} SET default_transaction_read_only = on",
        "DO $$ BEGIN EXECUTE format('ALTER ROLE CURRENT_USER IN DATABASE %I"
        " SET search_path = nowhere', current_database()); END $$",
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET default_transaction_read_only = on',"
        " current_database()); END $$",
        "SELECT 1; ALTER DATABASE {db} RESET ALL; ALTER DATABASE {db} SET search_path = nowhere",
    ],
    ids=["role", "database", "role-in-do", "database-in-do", "after-select"],
)
def test_role_and_database_settings_are_refused(
    client_for: Callable[[list[str]], httpx.Client],
    pg: TestPostgres,
    iso_db: str,
    statement: str,
) -> None:
    querier = client_for(["gateway.query"])
    before = new_session_settings(pg, iso_db)
    try:
        response = querier.post("/gateway/query", json={"query": statement.format(db=iso_db)})
        assert response.status_code == 403, response.text
        body = response.json()
        assert body["code"] == "statement_refused"
        assert "ALTER" in body["message"]
        assert new_session_settings(pg, iso_db) == before
    finally:
        with psycopg.connect(pg.superuser_uri(), autocommit=True) as conn:
            reset_settings(conn, iso_db)


@pytest.mark.parametrize(
    "ending",
    ["COMMIT", "END", "ROLLBACK", "ABORT", "commit /* c */ ; SELECT 1", "PREPARE TRANSACTION 'x'"],
)
def test_transaction_control_is_refused_before_anything_runs(
    client_for: Callable[[list[str]], httpx.Client], pg: TestPostgres, iso_db: str, ending: str
) -> None:
    """COMMIT inside the text would commit before the checks above; nothing of it runs."""
    querier = client_for(["gateway.query"])
    marker = f"tc-{abs(hash(ending))}"
    response = querier.post(
        "/gateway/query",
        json={"query": f"INSERT INTO iso_log (v) VALUES ('{marker}'); {ending}"},
    )
    assert response.status_code == 403, response.text
    assert response.json()["code"] == "statement_refused"
    with pg.connect(iso_db) as conn:
        assert conn.execute("SELECT count(*) FROM iso_log WHERE v = %s", (marker,)).fetchone() == (
            0,
        )


def test_transaction_words_that_stay_inside_are_fine(
    client_for: Callable[[list[str]], httpx.Client],
) -> None:
    querier = client_for(["gateway.query"])
    response = querier.post(
        "/gateway/query",
        json={
            "query": "SAVEPOINT a; INSERT INTO iso_log (v) VALUES ('kept'); ROLLBACK TO a;"
            " RELEASE a; SELECT 'commit' AS word,"
            " CASE WHEN true THEN 'end' END AS e -- COMMIT in a comment\n"
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"] == [{"word": "commit", "e": "end"}]
    fn = querier.post(
        "/gateway/query",
        json={
            "query": "CREATE OR REPLACE FUNCTION iso_one() RETURNS int LANGUAGE sql"
            " BEGIN ATOMIC SELECT 1; END; SELECT iso_one() AS one"
        },
    )
    assert fn.status_code == 200, fn.text
    assert json.loads(fn.text)["data"] == [{"one": 1}]
