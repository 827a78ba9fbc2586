"""The SDK 5 ``findMany`` body → the classic fetch body (pure, no I/O).

``@xylex-group/athena`` 5.x can send a read as an AST instead of the classic
``columns``/``conditions``/``sort_by`` body::

    {"table_name": "orders",
     "select": {"id": true, "total": true},
     "where": {"state": "open", "total": {"gte": 10},
               "or": [{"owner": {"eq": "a"}}, {"owner": {"eq": "b"}}],
               "not": {"note": {"is": null}}},
     "orderBy": {"total": "desc"}            # or {"column": "total", "ascending": false}
     "limit": 25, "offset": 50}

``to_classic(body)`` rewrites that into the body ``query/fetch.py`` already reads, so both shapes
share one parser, one planner and one statement cache: ``where`` becomes JSON conditions
(``or``/``not`` carry nested condition lists, never PostgREST text — values stay values, nothing
is re-quoted), ``select`` becomes ``columns``, ``orderBy`` becomes ``sort_by``. A body without any AST key is returned unchanged.

Relation filters (``some``/``every``/``none``/``is``/``isNot``) have no classic equivalent and
are refused with 400 ``unsupported_operation``. A ``select`` that embeds relations never reaches
here from ``/gateway/fetch`` (``query/fetch_embed.py`` serves it); inside a transaction, which
plans classic statements only, it is refused the same way.
"""

from __future__ import annotations

from typing import Any

from athena.errors import ApiError

# The SDK's AthenaWhereOperatorInput keys → our canonical operators.
_WHERE_OPERATORS = {
    "eq": "eq",
    "neq": "neq",
    "gt": "gt",
    "gte": "gte",
    "lt": "lt",
    "lte": "lte",
    "like": "like",
    "ilike": "ilike",
    "in": "in",
    "is": "is",
    "contains": "contains",
    "containedBy": "containedBy",
}
_RELATION_PREDICATES = {"some", "every", "none", "is", "isNot", "exists"}
# Deeper `or`/`not` trees than this are refused before any recursion can run away.
MAX_WHERE_DEPTH = 32


def is_ast_body(body: dict[str, Any]) -> bool:
    """Whether ``body`` uses any findMany AST key."""
    return isinstance(body.get("select"), dict) or "where" in body or "orderBy" in body


def to_classic(body: dict[str, Any]) -> dict[str, Any]:
    """The classic fetch body for an AST body (see the module docstring)."""
    if not is_ast_body(body):
        return body
    out = {k: v for k, v in body.items() if k not in ("select", "where", "orderBy")}
    select = body.get("select")
    if isinstance(select, dict):
        out["columns"] = _columns(select)
    elif select is not None and "columns" not in out:
        out["columns"] = select
    where = body.get("where")
    if where is not None:
        extra = _conditions(where, 0)
        existing = out.get("conditions")
        if existing is None:
            out["conditions"] = extra
        elif isinstance(existing, list):
            out["conditions"] = [*existing, *extra]
        else:
            raise ApiError("invalid_request", "conditions must be an array of condition objects")
    order = body.get("orderBy")
    if order is not None:
        out["sort_by"] = _sort(order)
    return out


def _unsupported(message: str) -> ApiError:
    return ApiError(
        "unsupported_operation",
        f"{message}; /gateway/fetch reads one table — use /rest/v1 to embed related rows",
    )


def _columns(select: dict[str, Any]) -> list[str]:
    columns: list[str] = []
    for key, value in select.items():
        if not isinstance(key, str) or not key.strip():
            raise ApiError("invalid_request", "select keys must be column names")
        if value is True:
            columns.append(key)
        elif value is False or value is None:
            continue
        elif isinstance(value, dict):
            raise _unsupported(f"select.{key} is a relation")
        else:
            raise ApiError(
                "invalid_request", f"select.{key} must be true (a column) or a relation object"
            )
    if not columns:
        raise ApiError("invalid_request", "select must name at least one column")
    return columns


def _conditions(where: Any, depth: int) -> list[dict[str, Any]]:
    if depth > MAX_WHERE_DEPTH:
        raise ApiError("invalid_request", f"where is nested deeper than {MAX_WHERE_DEPTH} levels")
    if not isinstance(where, dict):
        raise ApiError("invalid_request", "where must be an object of column → condition")
    found: list[dict[str, Any]] = []
    for key, value in where.items():
        if key == "or":
            if not isinstance(value, list) or not value:
                raise ApiError("invalid_request", "where.or must be a non-empty array")
            found.append({"operator": "or", "value": [_clause(c, depth + 1) for c in value]})
        elif key == "and":
            if not isinstance(value, list):
                raise ApiError("invalid_request", "where.and must be an array")
            for clause in value:
                found.extend(_conditions(clause, depth + 1))
        elif key == "not":
            found.append({"operator": "not", "value": _conditions(value, depth + 1)})
        else:
            found.extend(_column_conditions(key, value))
    return found


def _clause(clause: Any, depth: int) -> dict[str, Any]:
    """One member of an ``or``: several columns in it are ANDed."""
    items = _conditions(clause, depth)
    if len(items) == 1:
        return items[0]
    return {"operator": "and", "value": items}


def _column_conditions(column: str, value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, dict):  # {"state": "open"} / {"note": null}
        return [_leaf(column, "eq", value)]
    if not value:
        raise ApiError("invalid_request", f"where.{column} names no operator")
    found = []
    for op, operand in value.items():
        if op in _RELATION_PREDICATES and (isinstance(operand, dict) or operand is True):
            raise _unsupported(f"where.{column}.{op} filters on a relation")
        canonical = _WHERE_OPERATORS.get(op)
        if canonical is None:
            raise ApiError(
                "invalid_operator", f"unknown operator '{op}' in where.{column}",
                data={"operator": op},
            )  # fmt: skip
        found.append(_leaf(column, canonical, operand))
    return found


def _leaf(column: str, op: str, value: Any) -> dict[str, Any]:
    # eq/neq null are IS [NOT] NULL in the planner, as the SDK's is-null node means them.
    return {"column": column, "operator": op, "value": value}


def _sort(order: Any) -> list[dict[str, str]]:
    items = order if isinstance(order, list) else [order]
    keys: list[dict[str, str]] = []
    for item in items:
        if not isinstance(item, dict):
            raise ApiError("invalid_request", "orderBy must be an object or an array of objects")
        if "column" in item:  # {column, ascending}
            ascending = item.get("ascending", True)
            if not isinstance(ascending, bool):
                raise ApiError("invalid_request", "orderBy.ascending must be a boolean")
            keys.append({"field": item["column"], "direction": "asc" if ascending else "desc"})
            continue
        for column, direction in item.items():  # {col: "asc" | "desc"}
            if not isinstance(direction, str) or direction.lower() not in (
                "asc", "desc", "ascending", "descending",
            ):  # fmt: skip
                raise ApiError("invalid_request", f"orderBy.{column} must be 'asc' or 'desc'")
            keys.append({"field": column, "direction": direction.lower()})
    return keys
