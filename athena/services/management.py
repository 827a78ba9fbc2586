"""Management DDL: run a validated plan from ``athena.query.ddl`` on a client database.

Every change runs in ONE transaction with its ``database_audit_log`` row(s): the audit table is
checked first (absent → 503 ``audit_log_missing``, nothing runs), existence is checked against
``pg_catalog`` inside the same transaction (404/409 as the spec says), then each statement and
its audit row are executed; any failure rolls everything back, so the schema is either changed
and audited or untouched. The introspection cache of the client is dropped afterwards.

A short ``lock_timeout`` keeps a DDL that waits behind long-running queries from queueing every
other request on that table behind it; it fails with 409 ``conflict`` instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from athena.context import CallContext
from athena.db.clients import ClientEntry, require_db
from athena.db.errors import api_error_from_db
from athena.errors import ApiError
from athena.query import ddl

if TYPE_CHECKING:
    from athena.runtime import Runtime

LOCK_TIMEOUT_MS = 5_000

_COLUMNS_SQL = """
SELECT coalesce(json_agg(json_build_object(
         'column_name', column_name, 'data_type', data_type, 'udt_name', udt_name,
         'column_default', column_default, 'is_nullable', is_nullable,
         'ordinal_position', ordinal_position) ORDER BY ordinal_position), '[]'::json)
  FROM information_schema.columns
 WHERE table_schema = %s AND table_name = %s
"""

_RELATION_SQL = """
SELECT c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %s AND c.relname = %s
"""

_TABLE_COLUMNS_SQL = """
SELECT a.attname, EXISTS (SELECT 1 FROM pg_index i
                           WHERE i.indrelid = a.attrelid AND i.indisprimary
                             AND a.attnum = ANY (i.indkey)) AS in_pk
  FROM pg_attribute a
 WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
