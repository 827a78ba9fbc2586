"""Raw SQL cannot lock the gateway out of its own database (issue 17, finding 1, the rest).

A ``gateway.query`` key is trusted with the database's data, not with the gateway's access to
it: ``ALTER ROLE CURRENT_USER PASSWORD …`` or ``ALTER DATABASE … CONNECTION LIMIT 0`` would make
every new pooled connection fail, for every caller, until an operator repairs the role. Refused
with 403 ``statement_refused`` like ``ALTER ROLE … SET``, whether the statement is plain, in a
``DO`` block or in a function the SQL calls, and whether it comes through ``/gateway/query`` or a
``/gateway/transaction`` operation; the transaction is rolled back.

The gateway here connects as a role of its own (an ordinary LOGIN role owning its database, as
the README advises), so a gateway that let a change through breaks nothing but this module.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql
from support.keys import seed_key
from support.pg import TestPostgres
from support.servers import AthenaServer

from athena.db.catalog import ensure_login_role

CONTEXT = {"X-User-Id": "u", "X-Company-Id": "c", "X-Organization-Id": "o"}


class Guarded:
    def __init__(self, pg: TestPostgres) -> None:
        self.pg = pg
        self.role = f"guard_{secrets.token_hex(4)}"
        self.password = secrets.token_hex(16)
        with psycopg.connect(pg.superuser_uri(), autocommit=True) as conn:
            ensure_login_role(conn, self.role, self.password)
        self.db = pg.create_database(owner=self.role)
        with psycopg.connect(self.uri(), autocommit=True) as conn:
            conn.execute("CREATE TABLE guard_items (id int PRIMARY KEY, v text)")
            conn.execute("INSERT INTO guard_items VALUES (1, 'one')")

    def uri(self) -> str:
        return self.pg.server.uri(self.db, user=self.role, password=self.password)

    def repair(self) -> None:
        """Undo what a gateway that let a change through would have left (cleanup only)."""
        with psycopg.connect(self.pg.superuser_uri(), autocommit=True) as conn:
            role, db = sql.Identifier(self.role), sql.Identifier(self.db)
            conn.execute(
                sql.SQL("ALTER ROLE {} LOGIN CONNECTION LIMIT -1 VALID UNTIL 'infinity'"
                        " PASSWORD {}").format(role, sql.Literal(self.password))
            )  # fmt: skip
            conn.execute(sql.SQL("ALTER DATABASE {} CONNECTION LIMIT -1").format(db))
            conn.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(db))

    def can_connect(self) -> bool:
        try:
            with psycopg.connect(self.uri(), connect_timeout=5) as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError:
            return False
        return True

    def database_row(self) -> tuple[Any, ...]:
        with psycopg.connect(self.pg.superuser_uri(), autocommit=True) as conn:
            row = conn.execute(
                "SELECT datconnlimit, datistemplate, datallowconn FROM pg_database"
                " WHERE datname = %s",
                (self.db,),
            ).fetchone()
        assert row is not None
        return tuple(row)

    def drop(self) -> None:
        self.pg.drop_database(self.db)
        with psycopg.connect(self.pg.superuser_uri(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(self.role)))


@pytest.fixture(scope="module")
def guarded(pg: TestPostgres) -> Iterator[Guarded]:
    made = Guarded(pg)
    yield made
    made.repair()
    made.drop()


@pytest.fixture(scope="module")
def server(athena_factory: Callable[..., AthenaServer], guarded: Guarded) -> AthenaServer:
    return athena_factory(clients={"guard": {"pg_uri": guarded.uri()}})


@pytest.fixture
def querier(server: AthenaServer, catalog_uri: str, guarded: Guarded) -> Iterator[httpx.Client]:
    key = seed_key(catalog_uri, rights=["gateway.query", "guard_items.read"])
    with server.client(apikey=key, **{"X-Athena-Client": "guard", **CONTEXT}) as client:
        yield client
    guarded.repair()  # whatever a failing test let through must not spill into the next


ROLE = [
    "ALTER ROLE CURRENT_USER PASSWORD 'pwned'",
    "ALTER USER {role} PASSWORD 'pwned'",
    "ALTER ROLE SESSION_USER PASSWORD NULL",
    "ALTER ROLE CURRENT_ROLE ENCRYPTED PASSWORD 'pwned'",
    "SET search_path = public, pg_catalog; SELECT 1; ALTER ROLE {role} PASSWORD 'pwned'",
    "DO $$ BEGIN EXECUTE 'ALTER ROLE CURRENT_USER PASSWORD ''pwned'''; END $$",
    "CREATE FUNCTION guard_pw() RETURNS void LANGUAGE plpgsql AS"
    " $$ BEGIN EXECUTE 'ALTER ROLE ' || quote_ident(current_user) || ' PASSWORD NULL'; END $$;"
    " SELECT guard_pw()",
]
DATABASE = [
    "ALTER DATABASE {db} CONNECTION LIMIT 0",
    "ALTER DATABASE {db} WITH CONNECTION LIMIT 1 IS_TEMPLATE true",
    "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I CONNECTION LIMIT 0', current_database());"
    " END $$",
]


def _refused(response: httpx.Response, statement: str) -> None:
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["code"] == "statement_refused"
    data = body["data"]
    # a transaction's failure carries the operation's own error under data.error
    assert data.get("error", {}).get("data", data)["statement"] == statement
    assert "pwned" not in response.text


@pytest.mark.parametrize("text", ROLE)
def test_the_gateway_role_cannot_be_altered(
    querier: httpx.Client, guarded: Guarded, text: str
) -> None:
    response = querier.post(
        "/gateway/query", json={"query": text.format(role=guarded.role, db=guarded.db)}
    )
    _refused(response, "ALTER ROLE")
    assert guarded.can_connect(), "the gateway role's password was changed"
    # raw SQL opens a new connection per call: the gateway still gets in
    again = querier.post("/gateway/query", json={"query": "SELECT v FROM guard_items"})
    assert again.status_code == 200 and again.json()["data"] == [{"v": "one"}], again.text
    # the function the refused SQL created was rolled back with it
    gone = querier.post("/gateway/query", json={"query": "SELECT to_regproc('guard_pw') AS f"})
    assert gone.json()["data"] == [{"f": None}]


@pytest.mark.parametrize("text", DATABASE)
def test_the_gateway_database_cannot_be_closed_to_it(
    querier: httpx.Client, guarded: Guarded, text: str
) -> None:
    before = guarded.database_row()
    response = querier.post(
        "/gateway/query", json={"query": text.format(role=guarded.role, db=guarded.db)}
    )
    _refused(response, "ALTER DATABASE")
    assert guarded.database_row() == before
    for _ in range(3):  # new connections, each
        again = querier.post("/gateway/query", json={"query": "SELECT 1 AS one"})
        assert again.status_code == 200, again.text


@pytest.mark.parametrize(
    ("text", "statement"),
    [
        ("ALTER ROLE CURRENT_USER PASSWORD 'pwned'", "ALTER ROLE"),
        ("DO $$ BEGIN EXECUTE 'ALTER ROLE CURRENT_USER PASSWORD ''pwned'''; END $$", "ALTER ROLE"),
        ("ALTER DATABASE {db} CONNECTION LIMIT 0", "ALTER DATABASE"),
    ],
)
def test_a_transaction_operation_is_held_to_the_same_rule(
    querier: httpx.Client, guarded: Guarded, text: str, statement: str
) -> None:
    operations = [
        {
            "id": "w",
            "kind": "query",
            "payload": {"query": "INSERT INTO guard_items VALUES (9, 'x')"},
        },
        {"id": "r", "kind": "query", "payload": {"query": text.format(db=guarded.db)}},
    ]
    response = querier.post("/gateway/transaction", json={"operations": operations})
    _refused(response, statement)
    assert response.json()["data"]["failed_index"] == 1
    assert guarded.can_connect()
    rows = querier.post("/gateway/query", json={"query": "SELECT id FROM guard_items ORDER BY id"})
    assert rows.json()["data"] == [{"id": 1}], "the transaction was not rolled back"


@pytest.mark.parametrize(
    "text",
    [
        "ALTER ROLE {role} RENAME TO guard_renamed",
        "ALTER ROLE CURRENT_USER NOLOGIN",
        "ALTER ROLE CURRENT_USER CONNECTION LIMIT 0",
        "ALTER ROLE CURRENT_USER VALID UNTIL '2000-01-01'",
        "ALTER DATABASE {db} ALLOW_CONNECTIONS false",
        "ALTER DATABASE {db} RENAME TO guard_renamed",
    ],
)
def test_what_postgresql_refuses_an_ordinary_role_stays_refused(
    querier: httpx.Client, guarded: Guarded, text: str
) -> None:
    """PostgreSQL itself refuses these to a NOCREATEROLE role; the answer is a 4xx envelope,
    and the role still logs in."""
    response = querier.post(
        "/gateway/query", json={"query": text.format(role=guarded.role, db=guarded.db)}
    )
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["status"] == "error"
    assert guarded.can_connect()


def test_ordinary_ddl_and_a_rolled_back_attempt_pass(querier: httpx.Client) -> None:
    """What leaves the role and database as they were is not refused: DDL, and a change that
    a subtransaction rolled back before the check (its lock went with it)."""
    ddl = querier.post(
        "/gateway/query",
        json={"query": "CREATE TABLE guard_tmp (x int); DROP TABLE guard_tmp; SELECT 2 AS two"},
    )
    assert ddl.status_code == 200 and ddl.json()["data"] == [{"two": 2}], ddl.text
    undone = querier.post(
        "/gateway/query",
        json={
            "query": "DO $$ BEGIN BEGIN EXECUTE 'ALTER ROLE CURRENT_USER PASSWORD ''pwned''';"
            " RAISE EXCEPTION 'undo'; EXCEPTION WHEN raise_exception THEN NULL; END; END $$;"
            " SELECT 3 AS three"
        },
    )
    assert undone.status_code == 200 and undone.json()["data"] == [{"three": 3}], undone.text


def test_drop_owned_leaves_the_gateway_its_access(
    querier: httpx.Client, guarded: Guarded, pg: TestPostgres
) -> None:
    """``DROP OWNED BY CURRENT_USER`` is not refused: run by the role itself it drops what the
    role owns (which its DROP statements could, one by one) and revokes only grants the role
    made, never what others granted it — so the gateway keeps its way in."""
    with psycopg.connect(pg.superuser_uri(guarded.db), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS guard_granted (x int)")
        conn.execute(sql.SQL("GRANT SELECT ON guard_granted TO {}").format(
            sql.Identifier(guarded.role)))  # fmt: skip
    try:
        dropped = querier.post(
            "/gateway/query",
            json={"query": "CREATE TABLE guard_mine (x int); DROP OWNED BY CURRENT_USER;"
                  " SELECT to_regclass('guard_mine') AS mine"},
        )  # fmt: skip
        assert dropped.status_code == 200 and dropped.json()["data"] == [{"mine": None}]
        assert guarded.can_connect()
        still = querier.post(
            "/gateway/query", json={"query": "SELECT count(*) AS n FROM guard_granted"}
        )
        assert still.status_code == 200 and still.json()["data"] == [{"n": 0}], still.text
    finally:
        with psycopg.connect(pg.superuser_uri(guarded.db), autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS guard_granted")
            conn.execute("CREATE TABLE IF NOT EXISTS guard_items (id int PRIMARY KEY, v text)")
            conn.execute(sql.SQL("ALTER TABLE guard_items OWNER TO {}").format(
                sql.Identifier(guarded.role)))  # fmt: skip
            conn.execute("INSERT INTO guard_items VALUES (1, 'one') ON CONFLICT DO NOTHING")
