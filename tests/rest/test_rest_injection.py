"""Injection attempts in every position of a /rest/v1 request: each is refused (4xx) or
treated as plain data, and the database is unchanged afterwards."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest
from support.servers import AthenaServer

DROP = "drop table rest_items; --"

# (method, path + query, extra headers, JSON body)
ATTEMPTS: list[tuple[str, str, dict[str, str], Any]] = [
    ("GET", f"/rest/v1/rest_items?name=eq.x'; {DROP}", {}, None),
    ("GET", f"/rest/v1/rest_items?name;{DROP}=eq.1", {}, None),
    ("GET", f'/rest/v1/rest_items?"name""; {DROP}"=eq.1', {}, None),
    ("GET", f"/rest/v1/rest_items?select=id,name);{DROP}", {}, None),
    ("GET", '/rest/v1/rest_items?select=x"":id', {}, None),
    ("GET", f"/rest/v1/rest_items?select=id::text);{DROP}", {}, None),
    ("GET", f"/rest/v1/rest_items?order=id;{DROP}", {}, None),
    ("GET", f"/rest/v1/rest_items?order=id.desc;{DROP}", {}, None),
    ("GET", f"/rest/v1/rest_books?meta->>a');{DROP}=eq.1", {}, None),
    ("GET", f"/rest/v1/rest_books?select=meta->>x');{DROP}", {}, None),
    ("GET", f"/rest/v1/rest_books?select=id,rest_authors;{DROP}(*)", {}, None),
    ("GET", f"/rest/v1/rest_items?name=is.null;{DROP}", {}, None),
    ("GET", f"/rest/v1/rest_items?id=in.(1);{DROP})", {}, None),
    ("GET", f'/rest/v1/rest_items?id=in.(1,"2\'); {DROP}")', {}, None),
    ("GET", f"/rest/v1/rest_books?search=fts(english'::regconfig);{DROP}).x", {}, None),
    ("GET", f"/rest/v1/rest_items?or=(name.eq.x');{DROP},id.eq.1)", {}, None),
    ("GET", f"/rest/v1/rest_items?limit=1;{DROP}", {}, None),
    ("GET", "/rest/v1/rest_items", {"Prefer": f"count=exact;{DROP}"}, None),
    ("GET", "/rest/v1/rest_items", {"Range": f"items=0-1;{DROP}"}, None),
    ("GET", "/rest/v1/rest_items", {"Accept-Profile": f"public;{DROP}"}, None),
    ("GET", f"/rest/v1/rest_items;{DROP}", {}, None),
    (
        "POST",
        f"/rest/v1/rest_items?on_conflict=name);{DROP}",
        {"Prefer": "resolution=merge-duplicates"},
        {"name": "z"},
    ),
    ("POST", f"/rest/v1/rest_items?columns=name);{DROP}", {}, [{"name": "z"}]),
    ("POST", "/rest/v1/rest_items", {}, {f'name"; {DROP}': 1}),
    ("POST", "/rest/v1/rest_items", {"Content-Profile": f'public"; {DROP}'}, {"name": "z"}),
    ("PATCH", f"/rest/v1/rest_items?id=eq.1;{DROP}", {}, {"qty": 1}),
    ("PATCH", "/rest/v1/rest_items?id=eq.1", {}, {f"qty = 0; {DROP}": 1}),
    ("DELETE", f"/rest/v1/rest_items?id=not.is.null;{DROP}", {}, None),
    ("DELETE", f"/rest/v1/rest_items?or=(id.eq.0);{DROP}", {}, None),
]


def snapshot(conn: psycopg.Connection) -> tuple[Any, ...]:
    return (
        conn.execute("SELECT id, name, qty, note FROM rest_items ORDER BY id").fetchall(),
        conn.execute("SELECT count(*) FROM rest_books").fetchone(),
        conn.execute("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'rest_%'").fetchone(),
    )


@pytest.mark.parametrize("native", [True, False], ids=["native", "envelope"])
def test_injection_attempts_change_nothing(
    rest_server: AthenaServer, admin_key: str, items: psycopg.Connection, native: bool
) -> None:
    before = snapshot(items)
    headers = {"apikey": admin_key, "X-Athena-Client": "athena"}
    if native:
        headers["X-Athena-Rest-Format"] = "postgrest"
    with httpx.Client(base_url=rest_server.url, headers=headers) as http:
        for method, url, extra, body in ATTEMPTS:
            r = http.request(method, url, headers=extra, json=body)
            assert r.status_code < 500, (method, url, r.status_code, r.text)
            # the caller's own text may be echoed in a message; our SQL never is
            for leak in ("Traceback", "pgrst_", "json_agg", "SELECT ", "psycopg"):
                assert leak not in r.text, (url, r.text)
    assert snapshot(items) == before


def test_values_are_stored_verbatim(
    rest_server: AthenaServer, native_headers: dict, items: psycopg.Connection
) -> None:
    evil = f"x'); {DROP} \\\" $1 %s"
    with httpx.Client(base_url=rest_server.url, headers=native_headers) as http:
        r = http.post(
            "/rest/v1/rest_items", json={"name": evil}, headers={"Prefer": "return=representation"}
        )
        assert r.status_code == 201 and r.json()[0]["name"] == evil
        found = http.get("/rest/v1/rest_items", params={"name": f"eq.{evil}", "select": "name"})
        assert found.json() == [{"name": evil}]
    assert items.execute("SELECT count(*) FROM rest_items WHERE name = %s", (evil,)).fetchone() == (
        1,
    )
