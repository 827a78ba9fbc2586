"""A right names a table; a schema-qualified right names schema and table (finding 5).

``rb_customers`` is both a public table and a schema holding ``rb_ssn_vault``. A key holding
``rb_customers.*`` may read the table and nothing in the schema, through /gateway/* and
/rest/v1 alike. Bare names are ``public`` on every route; other schemas only when exposed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from support.pg import TestPostgres
from support.servers import AthenaServer

SCHEMA_SQL = """
DROP SCHEMA IF EXISTS rb_customers CASCADE;
DROP TABLE IF EXISTS rb_customers;
CREATE TABLE rb_customers (id integer PRIMARY KEY, name text NOT NULL);
INSERT INTO rb_customers VALUES (1, 'Ada');
CREATE SCHEMA rb_customers;
CREATE TABLE rb_customers.rb_ssn_vault (id integer PRIMARY KEY, ssn text NOT NULL);
INSERT INTO rb_customers.rb_ssn_vault VALUES (1, '078-05-1120');
"""
SSN = "078-05-1120"


@pytest.fixture(scope="module")
def boundary_db(pg: TestPostgres, data_db: str) -> str:
    with pg.connect(data_db) as conn:
        conn.execute(SCHEMA_SQL)
    return data_db


@pytest.fixture(scope="module")
def exposing(athena_factory: Callable[..., AthenaServer], boundary_db: str) -> AthenaServer:
    """A gateway that exposes the schema: only the rights stand between the key and the SSNs."""
    return athena_factory(rest_schemas="rb_customers")


def _client(server: AthenaServer, key: str) -> httpx.Client:
    return server.client(apikey=key, **{"X-Athena-Client": "athena"})


def _fetch(http: httpx.Client, table: str) -> httpx.Response:
    return http.post("/gateway/fetch", json={"table_name": table})


def test_table_wildcard_does_not_grant_the_schema_of_that_name(
    exposing: AthenaServer, seeded_key: Callable[..., str]
) -> None:
    key = seeded_key(rights=["rb_customers.*"], client="athena")
    with _client(exposing, key) as http:
        table = _fetch(http, "rb_customers")
        assert table.status_code == 200, table.text
        assert table.json()["data"] == [{"id": 1, "name": "Ada"}]
        assert http.get("/rest/v1/rb_customers").status_code == 200

        for answer in (
            _fetch(http, "rb_customers.rb_ssn_vault"),
            http.get("/rest/v1/rb_ssn_vault", headers={"Accept-Profile": "rb_customers"}),
        ):
            assert answer.status_code == 403, answer.text
            assert answer.json()["code"] == "insufficient_rights"
            assert answer.json()["data"]["required_right"] == "rb_customers.rb_ssn_vault.read"
            assert SSN not in answer.text


def test_a_bare_table_right_does_not_reach_another_schema(
    exposing: AthenaServer, seeded_key: Callable[..., str]
) -> None:
    key = seeded_key(rights=["rb_ssn_vault.read"], client="athena")
    with _client(exposing, key) as http:
        answer = http.get("/rest/v1/rb_ssn_vault", headers={"Accept-Profile": "rb_customers"})
        assert answer.status_code == 403, answer.text
        assert SSN not in answer.text


def test_a_schema_qualified_right_opens_that_table_only(
    exposing: AthenaServer, seeded_key: Callable[..., str]
) -> None:
    key = seeded_key(rights=["rb_customers.rb_ssn_vault.read"], client="athena")
    with _client(exposing, key) as http:
        fetched = _fetch(http, "rb_customers.rb_ssn_vault")
        assert fetched.status_code == 200, fetched.text
        assert fetched.json()["data"] == [{"id": 1, "ssn": SSN}]
        rest = http.get("/rest/v1/rb_ssn_vault", headers={"Accept-Profile": "rb_customers"})
        assert rest.status_code == 200, rest.text
        assert rest.json()["data"] == [{"id": 1, "ssn": SSN}]
        assert _fetch(http, "rb_customers").status_code == 403


@pytest.fixture
def master(athena: AthenaServer, boundary_db: str, admin_key: str) -> Iterator[httpx.Client]:
    with _client(athena, admin_key) as http:
        yield http


def test_bare_names_are_public_and_other_schemas_must_be_exposed(master: httpx.Client) -> None:
    # The shared gateway exposes only public: /rest/v1 and /gateway/* follow the same rule.
    bare = _fetch(master, "rb_ssn_vault")  # exists only in schema rb_customers
    assert bare.status_code == 400, bare.text
    assert bare.json()["code"] == "unknown_table"
    hidden = _fetch(master, "rb_customers.rb_ssn_vault")
    assert hidden.status_code == 400, hidden.text
    assert hidden.json()["code"] == "schema_not_exposed"
    assert SSN not in bare.text + hidden.text
    rest_bare = master.get("/rest/v1/rb_ssn_vault")
    assert rest_bare.status_code == 400 and rest_bare.json()["code"] == "unknown_table"
    profiled = master.get("/rest/v1/rb_ssn_vault", headers={"Accept-Profile": "rb_customers"})
    assert profiled.status_code == 406 and SSN not in profiled.text
    assert _fetch(master, "public.rb_customers").json()["data"] == [{"id": 1, "name": "Ada"}]
