"""The /rest/v1 read cache: one SQL per shape, parameters exactly the builder's, never reused
across shapes or schemas, and shapes it cannot derive left to the builder."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

import pytest
from support.snapshots import BOOKS, SNAPSHOT
from support.snapshots import col as _col

from athena.db.introspection import parse_snapshot
from athena.query.postgrest.build import build_read
from athena.query.postgrest.grammar import parse_query
from athena.query.postgrest.read_cache import ReadStatements

FLAGS = {"count_cap": None, "strip_nulls": False, "body": True, "embeds": None}


def _read(reads: ReadStatements, qs: str, *, limit: int | None = 10, offset: int = 0,
          count_exact: bool = False, snapshot=SNAPSHOT, rel=BOOKS):  # fmt: skip
    flags = dict(FLAGS, limit=limit, offset=offset, count_exact=count_exact)
    return reads.read("c", snapshot, rel, parse_query(parse_qsl(qs)), **flags)


def _builder(qs: str, *, limit: int | None = 10, offset: int = 0, count_exact: bool = False):
    built = build_read(
        SNAPSHOT, BOOKS, parse_query(parse_qsl(qs)), limit=limit, offset=offset,
        count_exact=count_exact, strip_nulls=False, body=True,
    )  # fmt: skip
    params = built.statement.params
    text = built.statement.query.as_bytes(None)
    numbered = re.sub(rb"%\(p(\d+)\)s", lambda m: b"$%d" % (int(m.group(1)) + 1), text)
    return numbered, [params[f"p{i}"] for i in range(len(params))]


CACHED = [
    ("id=eq.7", {}),
    ("id=eq.7&select=id,title", {}),
    ("title=like.*Dune*&id=gt.3", {"offset": 20}),
    ("title=ilike.a*&order=id.desc", {"limit": None}),
    ("id=in.(1,2,3)", {"count_exact": True}),
    ("or=(id.eq.1,and(title.eq.x,id.not.eq.2))", {}),
    ("title=is.null", {}),
    ("tags=cs.{a,b}", {}),
    ("select=title,count()", {}),
]


@pytest.mark.parametrize(("qs", "flags"), CACHED)
def test_a_second_request_of_the_shape_gets_the_builders_sql_and_params(qs, flags) -> None:
    reads = ReadStatements()
    first = _read(reads, qs, **flags)
    assert first is not None and first.built is not None  # built by the builder
    again = _read(reads, qs, **flags)
    assert again is not None and again.built is None  # from the cache
    assert (again.sql, again.params) == _builder(qs, **flags)


def test_other_values_of_one_shape_reuse_the_sql_with_their_own_params() -> None:
    reads = ReadStatements()
    _read(reads, "id=eq.1&title=like.a*")
    hit = _read(reads, "id=eq.99&title=like.*z")
    assert hit is not None and hit.built is None
    assert (hit.sql, hit.params) == _builder("id=eq.99&title=like.*z")
    assert hit.params[:2] == ["99", "%z"]


@pytest.mark.parametrize(
    ("one", "other", "flags_one", "flags_other"),
    [
        ("title=is.null", "title=is.true", {}, {}),  # the IS operand is SQL text
        ("id=eq.1", "id=neq.1", {}, {}),
        ("id=eq.1", "title=eq.1", {}, {}),
        ("id=eq.1", "id=not.eq.1", {}, {}),
        ("id=eq.1", "id=eq.1", {"limit": 5}, {"limit": None}),
        ("id=eq.1", "id=eq.1", {"offset": 0}, {"offset": 3}),
        ("id=eq.1", "id=eq.1", {}, {"count_exact": True}),
        ("id=eq.1&select=id", "id=eq.1&select=title", {}, {}),
        ("id=eq.1&order=id", "id=eq.1&order=id.desc", {}, {}),
    ],
)
def test_shapes_that_differ_in_sql_never_share_an_entry(one, other, flags_one, flags_other) -> None:
    reads = ReadStatements()
    _read(reads, one, **flags_one)
    second = _read(reads, other, **flags_other)
    assert second is not None and second.built is not None, "built afresh, not taken"
    assert (second.sql, second.params) == _builder(other, **flags_other)


@pytest.mark.parametrize(
    "qs",
    [
        "search=fts(english).dune",  # full-text search
        "search=wfts.dune",
        "id=eq(any).{1,2}",  # quantifiers
        "tags=ov.{a,b}",  # ov rewrites some values by column type
        "select=title,authors(name)",  # embeds
        "meta->>a%25b=eq.x",  # a % inside the SQL text (a JSON key is a literal)
    ],
)
def test_shapes_it_cannot_derive_are_left_to_the_builder(qs: str) -> None:
    reads = ReadStatements()
    assert _read(reads, qs) is None
    assert _read(reads, qs) is None  # and stay so


def test_a_new_schema_snapshot_rebuilds_the_statement() -> None:
    reads = ReadStatements()
    _read(reads, "id=eq.1")
    renamed = parse_snapshot(
        [{
            "schema": "public", "name": "books", "kind": "r",
            "columns": [_col("id"), _col("title", "text", "S", 2)],
            "primary_key": ["id"], "unique": [["id"]], "foreign_keys": [],
        }]
    )  # fmt: skip
    fresh = _read(reads, "id=eq.1", snapshot=renamed, rel=renamed.find("books"))
    assert fresh is not None and fresh.built is not None


def test_the_cache_is_bounded() -> None:
    reads = ReadStatements(max_entries=4)
    for column in ("id", "title", "author_id", "tags", "meta", "id"):
        for op in ("eq", "gt"):
            _read(reads, f"{column}={op}.1" if column != "tags" else "tags=cs.{a}")
    assert len(reads) <= 4
