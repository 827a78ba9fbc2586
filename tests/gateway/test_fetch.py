"""Fetch over the real server: every condition shape and operator, columns, sort, paging,
strip-nulls, views, the aliases, and post-processing (CONTRACT.md "Fetch body")."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import psycopg
import pytest


@contextmanager
def _scratch_table(db: psycopg.Connection, name: str, columns: str) -> Iterator[None]:
    """A table of this test's own (``columns`` is trusted test text), dropped afterwards."""
    db.execute(f"DROP TABLE IF EXISTS {name}")
    db.execute(f"CREATE TABLE {name} ({columns})")
    try:
        yield
    finally:
        db.execute(f"DROP TABLE {name}")


def fetch(gw: httpx.Client, path: str = "/gateway/fetch", **body: Any) -> httpx.Response:
    body.setdefault("table_name", "gw_products")
    return gw.post(path, json=body)


def skus(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [row["sku"] for row in response.json()["data"]]


def cond(column: str, operator: str, value: Any) -> dict[str, Any]:
    return {"column": column, "operator": operator, "value": value}


def test_fetch_envelope_and_types(gw: httpx.Client) -> None:
    response = fetch(gw, conditions=[{"eq_column": "sku", "eq_value": "A-1"}])
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "success"
    assert body["count"] == 1
    assert body["data"] == [
        {
            "id": "00000000-0000-0000-0000-000000000001",
            "sku": "A-1",
            "name": "Anvil",
            "qty": 5,
            "price": 19.99,
            "active": True,
            "created_at": "2024-03-01T09:15:00+00:00",
            "tags": ["tools", "heavy"],
            "meta": {"color": "black", "weight": 50},
            "note": "classic",
        }
    ]
    assert response.headers["x-request-id"]


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (cond("qty", "eq", 5), ["A-1"]),
        (cond("qty", "eq", "5"), ["A-1"]),  # text compares with the int column
        (cond("qty", "neq", 5), ["B-2", "C-3", "D-4", "E-5"]),
        (cond("qty", "gt", 5), ["B-2", "C-3"]),
        (cond("qty", "gte", 5), ["A-1", "B-2", "C-3"]),
        (cond("qty", "lt", 5), ["D-4", "E-5"]),
        (cond("qty", "lte", 5), ["A-1", "D-4", "E-5"]),
        (cond("price", "gt", "10.5"), ["A-1", "D-4"]),
        (cond("name", "like", "%r%"), ["C-3", "D-4", "E-5"]),
        (cond("name", "ilike", "a%"), ["A-1"]),
        (cond("id", "like", "%0003"), ["C-3"]),  # LIKE on a uuid compares its text
        (cond("note", "is", None), ["B-2", "D-4"]),
        (cond("note", "is", "null"), ["B-2", "D-4"]),
        (cond("active", "is", False), ["C-3", "E-5"]),
        (cond("active", "is", "true"), ["A-1", "B-2", "D-4"]),
        (cond("note", "eq", None), ["B-2", "D-4"]),  # eq null = IS NULL
        (cond("note", "neq", None), ["A-1", "C-3", "E-5"]),
        (cond("qty", "in", [3, 12, 999]), ["C-3", "D-4"]),
        (cond("sku", "in", "(A-1,B-2)"), ["A-1", "B-2"]),
        (cond("qty", "in", []), []),  # in [] matches nothing
        (cond("tags", "contains", ["tools"]), ["A-1", "B-2", "D-4"]),
        (cond("tags", "contains", ["tools", "power"]), ["D-4"]),
        (cond("tags", "containedBy", ["tools", "heavy", "storage"]), ["A-1", "B-2", "C-3", "E-5"]),
        (cond("meta", "contains", {"color": "black"}), ["A-1"]),
        (cond("meta", "eq", {"color": "silver"}), ["B-2"]),
        (cond("active", "eq", True), ["A-1", "B-2", "D-4"]),
        (cond("created_at", "gte", "2024-03-02T00:00:00Z"), ["D-4", "E-5"]),
        (cond("id", "eq", "00000000-0000-0000-0000-000000000004"), ["D-4"]),
        (cond("note", "eq", 'it\'s "quoted", with commas'), ["E-5"]),
        ({"column": "sku", "operator": "not", "value": "in.(A-1,B-2,C-3)"}, ["D-4", "E-5"]),
        ({"operator": "not", "value": "qty.gte.5"}, ["D-4", "E-5"]),
        ({"operator": "not", "value": "note.is.null"}, ["A-1", "C-3", "E-5"]),
        ({"operator": "or", "value": "sku.eq.A-1,qty.gt.50"}, ["A-1", "B-2"]),
        (
            {"operator": "or", "value": "(name.ilike.*RILL*,and(qty.eq.0,active.is.false))"},
            ["D-4", "E-5"],
        ),
        (
            {"operator": "or", "value": 'note.eq."it\'s \\"quoted\\", with commas",qty.eq.3'},
            ["D-4", "E-5"],
        ),
        ({"operator": "or", "value": "qty.not.in.(0,3,5,12),sku.eq.C-3"}, ["B-2", "C-3"]),
        ({"operator": "or", "value": 'tags.cs.{power},meta.cs.{"weight":50}'}, ["A-1", "D-4"]),
        (
            {
                "eq_column": "active",
                "eq_value": "true",
                "column": "qty",
                "operator": "lt",
                "value": 10,
            },
            ["A-1", "D-4"],
        ),
        ({"column": "qty", "value": 12}, ["C-3"]),  # operator defaults to eq
        (
            {"eq_column": "sku", "eq_value": "B-2", "eq_column_cast": "text", "count": "exact"},
            ["B-2"],
        ),
    ],
)
def test_condition_operators(
    gw: httpx.Client, condition: dict[str, Any], expected: list[str]
) -> None:
    response = fetch(gw, conditions=[condition], sort_by={"field": "sku", "direction": "asc"})
    assert skus(response) == expected


