"""``x-pg-uri`` (SDK 5's direct PostgreSQL URI per call), over a real server.

Refused by default (400 ``direct_uri_not_allowed``); with ``ATHENA_ALLOW_DIRECT_URI=true`` the
key must hold ``gateway.direct_uri`` (403) and the URI's host must pass the outbound guard
(400 ``outbound_url_refused``); then the call runs against that database — here a second
database of the test PostgreSQL that the X-Athena-Client database does not have the table of.
The URI's password never appears in an answer or in the server's log.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from support.pg import TestPostgres
from support.servers import AthenaServer

TABLE = "direct_only_items"


@pytest.fixture(scope="module")
def direct_db(pg: TestPostgres) -> Iterator[str]:
    name = pg.create_database()
    with pg.connect(name) as conn:
        conn.execute(f"CREATE TABLE {TABLE} (id integer PRIMARY KEY, name text NOT NULL)")
        conn.execute(f"INSERT INTO {TABLE} VALUES (1, 'one'), (2, 'two')")
    yield name


@pytest.fixture(scope="module")
def allowing(athena_factory: Callable[..., AthenaServer]) -> AthenaServer:
    return athena_factory(allow_direct_uri="true", outbound_allow_cidrs="127.0.0.0/8")


def _client(server: AthenaServer, key: str, uri: str | bytes) -> httpx.Client:
    return server.client(**{"X-Athena-Key": key, "X-Athena-Client": "athena", "x-pg-uri": uri})


def _fetch(client: httpx.Client, **body: Any) -> httpx.Response:
    return client.post("/db/gateway/fetch", json={"table_name": TABLE, **body})


def test_refused_by_default(
    athena: AthenaServer, admin_key: str, pg: TestPostgres, direct_db: str
) -> None:
    with _client(athena, admin_key, pg.app_uri(direct_db)) as client:
        response = _fetch(client)
    assert response.status_code == 400
    assert response.json()["code"] == "direct_uri_not_allowed"


def test_refused_without_the_right(
    allowing: AthenaServer, seeded_key: Callable[..., str], pg: TestPostgres, direct_db: str
) -> None:
    key = seeded_key(rights=[f"{TABLE}.read"])
    with _client(allowing, key, pg.app_uri(direct_db)) as client:
        response = _fetch(client)
    assert response.status_code == 403, response.text
    assert response.json()["code"] == "insufficient_rights"


def test_refused_without_a_key_even_when_keys_are_not_enforced(
    athena_factory: Callable[..., AthenaServer], pg: TestPostgres, direct_db: str, data_db: str
) -> None:
    with pg.connect(data_db) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS direct_probe (id integer PRIMARY KEY)")
    # a catalog of its own, seeded with enforcement off (the shared one stays enforced)
    open_server = athena_factory(
        catalog=pg.create_database(),
        allow_direct_uri="true",
        outbound_allow_cidrs="127.0.0.0/8",
        enforce_api_keys="false",
    )
    with open_server.client(**{"X-Athena-Client": "athena"}) as anonymous:
        # enforcement really is off: the same call without x-pg-uri is served anonymously
        probe = anonymous.post("/gateway/fetch", json={"table_name": "direct_probe"})
        assert probe.status_code == 200, probe.text
    with open_server.client(
        **{"X-Athena-Client": "athena", "x-pg-uri": pg.app_uri(direct_db)}
    ) as client:
        response = _fetch(client)
    assert response.status_code == 403, response.text
    assert response.json()["code"] == "insufficient_rights"


@pytest.mark.parametrize(
    ("uri", "code"),
    [
        ("postgresql://u:secret-pw@10.1.2.3:5432/db", "outbound_url_refused"),
        ("postgresql://u:secret-pw@169.254.169.254/db", "outbound_url_refused"),
        ("postgresql://u:secret-pw@/db?host=/tmp", "invalid_direct_uri"),
        (
            "postgresql://u:secret-pw@127.0.0.1/db?options=-cstatement_timeout%3D0",
            "invalid_direct_uri",
        ),
        ("postgresql://u:secret-pw@127.0.0.1/db?hostaddr=10.0.0.1", "invalid_direct_uri"),
        ("mysql://u:secret-pw@127.0.0.1/db", "invalid_direct_uri"),
        # a Latin-1 byte HTTP lets through; str.isdigit() is true of it, int() refuses it
        (b"postgresql://u:secret-pw@127.0.0.1:\xb2/db", "invalid_direct_uri"),
    ],
)
def test_refused_for_a_bad_or_not_allowed_address(
    allowing: AthenaServer, admin_key: str, uri: str | bytes, code: str
) -> None:
    with _client(allowing, admin_key, uri) as client:
        response = _fetch(client)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == code
    assert "secret-pw" not in response.text


def test_allowed_end_to_end(
    allowing: AthenaServer, seeded_key: Callable[..., str], pg: TestPostgres, direct_db: str
) -> None:
    uri = pg.app_uri(direct_db)
    key = seeded_key(rights=["gateway.direct_uri", f"{TABLE}.read", "gateway.write"])
    with _client(allowing, key, uri) as client:
        for _ in range(2):  # the second call reuses the cached pool
            response = _fetch(client, sort_by={"field": "id"})
            assert response.status_code == 200, response.text
            assert response.json()["data"] == [{"id": 1, "name": "one"}, {"id": 2, "name": "two"}]
        inserted = client.put(
            "/gateway/insert",
            json={"table_name": TABLE, "insert_body": {"id": 3, "name": "three"}},
        )
        assert inserted.status_code == 200, inserted.text
    with pg.connect(direct_db) as conn:
        assert conn.execute(f"SELECT name FROM {TABLE} WHERE id = 3").fetchone() == ("three",)
    # without the header the same call reads the X-Athena-Client database, which has no such table
    with allowing.client(**{"X-Athena-Key": key, "X-Athena-Client": "athena"}) as plain:
        missing = _fetch(plain)
        assert missing.status_code == 400 and missing.json()["code"] == "unknown_table"
    password = uri.split("://", 1)[1].split("@", 1)[0].partition(":")[2]
    assert password and password not in allowing.log()


def _backends(pg: TestPostgres, database: str) -> int:
    with pg.connect("postgres", superuser=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
            " AND application_name LIKE 'athena%%'",
            (database,),
        ).fetchone()
    return int(row[0]) if row else 0


def test_pools_are_bounded_least_recently_used_closed(
    athena_factory: Callable[..., AthenaServer], admin_key: str, pg: TestPostgres
) -> None:
    server = athena_factory(
        allow_direct_uri="true", outbound_allow_cidrs="127.0.0.0/8", direct_uri_max_pools="1"
    )
    # databases of this test alone: no other server holds connections to them
    first_db, other = pg.create_database(), pg.create_database()
    for name in (first_db, other):
        with pg.connect(name) as conn:
            conn.execute(f"CREATE TABLE {TABLE} (id integer PRIMARY KEY, name text NOT NULL)")
    with _client(server, admin_key, pg.app_uri(first_db)) as first:
        assert _fetch(first).status_code == 200
    assert _backends(pg, first_db) >= 1
    with _client(server, admin_key, pg.app_uri(other)) as second:
        response = _fetch(second)
        assert response.status_code == 200 and response.json()["data"] == []
    deadline = time.monotonic() + 10
    while _backends(pg, first_db) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _backends(pg, first_db) == 0  # the first URI's pools were closed
