"""The live schema of each client database, cached: relations, columns, keys, foreign keys
and the functions callable over ``/rpc``.

Every identifier a request names is checked here before any SQL exists. The cache is loaded in
one query per client (PostgreSQL builds the JSON), refreshed after DDL made through Athena
(``invalidate``) and on a miss: a cheap catalog lookup first tells whether the missing table or
column really exists now, and only then is the whole schema reloaded, so random names cannot
turn into a storm of reloads.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import psycopg
import trio

from athena.errors import ApiError

if TYPE_CHECKING:
    from athena.db.clients import ClientEntry

MISS_REFRESH_SECONDS = 1.0
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")

_LOAD_SQL = """
SELECT coalesce(json_agg(rel ORDER BY rel->>'schema', rel->>'name'), '[]'::json)
FROM (
  SELECT json_build_object(
    'schema', n.nspname,
    'name', c.relname,
    'kind', c.relkind,
    'columns', (
      SELECT coalesce(json_agg(json_build_object(
               'name', a.attname,
               'type', format_type(a.atttypid, a.atttypmod),
               'udt', t.typname,
               'category', t.typcategory,
               'nullable', NOT a.attnotnull,
               'has_default', a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '',
               'generated', a.attgenerated <> '',
               'position', a.attnum) ORDER BY a.attnum), '[]'::json)
        FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
       WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
    'primary_key', (
      SELECT coalesce(json_agg(a.attname ORDER BY k.ord), '[]'::json)
        FROM pg_constraint pk
        CROSS JOIN LATERAL unnest(pk.conkey) WITH ORDINALITY AS k(attnum, ord)
        JOIN pg_attribute a ON a.attrelid = pk.conrelid AND a.attnum = k.attnum
       WHERE pk.conrelid = c.oid AND pk.contype = 'p'),
    'unique', (
      SELECT coalesce(json_agg(cols), '[]'::json) FROM (
        SELECT json_agg(a.attname ORDER BY k.ord) AS cols
          FROM pg_constraint u
          CROSS JOIN LATERAL unnest(u.conkey) WITH ORDINALITY AS k(attnum, ord)
          JOIN pg_attribute a ON a.attrelid = u.conrelid AND a.attnum = k.attnum
         WHERE u.conrelid = c.oid AND u.contype IN ('u', 'p')
         GROUP BY u.oid) uq),
    'foreign_keys', (
      SELECT coalesce(json_agg(json_build_object(
               'name', fk.conname,
               'columns', (SELECT json_agg(a.attname ORDER BY k.ord)
                             FROM unnest(fk.conkey) WITH ORDINALITY AS k(attnum, ord)
                             JOIN pg_attribute a ON a.attrelid = fk.conrelid AND a.attnum = k.attnum),
               'ref_schema', rn.nspname,
               'ref_table', rc.relname,
               'ref_columns', (SELECT json_agg(a.attname ORDER BY k.ord)
                                 FROM unnest(fk.confkey) WITH ORDINALITY AS k(attnum, ord)
                                 JOIN pg_attribute a ON a.attrelid = fk.confrelid
                                                    AND a.attnum = k.attnum))), '[]'::json)
        FROM pg_constraint fk
        JOIN pg_class rc ON rc.oid = fk.confrelid
        JOIN pg_namespace rn ON rn.oid = rc.relnamespace
       WHERE fk.conrelid = c.oid AND fk.contype = 'f')
  ) AS rel
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'v', 'm', 'f', 'p')
    AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
    AND n.nspname NOT LIKE 'pg_temp_%%' AND n.nspname NOT LIKE 'pg_toast_temp_%%'
) s
"""

# Functions callable over /rest/v1/rpc (PostgREST's schema cache of routines): plain functions
# (no procedures, aggregates or window functions) outside the system schemas, with their IN
# parameters in order and what they return. ``format_type`` names the types as SQL text.
_ROUTINES_SQL = """
SELECT coalesce(json_agg(json_build_object(
    'schema', n.nspname,
    'name', p.proname,
    'volatility', p.provolatile,
    'defaults', p.pronargdefaults,
    'returns_set', p.proretset,
    'return_type', format_type(p.prorettype, NULL),
    'return_typtype', rt.typtype,
    'return_table', (SELECT json_build_array(cn.nspname, c.relname)
                       FROM pg_class c JOIN pg_namespace cn ON cn.oid = c.relnamespace
                      WHERE c.oid = rt.typrelid AND c.relkind IN ('r', 'v', 'm', 'f', 'p')),
    'return_columns', CASE
      WHEN rt.typrelid <> 0 THEN (
        SELECT coalesce(json_agg(json_build_array(a.attname, format_type(a.atttypid, a.atttypmod))
                                 ORDER BY a.attnum), '[]'::json)
          FROM pg_attribute a
         WHERE a.attrelid = rt.typrelid AND a.attnum > 0 AND NOT a.attisdropped)
      ELSE (
        SELECT coalesce(json_agg(json_build_array(arg.name, format_type(arg.type, NULL))
                                 ORDER BY arg.ord), '[]'::json)
          FROM (SELECT p.proargnames[o.ord] AS name, o.type, o.ord, p.proargmodes[o.ord] AS mode
                  FROM unnest(p.proallargtypes) WITH ORDINALITY AS o(type, ord)) arg
         WHERE arg.mode IN ('o', 'b', 't'))
    END,
    'params', (
      SELECT coalesce(json_agg(json_build_object(
               'name', coalesce(arg.name, ''),
               'type', format_type(arg.type, NULL),
               'variadic', arg.mode = 'v') ORDER BY arg.ord), '[]'::json)
        FROM (SELECT p.proargnames[o.ord] AS name, o.type, o.ord,
                     coalesce(p.proargmodes[o.ord], 'i') AS mode
                FROM unnest(coalesce(p.proallargtypes, p.proargtypes::oid[]))
                     WITH ORDINALITY AS o(type, ord)) arg
       WHERE arg.mode IN ('i', 'b', 'v'))
  ) ORDER BY n.nspname, p.proname, p.oid), '[]'::json)
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
JOIN pg_type rt ON rt.oid = p.prorettype
WHERE p.prokind = 'f'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
  AND n.nspname NOT LIKE 'pg_temp_%%' AND n.nspname NOT LIKE 'pg_toast_temp_%%'
  -- trigger functions and those over internal types cannot be called with arguments from a URL
  AND format_type(p.prorettype, NULL) NOT IN ('trigger', 'event_trigger', 'internal',
                                              'language_handler', 'fdw_handler',
                                              'index_am_handler', 'table_am_handler')