def test_operator_names_are_case_insensitive_and_accept_postgrest_aliases(gw: httpx.Client) -> None:
    assert skus(fetch(gw, conditions=[cond("tags", "CS", ["power"])])) == ["D-4"]
    assert skus(fetch(gw, conditions=[cond("qty", "GTE", 100)])) == ["B-2"]


def test_several_conditions_are_anded(gw: httpx.Client) -> None:
    response = fetch(
        gw,
        conditions=[cond("active", "eq", True), cond("qty", "lt", 10), cond("price", "gt", 50)],
    )
    assert skus(response) == ["D-4"]


def test_conditions_may_be_absent_or_null(gw: httpx.Client) -> None:
    assert len(skus(fetch(gw))) == 5
    assert len(skus(fetch(gw, conditions=None))) == 5
    assert len(skus(fetch(gw, conditions=[]))) == 5


@pytest.mark.parametrize(
    ("condition", "code"),
    [
        (cond("qty", "between", 1), "invalid_operator"),
        (cond("qty", "is", "maybe"), "invalid_value"),
        (cond("nope", "eq", 1), "unknown_column"),
        ({"operator": "or", "value": "qty.eq.1,nope.eq.2"}, "unknown_column"),
        ({"operator": "or", "value": "qty.eq.(1"}, "invalid_value"),
        ({"operator": "or", "value": "qty"}, "invalid_value"),
        (cond("qty", "gt", None), "invalid_value"),
        (cond("qty", "eq", "many"), "invalid_input"),
        ({"value": 1}, "invalid_request"),
        ("qty=1", "invalid_request"),
    ],
)
def test_bad_conditions_are_400_with_a_stable_code(
    gw: httpx.Client, condition: Any, code: str
) -> None:
    response = fetch(gw, conditions=[condition])
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["status"] == "error"
    assert body["code"] == code
    assert "SELECT" not in response.text


def test_unknown_column_and_table_are_named(gw: httpx.Client) -> None:
    response = fetch(gw, columns=["sku", "colour"])
    assert response.status_code == 400
    assert response.json()["code"] == "unknown_column"
    assert response.json()["data"]["column"] == "colour"
    missing = fetch(gw, table_name="gw_nothing_here")
    assert missing.status_code == 400
    assert missing.json()["code"] == "unknown_table"
    assert "gw_nothing_here" in missing.json()["message"]
    assert fetch(gw, table_name=None).json()["code"] == "invalid_request"