"""


# -- capabilities --------------------------------------------------------------------------


def capabilities(audit_log_present: bool | None = None) -> dict[str, Any]:
    """The ``ManagementCapabilities`` document (plus what the allow-lists are)."""
    supported = [
        "create_table",
        "edit_table",
        *ddl.EDIT_OPERATIONS,
        "drop_table",
        "drop_column",
        "create_index",
        "drop_index",
    ]
    doc: dict[str, Any] = {
        "backend": "postgresql",
        "retention_mutation_supported": False,
        "replication_mutation_supported": False,
        "supported_operations": supported,
        "required_rights": [
            {"operation": op, "required_right": ddl.REQUIRED_RIGHTS[op]}
            for op in ["capabilities", *supported]
        ],
        "allowed_index_methods": list(ddl.ALLOWED_INDEX_METHODS),
        "allowed_column_data_types": list(ddl.ALLOWED_DATA_TYPES),
        "data_type_modifiers": {"varchar": "(n)", "char": "(n)", "numeric": "(p) or (p,s)"},
        "array_types_supported": True,
        "allowed_default_functions": sorted(ddl.DEFAULT_FUNCTIONS),
        "reserved_columns": list(ddl.RESERVED_COLUMNS),
        "protected_tables": sorted(ddl.PROTECTED_TABLES),
    }
    if audit_log_present is not None:
        doc["audit_log_present"] = audit_log_present
    return doc


async def client_capabilities(rt: Runtime, entry: ClientEntry) -> dict[str, Any]:
    def probe(conn: psycopg.Connection) -> bool:
        row = conn.execute("SELECT to_regclass('public.database_audit_log') IS NOT NULL").fetchone()
        return bool(row and row[0])

    try:
        present = await require_db(entry).run(probe)
    except ApiError:
        raise
    except Exception as exc:
        raise api_error_from_db(exc, client=entry.name) from None
    return capabilities(present)


# -- the one executor ----------------------------------------------------------------------


def _relkind(conn: psycopg.Connection, schema: str, name: str) -> str | None:
    row = conn.execute(_RELATION_SQL, (schema, name)).fetchone()
    return row[0] if row else None


def _require_table(conn: psycopg.Connection, schema: str, table: str) -> None:
    if _relkind(conn, schema, table) not in ("r", "p"):
        raise ApiError(
            "table_not_found",
            f"table '{schema}.{table}' does not exist",
            data={"schema_name": schema, "table_name": table},
        )


def _table_columns(conn: psycopg.Connection, schema: str, table: str) -> dict[str, bool]:
    """Column name → is part of the primary key."""
    target = ddl.qualified(schema, table).as_string(conn)
    return {name: in_pk for name, in_pk in conn.execute(_TABLE_COLUMNS_SQL, (target,))}


def _columns_json(conn: psycopg.Connection, schema: str, table: str) -> list[dict[str, Any]]:
    row = conn.execute(_COLUMNS_SQL, (schema, table)).fetchone()
    return list(row[0]) if row else []


def _audit_missing(entry: ClientEntry) -> ApiError:
    return ApiError(
        "audit_log_missing",
        f"the database of client '{entry.name}' has no database_audit_log table; "
        "provision it (POST /admin/provision) before using the management API",
        data={"client": entry.name, "missing_table": "database_audit_log"},
    )


async def _execute(
    rt: Runtime,
    ctx: CallContext,
    entry: ClientEntry,
    *,
    schema: str,
    table: str | Callable[[], str | None],
    statements: Callable[[psycopg.Connection], list[ddl.Statement]],
    result: Callable[[psycopg.Connection], dict[str, Any]],
) -> dict[str, Any]:
    """Check, run and audit ``statements(conn)`` in one transaction; return ``result(conn)``.

    ``statements`` runs inside the transaction so it can check the live schema first and raise
    404/409/400 before anything changes.
    """

    def work(conn: psycopg.Connection) -> tuple[dict[str, Any], list[str]]:
        with conn.transaction():
            conn.execute(
                sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{LOCK_TIMEOUT_MS}ms"))
            )
            present = conn.execute(
                "SELECT to_regclass('public.database_audit_log') IS NOT NULL"
            ).fetchone()
            if not (present and present[0]):
                raise _audit_missing(entry)
            planned = statements(conn)
            audit_ids: list[int] = []
            for st in planned:
                conn.execute(st.query)
                object_name = st.details.get("index") or st.details.get("column")
                table_name = table() if callable(table) else table
                row = conn.execute(
                    ddl.AUDIT_INSERT,
                    (
                        entry.name,
                        st.operation,
                        schema,
                        table_name,
                        object_name,
                        st.query.as_string(conn),
                        Jsonb(st.details),
                        ctx.key_public_id,
                        ctx.request_id,
                    ),
                ).fetchone()
                audit_ids.append(row[0] if row else 0)
            out = result(conn)
            out["audit_log_ids"] = audit_ids
            return out, [st.operation for st in planned]

    try:
        out, operations = await require_db(entry).run(work)
    except ApiError:
        raise
    except psycopg.Error as exc:
        if getattr(exc, "sqlstate", None) == "55P03":
            raise ApiError(
                "conflict",
                "the table is busy (locked by other queries); try again",
                data={"schema_name": schema},
            ) from None
        raise api_error_from_db(exc, client=entry.name) from None
    except Exception as exc:
        raise api_error_from_db(exc, client=entry.name) from None
    finally:
        # Whatever happened (even a failure after commit), the next read re-introspects.
        rt.introspection.invalidate(entry.name)
    for op in operations:
        rt.metrics.management_mutations.labels(op, entry.name).inc()
    # tell the other instances (and workers) to re-introspect
    await rt.client_catalog.note_schema_change(entry.name)
    ctx.table_name = table() if callable(table) else table
    return out


def _table_result(schema: str, table: str, client: str) -> Callable[[psycopg.Connection], Any]:
    def result(conn: psycopg.Connection) -> dict[str, Any]:
        return {
            "client": client,
            "schema_name": schema,
            "table_name": table,
            "columns": _columns_json(conn, schema, table),
        }

    return result


# -- operations ----------------------------------------------------------------------------


async def create_table(
    rt: Runtime, ctx: CallContext, entry: ClientEntry, body: dict[str, Any]
) -> dict[str, Any]:
    plan = ddl.plan_create_table(body)
    ctx.operation = "create_table"

    def statements(conn: psycopg.Connection) -> list[ddl.Statement]:
        if (
            conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (plan.schema,)).fetchone()
            is None
        ):
            raise ApiError(
                "unknown_schema",
                f"schema '{plan.schema}' does not exist",
                data={"schema_name": plan.schema},
            )
        if _relkind(conn, plan.schema, plan.table) is not None:
            raise ApiError(
                "table_exists",
                f"'{plan.schema}.{plan.table}' already exists",
                data={"schema_name": plan.schema, "table_name": plan.table},
            )
        return [plan.statement()]

    return await _execute(
        rt, ctx, entry, schema=plan.schema, table=plan.table, statements=statements,
        result=_table_result(plan.schema, plan.table, entry.name),
    )  # fmt: skip


async def edit_table(
    rt: Runtime, ctx: CallContext, entry: ClientEntry, table_name: str, body: dict[str, Any]
) -> dict[str, Any]:
    plan = ddl.plan_edit_table(table_name, body)
    ctx.operation = "edit_table"

    def statements(conn: psycopg.Connection) -> list[ddl.Statement]:
        _require_table(conn, plan.schema, plan.table)
        columns = set(_table_columns(conn, plan.schema, plan.table))
        # Walk the operations in order against the evolving column set, so that "add x" then
        # "rename x to y" in one request is valid and "rename a to b, add b" is not.
        for op in plan.operations:
            if op.type == "add_column":
                if op.column in columns:
                    raise _column_exists(plan.table, op.column)
                columns.add(op.column)
                continue
            if op.column not in columns:
                raise _column_not_found(plan.schema, plan.table, op.column)
            if op.type == "rename_column":
                assert op.new_name is not None
                if op.new_name in columns:
                    raise _column_exists(plan.table, op.new_name)
                columns.discard(op.column)
                columns.add(op.new_name)
        return plan.statements()

    out = await _execute(
        rt, ctx, entry, schema=plan.schema, table=plan.table, statements=statements,
        result=_table_result(plan.schema, plan.table, entry.name),
    )  # fmt: skip
    out["operations"] = [op.type for op in plan.operations]
    return out


async def drop_table(
    rt: Runtime, ctx: CallContext, entry: ClientEntry, table_name: str, body: dict[str, Any]
) -> dict[str, Any]:
    plan = ddl.plan_drop_table(table_name, body)
    ctx.operation = "drop_table"

    def statements(conn: psycopg.Connection) -> list[ddl.Statement]:
        _require_table(conn, plan.schema, plan.table)
        return [plan.statement()]

    def result(conn: psycopg.Connection) -> dict[str, Any]:
        return {
            "client": entry.name,
            "schema_name": plan.schema,
            "table_name": plan.table,
            "dropped": True,
            "cascade": plan.cascade,
        }

    return await _execute(
        rt, ctx, entry, schema=plan.schema, table=plan.table, statements=statements,
        result=result,
    )  # fmt: skip


async def drop_column(
    rt: Runtime,
    ctx: CallContext,
    entry: ClientEntry,
    table_name: str,
    column_name: str,
    body: dict[str, Any],
) -> dict[str, Any]:
    plan = ddl.plan_drop_column(table_name, column_name, body)
    ctx.operation = "drop_column"

    def statements(conn: psycopg.Connection) -> list[ddl.Statement]:
        _require_table(conn, plan.schema, plan.table)
        columns = _table_columns(conn, plan.schema, plan.table)
        if plan.column not in columns:
            raise _column_not_found(plan.schema, plan.table, plan.column)
        if columns[plan.column]:
            raise ApiError(
                "reserved_column",
                f"column '{plan.column}' is part of the primary key and cannot be dropped",
                data={"column": plan.column},
            )
        return [plan.statement()]

    out = await _execute(
        rt, ctx, entry, schema=plan.schema, table=plan.table, statements=statements,
        result=_table_result(plan.schema, plan.table, entry.name),
    )  # fmt: skip
    out["dropped_column"] = plan.column
    return out


async def create_index(
    rt: Runtime, ctx: CallContext, entry: ClientEntry, body: dict[str, Any]
) -> dict[str, Any]:
    plan = ddl.plan_create_index(body)
    ctx.operation = "create_index"

    def statements(conn: psycopg.Connection) -> list[ddl.Statement]:
        _require_table(conn, plan.schema, plan.table)
        columns = _table_columns(conn, plan.schema, plan.table)
        for col in plan.columns:
            if col not in columns:
                raise ApiError(
                    "unknown_column",
                    f"column '{col}' does not exist on '{plan.schema}.{plan.table}'",
                    data={"column": col, "table_name": plan.table},
                )
        if _relkind(conn, plan.schema, plan.index) is not None:
            raise ApiError(
                "index_exists",
                f"a relation named '{plan.schema}.{plan.index}' already exists",
                data={"schema_name": plan.schema, "index_name": plan.index},
            )
        return [plan.statement()]

    def result(conn: psycopg.Connection) -> dict[str, Any]:
        return {
            "client": entry.name,
            "schema_name": plan.schema,
            "table_name": plan.table,
            "index_name": plan.index,
            "columns": list(plan.columns),
            "unique": plan.unique,
            "method": plan.method,
        }

    return await _execute(
        rt, ctx, entry, schema=plan.schema, table=plan.table, statements=statements,
        result=result,
    )  # fmt: skip


_INDEX_SQL = """
SELECT t.relname, EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = c.oid)
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_index i ON i.indexrelid = c.oid
  JOIN pg_class t ON t.oid = i.indrelid
 WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('i', 'I')
