"""Insert, upsert, update and delete → one statement each, returning the JSON rows (pure).

Every statement has the shape ``WITH w AS (<write> RETURNING …) SELECT <json>, count(*) FROM w``
so one round trip writes, returns the affected rows as JSON text built by PostgreSQL, and counts
them; the statement is its own transaction (all rows or none).

Inserts bind the whole row array as ONE json parameter and let PostgreSQL convert each value to
its column's type (``json_populate_recordset``): 1 or 10,000 rows are the same statement text,
so it is rendered once per shape and prepared by the server. Rows that name different columns
are inserted by one CTE per column set, so a missing column gets its DEFAULT, not NULL.

``build_insert`` is reused by the pipelines sink.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from psycopg import sql

from athena.errors import ApiError
from athena.query.conditions import Node, plan_where, scalar_text, where_sql
from athena.query.fetch import check_columns, json_rows, select_list

if TYPE_CHECKING:
    from athena.db.introspection import Column, Relation

_ROW_ALIAS = "_athena_row"


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def set_value(column: Column, value: Any) -> str | None:
    """A JSON value as the text to assign to ``column`` (json columns get the JSON itself)."""
    if value is None:
        return None
    if column.is_json:
        return _dumps(value)
    return scalar_text(value, column)


def _conflict_columns(relation: Relation, on_conflict: Any) -> tuple[str, ...]:
    if on_conflict in (None, "", []):
        if not relation.primary_key:
            raise ApiError(
                "invalid_request",
                f"'{relation.name}' has no primary key; name the conflict columns in on_conflict",
                data={"field": "on_conflict"},
            )
        return relation.primary_key
    if isinstance(on_conflict, str):
        names = [c.strip() for c in on_conflict.split(",") if c.strip()]
    elif isinstance(on_conflict, list) and all(isinstance(c, str) for c in on_conflict):
        names = [c.strip() for c in on_conflict if c.strip()]
    else:
        raise ApiError("invalid_request", "on_conflict must be a column name or a list of them")
    for name in names:
        relation.column(name)
    return tuple(dict.fromkeys(names))


# -- insert / upsert ---------------------------------------------------------------------------


@dataclass(frozen=True)
class InsertRequest:
    """What an insert body asks for; ``rows`` are JSON objects."""

    rows: tuple[dict[str, Any], ...]
    returning: tuple[str, ...] | None = None  # None = every column
    on_conflict: Any = None
    update_body: dict[str, Any] | None = None
    upsert: bool = False  # on_conflict without update_body: update with the inserted values
    ignore_duplicates: bool = False
    default_to_null: bool = False
    strip_nulls: bool = False


def insert_rows(raw: Any) -> tuple[dict[str, Any], ...]:
    """``insert_body`` as a tuple of objects; 400 for anything else or an empty array."""
    if isinstance(raw, dict):
        return (raw,)
    if isinstance(raw, list) and raw and all(isinstance(r, dict) for r in raw):
        return tuple(raw)
    if isinstance(raw, list) and not raw:
        raise ApiError("invalid_request", "insert_body is an empty array: nothing to insert")
    raise ApiError(
        "invalid_request",
        "insert_body must be an object or an array of objects",
        data={"field": "insert_body"},
    )


def plan_insert(relation: Relation, request: InsertRequest) -> tuple[tuple[Any, ...], list[Any]]:
    """``(shape, params)`` for an insert/upsert; 400 on unknown columns or a bad conflict."""
    if not relation.is_table and relation.kind != "view":
        raise ApiError("invalid_request", f"'{relation.name}' cannot be written to")
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    if request.default_to_null:
        names = tuple(dict.fromkeys(k for row in request.rows for k in row))
        groups[names] = list(request.rows)
    else:
        for row in request.rows:
            groups.setdefault(tuple(row), []).append(row)
    for names in groups:
        for name in names:
            relation.column(name)
    returning = check_columns(relation, request.returning)
    params: list[Any] = []
    inserts = []
    conflict: tuple[Any, ...] = ()
    if request.update_body is not None or request.upsert or request.ignore_duplicates:
        target = _conflict_columns(relation, request.on_conflict)
        if request.ignore_duplicates:
            conflict = ("nothing", target)
        elif request.update_body is not None:
            if not isinstance(request.update_body, dict):
                raise ApiError("invalid_request", "update_body must be an object")
            sets = tuple(request.update_body)
            conflict = ("set", target, sets) if sets else ("nothing", target)
        else:
            conflict = ("excluded", target)
    for names, rows in groups.items():
        if conflict and conflict[0] == "excluded":
            updatable = tuple(n for n in names if n not in conflict[1])
            group_conflict: tuple[Any, ...] = (
                ("excluded", conflict[1], updatable) if updatable else ("nothing", conflict[1])
            )
        else:
            group_conflict = conflict
        params.append(_dumps(rows))
        if group_conflict and group_conflict[0] == "set":
            update_body = request.update_body or {}
            for name in group_conflict[2]:
                params.append(set_value(relation.column(name), update_body[name]))
        inserts.append((names, group_conflict))
    shape = ("insert", relation.qualified, tuple(inserts), returning, request.strip_nulls)
    return shape, params


def _insert_sql(qualified: tuple[str, str], names: tuple[str, ...], conflict: tuple[Any, ...],
                returning: tuple[str, ...] | None) -> sql.Composed:  # fmt: skip
    target = sql.Identifier(*qualified)
    if names:
        cols = sql.SQL(", ").join(sql.Identifier(n) for n in names)
        stmt = sql.SQL(
            "INSERT INTO {target} ({cols}) SELECT {cols} FROM json_populate_recordset(NULL::{target}, %s::json)"
        ).format(target=target, cols=cols)
    else:  # rows of {} : every column takes its default
        stmt = sql.SQL(
            "INSERT INTO {target} SELECT FROM json_populate_recordset(NULL::{target}, %s::json)"
        ).format(target=target)
    if conflict:
        kind, on = conflict[0], conflict[1]
        on_sql = sql.SQL(", ").join(sql.Identifier(c) for c in on)
        if kind == "nothing":
            stmt += sql.SQL(" ON CONFLICT ({}) DO NOTHING").format(on_sql)
        elif kind == "excluded":
            stmt += sql.SQL(" ON CONFLICT ({}) DO UPDATE SET ").format(on_sql) + sql.SQL(", ").join(
                sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in conflict[2]
            )
        else:
            stmt += sql.SQL(" ON CONFLICT ({}) DO UPDATE SET ").format(on_sql) + sql.SQL(", ").join(
                sql.SQL("{} = %s").format(sql.Identifier(c)) for c in conflict[2]
            )
    return stmt + sql.SQL(" RETURNING ") + select_list(returning)


def insert_sql(shape: tuple[Any, ...]) -> sql.Composed:
    _, qualified, inserts, returning, strip_nulls = shape
    ctes = [
        sql.SQL("{} AS (").format(sql.Identifier(f"w{i}"))
        + _insert_sql(qualified, names, conflict, returning)
        + sql.SQL(")")
        for i, (names, conflict) in enumerate(inserts)
    ]
    if len(ctes) == 1:
        source: sql.Composable = sql.SQL("w0 AS w")
    else:
        source = (
            sql.SQL("(")
            + sql.SQL(" UNION ALL ").join(
                sql.SQL("SELECT * FROM {}").format(sql.Identifier(f"w{i}"))
                for i in range(len(ctes))
            )
            + sql.SQL(") AS w")
        )
    return (
        sql.SQL("WITH ")
        + sql.SQL(", ").join(ctes)
        + sql.SQL(" SELECT {} FROM ").format(json_rows("w", strip_nulls))
        + source
    )


def build_insert(relation: Relation, request: InsertRequest) -> tuple[sql.Composed, list[Any]]:
    """One INSERT statement for ``request`` (reused by the pipelines sink)."""
    shape, params = plan_insert(relation, request)
    return insert_sql(shape), params


# -- update ------------------------------------------------------------------------------------


def plan_update(
    relation: Relation,
    update_body: dict[str, Any],
    conditions: list[Node],
    *,
    returning: tuple[str, ...] | None = None,
    strip_nulls: bool = False,
) -> tuple[tuple[Any, ...], list[Any]]:
    """``(shape, params)`` of ``UPDATE … SET … WHERE …``; conditions are required."""
    if not isinstance(update_body, dict) or not update_body:
        raise ApiError(
            "invalid_request",
            "update_body must be a non-empty object",
            data={"field": "update_body"},
        )
    if not conditions:
        raise ApiError(
            "update_requires_conditions",
            "an update needs at least one condition; refusing to update every row",
        )
    params: list[Any] = []
    sets = tuple(update_body)
    for name in sets:
        params.append(set_value(relation.column(name), update_body[name]))
    where = plan_where(relation, conditions, params)
    returning = check_columns(relation, returning)
    return ("update", relation.qualified, sets, where, returning, strip_nulls), params


def update_sql(shape: tuple[Any, ...]) -> sql.Composed:
    _, qualified, sets, where, returning, strip_nulls = shape
    assignments = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in sets)
    write = (
        sql.SQL("UPDATE {} SET ").format(sql.Identifier(*qualified))
        + assignments
        + where_sql(where)
        + sql.SQL(" RETURNING ")
        + select_list(returning)
    )
    return _wrap(write, strip_nulls)


# -- delete ------------------------------------------------------------------------------------


def resource_column(relation: Relation) -> str:
    """``resource_id`` if the table has one, else ``id`` (400 when it has neither)."""
    for name in ("resource_id", "id"):
        if name in relation.columns:
            return name
    raise ApiError(
        "unknown_column",
        f"'{relation.name}' has neither a resource_id nor an id column; use conditions",
        data={"column": "id", "table": relation.name},
    )


def plan_delete(
    relation: Relation,
    resource_id: Any,
    conditions: list[Node],
    *,
    returning: tuple[str, ...] | None = None,
    strip_nulls: bool = False,
) -> tuple[tuple[Any, ...], list[Any]]:
    """``(shape, params)`` of ``DELETE … WHERE <resource col> = $1 AND …``."""
    params: list[Any] = []
    key: str | None = None
    if resource_id not in (None, ""):
        if isinstance(resource_id, (dict, list)):
            raise ApiError("invalid_value", "resource_id must be a string or a number")
        key = resource_column(relation)
        params.append(scalar_text(resource_id, relation.columns[key]))
    if key is None and not conditions:
        raise ApiError(
            "delete_requires_conditions",
            "a delete needs a resource_id or at least one condition",
        )
    where = plan_where(relation, conditions, params)
    if key is not None:
        where = (("cmp", key, "eq", False), *where)
    returning = check_columns(relation, returning)
    return ("delete", relation.qualified, where, returning, strip_nulls), params


def delete_sql(shape: tuple[Any, ...]) -> sql.Composed:
    _, qualified, where, returning, strip_nulls = shape
    write = (
        sql.SQL("DELETE FROM {}").format(sql.Identifier(*qualified))
        + where_sql(where)
        + sql.SQL(" RETURNING ")
        + select_list(returning)
    )
    return _wrap(write, strip_nulls)


def _wrap(write: sql.Composable, strip_nulls: bool) -> sql.Composed:
    return (
        sql.SQL("WITH w AS (")
        + write
        + sql.SQL(") SELECT {} FROM w").format(json_rows("w", strip_nulls))
    )


_RENDER = {"insert": insert_sql, "update": update_sql, "delete": delete_sql}


def mutation_sql(shape: tuple[Any, ...]) -> sql.Composed:
    return _RENDER[shape[0]](shape)


@lru_cache(maxsize=4096)
def mutation_statement(shape: tuple[Any, ...]) -> bytes:
    """The rendered statement for a mutation shape, once per shape."""
    return mutation_sql(shape).as_bytes(None)
