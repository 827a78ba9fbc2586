"""SDK 5 findMany selects that embed relations, on ``/db/gateway/fetch``, over a real server.

The ``select`` object's relation nodes (``{select, as?, via?, schema?}``) are read by the
``/rest/v1`` embedding: many-to-one rows nest as an object, one-to-many as an array, under the
alias when ``as`` names one; ``where``/``conditions``, ``orderBy``, paging and exact counts apply
to the root; the read right is checked on the root AND on every embedded table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from support.pg import TestPostgres
from support.servers import AthenaServer

SCHEMA_SQL = """
DROP TABLE IF EXISTS sdk5e_reviews, sdk5e_books, sdk5e_authors;
CREATE TABLE sdk5e_authors (id integer PRIMARY KEY, name text NOT NULL, bio text);
CREATE TABLE sdk5e_books (
    id integer PRIMARY KEY,
    author_id integer NOT NULL REFERENCES sdk5e_authors (id),
    editor_id integer REFERENCES sdk5e_authors (id),
    title text NOT NULL,
    year integer NOT NULL
);
CREATE TABLE sdk5e_reviews (
    id integer PRIMARY KEY,
    book_id integer NOT NULL REFERENCES sdk5e_books (id),
    stars integer NOT NULL
);
INSERT INTO sdk5e_authors VALUES (1, 'Ann', NULL), (2, 'Bo', 'writes'), (3, 'Cy', NULL);
INSERT INTO sdk5e_books VALUES
    (10, 1, 2, 'Alpha', 2001), (11, 1, NULL, 'Beta', 2005), (12, 2, 1, 'Gamma', 2010);
