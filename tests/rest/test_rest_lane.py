"""/rest/v1 through the hot lane answers exactly as through Quart (``ATHENA_HOT_LANE=false``).

The same requests go to the shared REST gateway (lane on) and to one with the lane off; status,
content type, body and PostgREST's headers must match. Writes run against ``rest_items`` in
pairs so both gateways see the same rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from support.servers import AthenaServer

COMPARED_HEADERS = ("content-range", "preference-applied", "location", "allow")


@pytest.fixture(scope="module")
def quart_only(athena_factory: Callable[..., AthenaServer], rest_db: str) -> AthenaServer:
    return athena_factory(rest_schemas="rest_extra", hot_lane="false")


@pytest.fixture
def clients(
    rest_server: AthenaServer, quart_only: AthenaServer, admin_key: str
) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    headers = {"apikey": admin_key, "X-Athena-Client": "athena"}
    with (
        httpx.Client(base_url=rest_server.url, headers=headers, timeout=30) as lane,
        httpx.Client(base_url=quart_only.url, headers=headers, timeout=30) as quart,
    ):
        yield lane, quart


def _same(lane: httpx.Response, quart: httpx.Response) -> httpx.Response:
    assert lane.status_code == quart.status_code, (lane.text, quart.text)
    assert lane.headers.get("content-type") == quart.headers.get("content-type")
    for name in COMPARED_HEADERS:
        assert lane.headers.get(name) == quart.headers.get(name), name
    assert _without_clock(lane) == _without_clock(quart)
    assert ("content-length" in lane.headers) == ("content-length" in quart.headers)
    if lane.status_code == 204:
        assert "content-length" not in lane.headers, "RFC 9110: none on a 204"
    assert lane.headers["x-request-id"] and quart.headers["x-request-id"]
    return lane


def _without_clock(response: httpx.Response) -> Any:
    """The body, minus ``created_at`` (set by now() in each database call)."""
    if not response.content or "json" not in response.headers.get("content-type", ""):
        return response.content

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "created_at"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(response.json())


NATIVE = {"X-Athena-Rest-Format": "postgrest"}

READS: list[tuple[str, dict[str, str], list[tuple[str, str]]]] = [
    ("/rest/v1/rest_books", {}, [("select", "id,title"), ("order", "id")]),
    ("/rest/v1/rest_books", NATIVE, [("select", "id,title,author:rest_authors(name)"),
                                     ("pages", "gt.200"), ("order", "id.desc")]),
    ("/rest/v1/rest_books", {**NATIVE, "Prefer": "count=exact", "Range": "1-2"},
     [("select", "id"), ("order", "id")]),
    ("/rest/v1/rest_books", NATIVE, [("or", "(id.eq.1,title.like.*Kin*)"), ("select", "id")]),
    ("/rest/v1/rest_books", {**NATIVE, "Accept": "application/vnd.pgrst.object+json"},
     [("id", "eq.1"), ("select", "id,title")]),
    ("/rest/v1/rest_books", {**NATIVE, "Accept": "application/vnd.pgrst.object+json"},
     [("select", "id")]),  # more than one row: 406
    ("/rest/v1/rest_books", NATIVE, [("nope", "eq.1")]),  # unknown column
    ("/rest/v1/rest_books", {}, [("id", "bogus.1")]),  # bad operator, envelope format
    ("/rest/v1/rest_nowhere", NATIVE, []),  # unknown table
    ("/rest/v1/rest_nowhere", {}, []),
    ("/rest/v1/rest_books", {**NATIVE, "Accept-Profile": "rest_hidden"}, []),  # 406 profile
]  # fmt: skip


@pytest.mark.parametrize(("path", "headers", "params"), READS)
def test_reads_are_the_same(
    clients: tuple[httpx.Client, httpx.Client],
    path: str,
    headers: dict[str, str],
    params: list[tuple[str, str]],
) -> None:
    lane, quart = clients
    _same(lane.get(path, headers=headers, params=params),
          quart.get(path, headers=headers, params=params))  # fmt: skip


def test_writes_are_the_same(
    clients: tuple[httpx.Client, httpx.Client], items: psycopg.Connection
) -> None:
    """Each step runs on the lane, the table is put back as it was, then the step runs
    through Quart: both meet the same rows and the same id sequence."""
    lane, quart = clients
    path = "/rest/v1/rest_items"
    representation = {**NATIVE, "Prefer": "return=representation"}
    steps: list[tuple[str, dict[str, str], list[tuple[str, str]], Any]] = [
        ("POST", representation, [("select", "id,name,qty")], [{"name": "fig", "qty": 1}]),
        ("POST", {**NATIVE, "Prefer": "return=minimal"}, [], {"name": "grape", "qty": 2}),
        ("POST", NATIVE, [], {"name": "apple", "qty": 9}),  # unique violation: 409
        ("POST", NATIVE, [], b"{not json"),
        ("POST", {}, [("select", "name")], {"name": "kiwi"}),  # envelope format
        ("PATCH", representation, [("name", "eq.banana"), ("select", "name,qty")], {"qty": 5}),
        ("PATCH", {**NATIVE, "Prefer": "return=minimal"}, [("name", "eq.apple")], {"qty": 4}),
        ("PATCH", NATIVE, [], {"qty": 1}),  # no filter: refused
        ("DELETE", representation, [("name", "eq.cherry"), ("select", "id,name")], None),
        ("DELETE", {}, [("name", "eq.apple")], None),
    ]  # fmt: skip
    for method, headers, params, body in steps:
        kwargs: dict[str, Any] = {"headers": headers, "params": params}
        if isinstance(body, bytes):
            kwargs["content"] = body
        elif body is not None:
            kwargs["json"] = body
        before = _snapshot(items)
        through_lane = lane.request(method, path, **kwargs)
        after_lane = _snapshot(items)
        _restore(items, before)
        through_quart = quart.request(method, path, **kwargs)
        _same(through_lane, through_quart)
        assert _snapshot(items) == after_lane, f"{method} {params} changed the same rows"


def _snapshot(conn: psycopg.Connection) -> tuple[list[tuple], tuple]:
    rows = conn.execute("SELECT id, name, qty, note FROM rest_items ORDER BY id").fetchall()
    seq = conn.execute("SELECT last_value, is_called FROM rest_items_id_seq").fetchone()
    assert seq is not None
    return rows, tuple(seq)


def _restore(conn: psycopg.Connection, state: tuple[list[tuple], tuple]) -> None:
    rows, (last_value, is_called) = state
    with conn.transaction():
        conn.execute("DELETE FROM rest_items")
        for row in rows:
            conn.execute(
                "INSERT INTO rest_items (id, name, qty, note) VALUES (%s, %s, %s, %s)", row
            )
        conn.execute("SELECT setval('rest_items_id_seq', %s, %s)", (last_value, is_called))
