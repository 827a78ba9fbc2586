"""POST/PATCH/DELETE /rest/v1 in native mode through the real postgrest client, with every
Prefer; each outcome checked against the table itself."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest
from postgrest import APIError, SyncPostgrestClient
from support.servers import AthenaServer


def table(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT id, name, qty, note FROM rest_items ORDER BY id").fetchall()


def test_insert_one_returns_the_row_as_stored(
    pgrst: SyncPostgrestClient, items: psycopg.Connection
) -> None:
    res = pgrst.from_("rest_items").insert({"name": "date", "qty": 2}).execute()
    stored = items.execute(
        "SELECT id, name, qty, note FROM rest_items WHERE name = 'date'"
    ).fetchone()
    assert stored is not None
    assert len(res.data) == 1
    row = res.data[0]
    assert (row["id"], row["name"], row["qty"], row["note"]) == stored
    assert row["created_at"]  # defaults are applied and returned


def test_insert_array_is_one_statement_all_or_nothing(
    pgrst: SyncPostgrestClient, items: psycopg.Connection
) -> None:
    before = table(items)
    with pytest.raises(APIError) as info:
        pgrst.from_("rest_items").insert([{"name": "elder"}, {"name": "apple"}]).execute()
    assert info.value.code == "23505"  # unique_violation, 409 in PostgREST's table
    assert table(items) == before
    res = (
        pgrst.from_("rest_items")
        .insert([{"name": "elder", "qty": 1}, {"name": "fig", "qty": 2}])
        .execute()
    )
    assert [r["name"] for r in res.data] == ["elder", "fig"]
    assert len(table(items)) == 5


def test_insert_return_minimal_and_headers_only(
    rest_server: AthenaServer,
    native_headers: dict,
    pgrst: SyncPostgrestClient,
    items: psycopg.Connection,
) -> None:
    res = pgrst.from_("rest_items").insert({"name": "grape"}, returning="minimal").execute()
    assert res.data == []
    with httpx.Client(base_url=rest_server.url, headers=native_headers) as http:
        minimal = http.post("/rest/v1/rest_items", json={"name": "kiwi"})
        assert minimal.status_code == 201 and minimal.content == b""
        headers_only = http.post(
            "/rest/v1/rest_items", json={"name": "lime"}, headers={"Prefer": "return=headers-only"}
        )
        assert headers_only.status_code == 201
        new_id = items.execute("SELECT id FROM rest_items WHERE name = 'lime'").fetchone()[0]  # type: ignore[index]
        assert headers_only.headers["location"] == f"/rest_items?id=eq.{new_id}"
        assert "return=headers-only" in headers_only.headers["preference-applied"]
        counted = http.post(
            "/rest/v1/rest_items",
            json=[{"name": "m1"}, {"name": "m2"}],
            headers={"Prefer": "return=minimal,count=exact"},
        )
        assert counted.headers["content-range"] == "*/2"
    assert {"grape", "kiwi", "lime", "m1", "m2"} <= {r[1] for r in table(items)}


def test_upsert_merge_and_ignore_duplicates(
    pgrst: SyncPostgrestClient, items: psycopg.Connection
) -> None:
    merged = (
        pgrst.from_("rest_items")
        .upsert({"name": "apple", "qty": 100}, on_conflict="name")
        .execute()
    )
    assert merged.data[0]["qty"] == 100
    assert items.execute("SELECT qty FROM rest_items WHERE name = 'apple'").fetchone() == (100,)
    ignored = (
        pgrst.from_("rest_items")
        .upsert(
            [{"name": "banana", "qty": 0}, {"name": "nut", "qty": 4}],
            on_conflict="name",
            ignore_duplicates=True,
        )
        .execute()
    )
    assert [r["name"] for r in ignored.data] == ["nut"]  # the duplicate was skipped
    assert items.execute("SELECT qty FROM rest_items WHERE name = 'banana'").fetchone() == (5,)
    by_pk = pgrst.from_("rest_items").upsert({"id": 1, "name": "apricot", "qty": 1}).execute()
    assert by_pk.data[0]["name"] == "apricot"
    assert len(table(items)) == 4


def test_missing_default_uses_column_defaults(
    pgrst: SyncPostgrestClient, items: psycopg.Connection
) -> None:
    rows = [{"name": "d1", "qty": 9}, {"name": "d2"}]
    with pytest.raises(APIError) as info:  # default: missing keys are NULL → NOT NULL violation
        pgrst.from_("rest_items").insert(rows).execute()
    assert info.value.code == "23502"
    res = pgrst.from_("rest_items").insert(rows, default_to_null=False).execute()
    assert [(r["name"], r["qty"]) for r in res.data] == [("d1", 9), ("d2", 1)]


def test_columns_param_limits_what_is_written(
    rest_server: AthenaServer, native_headers: dict, items: psycopg.Connection
) -> None:
    with httpx.Client(base_url=rest_server.url, headers=native_headers) as http:
        r = http.post(
            "/rest/v1/rest_items?columns=name",
            json=[{"name": "olive", "qty": 50, "whatever": 1}],
            headers={"Prefer": "return=representation"},
        )
        assert r.status_code == 201 and r.json()[0]["qty"] == 1
        unknown = http.post("/rest/v1/rest_items", json={"name": "x", "nope": 1})
        assert unknown.status_code == 400 and unknown.json()["code"] == "PGRST204"
        bad = http.post("/rest/v1/rest_items", content=b"{not json")
        assert bad.status_code == 400 and bad.json()["code"] == "PGRST102"
        # NaN and Infinity are not JSON (Python's json would take them)
        for constant in (b"NaN", b"Infinity", b"-Infinity"):
            odd = http.post(
                "/rest/v1/rest_items", content=b'{"name": "x", "qty": ' + constant + b"}"
            )
            assert odd.status_code == 400 and odd.json()["code"] == "PGRST102", odd.text
        assert items.execute("SELECT count(*) FROM rest_items WHERE name = 'x'").fetchone()[0] == 0


def test_update_with_filters_and_representation(
    pgrst: SyncPostgrestClient, items: psycopg.Connection
) -> None:
    res = pgrst.from_("rest_items").update({"note": "fruit"}).gte("qty", 5).execute()
    assert sorted(r["name"] for r in res.data) == ["banana", "cherry"]
    assert items.execute(
        "SELECT name FROM rest_items WHERE note = 'fruit' ORDER BY name"
    ).fetchall() == [
        ("banana",),
        ("cherry",),
    ]
    minimal = (
        pgrst.from_("rest_items")
        .update({"qty": 0}, returning="minimal")
        .eq("name", "apple")
        .execute()
    )
    assert minimal.data == []
    assert items.execute("SELECT qty FROM rest_items WHERE name = 'apple'").fetchone() == (0,)


def test_update_and_delete_without_filters_are_refused(
    rest_server: AthenaServer, native_headers: dict, items: psycopg.Connection
) -> None:
    before = table(items)
    with httpx.Client(base_url=rest_server.url, headers=native_headers) as http:
        patch = http.patch("/rest/v1/rest_items", json={"qty": 0})
        delete = http.delete("/rest/v1/rest_items?select=id&order=id")
    assert patch.status_code == delete.status_code == 400
    assert patch.json()["code"] == delete.json()["code"] == "21000"
    assert table(items) == before


def test_max_affected_rolls_back_when_exceeded(
    pgrst: SyncPostgrestClient, items: psycopg.Connection
) -> None:
    before = table(items)
    with pytest.raises(APIError) as info:
        pgrst.from_("rest_items").update({"qty": 0}).gt("qty", 0).max_affected(2).execute()
    assert info.value.code == "PGRST124"
    assert table(items) == before
    ok = pgrst.from_("rest_items").delete().eq("name", "apple").max_affected(1).execute()
    assert [r["name"] for r in ok.data] == ["apple"]
    assert len(table(items)) == 2


def test_tx_rollback_answers_but_changes_nothing(
    rest_server: AthenaServer, native_headers: dict, items: psycopg.Connection
) -> None:
    before = table(items)
    with httpx.Client(base_url=rest_server.url, headers=native_headers) as http:
        prefer = {"Prefer": "return=representation, tx=rollback"}
        deleted = http.delete("/rest/v1/rest_items?qty=gt.4", headers=prefer)
        inserted = http.post("/rest/v1/rest_items", json={"name": "ghost"}, headers=prefer)
        updated = http.patch("/rest/v1/rest_items?id=eq.1", json={"qty": 42}, headers=prefer)
    assert sorted(r["name"] for r in deleted.json()) == ["banana", "cherry"]
    assert inserted.json()[0]["name"] == "ghost"
    assert updated.json()[0]["qty"] == 42
    assert "tx=rollback" in deleted.headers["preference-applied"]
    assert table(items) == before


def test_singular_write_rolls_back_unless_exactly_one_row(
    rest_server: AthenaServer, native_headers: dict, items: psycopg.Connection
) -> None:
    before = table(items)
    single = {"Accept": "application/vnd.pgrst.object+json", "Prefer": "return=representation"}
    with httpx.Client(base_url=rest_server.url, headers=native_headers) as http:
        many = http.patch("/rest/v1/rest_items?qty=gt.0", json={"note": "x"}, headers=single)
        assert many.status_code == 406 and many.json()["code"] == "PGRST116"
        assert table(items) == before
        one = http.patch("/rest/v1/rest_items?name=eq.apple", json={"note": "y"}, headers=single)
    assert one.status_code == 200 and one.json()["note"] == "y"
    assert one.headers["content-type"].startswith("application/vnd.pgrst.object+json")


def test_delete_with_filters_returns_deleted_rows(
    pgrst: SyncPostgrestClient, items: psycopg.Connection
) -> None:
    res = pgrst.from_("rest_items").delete().in_("name", ["apple", "cherry"]).execute()
    assert sorted(r["name"] for r in res.data) == ["apple", "cherry"]
    assert [r[1] for r in table(items)] == ["banana"]
    limited = pgrst.from_("rest_items").delete(count="exact").neq("id", 0).execute()
    assert limited.count == 1


def test_write_representation_can_embed(pgrst: SyncPostgrestClient, sql: Any) -> None:
    try:
        res = (
            pgrst.from_("rest_reviews")
            .insert({"id": 100, "book_id": 3, "stars": 2, "body": "wet"})
            .select("id,stars,rest_books(title)")
            .execute()
        )
        assert res.data == [{"id": 100, "stars": 2, "rest_books": {"title": "Solaris"}}]
    finally:
        sql("DELETE FROM rest_reviews WHERE id = 100")


def test_insert_and_update_typed_columns(pgrst: SyncPostgrestClient, sql: Any) -> None:
    row = {
        "id": 50,
        "title": "Typed",
        "tags": ["a b", 'quote"d', "c,d"],
        "meta": {"lang": "de", "series": {"n": 1}},
        "published": "2001-02-03",
        "during": "[2001,2002)",
        "price": 1.5,
        "available": False,
    }
    try:
        created = pgrst.from_("rest_books").insert(row).execute().data[0]
        stored = sql(
            "SELECT tags, meta, published::text, during::text, price::float8 AS price, available "
            "FROM rest_books WHERE id = 50"
        )[0]
        assert stored == {
            "tags": ["a b", 'quote"d', "c,d"],
            "meta": {"lang": "de", "series": {"n": 1}},
            "published": "2001-02-03",
            "during": "[2001,2002)",
            "price": 1.5,
            "available": False,
        }
        assert created["tags"] == row["tags"] and created["meta"] == row["meta"]
        assert created["search"]  # the generated column is computed and returned
        pgrst.from_("rest_books").update({"meta": None, "tags": []}).eq("id", 50).execute()
        assert sql("SELECT meta, tags FROM rest_books WHERE id = 50") == [
            {"meta": None, "tags": []}
        ]
    finally:
        sql("DELETE FROM rest_books WHERE id = 50")