INSERT INTO sdk5e_reviews VALUES (100, 10, 5), (101, 10, 3), (102, 12, 4);
"""

PATHS = {"lane": {}, "quart": {"hot_lane": "false"}}
AUTHOR = {"sdk5e_authors": {"select": {"name": True, "bio": True}, "as": "author",
                            "via": "author_id"}}  # fmt: skip


@pytest.fixture(scope="module")
def embed_tables(pg: TestPostgres, data_db: str) -> None:
    with pg.connect(data_db) as conn:
        conn.execute(SCHEMA_SQL)


@pytest.fixture(scope="module", params=list(PATHS))
def server(
    request: pytest.FixtureRequest, athena_factory: Callable[..., AthenaServer], embed_tables: None
) -> AthenaServer:
    return athena_factory(**PATHS[request.param])


def _client(server: AthenaServer, key: str) -> httpx.Client:
    return server.client(
        **{"X-Athena-Key": key, "X-Athena-Client": "athena", "X-Strip-Nulls": "true"}
    )


@pytest.fixture
def sdk(server: AthenaServer, admin_key: str) -> Iterator[httpx.Client]:
    with _client(server, admin_key) as client:
        yield client


def post(sdk: httpx.Client, **body: Any) -> httpx.Response:
    return sdk.post("/db/gateway/fetch", json=body)


def fetch(sdk: httpx.Client, **body: Any) -> dict[str, Any]:
    response = post(sdk, **body)
    assert response.status_code == 200, response.text
    payload = response.json()
    assert payload["status"] == "success"
    assert payload["message"] == "Data fetched successfully"
    return payload  # type: ignore[no-any-return]


def test_many_to_one_nests_an_object_under_the_alias(sdk: httpx.Client) -> None:
    body = fetch(
        sdk,
        table_name="sdk5e_books",
        select={"title": True, **AUTHOR},
        where={"year": {"gte": 2005}},
        orderBy={"title": "asc"},
    )
    # X-Strip-Nulls: Ann's null bio is gone from the nested row too
    assert body["data"] == [
        {"title": "Beta", "author": {"name": "Ann"}},
        {"title": "Gamma", "author": {"name": "Bo", "bio": "writes"}},
    ]
    assert body["count"] == 2


def test_one_to_many_nests_an_array_and_nested_embeds_nest_again(sdk: httpx.Client) -> None:
    body = fetch(
        sdk,
        table_name="sdk5e_authors",
        select={
            "name": True,
            "sdk5e_books": {
                "as": "books",
                "via": "author_id",
                "select": {"title": True, "sdk5e_reviews": {"select": {"stars": True}}},
            },
        },
        where={"id": {"in": [1, 3]}},
        orderBy=[{"column": "name", "ascending": True}],
    )
    ann, cy = body["data"]
    assert ann["name"] == "Ann" and cy == {"name": "Cy", "books": []}
    books = sorted(ann["books"], key=lambda b: b["title"])
    assert [b["title"] for b in books] == ["Alpha", "Beta"]
    assert sorted(r["stars"] for r in books[0]["sdk5e_reviews"]) == [3, 5]
    assert books[1]["sdk5e_reviews"] == []


def test_classic_conditions_paging_and_exact_count(sdk: httpx.Client) -> None:
    conditions = [{"column": "year", "operator": "lt", "value": 2020}]
    page = fetch(
        sdk,
        table_name="sdk5e_books",
        select={"id": True, **AUTHOR},
        conditions=conditions,
        sort_by={"field": "id", "direction": "desc"},
        limit=1,
        offset=1,
        count="exact",
    )
    assert page["data"] == [{"id": 11, "author": {"name": "Ann"}}]
    assert page["count"] == 3  # the total, not the page
    head = fetch(
        sdk, table_name="sdk5e_books", select={"id": True, **AUTHOR}, head=True, count="exact"
    )
    assert head["data"] == [] and head["count"] == 3


def test_a_hostile_value_is_a_value(sdk: httpx.Client) -> None:
    body = fetch(
        sdk,
        table_name="sdk5e_books",
        select={"id": True, **AUTHOR},
        where={"title": "x'); DROP TABLE sdk5e_books; --"},
    )
    assert body["data"] == [] and body["count"] == 0
    assert fetch(sdk, table_name="sdk5e_books", select={"id": True})["count"] == 3


def test_two_foreign_keys_need_via(sdk: httpx.Client) -> None:
    response = post(
        sdk, table_name="sdk5e_books", select={"id": True, "sdk5e_authors": {"select": {}}}
    )
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "ambiguous_relation"
    editor = fetch(
        sdk,
        table_name="sdk5e_books",
        select={"id": True, "sdk5e_authors": {"as": "editor", "via": "editor_id"}},
        where={"id": 10},
    )
    assert editor["data"] == [{"id": 10, "editor": {"id": 2, "name": "Bo", "bio": "writes"}}]


@pytest.mark.parametrize(
    ("select", "code"),
    [
        ({"id": True, "nope": {"select": {"id": True}}}, "unknown_relation"),
        ({"id": True, "sdk5e_reviews": {"select": {"nope": True}}}, "unknown_column"),
        ({"id": True, "sdk5e_reviews": {"where": {"stars": 1}}}, "unsupported_operation"),
        ({"id": True, "sdk5e_reviews": {"select": 3}}, "invalid_request"),
        ({"id": True, "sdk5e_reviews": {"schema": "other"}}, "unknown_relation"),
    ],
)
def test_bad_embeds_are_clear_400s(sdk: httpx.Client, select: dict[str, Any], code: str) -> None:
    response = post(sdk, table_name="sdk5e_books", select=select)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == code


def test_every_embedded_table_needs_its_read_right(
    server: AthenaServer, seeded_key: Callable[..., str]
) -> None:
    body = {"table_name": "sdk5e_books", "select": {"id": True, **AUTHOR}}
    with _client(server, seeded_key(rights=["sdk5e_books.read"])) as books_only:
        denied = books_only.post("/db/gateway/fetch", json=body)
        assert denied.status_code == 403, denied.text
        assert denied.json()["code"] == "insufficient_rights"
        # the plain read of the root table is still allowed
        plain = books_only.post("/db/gateway/fetch", json={**body, "select": {"id": True}})
        assert plain.status_code == 200, plain.text
    rights = ["sdk5e_books.read", "sdk5e_authors.read"]
    with _client(server, seeded_key(rights=rights)) as both:
        allowed = both.post("/db/gateway/fetch", json=body)
        assert allowed.status_code == 200, allowed.text
        assert len(allowed.json()["data"]) == 3