"""


async def drop_index(
    rt: Runtime, ctx: CallContext, entry: ClientEntry, index_name: str, body: dict[str, Any]
) -> dict[str, Any]:
    plan = ddl.plan_drop_index(index_name, body)
    ctx.operation = "drop_index"
    found: dict[str, str] = {}

    def statements(conn: psycopg.Connection) -> list[ddl.Statement]:
        row = conn.execute(_INDEX_SQL, (plan.schema, plan.index)).fetchone()
        if row is None:
            raise ApiError(
                "index_not_found",
                f"index '{plan.schema}.{plan.index}' does not exist",
                data={"schema_name": plan.schema, "index_name": plan.index},
            )
        table, backs_constraint = row
        if backs_constraint or table in ddl.PROTECTED_TABLES:
            raise ApiError(
                "invalid_request",
                f"index '{plan.index}' backs a constraint or an Athena table and cannot be dropped",
                data={"index_name": plan.index},
            )
        found["table"] = table
        return [plan.statement()]

    def result(conn: psycopg.Connection) -> dict[str, Any]:
        return {
            "client": entry.name,
            "schema_name": plan.schema,
            "table_name": found.get("table"),
            "index_name": plan.index,
            "dropped": True,
        }

    # the audit row's table_name is found from the index inside the transaction
    return await _execute(
        rt, ctx, entry, schema=plan.schema, table=lambda: found.get("table"),
        statements=statements,
        result=result,
    )  # fmt: skip


def _column_exists(table: str, column: str) -> ApiError:
    return ApiError(
        "column_exists",
        f"column '{column}' already exists on '{table}'",
        data={"column": column, "table_name": table},
    )


def _column_not_found(schema: str, table: str, column: str) -> ApiError:
    return ApiError(
        "column_not_found",
        f"column '{column}' does not exist on '{schema}.{table}'",
        data={"column": column, "table_name": table},
    )
