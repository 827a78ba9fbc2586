"""Insert, upsert, update, delete over the real server: one statement each, RETURNING rows,
context headers, SQLSTATE mapping, and 200 concurrent inserts."""

from __future__ import annotations

import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psycopg
import pytest


def owner() -> str:
    return "t-" + secrets.token_hex(4)


def insert(gw: httpx.Client, body: Any, **extra: Any) -> httpx.Response:
    return gw.put("/gateway/insert", json={"table_name": "gw_items", "insert_body": body, **extra})


def test_insert_one_object_returns_the_row(gw: httpx.Client, db: psycopg.Connection) -> None:
    who = owner()
    response = insert(
        gw,
        {
            "owner": who,
            "name": "lamp",
            "qty": "3",
            "price": 12.5,
            "flag": True,
            "seen_at": "2024-01-02T03:04:05Z",
            "attrs": {"watts": 40, "tags": ["a", "b"]},
            "labels": ["desk", "warm"],
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["message"] == "Data inserted successfully"
    assert body["count"] == 1
    row = body["data"][0]
    assert row["owner"] == who and row["qty"] == 3 and row["price"] == 12.5
    assert row["attrs"] == {"watts": 40, "tags": ["a", "b"]}
    assert row["labels"] == ["desk", "warm"]
    assert row["note"] is None and len(row["id"]) == 36
    stored = db.execute(
        "SELECT qty, price::text, flag, attrs->>'watts', labels FROM gw_items WHERE owner = %s",
        (who,),
    ).fetchone()
    assert stored == (3, "12.50", True, "40", ["desk", "warm"])


def test_insert_array_is_one_transaction(gw: httpx.Client, db: psycopg.Connection) -> None:
    who = owner()
    ok = insert(gw, [{"owner": who, "name": f"n{i}", "qty": i} for i in range(5)])
    assert ok.json()["count"] == 5
    assert [r["qty"] for r in ok.json()["data"]] == [0, 1, 2, 3, 4]
    who2 = owner()
    bad = insert(gw, [{"owner": who2, "name": "a"}, {"owner": who2, "name": "b", "qty": -1}])
    assert bad.status_code == 400
    assert bad.json()["code"] == "check_violation"
    assert db.execute("SELECT count(*) FROM gw_items WHERE owner = %s", (who2,)).fetchone() == (0,)


def test_rows_with_different_columns_keep_defaults(gw: httpx.Client) -> None:
    who = owner()
    response = insert(gw, [{"owner": who, "name": "a", "qty": 7}, {"owner": who, "name": "b"}])
    assert response.status_code == 200, response.text
    assert sorted(r["qty"] for r in response.json()["data"]) == [1, 7]  # default 1, not NULL


def test_returning_columns_and_strip_nulls(gw: httpx.Client) -> None:
    who = owner()
    response = insert(gw, {"owner": who, "name": "x"}, columns=["name", "note"])
    assert response.json()["data"] == [{"name": "x", "note": None}]
    stripped = gw.put(
        "/gateway/insert",
        json={
            "table_name": "gw_items",
            "insert_body": {"owner": who, "name": "y"},
            "columns": "name,note",
        },
        headers={"X-Strip-Nulls": "true"},
    )
    assert stripped.json()["data"] == [{"name": "y"}]


def test_upsert_with_update_body_and_on_conflict(gw: httpx.Client, db: psycopg.Connection) -> None:
    who = owner()
    first = insert(gw, {"owner": who, "name": "u", "qty": 1})
    row_id = first.json()["data"][0]["id"]
    again = insert(
        gw, {"owner": who, "name": "u", "qty": 5}, update_body={"qty": 9, "note": "bumped"},
        on_conflict="owner,name",
    )  # fmt: skip
    assert again.status_code == 200, again.text
    assert again.json()["data"][0]["id"] == row_id
    assert again.json()["data"][0]["qty"] == 9
    merged = insert(gw, {"owner": who, "name": "u", "qty": 4}, on_conflict=["owner", "name"])
    assert merged.json()["data"][0]["qty"] == 4  # on_conflict alone: the inserted values win
    by_pk = insert(gw, {"id": row_id, "owner": who, "name": "u"}, update_body={"qty": 2})
    assert by_pk.json()["data"][0]["qty"] == 2  # default conflict target: the primary key
    assert db.execute("SELECT count(*) FROM gw_items WHERE owner = %s", (who,)).fetchone() == (1,)
    no_pk = gw.put(
        "/gateway/insert",
        json={"table_name": "gw_nopk", "insert_body": {"a": 1}, "update_body": {"b": "x"}},
    )
    assert no_pk.status_code == 400
    assert "on_conflict" in no_pk.json()["message"]


def test_update_requires_conditions_and_updates_matching_rows(
    gw: httpx.Client, db: psycopg.Connection
) -> None:
    who = owner()
    insert(gw, [{"owner": who, "name": "a", "qty": 1}, {"owner": who, "name": "b", "qty": 2}])
    refused = gw.post("/gateway/update", json={"table_name": "gw_items", "update_body": {"qty": 0}})
    assert refused.status_code == 400
    assert refused.json()["code"] == "update_requires_conditions"
    response = gw.post(
        "/gateway/update",
        json={
            "table_name": "gw_items",
            "update_body": {"qty": 10, "attrs": {"k": "v"}, "note": None},
            "conditions": [
                {"eq_column": "owner", "eq_value": who},
                {"column": "qty", "operator": "gt", "value": 1},
            ],
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["message"] == "Data updated successfully"
    assert body["count"] == 1
    assert body["data"][0]["name"] == "b" and body["data"][0]["attrs"] == {"k": "v"}
    rows = db.execute("SELECT name, qty FROM gw_items WHERE owner = %s ORDER BY name", (who,))
    assert rows.fetchall() == [("a", 1), ("b", 10)]
    nothing = gw.post(
        "/gateway/update",
        json={
            "table_name": "gw_items",
            "update_body": {"qty": 3},
            "conditions": [{"eq_column": "owner", "eq_value": "nobody"}],
        },
    )
    assert nothing.json()["count"] == 0 and nothing.json()["data"] == []


def test_delete_by_id_and_by_resource_id(gw: httpx.Client, db: psycopg.Connection) -> None:
    who = owner()
    made = insert(gw, [{"owner": who, "name": "a"}, {"owner": who, "name": "b"}]).json()["data"]
    response = gw.request(
        "DELETE", "/gateway/delete", json={"table_name": "gw_items", "resource_id": made[0]["id"]}
    )
    assert response.status_code == 200, response.text
    assert response.json()["message"] == "Data deleted successfully"
    assert response.json()["count"] == 1
    assert response.json()["data"][0]["name"] == "a"
    # extra conditions are ANDed: the id matches but the name does not → nothing deleted
    guarded = gw.request(
        "DELETE",
        "/gateway/delete",
        json={
            "table_name": "gw_items",
            "resource_id": made[1]["id"],
            "conditions": [{"eq_column": "name", "eq_value": "zzz"}],
        },
    )
    assert guarded.json()["count"] == 0
    assert db.execute("SELECT count(*) FROM gw_items WHERE owner = %s", (who,)).fetchone() == (1,)
    # gw_docs has a resource_id column: it is used instead of id
    key = "doc-" + secrets.token_hex(3)
    gw.put(
        "/gateway/insert",
        json={"table_name": "gw_docs", "insert_body": {"resource_id": key, "title": "t"}},
    )
    doc = gw.request(
        "DELETE", "/gateway/delete", json={"table_name": "gw_docs", "resource_id": key}
    )
    assert doc.json()["count"] == 1 and doc.json()["data"][0]["resource_id"] == key
    empty = gw.request("DELETE", "/gateway/delete", json={"table_name": "gw_items"})
    assert empty.status_code == 400
    assert empty.json()["code"] == "delete_requires_conditions"
    bad_id = gw.request(
        "DELETE", "/gateway/delete", json={"table_name": "gw_items", "resource_id": "not-a-uuid"}
    )
    assert bad_id.status_code == 400
    assert bad_id.json()["code"] == "invalid_input"


@pytest.mark.parametrize("missing", ["X-User-Id", "X-Company-Id", "X-Organization-Id"])
def test_insert_and_delete_need_context_headers(
    gw: httpx.Client, missing: str, db: psycopg.Connection
) -> None:
    who = owner()
    headers = {k: v for k, v in gw.headers.items() if k.lower() != missing.lower()}
    with httpx.Client(base_url=gw.base_url, headers=headers) as client:
        response = client.put(
            "/gateway/insert",
            json={"table_name": "gw_items", "insert_body": {"owner": who, "name": "x"}},
        )
        assert response.status_code == 400
        assert response.json()["code"] == "missing_context_header"
        assert response.json()["data"]["details"]["missing_header"] == missing
        deleted = client.request(
            "DELETE", "/gateway/delete", json={"table_name": "gw_victim", "resource_id": 1}
        )
        assert deleted.json()["code"] == "missing_context_header"
    assert db.execute("SELECT count(*) FROM gw_items WHERE owner = %s", (who,)).fetchone() == (0,)


@pytest.mark.parametrize(
    ("body", "status", "code", "extra"),
    [
        ({"owner": "dup", "name": "dup"}, 409, "unique_violation", "constraint"),
        ({"owner": "x", "name": None}, 400, "not_null_violation", "column"),
        ({"owner": "x", "name": "q", "qty": -3}, 400, "check_violation", "constraint"),
        ({"owner": "x", "name": "q", "qty": "lots"}, 400, "invalid_input", None),
        ({"owner": "x", "name": "q", "seen_at": "yesterday-ish"}, 400, "invalid_input", None),
        ({"owner": "x", "name": "q", "nope": 1}, 400, "unknown_column", "column"),
    ],
)
def test_database_errors_map_to_stable_codes(
    gw: httpx.Client, body: dict[str, Any], status: int, code: str, extra: str | None
) -> None:
    if code == "unique_violation":
        insert(gw, body)
    response = insert(gw, body)
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["code"] == code
    if extra:
        assert payload["data"][extra]
    assert "INSERT" not in response.text and "json_populate" not in response.text


def test_foreign_key_violation_is_409(gw: httpx.Client) -> None:
    response = gw.put(
        "/gateway/insert",
        json={
            "table_name": "gw_orders",
            "insert_body": {"item_id": "00000000-0000-0000-0000-00000000dead", "amount": 1},
        },
    )
    assert response.status_code == 409
    assert response.json()["code"] == "foreign_key_violation"
    assert response.json()["data"]["constraint"] == "gw_orders_item_id_fkey"


def test_bad_insert_bodies(gw: httpx.Client) -> None:
    for body in ([], "row", [1, 2], None):
        response = insert(gw, body)
        assert response.status_code == 400, body
        assert response.json()["code"] == "invalid_request"


def test_200_parallel_inserts_all_land_once(gw: httpx.Client, db: psycopg.Connection) -> None:
    tag = "burst-" + secrets.token_hex(4)
    headers = dict(gw.headers)

    local = threading.local()

    def one(n: int) -> int:
        # one keep-alive connection per worker thread, as a real client pool would hold
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=gw.base_url, headers=headers, timeout=60)
            clients.append(local.client)
        response = local.client.put(
            "/gateway/insert",
            json={"table_name": "gw_burst", "insert_body": {"n": n, "tag": tag}},
        )
        return response.status_code

    clients: list[httpx.Client] = []
    try:
        with ThreadPoolExecutor(max_workers=50) as pool:
            statuses = list(pool.map(one, range(200)))
    finally:
        for client in clients:
            client.close()
    assert statuses == [200] * 200
    rows = db.execute("SELECT n FROM gw_burst WHERE tag = %s ORDER BY n", (tag,)).fetchall()
    assert [r[0] for r in rows] == list(range(200))


def test_deleting_a_referenced_row_is_409_and_keeps_it(
    gw: httpx.Client, db: psycopg.Connection
) -> None:
    who = owner()
    item = insert(gw, {"owner": who, "name": "kept"}).json()["data"][0]
    order = gw.put(
        "/gateway/insert",
        json={"table_name": "gw_orders", "insert_body": {"item_id": item["id"], "amount": "9.99"}},
    )
    assert order.status_code == 200, order.text
    assert order.json()["data"][0]["amount"] == 9.99
    refused = gw.request(
        "DELETE", "/gateway/delete", json={"table_name": "gw_items", "resource_id": item["id"]}
    )
    assert refused.status_code == 409
    assert refused.json()["code"] == "foreign_key_violation"
    assert db.execute("SELECT count(*) FROM gw_items WHERE id = %s", (item["id"],)).fetchone() == (
        1,
    )
