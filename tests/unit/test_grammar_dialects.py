"""The one PostgREST expression grammar, in its two dialects (pure).

Each row is an expression and what each dialect makes of it: the AST of the gateway's logic
tree items (``grammar.parse_expression``, as ``/gateway`` conditions read them) and of
``/rest/v1``'s ``or=(…)`` (``parse_query``). ``ERROR`` means a 400 (``ParseError``). Every
difference listed in the grammar's module docstring has a row.
"""

from __future__ import annotations

from typing import Any

import pytest

from athena.query.conditions import Filter as GatewayFilter
from athena.query.conditions import parse_expression as gateway_nodes
from athena.query.postgrest.grammar import (
    GATEWAY,
    MAX_NESTING,
    REST,
    Field,
    Filter,
    JsonStep,
    Logic,
    ParseError,
    UnknownOperator,
    parse_expression,
    parse_query,
    render,
)

ERROR = "error"
UNKNOWN = "unknown operator"


def _rest(text: str) -> Any:
    try:
        return parse_query([("or", f"({text})")]).root.conditions[0].items
    except UnknownOperator:
        return UNKNOWN
    except ParseError:
        return ERROR


def _gateway(text: str) -> Any:
    try:
        return parse_expression(text, dialect=GATEWAY)
    except UnknownOperator:
        return UNKNOWN
    except ParseError:
        return ERROR


a = Field("a")
ROWS: list[tuple[str, str, Any, Any]] = [
    # (why, text, gateway AST, rest AST)
    ("same: a plain filter", "a.eq.1", (Filter(a, "eq", "1"),), (Filter(a, "eq", "1"),)),
    (
        "same: negation, lists, quoted values",
        'a.not.in.(1,"x,y")',
        (Filter(a, "in", ("1", "x,y"), True),),
        (Filter(a, "in", ("1", "x,y"), True),),
    ),
    (
        "same: nested trees",
        "a.eq.1,not.and(a.gt.2,a.is.null)",
        (Filter(a, "eq", "1"), Logic("and", (Filter(a, "gt", "2"), Filter(a, "is", "null")), True)),
        (Filter(a, "eq", "1"), Logic("and", (Filter(a, "gt", "2"), Filter(a, "is", "null")), True)),
    ),
    (
        "same: * stays for the builders",
        "a.like.*x*",
        (Filter(a, "like", "*x*"),),
        (Filter(a, "like", "*x*"),),
    ),
    ("CONTRACT operator names", "a.contains.{x}", (Filter(a, "cs", "{x}"),), UNKNOWN),
    (
        "SDK aliases, any case",
        "a.GTE.1,a.!=.2",
        (Filter(a, "gte", "1"), Filter(a, "neq", "2")),
        UNKNOWN,
    ),
    ("PostgREST-only operators", "a.match.^x", UNKNOWN, (Filter(a, "match", "^x"),)),
    ("quantifiers", "a.eq(any).{1,2}", UNKNOWN, (Filter(a, "eq", ("1", "2"), quantifier="any"),)),
    (
        "full-text search",
        "a.fts(english).cat",
        UNKNOWN,
        (Filter(a, "fts", "cat", language="english"),),
    ),
    (
        "JSON paths",
        "a->>b.eq.1",
        ERROR,
        (Filter(Field("a", (JsonStep("->>", "b"),)), "eq", "1"),),
    ),
    ("is.notnull (older SDKs)", "a.is.notnull", (Filter(a, "is", "not_null"),), ERROR),
    ("in without parentheses", "a.in.x", (Filter(a, "in", ("x",)),), ERROR),
    (
        "JSON arrays keep an item together",
        "a.cs.[1,2],a.eq.3",
        (Filter(a, "cs", "[1,2]"), Filter(a, "eq", "3")),
        ERROR,
    ),
]


@pytest.mark.parametrize(("why", "text", "gateway", "rest"), ROWS, ids=[r[0] for r in ROWS])
def test_dialects(why: str, text: str, gateway: Any, rest: Any) -> None:
    assert _gateway(text) == gateway
    assert _rest(text) == rest


def test_eq_null_is_is_null_on_the_gateway_only() -> None:
    # Same AST; the gateway's reading of it (CONTRACT: "eq null = IS NULL") differs.
    assert _gateway("a.eq.null") == _rest("a.eq.null") == (Filter(a, "eq", "null"),)
    assert GATEWAY.eq_null_is_null and not REST.eq_null_is_null
    assert gateway_nodes("a.eq.null,a.neq.null") == [
        GatewayFilter("a", "eq", None),
        GatewayFilter("a", "neq", None),
    ]


@pytest.mark.parametrize("depth", [MAX_NESTING + 1, 5000])
def test_nesting_is_bounded_in_both(depth: int) -> None:
    text = "or(" * depth + "a.eq.1" + ")" * depth
    assert _gateway(text) == ERROR
    assert _rest(text) == ERROR
    within = "or(" * (MAX_NESTING - 2) + "a.eq.1" + ")" * (MAX_NESTING - 2)
    assert _gateway(within) != ERROR and _rest(within) != ERROR


@pytest.mark.parametrize(
    "query",
    [
        [("a", "eq.1"), ("b", 'not.in.(1,"x,y")')],
        [("or", '(a.eq.1,and(b.gt.2,c.not.is.null),d.eq."p,q")')],
        [("not.and", "(a.like.*x*,b.cs.{1,2})")],
        [("a", "eq(any).{1,2}"), ("c", "fts(english).cat")],
    ],
)
def test_render_is_the_inverse_of_parse(query: list[tuple[str, str]]) -> None:
    parsed = parse_query(query).root.conditions
    assert parse_query(render(parsed)).root.conditions == parsed
