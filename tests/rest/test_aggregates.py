"""Aggregates in select (PostgREST 12): count(), sum(), avg(), min(), max() with casts and
aliases, grouped by the other selected columns, on embeds and on function results; every answer
compared with the same aggregate run in SQL."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest
from postgrest import APIError, SyncPostgrestClient
from support.servers import AthenaServer

SQL = Callable[..., list[dict[str, Any]]]


def _num(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """JSON numbers come back as int/float; PostgreSQL's numeric as Decimal."""
    return [{k: float(v) if isinstance(v, Decimal) else v for k, v in r.items()} for r in rows]


def test_aggregates_without_grouping(pgrst: SyncPostgrestClient, sql: SQL) -> None:
    res = (
        pgrst.from_("rest_books")
        .select("count(),pages.sum(),price.avg(),pages.min(),pages.max()")
        .execute()
    )
    expected = sql(
        "SELECT count(*) AS count, sum(pages) AS sum, avg(price) AS avg, min(pages) AS min,"
        " max(pages) AS max FROM rest_books"
    )
    assert _num(res.data) == _num(expected)
    assert res.data[0]["count"] == 7


def test_aggregates_group_by_the_other_columns(pgrst: SyncPostgrestClient, sql: SQL) -> None:
    res = (
        pgrst.from_("rest_books").select("author_id,books:count(),total:pages.sum()")
        .gt("pages", 250).order("author_id").execute()
    )  # fmt: skip
    expected = sql(
        "SELECT author_id, count(*) AS books, sum(pages) AS total FROM rest_books"
        " WHERE pages > 250 GROUP BY author_id ORDER BY author_id"
    )
    assert res.data == expected
    assert [r["author_id"] for r in res.data] == [1, 2, 3]


def test_casts_before_and_after(pgrst: SyncPostgrestClient, sql: SQL) -> None:
    res = pgrst.from_("rest_books").select("price.avg()::int,longest:pages::text.max()").execute()
    expected = sql(
        "SELECT CAST(avg(price) AS int) AS avg, max(CAST(pages AS text)) AS longest FROM rest_books"
    )
    assert res.data == expected
    assert isinstance(res.data[0]["longest"], str)


def test_aggregates_on_an_embed(pgrst: SyncPostgrestClient, sql: SQL) -> None:
    res = (
        pgrst.from_("rest_authors").select("name,rest_books(count(),pages.sum())")
        .order("id").execute()
    )  # fmt: skip
    expected = sql(
        "SELECT a.name, count(b.id) AS count, sum(b.pages) AS sum FROM rest_authors a"
        " LEFT JOIN rest_books b ON b.author_id = a.id GROUP BY a.id, a.name ORDER BY a.id"
    )
    assert [
        {"name": r["name"], **r["rest_books"][0]} for r in res.data
    ] == expected  # fmt: skip


def test_aggregates_on_a_function_result(
    rest_server: AthenaServer, native_headers: dict[str, str], functions: str, sql: SQL
) -> None:
    res = httpx.get(
        f"{rest_server.url}/rest/v1/rpc/rpc_all_planets",
        params={"select": "kind,count(),moons.sum()", "order": "kind"},
        headers=native_headers,
    )
    assert res.json() == sql(
        "SELECT kind, count(*) AS count, sum(moons) AS sum FROM rpc_all_planets()"
        " GROUP BY kind ORDER BY kind"
    )


def test_bad_aggregates(pgrst: SyncPostgrestClient) -> None:
    for select in ("*,count()", "pages.median()", "sum()", "title,pages.sum()::nope"):
        with pytest.raises(APIError) as info:
            pgrst.from_("rest_books").select(select).execute()
        assert info.value.code in ("PGRST100", "42703"), select


def test_aggregates_can_be_turned_off(
    athena_factory: Callable[..., AthenaServer], native_headers: dict[str, str], rest_db: str
) -> None:
    server = athena_factory(rest_aggregates_enabled="false")
    res = httpx.get(
        f"{server.url}/rest/v1/rest_books", params={"select": "count()"}, headers=native_headers
    )
    assert res.status_code == 400 and res.json()["code"] == "PGRST123"
    plain = httpx.get(
        f"{server.url}/rest/v1/rest_books", params={"select": "id", "limit": "1"},
        headers=native_headers,
    )  # fmt: skip
    assert plain.status_code == 200