"""

_ROUTINE_EXISTS_SQL = """
SELECT EXISTS (
  SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
   WHERE p.proname = %(name)s AND n.nspname = %(schema)s AND p.prokind = 'f')
"""

_EXISTS_SQL = """
SELECT EXISTS (
  SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.relname = %(name)s
     AND (%(schema)s::text IS NULL OR n.nspname = %(schema)s::text)
     AND c.relkind IN ('r', 'v', 'm', 'f', 'p')
     AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
     AND (%(column)s::text IS NULL OR EXISTS (
           SELECT 1 FROM pg_attribute a
            WHERE a.attrelid = c.oid AND a.attname = %(column)s::text
              AND a.attnum > 0 AND NOT a.attisdropped)))
"""

_KIND_NAMES = {
    "r": "table",
    "p": "table",
    "v": "view",
    "m": "materialized_view",
    "f": "foreign_table",
}


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # format_type(), e.g. "character varying(20)", "timestamp with time zone"
    udt: str  # the type's name, e.g. "varchar", "timestamptz", "_int4"
    category: str  # pg_type.typcategory: N numeric, S string, D datetime, B bool, U user, A array
    nullable: bool
    has_default: bool
    generated: bool
    position: int

    @property
    def is_json(self) -> bool:
        return self.udt in ("json", "jsonb")

    @property
    def is_array(self) -> bool:
        return self.category == "A"


@dataclass(frozen=True)
class ForeignKey:
    name: str
    columns: tuple[str, ...]
    ref_schema: str
    ref_table: str
    ref_columns: tuple[str, ...]


@dataclass(frozen=True)
class Relation:
    schema: str
    name: str
    kind: str  # table | view | materialized_view | foreign_table
    columns: dict[str, Column]
    primary_key: tuple[str, ...]
    unique: tuple[tuple[str, ...], ...]
    foreign_keys: tuple[ForeignKey, ...]

    @property
    def qualified(self) -> tuple[str, str]:
        return (self.schema, self.name)

    @property
    def is_table(self) -> bool:
        return self.kind == "table"

    def column(self, name: str) -> Column:
        """The column, or 400 ``unknown_column`` naming it."""
        col = self.columns.get(name)
        if col is None:
            raise ApiError(
                "unknown_column",
                f"column '{name}' does not exist on '{self.name}'",
                data={"column": name, "table": self.name},
            )
        return col


def split_name(name: str, schema: str | None = None) -> tuple[str, str]:
    """``(schema, table)``: ``schema.table`` is split, a bare name is ``public``."""
    if schema is None and "." in name:
        schema, _, name = name.partition(".")
    return schema or "public", name


def exposed_schemas(setting: str) -> list[str]:
    """``public`` plus ``ATHENA_REST_SCHEMAS``: the schemas any data route may name."""
    extra = [s.strip() for s in setting.split(",") if s.strip()]
    return ["public", *[s for s in extra if s != "public"]]


@dataclass(frozen=True)
class RoutineParam:
    name: str  # "" for an unnamed parameter
    type: str  # format_type()
    required: bool  # no DEFAULT
    variadic: bool = False


@dataclass(frozen=True)
class Routine:
    """A function as the schema cache knows it (PostgREST's ``Routine``)."""

    schema: str
    name: str
    params: tuple[RoutineParam, ...]
    volatility: str  # "immutable" | "stable" | "volatile"
    returns_set: bool
    return_type: str  # format_type(), e.g. "integer", "void", "record", "countries"
    # "composite" (a row type, or TABLE/OUT columns), "scalar" or "void"
    return_kind: str
    return_columns: tuple[tuple[str, str], ...]  # (name, type) of a composite result
    return_table: tuple[str, str] | None  # the table whose row type it returns, if any

    @property
    def qualified(self) -> tuple[str, str]:
        return (self.schema, self.name)


_VOLATILITY = {"i": "immutable", "s": "stable", "v": "volatile"}


def parse_routines(items: list[dict[str, object]]) -> dict[tuple[str, str], list[Routine]]:
    routines: dict[tuple[str, str], list[Routine]] = {}
    for item in items:
        raw_params = item["params"] or []
        optional = int(item["defaults"] or 0)  # type: ignore[call-overload]
        count = len(raw_params)  # type: ignore[arg-type]
        params = tuple(
            RoutineParam(p["name"], p["type"], i < count - optional, bool(p["variadic"]))
            for i, p in enumerate(raw_params)  # type: ignore[arg-type]
        )
        rtype = str(item["return_type"])
        typtype = item["return_typtype"]
        columns = tuple(tuple(c) for c in (item["return_columns"] or []))  # type: ignore[union-attr]
        if rtype == "void":
            kind = "void"
        elif typtype == "c" or (rtype == "record" and columns):
            kind = "composite"
        else:
            kind = "scalar"
        table = item["return_table"]
        routine = Routine(
            schema=str(item["schema"]),
            name=str(item["name"]),
            params=params,
            volatility=_VOLATILITY.get(str(item["volatility"]), "volatile"),
            returns_set=bool(item["returns_set"]),
            return_type=rtype,
            return_kind=kind,
            return_columns=columns,  # type: ignore[arg-type]
            return_table=tuple(table) if table else None,  # type: ignore[arg-type]
        )
        routines.setdefault(routine.qualified, []).append(routine)
    return routines


@dataclass
class SchemaSnapshot:
    relations: dict[tuple[str, str], Relation]
    loaded_at: float = field(default_factory=time.monotonic)
    # functions by (schema, name); a name may carry several overloads
    routines: dict[tuple[str, str], list[Routine]] = field(default_factory=dict)

    def find(self, name: str, schema: str | None = None) -> Relation | None:
        """Look up ``name`` (``schema.table`` accepted); a bare name is a ``public`` relation,
        never one found in another schema (rights name ``public`` tables by bare names)."""
        schema, name = split_name(name, schema)
        return self.relations.get((schema, name))

    def referencing(self, target: Relation) -> list[tuple[Relation, ForeignKey]]:
        """Foreign keys from any relation that point at ``target`` (for one-to-many embeds)."""
        found = []
        for rel in self.relations.values():
            for fk in rel.foreign_keys:
                if (fk.ref_schema, fk.ref_table) == target.qualified:
                    found.append((rel, fk))
        return found


def parse_snapshot(payload: list[dict[str, object]] | str) -> SchemaSnapshot:
    items = json.loads(payload) if isinstance(payload, str) else payload
    relations: dict[tuple[str, str], Relation] = {}
    for item in items:
        cols = {c["name"]: Column(**c) for c in item["columns"]}  # type: ignore[union-attr,index]
        rel = Relation(
            schema=item["schema"],  # type: ignore[arg-type]
            name=item["name"],  # type: ignore[arg-type]
            kind=_KIND_NAMES.get(item["kind"], "table"),  # type: ignore[arg-type]
            columns=cols,
            primary_key=tuple(item["primary_key"]),  # type: ignore[arg-type]
            unique=tuple(tuple(u) for u in item["unique"]),  # type: ignore[union-attr]
            foreign_keys=tuple(
                ForeignKey(
                    fk["name"],
                    tuple(fk["columns"]),
                    fk["ref_schema"],
                    fk["ref_table"],
                    tuple(fk["ref_columns"]),
                )
                for fk in item["foreign_keys"]  # type: ignore[union-attr]
            ),
        )
        relations[rel.qualified] = rel
    return SchemaSnapshot(relations)


def load_snapshot(conn: psycopg.Connection) -> SchemaSnapshot:
    row = conn.execute(_LOAD_SQL).fetchone()
    snap = parse_snapshot(row[0] if row else [])
    row = conn.execute(_ROUTINES_SQL).fetchone()
    snap.routines = parse_routines(row[0] if row else [])
    return snap


class IntrospectionCache:
    """Per-client ``SchemaSnapshot``s."""

    def __init__(self, exposed: list[str] | None = None) -> None:
        # One rule for /gateway/*, /rest/v1, WebSocket and pipelines: bare names are public;
        # other schemas only when exposed (ATHENA_REST_SCHEMAS) and named.
        self.exposed = exposed or ["public"]
        self._snapshots: dict[str, SchemaSnapshot] = {}
        self._locks: dict[str, trio.Lock] = {}

    def invalidate(self, client: str | None = None) -> None:
        if client is None:
            self._snapshots.clear()
        else:
            self._snapshots.pop(client, None)

    async def snapshot(self, entry: ClientEntry, *, refresh: bool = False) -> SchemaSnapshot:
        from athena.db.clients import require_db
        from athena.db.errors import api_error_from_db

        current = self._snapshots.get(entry.name)
        if current is not None and not refresh:
            return current
        lock = self._locks.setdefault(entry.name, trio.Lock())
        async with lock:
            latest = self._snapshots.get(entry.name)
            if latest is not None and latest is not current:
                return latest  # someone refreshed while we waited
            try:
                snap = await require_db(entry).run(load_snapshot)
            except Exception as exc:
                raise api_error_from_db(exc, client=entry.name) from None
            self._snapshots[entry.name] = snap
            return snap

    async def _exists(
        self, entry: ClientEntry, name: str, schema: str | None, column: str | None
    ) -> bool:
        """One cheap catalog lookup: does the relation (and column) exist in the database now?"""
        from athena.db.clients import require_db
        from athena.db.errors import api_error_from_db

        if schema is None and "." in name:
            schema, _, name = name.partition(".")
        params = {"name": name, "schema": schema, "column": column}
        try:
            row = await require_db(entry).run(
                lambda conn: conn.execute(_EXISTS_SQL, params).fetchone()
            )
        except Exception as exc:
            raise api_error_from_db(exc, client=entry.name) from None
        return bool(row and row[0])

    async def routines(self, entry: ClientEntry, name: str, schema: str) -> list[Routine]:
        """The overloads of function ``schema.name`` (empty when there is none).

        A miss is checked the way ``relation`` checks one: one cheap catalog lookup, and a
        reload only when the function exists now (created since the cache was loaded).
        """
        from athena.db.clients import require_db
        from athena.db.errors import api_error_from_db

        snap = await self.snapshot(entry)
        found = snap.routines.get((schema, name))
        if found:
            return found
        params = {"name": name, "schema": schema}
        try:
            row = await require_db(entry).run(
                lambda conn: conn.execute(_ROUTINE_EXISTS_SQL, params).fetchone()
            )
        except Exception as exc:
            raise api_error_from_db(exc, client=entry.name) from None
        if not (row and row[0]):
            return []
        snap = await self.snapshot(entry, refresh=True)
        return snap.routines.get((schema, name), [])

    async def relation(
        self,
        entry: ClientEntry,
        name: str,
        schema: str | None = None,
        *,
        stale: bool = False,
        column: str | None = None,
    ) -> Relation:
        """The relation ``name`` of the client, or 400 ``unknown_table`` naming it.

        A miss never trusts the cache alone: one cheap catalog lookup tells whether the
        relation exists now (created outside Athena, or by another instance), and only then is
        the schema reloaded. Random names therefore cost one small query each, never a reload.
        ``column``: the caller's plan names this column and the cached relation lacks it; it is
        looked up the same way. ``stale=True`` reloads when the snapshot is older than
        ``MISS_REFRESH_SECONDS``.
        """
        schema, name = split_name(name, schema)
        if schema not in self.exposed:
            raise ApiError(
                "schema_not_exposed",
                f"schema '{schema}' is not exposed; bare names are public tables, other schemas "
                f"must be listed in ATHENA_REST_SCHEMAS (exposed: {', '.join(self.exposed)})",
                data={"schema": schema, "exposed": list(self.exposed)},
            )
        snap = await self.snapshot(entry)
        if stale and time.monotonic() - snap.loaded_at > MISS_REFRESH_SECONDS:
            snap = await self.snapshot(entry, refresh=True)
        rel = snap.find(name, schema)
        if rel is None and await self._exists(entry, name, schema, None):
            snap = await self.snapshot(entry, refresh=True)
            rel = snap.find(name, schema)
        elif (
            rel is not None
            and column is not None
            and column not in rel.columns
            and await self._exists(entry, rel.name, rel.schema, column)
        ):
            snap = await self.snapshot(entry, refresh=True)
            rel = snap.find(name, schema)
        if rel is None:
            shown = name if schema == "public" else f"{schema}.{name}"
            raise ApiError(
                "unknown_table",
                f"table or view '{shown}' does not exist",
                data={"table": shown},
            )
        return rel