def test_columns_as_array_or_comma_string_or_star(gw: httpx.Client) -> None:
    arr = fetch(gw, columns=["sku", "qty"], conditions=[cond("sku", "eq", "A-1")]).json()["data"]
    text = fetch(gw, columns="sku, qty", conditions=[cond("sku", "eq", "A-1")]).json()["data"]
    assert arr == text == [{"sku": "A-1", "qty": 5}]
    star = fetch(gw, columns="*", conditions=[cond("sku", "eq", "A-1")]).json()["data"]
    assert len(star[0]) == 10


def test_sort_directions(gw: httpx.Client) -> None:
    desc = skus(fetch(gw, sort_by={"field": "qty", "direction": "DESC"}))
    assert desc == ["B-2", "C-3", "A-1", "D-4", "E-5"]
    asc = skus(fetch(gw, sortBy={"column": "qty", "direction": "Ascending"}))
    assert asc == list(reversed(desc))
    default = skus(fetch(gw, sort_by={"field": "name"}))
    assert default == ["A-1", "B-2", "C-3", "D-4", "E-5"]
    assert fetch(gw, sort_by={"field": "nope"}).json()["code"] == "unknown_column"


@pytest.mark.parametrize(
    ("paging", "expected"),
    [
        ({"limit": 2}, ["A-1", "B-2"]),
        ({"page_size": 2}, ["A-1", "B-2"]),
        ({"page_size": 2, "current_page": 2}, ["C-3", "D-4"]),
        ({"page_size": 2, "current_page": 3}, ["E-5"]),
        ({"limit": 3, "current_page": 2}, ["D-4", "E-5"]),
        ({"limit": 1, "page_size": 3, "current_page": 2}, ["D-4"]),  # explicit limit wins
        ({"page_size": 2, "current_page": 2, "offset": 4}, ["E-5"]),  # explicit offset wins
        ({"offset": 3}, ["D-4", "E-5"]),
        ({"limit": 0}, []),
        ({"limit": "2", "offset": "1"}, ["B-2", "C-3"]),
    ],
)
def test_paging_rules(gw: httpx.Client, paging: dict[str, Any], expected: list[str]) -> None:
    assert skus(fetch(gw, sort_by={"field": "sku"}, **paging)) == expected


@pytest.mark.parametrize(
    "paging",
    [{"limit": -1}, {"offset": -5}, {"page_size": -2}, {"current_page": 0}, {"limit": "ten"}],
)
def test_bad_paging_is_400(gw: httpx.Client, paging: dict[str, Any]) -> None:
    response = fetch(gw, **paging)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_pagination"


def test_default_limit_is_100(gw: httpx.Client) -> None:
    response = gw.post(
        "/gateway/query", json={"query": "SELECT g AS n FROM generate_series(1, 150) g"}
    )
    assert response.json()["meta"]["returned_row_count"] == 150
    # the view of 150 generated rows is not a table; use gw_burst, filled here
    gw.put(
        "/gateway/insert",
        json={
            "table_name": "gw_burst",
            "insert_body": [{"n": i, "tag": "page"} for i in range(130)],
        },
    ).raise_for_status()
    page = fetch(gw, table_name="gw_burst", conditions=[cond("tag", "eq", "page")])
    assert page.json()["count"] == 100


def test_strip_nulls_header_wins_over_body(gw: httpx.Client) -> None:
    where = [cond("sku", "eq", "B-2")]
    plain = fetch(gw, conditions=where).json()["data"][0]
    assert plain["note"] is None
    stripped = fetch(gw, conditions=where, strip_nulls=True).json()["data"][0]
    assert "note" not in stripped and stripped["sku"] == "B-2"
    header_off = gw.post(
        "/gateway/fetch",
        json={"table_name": "gw_products", "conditions": where, "strip_nulls": True},
        headers={"X-Strip-Nulls": "false"},
    ).json()["data"][0]
    assert "note" in header_off
    header_on = gw.post(
        "/gateway/fetch",
        json={"table_name": "gw_products", "conditions": where},
        headers={"X-Strip-Nulls": "true"},
    ).json()["data"][0]
    assert "note" not in header_on


