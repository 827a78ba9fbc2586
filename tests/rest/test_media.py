"""PostgREST's other media types on /rest/v1: CSV out (Accept: text/csv) and in
(Content-Type: text/csv), and EXPLAIN plans (application/vnd.pgrst.plan+json|+text) behind
ATHENA_REST_PLAN_ENABLED — the admin key only by default."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from support.keys import seed_key
from support.pg import TestPostgres
from support.servers import AthenaServer

SQL = Callable[..., list[dict[str, Any]]]


@pytest.fixture
def media_db(pg: TestPostgres, rest_db: str) -> Iterator[psycopg.Connection]:
    with pg.connect(rest_db) as conn:
        conn.execute(
            "DROP TABLE IF EXISTS media_rows; CREATE TABLE media_rows (id integer PRIMARY KEY,"
            " label text, tags text[], qty integer, note text)"
        )
        yield conn


@pytest.fixture
def raw(rest_server: AthenaServer, native_headers: dict[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{rest_server.url}/rest/v1", headers=native_headers) as client:
        yield client


CSV_IN = (
    'id,label,tags,qty,note\n'
    '1,"comma, inside","{a,""b c""}",3,NULL\n'
    '2,"say ""hi""",{},NULL,plain\n'
    '3,multi word,"{x}",7,""\n'
)  # fmt: skip


def test_csv_round_trip_with_quoting_nulls_and_arrays(
    raw: httpx.Client, media_db: psycopg.Connection
) -> None:
    posted = raw.post(
        "/media_rows",
        content=CSV_IN.encode(),
        headers={"Content-Type": "text/csv", "Prefer": "return=minimal"},
    )
    assert posted.status_code == 201, posted.text
    stored = media_db.execute("SELECT id, label, tags, qty, note FROM media_rows ORDER BY id")
    assert stored.fetchall() == [
        (1, "comma, inside", ["a", "b c"], 3, None),  # NULL is NULL
        (2, 'say "hi"', [], None, "plain"),
        (3, "multi word", ["x"], 7, ""),  # an empty field is an empty string, as PostgREST
    ]
    res = raw.get("/media_rows?order=id", headers={"Accept": "text/csv"})
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("text/csv")
    parsed = list(csv.reader(io.StringIO(res.text)))
    assert parsed == [
        ["id", "label", "tags", "qty", "note"],
        ["1", "comma, inside", '{a,"b c"}', "3", ""],  # NULL goes out as an empty field
        ["2", 'say "hi"', "{}", "", "plain"],
        ["3", "multi word", "{x}", "7", ""],
    ]
    # what went out comes back in unchanged; NULLs went out as empty fields, which come back
    # as empty strings (PostgREST reads only "NULL" as NULL), so the nullable integer is left out
    media_db.execute("TRUNCATE media_rows")
    again = raw.post(
        "/media_rows?columns=id,label,tags", content=res.content,
        headers={"Content-Type": "text/csv"},
    )  # fmt: skip
    assert again.status_code == 201, again.text
    assert media_db.execute("SELECT id, label, tags FROM media_rows ORDER BY id").fetchall() == [
        (1, "comma, inside", ["a", "b c"]), (2, 'say "hi"', []), (3, "multi word", ["x"]),
    ]  # fmt: skip


def test_csv_select_header_and_empty_result(
    raw: httpx.Client, media_db: psycopg.Connection
) -> None:
    media_db.execute("INSERT INTO media_rows (id, label) VALUES (1, 'one'), (2, 'two')")
    res = raw.get("/media_rows?select=name:label,id&order=id.desc", headers={"Accept": "text/csv"})
    assert res.text == "name,id\ntwo,2\none,1"
    empty = raw.get("/media_rows?id=gt.5&select=id,label", headers={"Accept": "text/csv"})
    assert empty.text == "id,label\n"


def test_csv_errors(raw: httpx.Client, media_db: psycopg.Connection) -> None:
    ragged = raw.post("/media_rows", content=b"id,label\n1\n", headers={"Content-Type": "text/csv"})
    assert ragged.status_code == 400 and ragged.json()["code"] == "PGRST102"
    unknown = raw.post(
        "/media_rows", content=b"id,nope\n1,x\n", headers={"Content-Type": "text/csv"}
    )
    assert unknown.status_code == 400 and unknown.json()["code"] == "PGRST204"
    assert media_db.execute("SELECT count(*) FROM media_rows").fetchone() == (0,)


def test_explain_is_for_the_admin_key_by_default(
    rest_server: AthenaServer, admin_key: str, catalog_uri: str, media_db: psycopg.Connection
) -> None:
    url = f"{rest_server.url}/rest/v1/media_rows?select=id&id=gt.1"
    plan_json = {"Accept": "application/vnd.pgrst.plan+json; options=analyze", "X-Athena-Client": "athena",
                 "X-Athena-Rest-Format": "postgrest"}  # fmt: skip
    admin = httpx.get(url, headers={**plan_json, "apikey": admin_key})
    assert admin.status_code == 200, admin.text
    assert admin.headers["content-type"].startswith("application/vnd.pgrst.plan+json")
    plan = admin.json()[0]
    assert plan["Plan"]["Node Type"] == "Aggregate" and "Actual Total Time" in plan["Plan"]
    text = httpx.get(
        url, headers={**plan_json, "apikey": admin_key, "Accept": "application/vnd.pgrst.plan+text"}
    )
    assert "Seq Scan on media_rows" in text.text or "Index" in text.text
    ordinary = seed_key(catalog_uri, rights=["*"])
    refused = httpx.get(url, headers={**plan_json, "apikey": ordinary})
    assert refused.status_code == 406 and refused.json()["code"] == "PGRST107"


def test_explain_analyze_never_writes(
    athena_factory: Callable[..., AthenaServer], catalog_uri: str, media_db: psycopg.Connection
) -> None:
    server = athena_factory(rest_plan_enabled="true")
    key = seed_key(catalog_uri, rights=["*"])
    headers = {"apikey": key, "X-Athena-Client": "athena", "X-Athena-Rest-Format": "postgrest"}
    # with the setting on, an ordinary key may read plans
    res = httpx.get(
        f"{server.url}/rest/v1/media_rows?select=id",
        headers={**headers, "Accept": "application/vnd.pgrst.plan+text; options=analyze|verbose"},
    )
    assert res.status_code == 200 and "Output:" in res.text
    # plans are for reads: a write with a plan Accept is refused before anything runs
    write = httpx.post(
        f"{server.url}/rest/v1/media_rows",
        json={"id": 9, "label": "x"},
        headers={**headers, "Accept": "application/vnd.pgrst.plan+json; options=analyze"},
    )
    assert write.status_code == 406
    assert media_db.execute("SELECT count(*) FROM media_rows").fetchone() == (0,)
    bad_option = httpx.get(
        f"{server.url}/rest/v1/media_rows",
        headers={**headers, "Accept": "application/vnd.pgrst.plan+json; options=drop"},
    )
    assert bad_option.status_code == 406
