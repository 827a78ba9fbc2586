"""Pure condition parsing and WHERE planning: no database, no server."""

from __future__ import annotations

from typing import Any

import pytest
from psycopg import sql

from athena.db.introspection import Column, Relation
from athena.errors import ApiError
from athena.query.conditions import (
    Filter,
    Group,
    array_literal,
    parse_conditions,
    parse_expression,
    plan_where,
    split_top_level,
    where_sql,
)


def col(name: str, udt: str = "text", category: str = "S") -> Column:
    return Column(name, udt, udt, category, True, False, False, 1)


ITEMS = Relation(
    schema="public",
    name="items",
    kind="table",
    columns={
        "id": col("id", "int4", "N"),
        "name": col("name"),
        "meta": col("meta", "jsonb", "U"),
        "tags": col("tags", "_text", "A"),
        "ref": col("ref", "uuid", "U"),
    },
    primary_key=("id",),
    unique=(("id",),),
    foreign_keys=(),
)


def render(conditions: Any) -> tuple[str, list[Any]]:
    params: list[Any] = []
    shape = plan_where(ITEMS, parse_conditions(conditions), params)
    return where_sql(shape).as_string(None), params


def test_every_shape_of_condition_is_understood() -> None:
    nodes = parse_conditions(
        [
            {"eq_column": "name", "eq_value": "a"},
            {"column": "id", "operator": "GT", "value": 3},
            {"eq_column": "name", "eq_value": "b", "column": "id", "operator": "lt", "value": 9},
            {"operator": "or", "value": "id.eq.1,name.not.ilike.*x*"},
            {"operator": "not", "value": "id.in.(1,2)"},
            {"column": "id", "operator": "not", "value": "eq.5"},
        ]
    )
    assert nodes[0] == Filter("name", "eq", "a")
    assert nodes[1] == Filter("id", "gt", 3)
    assert nodes[2:4] == [Filter("name", "eq", "b"), Filter("id", "lt", 9)]
    assert nodes[4] == Group("or", (Filter("id", "eq", "1"), Filter("name", "ilike", "%x%", True)))
    assert nodes[5] == Filter("id", "in", ["1", "2"], True)
    assert nodes[6] == Filter("id", "eq", "5", True)


def test_where_sql_binds_every_value() -> None:
    text, params = render(
        [
            {"eq_column": "name", "eq_value": "x'; DROP TABLE items; --"},
            {"column": "id", "operator": "in", "value": [1, 2]},
            {"column": "meta", "operator": "contains", "value": {"a": 1}},
            {"column": "ref", "operator": "like", "value": "%ab%"},
            {"column": "name", "operator": "is", "value": None},
        ]
    )
    assert text == (
        ' WHERE "name" = %s AND "id" = ANY(%s) AND "meta" @> %s AND "ref"::text LIKE %s'
        ' AND "name" IS NULL'
    )
    assert params == ["x'; DROP TABLE items; --", '{"1","2"}', '{"a":1}', "%ab%"]


def test_eq_null_and_empty_in() -> None:
    assert render([{"eq_column": "name", "eq_value": None}]) == (' WHERE "name" IS NULL', [])
    assert render([{"column": "name", "operator": "neq", "value": None}])[0] == (
        ' WHERE "name" IS NOT NULL'
    )
    assert render([{"column": "id", "operator": "in", "value": []}]) == (
        ' WHERE "id" = ANY(%s)',
        ["{}"],
    )


def test_nested_logic_trees() -> None:
    text, params = render(
        [{"operator": "or", "value": "(id.eq.1,and(name.eq.a,not.or(id.gt.5,id.lt.0)))"}]
    )
    assert text == ' WHERE ("id" = %s OR ("name" = %s AND NOT (("id" > %s OR "id" < %s))))'
    assert params == ["1", "a", "5", "0"]


def test_same_shape_for_different_values() -> None:
    p1: list[Any] = []
    p2: list[Any] = []
    s1 = plan_where(ITEMS, parse_conditions([{"eq_column": "id", "eq_value": 1}]), p1)
    s2 = plan_where(ITEMS, parse_conditions([{"eq_column": "id", "eq_value": 99}]), p2)
    assert s1 == s2 and p1 != p2


@pytest.mark.parametrize(
    ("conditions", "code"),
    [
        ([{"column": "nope", "operator": "eq", "value": 1}], "unknown_column"),
        ([{"column": "id", "operator": "regex", "value": 1}], "invalid_operator"),
        ([{"column": "id", "operator": "is", "value": "banana"}], "invalid_value"),
        ([{"operator": "or", "value": "id.eq.1,name"}], "invalid_value"),
        ([{"operator": "or", "value": "id.zz.1"}], "invalid_operator"),
        (["id=1"], "invalid_request"),
        ("id=1", "invalid_request"),
    ],
)
def test_bad_conditions(conditions: Any, code: str) -> None:
    with pytest.raises(ApiError) as caught:
        render(conditions)
    assert caught.value.code == code


def test_array_literal_and_splitting() -> None:
    assert (
        array_literal(["a", 'b"c', "d\\e", None, 3, True])
        == '{"a","b\\"c","d\\\\e",NULL,"3","true"}'
    )
    assert split_top_level('a.eq.1,b.in.(1,2),c.eq."x,y"') == ["a.eq.1", "b.in.(1,2)", 'c.eq."x,y"']
    with pytest.raises(ValueError):
        split_top_level("a.in.(1,2")
    assert parse_expression('name.eq."a,b"') == [Filter("name", "eq", "a,b")]


def test_identifiers_are_quoted_not_spliced() -> None:
    weird = Relation("public", "w", "table", {'a"b': col('a"b')}, (), (), ())
    params: list[Any] = []
    shape = plan_where(weird, parse_conditions([{"eq_column": 'a"b', "eq_value": 1}]), params)
    assert where_sql(shape).as_string(None) == ' WHERE "a""b" = %s'
    assert isinstance(where_sql(shape), sql.Composable)


def test_absurd_nesting_is_400_not_a_crash() -> None:
    deep_text = "and(" * 3000 + "id.eq.1" + ")" * 3000
    nested: Any = [{"column": "id", "operator": "eq", "value": 1}]
    for _ in range(900):
        nested = [{"operator": "not", "value": nested}]
    for conditions in ([{"operator": "or", "value": deep_text}], nested):
        with pytest.raises(ApiError) as caught:
            parse_conditions(conditions)
        assert caught.value.status == 400
