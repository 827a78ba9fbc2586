"""``x-pg-uri`` (SDK 5's direct PostgreSQL URI per call), over a real server.

Refused by default (400 ``direct_uri_not_allowed``); with ``ATHENA_ALLOW_DIRECT_URI=true`` the
key must hold ``gateway.direct_uri`` (403) and the URI's host must pass the outbound guard
(400 ``outbound_url_refused``); then the call runs against that database — here a second
database of the test PostgreSQL that the X-Athena-Client database does not have the table of.
The URI's password never appears in an answer or in the server's log.
"""

from __future__ import annotations

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


def _client(server: AthenaServer, key: str, uri: str) -> httpx.Client:
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
    ],
)
def test_refused_for_a_bad_or_not_allowed_address(
    allowing: AthenaServer, admin_key: str, uri: str, code: str
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
