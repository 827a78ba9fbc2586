"""A Postgres function call as the rows of a read (pure): ``/rest/v1/rpc``, ``/gateway/rpc``.

The call runs once, in a ``MATERIALIZED`` CTE named ``pgrst_call``; the read builder then
filters, orders, pages, counts and projects its rows exactly as it does a table's
(``build_read(source=…)``), so a set-returning function behaves like a table, and one returning
``SETOF <table>`` can even embed that table's relations. Arguments are bound parameters:

* ``direct`` (GET): text values, each cast to its parameter's type (``"a" := %(a0)s::int``);
* ``json`` (POST): the JSON object, typed by ``json_to_record`` into the parameters;
* ``single`` (POST, one json/jsonb parameter): the whole body as that one argument.

Type names come from the schema cache (``format_type`` of the function's own parameters, text
PostgreSQL wrote), never from the request, as PostgREST does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from psycopg import sql

from athena.db.introspection import Column, Relation, Routine, RoutineParam, SchemaSnapshot

CALL_SOURCE = "pgrst_call"
SCALAR_COLUMN = "pgrst_scalar"


@dataclass(frozen=True)
class CallArgs:
    kind: Literal["none", "direct", "json", "single"]
    params: tuple[RoutineParam, ...] = ()  # the parameters given, in the function's order
    direct: dict[str, str] = field(default_factory=dict)
    body: str | None = None  # the JSON text (json / single)


def _type(param_type: str) -> sql.SQL:
    # format_type() output of the function's own parameter, from the catalog: SQL text that
    # PostgreSQL wrote, never request input
    return sql.SQL(param_type)


def _named(param: RoutineParam, value: sql.Composable) -> sql.Composable:
    prefix = sql.SQL("VARIADIC ") if param.variadic else sql.SQL("")
    return sql.SQL("{}{} := {}").format(prefix, sql.Identifier(param.name), value)


def call_from(routine: Routine, args: CallArgs) -> tuple[sql.Composable, dict[str, Any]]:
    """The FROM items that call the function once, aliased ``pgrst_f``, and their params."""
    fn = sql.Identifier(routine.schema, routine.name)
    params: dict[str, Any] = {}
    alias = (
        sql.SQL("pgrst_f")
        if routine.return_kind == "composite"
        else sql.SQL("pgrst_f({})").format(sql.Identifier(SCALAR_COLUMN))
    )
    if args.kind == "single":
        params["pgrst_body"] = args.body
        only = routine.params[0]
        call = sql.SQL("{}({}::{})").format(fn, sql.Placeholder("pgrst_body"), _type(only.type))
        return sql.SQL("{} AS {}").format(call, alias), params
    if args.kind == "direct":
        values = []
        for i, param in enumerate(args.params):
            name = f"a{i}"
            params[name] = args.direct[param.name]
            values.append(
                _named(param, sql.SQL("{}::{}").format(sql.Placeholder(name), _type(param.type)))
            )
        call = sql.SQL("{}({})").format(fn, sql.SQL(", ").join(values))
        return sql.SQL("{} AS {}").format(call, alias), params
    if args.kind == "json" and args.params:
        params["pgrst_body"] = args.body
        typed = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(p.name), _type(p.type)) for p in args.params
        )
        values = [_named(p, sql.Identifier("pgrst_args", p.name)) for p in args.params]
        return (
            sql.SQL("json_to_record({}::json) AS pgrst_args({}), LATERAL {}({}) AS {}").format(
                sql.Placeholder("pgrst_body"), typed, fn, sql.SQL(", ").join(values), alias
            ),
            params,
        )
    return sql.SQL("{}() AS {}").format(fn, alias), params


def call_prelude(routine: Routine, args: CallArgs) -> tuple[sql.Composable, dict[str, Any]]:
    """``WITH pgrst_call AS MATERIALIZED (…)``: the function runs once, whatever reads it."""
    from_items, params = call_from(routine, args)
    if routine.return_kind == "composite":
        rows = sql.SQL("SELECT pgrst_f.* FROM {}").format(from_items)
    else:
        rows = sql.SQL("SELECT pgrst_f.{} AS {} FROM {}").format(
            sql.Identifier(SCALAR_COLUMN), sql.Identifier(result_column(routine)), from_items
        )
    prelude = sql.SQL("WITH {} AS MATERIALIZED ({}) ").format(sql.Identifier(CALL_SOURCE), rows)
    return prelude, params


def result_column(routine: Routine) -> str:
    """A scalar result is one column named after the function (``?fn=gt.1`` filters it)."""
    return routine.name


def result_relation(snapshot: SchemaSnapshot, routine: Routine) -> Relation:
    """The result as a relation the read builder understands: the table itself for
    ``SETOF <table>`` (so its foreign keys embed), else the function's own columns."""
    if routine.return_kind == "composite" and routine.return_table is not None:
        table = snapshot.relations.get(routine.return_table)
        if table is not None:
            return table
    if routine.return_kind == "composite":
        columns = routine.return_columns
    else:
        columns = ((result_column(routine), routine.return_type),)
    return Relation(
        schema=routine.schema,
        name=routine.name,
        kind="function",
        columns={
            name: Column(
                name=name,
                type=ctype,
                udt=ctype.split("(")[0].removesuffix("[]"),
                category="A" if ctype.endswith("[]") else "U",
                nullable=True,
                has_default=False,
                generated=False,
                position=i + 1,
            )
            for i, (name, ctype) in enumerate(columns)
        },
        primary_key=(),
        unique=(),
        foreign_keys=(),
    )


def with_prelude(
    prelude: sql.Composable, prelude_params: dict[str, Any], query: sql.Composable,
    params: dict[str, Any],
) -> tuple[sql.Composed, dict[str, Any]]:  # fmt: skip
    """``WITH pgrst_call … <the read>``, with both parameter sets (their names never clash:
    ``a<n>``/``pgrst_body`` here, ``p<n>`` in the read builder)."""
    return sql.Composed([prelude, query]), {**prelude_params, **params}
