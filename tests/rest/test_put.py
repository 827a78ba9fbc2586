"""PUT /rest/v1/{table}: PostgREST's single-row upsert by primary key (issue 19 item 6; it
replaces the 405 PGRST117 that PUT answered before)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import psycopg
import pytest
from support.servers import AthenaServer


@pytest.fixture
def http(rest_server: AthenaServer, native_headers: dict[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{rest_server.url}/rest/v1", headers=native_headers) as client:
        yield client


def rows(items: psycopg.Connection) -> list[tuple[int, str, int]]:
    return items.execute("SELECT id, name, qty FROM rest_items ORDER BY id").fetchall()


def test_put_inserts_then_replaces_one_row(http: httpx.Client, items: psycopg.Connection) -> None:
    created = http.put("/rest_items?id=eq.10", json={"id": 10, "name": "date", "qty": 4})
    assert created.status_code == 204 and created.content == b""
    assert rows(items)[-1] == (10, "date", 4)
    replaced = http.put(
        "/rest_items?id=eq.10",
        json={"id": 10, "name": "dates", "qty": 9},
        headers={"Prefer": "return=representation"},
    )
    assert replaced.status_code == 200
    assert [(r["id"], r["name"], r["qty"]) for r in replaced.json()] == [(10, "dates", 9)]
    assert rows(items) == [(1, "apple", 3), (2, "banana", 5), (3, "cherry", 7), (10, "dates", 9)]
    # an existing row, by its key
    http.put("/rest_items?id=eq.2", json={"id": 2, "name": "plantain", "qty": 1})
    assert rows(items)[1] == (2, "plantain", 1)


@pytest.mark.parametrize(
    ("query", "body", "status", "code"),
    [
        ("name=eq.apple", {"id": 1, "name": "apple"}, 405, "PGRST105"),  # not the primary key
        ("id=gt.1", {"id": 1, "name": "x"}, 405, "PGRST105"),  # not eq
        ("id=eq.1&qty=eq.3", {"id": 1, "name": "x"}, 405, "PGRST105"),  # more than the key
        ("", {"id": 1, "name": "x"}, 405, "PGRST105"),  # no filter at all
        ("id=eq.1&limit=1", {"id": 1, "name": "x"}, 400, "PGRST114"),
        ("id=eq.1", {"id": 2, "name": "x"}, 400, "PGRST115"),  # body and URL disagree
        ("id=eq.1", {"name": "x"}, 400, "PGRST115"),  # the key missing from the body
        ("id=eq.1", [{"id": 1, "name": "x"}, {"id": 1, "name": "y"}], 400, "PGRST102"),
    ],
)
def test_put_refuses_what_postgrest_refuses(
    http: httpx.Client, items: psycopg.Connection, query: str, body: object, status: int, code: str
) -> None:
    res = http.put(f"/rest_items?{query}", json=body)
    assert (res.status_code, res.json()["code"]) == (status, code)
    assert rows(items) == [(1, "apple", 3), (2, "banana", 5), (3, "cherry", 7)]


def test_put_on_a_table_without_primary_key(http: httpx.Client) -> None:
    res = http.put("/rest_nopk?a=eq.1", json={"a": 1, "b": "x"})
    assert res.status_code == 405 and res.json()["code"] == "PGRST105"
