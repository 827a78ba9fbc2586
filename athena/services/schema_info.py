"""Read-only schema routes: ``/schema/tables``, ``/schema/columns``, ``/schema/migrations``.

These read ``information_schema`` live (not the introspection cache): they are what an operator
uses to see the effect of a change, so they must never show a stale picture. PostgreSQL builds
the JSON; Python passes the text through.

Who may read: the spec names only ``X-Athena-Client``. Table and column names are metadata of
the client's data, so we ask what a data read asks: with enforcement on for the client, a key
valid for it holding ``management.read`` or ``gateway.read`` (the master key always passes);
with enforcement off, anyone. Frozen clients can still be read (admin reads keep working).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import psycopg

from athena.auth.guard import authorize
from athena.context import CallContext
from athena.db.clients import ClientEntry, require_db
from athena.db.errors import api_error_from_db
from athena.errors import ApiError
from athena.query import ddl

if TYPE_CHECKING:
    from athena.runtime import Runtime

T = TypeVar("T")
READ_RIGHTS = ("management.read", "gateway.read")

_TABLES_SQL = """
SELECT coalesce(json_agg(json_build_object(
         'table_schema', table_schema, 'table_name', table_name, 'table_type', table_type)
         ORDER BY table_schema, table_name), '[]'::json)::text
  FROM information_schema.tables
 WHERE table_schema NOT IN ('pg_catalog', 'information_schema')
   AND table_schema NOT LIKE 'pg\\_%%'
   AND (%s::text IS NULL OR table_schema = %s::text)
"""

_COLUMNS_SQL = """
SELECT count(*), coalesce(json_agg(json_build_object(
         'column_name', column_name, 'data_type', data_type, 'udt_name', udt_name,
         'column_default', column_default, 'is_nullable', is_nullable,
         'ordinal_position', ordinal_position, 'table_schema', table_schema,
         'table_name', table_name) ORDER BY ordinal_position), '[]'::json)::text
  FROM information_schema.columns
 WHERE table_schema = %s AND table_name = %s
"""

_RELATION_EXISTS_SQL = """
SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relname = %s AND (%s::text IS NULL OR n.nspname = %s::text)
   AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
 ORDER BY n.nspname <> 'public', n.nspname
 LIMIT 1
"""

_MIGRATIONS_TABLE = "supabase_migrations.schema_migrations"
# ``name`` only exists in newer Supabase CLIs: read it through to_jsonb so both layouts work.
_MIGRATIONS_SQL = """
SELECT coalesce(json_agg(json_build_object(
         'version', m.version::text, 'name', to_jsonb(m)->>'name')
         ORDER BY m.version), '[]'::json)::text
  FROM supabase_migrations.schema_migrations m
"""


async def authorize_schema_read(rt: Runtime, ctx: CallContext, entry: ClientEntry) -> None:
    """401/403 unless the caller may read this client's schema (see the module docstring)."""
    principal = await authorize(rt, ctx, entry.name, None)
    if principal.is_master or principal.anonymous:
        return
    if not (await rt.auth_store.enforcement()).applies_to(entry.name):
        return
    if not any(principal.can(right) for right in READ_RIGHTS):
        raise ApiError(
            "insufficient_rights",
            "reading the schema needs the right 'management.read' or 'gateway.read'",
            data={"required_right": "management.read"},
        )


async def _run(entry: ClientEntry, fn: Callable[[psycopg.Connection], T]) -> T:
    """``fn`` on the client's pool; database failures become their API errors (503 if down)."""
    try:
        return await require_db(entry).run(fn)
    except ApiError:
        raise
    except Exception as exc:
        raise api_error_from_db(exc, client=entry.name) from None


async def tables_json(entry: ClientEntry, schema: str | None) -> str:
    """``[{table_schema, table_name, table_type}]`` as JSON text."""

    def fetch(conn: psycopg.Connection) -> str:
        row = conn.execute(_TABLES_SQL, (schema, schema)).fetchone()
        return row[0] if row else "[]"

    return await _run(entry, fetch)


def split_table_param(table: str | None, schema: str | None) -> tuple[str | None, str]:
    """``table_name`` (``schema.table`` accepted) and an optional ``schema_name``, validated."""
    if not table:
        raise ApiError(
            "invalid_request",
            "the query parameter table_name is required",
            data={"details": {"missing_parameter": "table_name"}},
        )
    if "." in table:
        schema_part, _, table = table.partition(".")
        if schema and schema != schema_part:
            raise ApiError("invalid_request", "schema in table_name and schema_name disagree")
        schema = schema_part
    if schema is not None:
        schema = ddl.identifier(schema, "schema_name")
    return schema, ddl.identifier(table, "table_name")


async def columns_json(entry: ClientEntry, table: str, schema: str | None) -> str:
    """The table's ``information_schema.columns`` as JSON text; 400 ``unknown_table``."""

    def fetch(conn: psycopg.Connection) -> str | None:
        found = conn.execute(_RELATION_EXISTS_SQL, (table, schema, schema)).fetchone()
        if found is None:
            return None
        row = conn.execute(_COLUMNS_SQL, (found[0], table)).fetchone()
        return row[1] if row else "[]"

    text = await _run(entry, fetch)
    if text is None:
        shown = f"{schema}.{table}" if schema else table
        raise ApiError(
            "unknown_table", f"table or view '{shown}' does not exist", data={"table": shown}
        )
    return text


async def migrations_json(entry: ClientEntry) -> str | None:
    """Supabase migrations as JSON text, or None when the migrations table does not exist."""

    def fetch(conn: psycopg.Connection) -> str | None:
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (_MIGRATIONS_TABLE,))
        row = exists.fetchone()
        if not (row and row[0]):
            return None
        found = conn.execute(_MIGRATIONS_SQL).fetchone()
        return found[0] if found else "[]"

    return await _run(entry, fetch)