def test_views_and_aliases(gw: httpx.Client) -> None:
    view = gw.post(
        "/gateway/fetch",
        json={"view_name": "gw_active_products", "sort_by": {"field": "sku"}},
    )
    assert skus(view) == ["A-1", "B-2", "D-4"]
    alias = fetch(gw, "/gateway/data", conditions=[cond("sku", "eq", "C-3")])
    assert skus(alias) == ["C-3"]
    update_as_fetch = fetch(gw, "/gateway/update", conditions=[cond("sku", "eq", "D-4")])
    assert skus(update_as_fetch) == ["D-4"]
    get = gw.get(
        "/data",
        params={
            "view": "gw_active_products",
            "eq_column": "qty",
            "eq_value": "3",
            "columns": "sku,qty",
        },
    )
    assert get.status_code == 200, get.text
    assert get.json()["data"] == [{"sku": "D-4", "qty": 3}]


def test_invalid_json_and_non_object_bodies(gw: httpx.Client) -> None:
    broken = gw.post(
        "/gateway/fetch", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 400
    assert broken.json()["code"] == "invalid_json"
    # NaN and Infinity are not JSON, though Python's json takes them ({"limit": Infinity})
    for body in (b'{"table_name": "gw_events", "limit": Infinity}',
                 b'{"table_name": "gw_events", "conditions": [{"eq_column": "amount", "eq_value": NaN}]}'):  # fmt: skip
        odd = gw.post("/gateway/fetch", content=body, headers={"content-type": "application/json"})
        assert odd.status_code == 400 and odd.json()["code"] == "invalid_json", odd.text
    array = gw.post("/gateway/fetch", json=[1, 2])
    assert array.status_code == 400
    assert array.json()["code"] == "invalid_request"


# -- post-processing ---------------------------------------------------------------------------


def events(gw: httpx.Client, **body: Any) -> httpx.Response:
    return gw.post(
        "/gateway/fetch",
        json={"table_name": "gw_events", "sort_by": {"field": "id"}, **body},
    )


def test_group_by_hour_with_sums(gw: httpx.Client) -> None:
    response = events(gw, group_by="at", time_granularity="HOUR", aggregation_column="amount")
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["data"]) == 6  # rows are still returned
    grouped = body["post_processing"]["grouped"]
    assert [g["label"] for g in grouped] == [
        "2024-05-01T10:00:00Z",
        "2024-05-01T11:00:00Z",
        "2024-05-02T09:00:00Z",
    ]
    assert [g["count"] for g in grouped] == [2, 1, 3]
    assert [g["aggregation"]["value"] for g in grouped] == [30.3, 5.05, 0.5]
    assert grouped[0]["aggregation"]["column"] == "amount"
    assert grouped[0]["aggregation"]["cumulative"] is None
    assert all(len(g["rows"]) == g["count"] for g in grouped)


def test_group_by_day_cumulative_and_dedup(gw: httpx.Client) -> None:
    response = events(
        gw,
        columns=["kind", "at", "amount"],
        group_by="at",
        time_granularity="day",
        aggregation_column="amount",
        aggregation_strategy="cumulative_sum",
        aggregation_dedup=True,
    )
    grouped = response.json()["post_processing"]["grouped"]
    assert [g["label"] for g in grouped] == ["2024-05-01", "2024-05-02"]
    # the two identical 09:00:30 sales count once
    assert [g["count"] for g in grouped] == [3, 2]
    assert [g["aggregation"]["value"] for g in grouped] == [35.35, 0.3]
    assert [g["aggregation"]["cumulative"] for g in grouped] == [35.35, 35.65]
    assert grouped[0]["aggregation"]["strategy"] == "cumulative_sum"


def test_group_by_plain_column_in_label_order(gw: httpx.Client) -> None:
    grouped = events(gw, group_by="kind").json()["post_processing"]["grouped"]
    assert [(g["label"], g["count"]) for g in grouped] == [("refund", 1), ("sale", 5)]
    assert "aggregation" not in grouped[0]


def test_post_processing_errors(gw: httpx.Client) -> None:
    no_column = events(gw, group_by="kind", aggregation_strategy="cumulative_sum")
    assert no_column.status_code == 400
    assert "aggregation_column" in no_column.json()["message"]
    bad_grain = events(gw, group_by="at", time_granularity="week")
    assert bad_grain.json()["code"] == "invalid_value"
    not_time = events(gw, group_by="kind", time_granularity="day")
    assert not_time.json()["code"] == "invalid_value"
    unknown = events(gw, group_by="nope")
    assert unknown.json()["code"] == "unknown_column"
    unselected = events(gw, columns="kind", group_by="at")
    assert unselected.status_code == 400


