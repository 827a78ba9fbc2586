"""Pure fetch and mutation builders: statement text per shape, values always bound."""

from __future__ import annotations

from typing import Any

import pytest

from athena.db.introspection import Column, Relation
from athena.errors import ApiError
from athena.query.conditions import parse_conditions
from athena.query.fetch import build_fetch_query, fetch_statement, parse_fetch, plan_fetch
from athena.query.mutations import (
    InsertRequest,
    build_insert,
    mutation_sql,
    plan_delete,
    plan_update,
)


def col(name: str, udt: str = "text", category: str = "S") -> Column:
    return Column(name, udt, udt, category, True, False, False, 1)


USERS = Relation(
    "public", "users", "table",
    {"id": col("id", "int4", "N"), "email": col("email"), "prefs": col("prefs", "jsonb", "U"),
     "resource_id": col("resource_id")},
    ("id",), (("id",), ("email",)), (),
)  # fmt: skip


def test_fetch_statement_and_params() -> None:
    request = parse_fetch(
        {
            "table_name": "users",
            "columns": "id,email",
            "conditions": [{"eq_column": "email", "eq_value": "a@b.c"}],
            "sort_by": {"field": "id", "direction": "desc"},
            "page_size": 10,
            "current_page": 3,
        },
        strip_nulls_header="true",
    )
    query, params = build_fetch_query(USERS, request)
    assert query.as_string(None) == (
        # "t".*: the whole row, even where the table has a column named t
        "SELECT coalesce(json_agg(json_strip_nulls(row_to_json(\"t\".*))), '[]')::text, count(*) "
        'FROM (SELECT "id", "email" FROM "public"."users" WHERE "email" = %s '
        'ORDER BY "id" DESC LIMIT %s OFFSET %s) t'
    )
    assert params == ["a@b.c", 10, 20]


def test_row_cap_limits_the_limit() -> None:
    request = parse_fetch({"table_name": "users", "limit": 5000})
    _, params = plan_fetch(USERS, request, max_rows=100)
    assert params == [101, 0]


def test_statement_text_is_cached_per_shape() -> None:
    a = plan_fetch(
        USERS,
        parse_fetch({"table_name": "users", "conditions": [{"eq_column": "id", "eq_value": 1}]}),
    )
    b = plan_fetch(
        USERS,
        parse_fetch({"table_name": "users", "conditions": [{"eq_column": "id", "eq_value": 2}]}),
    )
    assert a[0] == b[0]
    assert fetch_statement(a[0]) is fetch_statement(b[0])


def test_insert_binds_rows_as_one_json_parameter() -> None:
    rows = tuple({"email": f"u{i}@x", "prefs": {"n": i}} for i in range(3))
    query, params = build_insert(USERS, InsertRequest(rows=rows, returning=("id",)))
    text = query.as_string(None)
    assert text.count("%s") == 1
    assert 'json_populate_recordset(NULL::"public"."users", %s::json)' in text
    assert params == [
        '[{"email":"u0@x","prefs":{"n":0}},{"email":"u1@x","prefs":{"n":1}},{"email":"u2@x","prefs":{"n":2}}]'
    ]


def test_rows_with_different_columns_become_separate_ctes() -> None:
    rows = ({"email": "a"}, {"email": "b", "prefs": {}})
    text = build_insert(USERS, InsertRequest(rows=rows))[0].as_string(None)
    assert text.count("INSERT INTO") == 2 and "UNION ALL" in text


def test_upsert_forms() -> None:
    rows = ({"id": 1, "email": "a"},)
    with_body = build_insert(USERS, InsertRequest(rows=rows, update_body={"email": "b"}))
    assert 'ON CONFLICT ("id") DO UPDATE SET "email" = %s' in with_body[0].as_string(None)
    assert with_body[1][1] == "b"
    merged = build_insert(USERS, InsertRequest(rows=rows, on_conflict="email", upsert=True))
    assert 'ON CONFLICT ("email") DO UPDATE SET "id" = EXCLUDED."id"' in merged[0].as_string(None)
    with pytest.raises(ApiError) as caught:
        build_insert(USERS, InsertRequest(rows=rows, on_conflict="nope", upsert=True))
    assert caught.value.code == "unknown_column"


def test_update_and_delete() -> None:
    shape, params = plan_update(
        USERS, {"prefs": "x", "email": None}, parse_conditions([{"eq_column": "id", "eq_value": 4}])
    )
    assert (
        mutation_sql(shape)
        .as_string(None)
        .startswith(
            'WITH w AS (UPDATE "public"."users" SET "prefs" = %s, "email" = %s WHERE "id" = %s RETURNING *)'
        )
    )
    assert params == ['"x"', None, "4"]  # a JSON column receives the JSON text of the value
    with pytest.raises(ApiError) as caught:
        plan_update(USERS, {"email": "x"}, [])
    assert caught.value.code == "update_requires_conditions"
    shape, params = plan_delete(USERS, "r-1", [])
    assert ' WHERE "resource_id" = %s RETURNING *' in mutation_sql(shape).as_string(None)
    assert params == ["r-1"]
    with pytest.raises(ApiError) as caught:
        plan_delete(USERS, None, [])
    assert caught.value.code == "delete_requires_conditions"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"table_name": "users", "limit": -1}, "invalid_pagination"),
        ({"table_name": "users", "current_page": 0}, "invalid_pagination"),
        ({"table_name": "users", "columns": 5}, "invalid_request"),
        ({}, "invalid_request"),
    ],
)
def test_bad_fetch_bodies(body: dict[str, Any], code: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_fetch(body)
    assert caught.value.code == code
