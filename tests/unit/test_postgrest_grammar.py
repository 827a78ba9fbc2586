"""The PostgREST grammar and SQL builder, table-driven: query string → AST → SQL + params.

Pure: no server, no database. The snapshot below stands in for the introspection cache.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest
from support.snapshots import BOOKS, SNAPSHOT

from athena.query.postgrest.build import array_literal, build_delete, build_read, build_update
from athena.query.postgrest.errors import PgrstError
from athena.query.postgrest.grammar import (
    EmbedItem,
    Field,
    Filter,
    JsonStep,
    Logic,
    OrderTerm,
    ParseError,
    parse_filter,
    parse_logic,
    parse_order,
    parse_query,
    parse_select,
)


def sql_of(qs: str, **kwargs: object) -> tuple[str, dict]:
    """The WHERE/ORDER/LIMIT part of the GET statement for ``qs``, and its params."""
    assert BOOKS is not None
    plan = build_read(SNAPSHOT, BOOKS, parse_query(parse_qsl(qs)), limit=None, offset=0, **kwargs)
    text = plan.statement.query.as_string(None)
    return text, plan.statement.params


# -- filters: (query string, expected SQL fragment, expected params) --------------------------

FILTER_CASES = [
    ("id=eq.1", '"pgrst_0"."id" = %(p0)s', {"p0": "1"}),
    ("id=neq.1", '"pgrst_0"."id" <> %(p0)s', {"p0": "1"}),
    ("id=gt.1", '"pgrst_0"."id" > %(p0)s', {"p0": "1"}),
    ("id=gte.1", '"pgrst_0"."id" >= %(p0)s', {"p0": "1"}),
    ("id=lt.1", '"pgrst_0"."id" < %(p0)s', {"p0": "1"}),
    ("id=lte.1", '"pgrst_0"."id" <= %(p0)s', {"p0": "1"}),
    ("title=like.*Dark*", '"pgrst_0"."title" LIKE %(p0)s', {"p0": "%Dark%"}),
    ("title=ilike.*dark*", '"pgrst_0"."title" ILIKE %(p0)s', {"p0": "%dark%"}),
    ("title=match.^The", '"pgrst_0"."title" ~ %(p0)s', {"p0": "^The"}),
    ("title=imatch.^the", '"pgrst_0"."title" ~* %(p0)s', {"p0": "^the"}),
    ("id=in.(1,2,3)", '"pgrst_0"."id" = ANY(%(p0)s)', {"p0": '{"1","2","3"}'}),
    ('title=in.("a,b",c)', '"pgrst_0"."title" = ANY(%(p0)s)', {"p0": '{"a,b","c"}'}),
    ("id=in.()", '"pgrst_0"."id" = ANY(%(p0)s)', {"p0": "{}"}),
    ("id=is.null", '"pgrst_0"."id" IS NULL', {}),
    ("id=is.true", '"pgrst_0"."id" IS TRUE', {}),
    ("id=not.is.null", 'NOT ("pgrst_0"."id" IS NULL)', {}),
    ("id=isdistinct.2", '"pgrst_0"."id" IS DISTINCT FROM %(p0)s', {"p0": "2"}),
    ("tags=cs.{a,b}", '"pgrst_0"."tags" @> %(p0)s', {"p0": "{a,b}"}),
    ("tags=cd.{a,b}", '"pgrst_0"."tags" <@ %(p0)s', {"p0": "{a,b}"}),
    ("tags=ov.(a,b)", '"pgrst_0"."tags" && %(p0)s', {"p0": '{"a","b"}'}),
    ("id=sl.[1,5)", '"pgrst_0"."id" << %(p0)s', {"p0": "[1,5)"}),
    ("id=sr.[1,5)", '"pgrst_0"."id" >> %(p0)s', {"p0": "[1,5)"}),
    ("id=nxr.[1,5)", '"pgrst_0"."id" &< %(p0)s', {"p0": "[1,5)"}),
    ("id=nxl.[1,5)", '"pgrst_0"."id" &> %(p0)s', {"p0": "[1,5)"}),
    ("id=adj.[1,5)", '"pgrst_0"."id" -|- %(p0)s', {"p0": "[1,5)"}),
    ("search=fts.cat", '"pgrst_0"."search" @@ to_tsquery(%(p0)s)', {"p0": "cat"}),
    (
        "search=plfts(english).fat cats",
        '"pgrst_0"."search" @@ plainto_tsquery(%(p0)s::regconfig, %(p1)s)',
        {"p0": "english", "p1": "fat cats"},
    ),
    ("search=phfts.a b", "phraseto_tsquery(%(p0)s)", {"p0": "a b"}),
    ("search=wfts.a -b", "websearch_to_tsquery(%(p0)s)", {"p0": "a -b"}),
    ("title=fts.cat", 'to_tsvector("pgrst_0"."title") @@ to_tsquery(%(p0)s)', {"p0": "cat"}),
    ("id=eq(any).{1,2}", '"pgrst_0"."id" = ANY(%(p0)s)', {"p0": '{"1","2"}'}),
    ("title=like(all).{*a*,*b*}", '"pgrst_0"."title" LIKE ALL(%(p0)s)', {"p0": '{"%a%","%b%"}'}),
    ("id=not.gt(any).{3,4}", 'NOT ("pgrst_0"."id" > ANY(%(p0)s))', {"p0": '{"3","4"}'}),
    ("meta->>lang=eq.en", '("pgrst_0"."meta" ->> \'lang\') = %(p0)s', {"p0": "en"}),
    ("meta->a->0->>b=eq.x", "(((\"pgrst_0\".\"meta\" -> 'a') -> 0) ->> 'b')", {"p0": "x"}),
    (
        "or=(id.eq.1,id.eq.2)",
        '("pgrst_0"."id" = %(p0)s OR "pgrst_0"."id" = %(p1)s)',
        {"p0": "1", "p1": "2"},
    ),
    (
        "or=(id.eq.1,and(title.eq.x,not.or(id.lt.0,id.gt.9)))",
        '("pgrst_0"."id" = %(p0)s OR ("pgrst_0"."title" = %(p1)s AND NOT ("pgrst_0"."id" < %(p2)s '
        'OR "pgrst_0"."id" > %(p3)s)))',
        {"p0": "1", "p1": "x", "p2": "0", "p3": "9"},
    ),
    ("not.and=(id.eq.1,id.eq.2)", 'NOT ("pgrst_0"."id" = %(p0)s AND "pgrst_0"."id" = %(p1)s)', {}),
    ('or=(title.eq."a,b)",id.eq.1)', '"pgrst_0"."title" = %(p0)s OR', {"p0": "a,b)"}),
    (
        "id=gt.1&id=lt.5",
        '"pgrst_0"."id" > %(p0)s AND "pgrst_0"."id" < %(p1)s',
        {"p0": "1", "p1": "5"},
    ),
]


@pytest.mark.parametrize(
    ("qs", "fragment", "params"), FILTER_CASES, ids=[c[0] for c in FILTER_CASES]
)
def test_filter_sql_and_params(qs: str, fragment: str, params: dict) -> None:
    text, bound = sql_of(qs)
    assert fragment in text
    for name, value in params.items():
        assert bound[name] == value
    # no value ever reaches the SQL text
    for value in bound.values():
        if isinstance(value, str) and len(value) > 2:
            assert value not in text


def test_order_limit_offset_and_count() -> None:
    text, _ = sql_of("order=title.desc.nullslast,id&limit=5&offset=2", count_exact=True)
    assert parse_order("meta->>a.desc") == [
        OrderTerm(Field("meta", (JsonStep("->>", "a"),)), desc=True)
    ]
    assert 'ORDER BY "pgrst_0"."title" DESC NULLS LAST, "pgrst_0"."id" ASC' in text
    assert '(SELECT count(*) FROM (SELECT 1 FROM "public"."books"' in text
    q = parse_query(parse_qsl("order=title.desc.nullslast,id&limit=5&offset=2"))
    assert q.root.limit == 5 and q.root.offset == 2
    assert q.root.order == [
        OrderTerm(Field("title"), desc=True, nulls="last"),
        OrderTerm(Field("id")),
    ]


def test_select_items_parse() -> None:
    items = parse_select("id,t:title,meta->>lang::text,a:authors!books_author_id_fkey!inner(name)")
    assert items[1].alias == "t"  # type: ignore[union-attr]
    assert items[2].field == Field("meta", (JsonStep("->>", "lang"),))  # type: ignore[union-attr]
    assert items[2].cast == "text"  # type: ignore[union-attr]
    embed = items[3]
    assert isinstance(embed, EmbedItem)
    assert (embed.alias, embed.name, embed.hint, embed.inner) == (
        "a", "authors", "books_author_id_fkey", True
    )  # fmt: skip


def test_embedding_builds_correlated_json_subqueries() -> None:
    text, params = sql_of("select=id,author:authors(name)&author.name=eq.Lem")
    assert "row_to_json" in text
    assert '"pgrst_1"."id" = "pgrst_0"."author_id"' in text
    assert params == {"p0": "Lem"}
    assert BOOKS is not None
    authors = SNAPSHOT.find("authors")
    assert authors is not None
    plan = build_read(
        SNAPSHOT, authors, parse_query(parse_qsl("select=name,books!inner(title)&books.limit=2")),
        limit=10, offset=0,
    )  # fmt: skip
    text = plan.statement.query.as_string(None)
    assert "json_agg" in text and "EXISTS (SELECT 1 FROM" in text


def test_logic_and_filter_asts() -> None:
    assert parse_filter("id", "not.in.(1,2)") == Filter(Field("id"), "in", ("1", "2"), negate=True)
    tree = parse_logic("or", "(a.eq.1,not.and(b.is.null,c.gte.2))")
    assert isinstance(tree.items[1], Logic) and tree.items[1].negate
    assert parse_filter("t", "like.a*b").value == "a*b"


ERROR_CASES = [
    ("id=eq1", "PGRST100"),
    ("id=zz.1", "PGRST100"),
    ("id=is.maybe", "PGRST100"),
    ("id=in.1,2", "PGRST100"),
    ("or=id.eq.1", "PGRST100"),
    ("or=(id.eq.1", "PGRST100"),
    ("limit=-1", "PGRST100"),
    ("limit=ten", "PGRST100"),
    ("select=id,(", "PGRST100"),
    ("id=fts(eng;lish).x", "PGRST100"),
    ("nope=eq.1", "42703"),
    ("select=nope", "42703"),
    ("select=id::text;drop", "PGRST100"),
    ("select=id,reviews(*)", "PGRST200"),
    ("authors.name=eq.x", "PGRST108"),
    ("order=nope.desc", "42703"),
]


@pytest.mark.parametrize(("qs", "code"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_bad_queries_fail_with_postgrest_codes(qs: str, code: str) -> None:
    with pytest.raises(PgrstError) as info:
        sql_of(qs)
    assert info.value.code == code
    assert info.value.status in (400, 300)
    if code == "PGRST100" and "::" not in qs:  # casts are checked by the builder
        assert isinstance(info.value, ParseError)


def test_writes_require_known_columns_and_bind_the_body() -> None:
    assert BOOKS is not None
    q = parse_query(parse_qsl("id=eq.1"))
    plan = build_update(
        SNAPSHOT, BOOKS, q, columns=["title"], body_json='{"title":"x"}', returning="none"
    )
    text = plan.statement.query.as_string(None)
    assert 'UPDATE "public"."books"' in text and "json_populate_record" in text
    assert '{"title":"x"}' in plan.statement.params.values()
    with pytest.raises(PgrstError) as info:
        build_update(SNAPSHOT, BOOKS, q, columns=["nope"], body_json="{}", returning="none")
    assert info.value.code == "PGRST204"
    plan = build_delete(
        SNAPSHOT, BOOKS, parse_query(parse_qsl("id=eq.1&limit=1&order=id")), returning="rows"
    )
    assert "ctid = ANY(ARRAY(" in plan.statement.query.as_string(None)


def test_array_literal_escapes_quotes_and_backslashes() -> None:
    assert array_literal(['a"b', "c\\d", "e,f"]) == '{"a\\"b","c\\\\d","e,f"}'