def test_sums_over_values_json_cannot_hold_are_400(
    gw: httpx.Client, db: psycopg.Connection
) -> None:
    # NaN and Infinity were an invalid JSON "NaN" and a 500 (int(Infinity)); 1e999999999 as
    # text held the event loop while int() built a billion-digit number.
    with _scratch_table(db, "gw_odd_numbers", "id int PRIMARY KEY, kind text, n numeric, t text"):
        db.execute(
            "INSERT INTO gw_odd_numbers VALUES (1, 'a', 1, '1'), (2, 'a', 'NaN', '1e999999999'),"
            " (3, 'b', 'Infinity', 'NaN'), (4, 'b', 2.5, '-Infinity')"
        )

        def summed(where: list[dict[str, Any]], column: str) -> httpx.Response:
            return gw.post(
                "/gateway/fetch",
                json={
                    "table_name": "gw_odd_numbers",
                    "conditions": where,
                    "group_by": "kind",
                    "aggregation_column": column,
                },
            )

        for row_id, column in ((2, "n"), (3, "n"), (2, "t"), (3, "t"), (4, "t")):
            answer = summed([{"eq_column": "id", "eq_value": row_id}], column)
            assert answer.status_code == 400, (row_id, column, answer.text)
            assert answer.json()["code"] == "invalid_value"
            assert "finite" in answer.json()["message"]
        fine = summed([{"eq_column": "id", "eq_value": 1}], "n")
        assert fine.status_code == 200, fine.text
        assert fine.json()["post_processing"]["grouped"][0]["aggregation"]["value"] == 1
        # grouping by a numeric column that holds NaN: NaN sorts after the numbers
        by_n = gw.post("/gateway/fetch", json={"table_name": "gw_odd_numbers", "group_by": "n"})
        assert by_n.status_code == 200, by_n.text
        labels = [g["label"] for g in by_n.json()["post_processing"]["grouped"]]
        assert labels[-1] == "NaN" and len(labels) == 4, labels


def test_columns_named_like_the_statements_aliases_come_back_as_rows(
    gw: httpx.Client, db: psycopg.Connection
) -> None:
    # The statements named the row "t" (fetch) and "w" (writes): json_agg(t) over a table with
    # a column t aggregated that column, so the answer was ["x", ...] instead of the rows.
    with _scratch_table(db, "gw_alias_cols", "id int PRIMARY KEY, t text, w text, s text"):
        db.execute("INSERT INTO gw_alias_cols VALUES (1, 'tee', 'double-u', 'ess')")
        table = {"table_name": "gw_alias_cols"}
        fetched = gw.post("/gateway/fetch", json=table)
        assert fetched.status_code == 200, fetched.text
        assert fetched.json()["data"] == [{"id": 1, "t": "tee", "w": "double-u", "s": "ess"}]
        stripped = gw.post("/gateway/fetch", json=table, headers={"X-Strip-Nulls": "true"})
        assert stripped.json()["data"] == [{"id": 1, "t": "tee", "w": "double-u", "s": "ess"}]
        inserted = gw.put(
            "/gateway/insert",
            json={**table, "insert_body": {"id": 2, "t": "x", "w": "y", "s": None}},
        )
        assert inserted.status_code in (200, 201), inserted.text
        assert inserted.json()["data"] == [{"id": 2, "t": "x", "w": "y", "s": None}]
        updated = gw.post(
            "/gateway/update",
            json={**table, "conditions": [{"eq_column": "id", "eq_value": 2}],
                  "update_body": {"w": "z"}},
        )  # fmt: skip
        assert updated.json()["data"] == [{"id": 2, "t": "x", "w": "z", "s": None}], updated.text
        deleted = gw.request("DELETE", "/gateway/delete", json={**table, "resource_id": 2})
        assert deleted.json()["data"] == [{"id": 2, "t": "x", "w": "z", "s": None}], deleted.text
        assert db.execute("SELECT count(*) FROM gw_alias_cols").fetchone()[0] == 1
