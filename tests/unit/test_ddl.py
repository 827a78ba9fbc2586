"""The pure DDL builders: what SQL a valid request becomes, and which requests never get SQL."""

from __future__ import annotations

import pytest

from athena.errors import ApiError
from athena.query import ddl


def render(composed: object) -> str:
    return composed.as_string(None)  # type: ignore[attr-defined,no-any-return]


def test_create_table_adds_managed_columns_and_quotes_everything() -> None:
    plan = ddl.plan_create_table(
        {
            "schema_name": "app",
            "table_name": "Orders",
            "columns": [
                {"name": "title", "data_type": "TEXT", "nullable": False},
                {"name": "n", "data_type": "character varying (20)", "default_expression": "'x'"},
                {"name": "price", "data_type": "numeric(10, 2)", "default_expression": 1.5},
                {"name": "ids", "data_type": "uuid[]"},
            ],
        }
    )
    assert render(plan.statement().query) == (
        'CREATE TABLE "app"."Orders" ("id" uuid DEFAULT gen_random_uuid() NOT NULL, '
        '"created_at" timestamptz DEFAULT now() NOT NULL, '
        '"updated_at" timestamptz DEFAULT now() NOT NULL, "title" text NOT NULL, '
        """"n" varchar(20) DEFAULT 'x', "price" numeric(10,2) DEFAULT 1.5, "ids" uuid[], """
        'PRIMARY KEY ("id"))'
    )


@pytest.mark.parametrize(
    ("value", "sql"),
    [
        ("now()", "now()"),
        ("NOW( )", "now()"),
        ("current_timestamp", "CURRENT_TIMESTAMP"),
        ("gen_random_uuid()", "gen_random_uuid()"),
        ("true", "true"),
        (False, "false"),
        ("42", "42"),
        ("-3.25", "-3.25"),
        (7, "7"),
        ("'it''s'", "'it''s'"),
        ("'{}'::jsonb", "'{}'::jsonb"),
        ("null", "NULL"),
    ],
)
def test_safe_defaults_render_as_literals_or_constants(value: object, sql: str) -> None:
    # psycopg puts a space before a negative number (so "-" can never make a "--" comment)
    assert render(ddl.parse_default(value).render()).strip() == sql


@pytest.mark.parametrize(
    "value",
    [
        "pg_sleep(10)",
        "now(); DROP TABLE x",
        "'a' || current_user",
        "(select 1)",
        "1; drop table t",
        "'x'::regclass",
        "'unterminated",
        "nextval('seq')",
        "current_user",
        "",
        "   ",
        "'a'); DROP TABLE t; --",
        ["now()"],
        {"x": 1},
        "x" * 2000,
    ],
)
def test_unsafe_defaults_are_refused(value: object) -> None:
    with pytest.raises(ApiError) as err:
        ddl.parse_default(value)
    assert err.value.code in {"unsupported_default", "unsupported_data_type"}
    assert err.value.status == 400


@pytest.mark.parametrize(
    "name",
    ['a"b', "a b", "1abc", "drop;table", "x" * 64, "", "ä", "a.b", "a-b", None, 5],
)
def test_hostile_identifiers_are_refused(name: object) -> None:
    with pytest.raises(ApiError) as err:
        ddl.identifier(name, "table_name")
    assert err.value.code == "invalid_identifier"


@pytest.mark.parametrize(
    "data_type",
    ["text; drop table x", "varchar(0)", "int(5)", "serial", "regclass", "text[][]x", "", "money"],
)
def test_types_outside_the_allow_list_are_refused(data_type: str) -> None:
    with pytest.raises(ApiError) as err:
        ddl.parse_data_type(data_type)
    assert err.value.code == "unsupported_data_type"


def test_type_aliases_are_canonical() -> None:
    assert str(ddl.parse_data_type("int")) == "integer"
    assert str(ddl.parse_data_type("Timestamp With Time Zone")) == "timestamptz"
    assert str(ddl.parse_data_type("decimal(5)")) == "numeric(5)"
    assert str(ddl.parse_data_type("bigint []")) == "bigint[]"


def test_edit_operations_render_one_statement_each() -> None:
    plan = ddl.plan_edit_table(
        "public.t",
        {
            "operations": [
                {"type": "add_column", "column": {"name": "a", "data_type": "int"}},
                {"type": "rename_column", "from": "a", "to": "b"},
                {"type": "set_default", "column_name": "b", "default_expression": "0"},
                {"type": "drop_default", "column_name": "b"},
                {"type": "set_not_null", "column_name": "b"},
                {"type": "drop_not_null", "column_name": "b"},
            ]
        },
    )
    assert [render(s.query) for s in plan.statements()] == [
        'ALTER TABLE "public"."t" ADD COLUMN "a" integer',
        'ALTER TABLE "public"."t" RENAME COLUMN "a" TO "b"',
        'ALTER TABLE "public"."t" ALTER COLUMN "b" SET DEFAULT 0',
        'ALTER TABLE "public"."t" ALTER COLUMN "b" DROP DEFAULT',
        'ALTER TABLE "public"."t" ALTER COLUMN "b" SET NOT NULL',
        'ALTER TABLE "public"."t" ALTER COLUMN "b" DROP NOT NULL',
    ]


def test_reserved_and_protected_names_are_refused() -> None:
    for call in (
        lambda: ddl.plan_drop_column("t", "id", {}),
        lambda: ddl.plan_drop_column("t", "created_at", {}),
        lambda: ddl.plan_edit_table(
            "t", {"operations": [{"type": "rename_column", "from": "id", "to": "x"}]}
        ),
        lambda: ddl.plan_create_table(
            {"table_name": "t", "columns": [{"name": "id", "data_type": "int"}]}
        ),
    ):
        with pytest.raises(ApiError) as err:
            call()
        assert err.value.code == "reserved_column"
    with pytest.raises(ApiError) as err:
        ddl.plan_drop_table("database_audit_log", {})
    assert err.value.code == "protected_table"


def test_index_plans() -> None:
    plan = ddl.plan_create_index({"table_name": "t", "columns": "a, b", "method": "HASH"})
    assert plan.index == "t_a_b_idx" and plan.method == "hash"
    assert (
        render(plan.statement().query)
        == 'CREATE INDEX "t_a_b_idx" ON "public"."t" USING hash ("a", "b")'
    )
    long = ddl.plan_create_index({"table_name": "t" * 60, "columns": ["c" * 60], "unique": True})
    assert len(long.index) == 63 and long.index.endswith("_key")
    for bad in ({"table_name": "t", "columns": []}, {"table_name": "t", "columns": ["a", "a"]}):
        with pytest.raises(ApiError):
            ddl.plan_create_index(bad)
    with pytest.raises(ApiError) as err:
        ddl.plan_create_index(
            {"table_name": "t", "columns": ["a"], "method": "gin", "unique": True}
        )
    assert err.value.code == "unsupported_index_method"
    with pytest.raises(ApiError) as err:
        ddl.plan_create_index({"table_name": "t", "columns": ["a"], "method": "btree; drop"})
    assert err.value.code == "unsupported_index_method"


def test_system_schemas_are_refused() -> None:
    for schema in ("pg_catalog", "information_schema", "pg_temp_1"):
        with pytest.raises(ApiError):
            ddl.plan_create_table({"schema_name": schema, "table_name": "t"})
