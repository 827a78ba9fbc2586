"""Fetch: a gateway fetch body → one SELECT whose single row is the JSON array (pure).

``parse_fetch(body)`` reads and checks the body (CONTRACT.md "Fetch body"): relation, columns,
conditions, sort, paging, strip-nulls. ``plan_fetch(relation, request)`` validates every name
against the live schema and returns ``(shape, params)``; ``fetch_statement(shape)`` renders the
statement once per shape (cached), so the hot path only collects values.

The statement returns one row ``(json_text, row_count)``::

    SELECT coalesce(json_agg(t.*), '[]')::text, count(*)
      FROM (SELECT "a", "b" FROM "public"."t" WHERE "a" = $1 ORDER BY "b" LIMIT $2 OFFSET $3) t

so PostgreSQL builds the JSON and Python passes the text through untouched. The row is named
``t.*``, not ``t``: where a column is also called ``t``, a bare ``t`` is that column, and the
answer was a list of its values instead of the rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from psycopg import sql

from athena.errors import ApiError
from athena.query.conditions import Node, parse_conditions, plan_where, where_sql
from athena.query.fetch_ast import to_classic
from athena.query.post_processing import PostProcessing, truthy

if TYPE_CHECKING:
    from athena.db.introspection import Relation

DEFAULT_LIMIT = 100

# (column, descending)
SortKey = tuple[str, bool]


@dataclass(frozen=True)
class FetchRequest:
    """A parsed fetch body. ``columns`` is ``None`` for ``*``."""

    relation: str
    columns: tuple[str, ...] | None
    conditions: tuple[Node, ...]
    sort: tuple[SortKey, ...]
    limit: int
    offset: int
    strip_nulls: bool
    post: PostProcessing | None = None
    # count: "exact" → the total of matching rows (ignoring limit/offset); head → no rows.
    count: bool = False
    head: bool = False


def relation_name(body: dict[str, Any], *, allow_view: bool = True) -> str:
    """``table_name`` (or ``view_name``) from the body; 400 when missing or not a string."""
    name = body.get("table_name")
    if name in (None, "") and allow_view:
        name = body.get("view_name") or body.get("view")
    if not isinstance(name, str) or not name.strip():
        raise ApiError(
            "invalid_request",
            "table_name (or view_name) is required",
            data={"field": "table_name"},
        )
    return name.strip()


def parse_columns(raw: Any) -> tuple[str, ...] | None:
    """``columns`` as an array or comma string; ``*``/absent → ``None`` (all columns).

    An item may rename its column as PostgREST and the SDK write it, ``label:name``; see
    ``column_output``.
    """
    if raw is None or raw == "" or raw == []:
        return None
    if isinstance(raw, str):
        items = [part.strip() for part in raw.split(",")]
    elif isinstance(raw, list) and all(isinstance(c, str) for c in raw):
        items = [c.strip() for c in raw]
    else:
        raise ApiError("invalid_request", "columns must be an array of names or a comma string")
    items = [c for c in items if c]
    if not items or "*" in items:
        return None
    for item in items:
        if "(" in item or ")" in item:
            raise ApiError(
                "unsupported_operation",
                f"'{item}' embeds a relation; /gateway/fetch reads one table — use /rest/v1 "
                "to embed related rows",
            )
        output, column = column_output(item)
        if not output or not column:
            raise ApiError("invalid_request", f"'{item}' is not a column or 'alias:column'")
    return tuple(dict.fromkeys(items))  # de-duplicated, order kept


def column_output(item: str) -> tuple[str, str]:
    """``(output name, column)`` of a columns item: ``label:name`` → ``("label", "name")``."""
    alias, sep, column = item.partition(":")
    if not sep:
        return item, item
    return alias.strip(), column.strip()


def _int_field(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ApiError("invalid_pagination", f"{name} must be an integer", data={"field": name})
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ApiError(
                "invalid_pagination", f"{name} must be an integer", data={"field": name}
            ) from None
    if not isinstance(value, int):
        raise ApiError("invalid_pagination", f"{name} must be an integer", data={"field": name})
    if value < 0:
        raise ApiError("invalid_pagination", f"{name} must not be negative", data={"field": name})
    return value


def parse_paging(body: dict[str, Any]) -> tuple[int, int]:
    """``(limit, offset)``: limit ← page_size ← 100; offset ← (current_page-1)*page_size."""
    limit = _int_field(body, "limit")
    page_size = _int_field(body, "page_size")
    offset = _int_field(body, "offset")
    current_page = _int_field(body, "current_page")
    if current_page == 0:
        raise ApiError(
            "invalid_pagination", "current_page starts at 1", data={"field": "current_page"}
        )
    if limit is None:
        limit = page_size if page_size is not None else DEFAULT_LIMIT
    if offset is None:
        offset = (
            (current_page - 1) * (page_size if page_size is not None else limit)
            if (current_page is not None)
            else 0
        )
    return limit, offset


def parse_sort(body: dict[str, Any]) -> tuple[SortKey, ...]:
    """``sort_by``/``sortBy`` = ``{field|column, direction}`` (or a list of them, or
    ``"col"`` / ``"col.desc"``); ``asc``/``ascending`` (any case) or no direction ascends."""
    raw = body.get("sort_by", body.get("sortBy", body.get("order_by")))
    if raw is None or raw == "" or raw == {}:
        return ()
    items = raw if isinstance(raw, list) else [raw]
    keys: list[SortKey] = []
    for item in items:
        if isinstance(item, str):
            column, _, direction = item.strip().partition(".")
        elif isinstance(item, dict):
            column = item.get("field", item.get("column"))
            direction = item.get("direction", item.get("order", ""))
        else:
            raise ApiError("invalid_request", "sort_by must be {field, direction}")
        if not isinstance(column, str) or not column.strip():
            raise ApiError("invalid_request", "sort_by needs a field (column name)")
        if direction is None:
            direction = ""
        if not isinstance(direction, str):
            raise ApiError("invalid_request", "sort_by.direction must be a string")
        descending = direction.strip().lower() not in ("", "asc", "ascending")
        keys.append((column.strip(), descending))
    return tuple(keys)


def strip_nulls_flag(body: dict[str, Any], header: str | None) -> bool:
    """The ``X-Strip-Nulls`` header wins, else the body flag, else false."""
    if header is not None and header.strip() != "":
        return truthy(header)
    return truthy(body.get("strip_nulls", False))


def parse_count(body: dict[str, Any]) -> bool:
    """``count``: ``exact`` (and ``planned``/``estimated``, answered exactly) asks for the total;
    absent/null/``none`` does not."""
    raw = body.get("count")
    if raw is None or raw is False or raw == "none":
        return False
    if raw is True or raw in ("exact", "planned", "estimated"):
        return True
    raise ApiError(
        "invalid_request", "count must be 'exact', 'planned' or 'estimated'",
        data={"field": "count"},
    )  # fmt: skip


def parse_fetch(body: dict[str, Any], *, strip_nulls_header: str | None = None) -> FetchRequest:
    """Check the body of a fetch and return what it asks for (no schema checks yet).

    Takes the classic body and the SDK 5 ``findMany`` AST body (``query/fetch_ast.py``).
    """
    body = to_classic(body)
    limit, offset = parse_paging(body)
    return FetchRequest(
        relation=relation_name(body),
        columns=parse_columns(body.get("columns", body.get("select"))),
        conditions=tuple(parse_conditions(body.get("conditions"))),
        sort=parse_sort(body),
        limit=limit,
        offset=offset,
        strip_nulls=strip_nulls_flag(body, strip_nulls_header),
        post=PostProcessing.from_body(body),
        count=parse_count(body),
        head=truthy(body.get("head", False)),
    )


def check_columns(relation: Relation, columns: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """Each named column exists (400 ``unknown_column`` naming the first that does not)."""
    if columns is not None:
        for item in columns:
            relation.column(column_output(item)[1])
    return columns


def plan_fetch(
    relation: Relation, request: FetchRequest, *, max_rows: int | None = None
) -> tuple[tuple[Any, ...], list[Any]]:
    """``(shape, params)`` for ``request`` on ``relation``; 400 on any unknown column.

    ``max_rows`` caps the LIMIT at ``max_rows + 1`` so an oversized result is detected (the
    service answers 413) without PostgreSQL building more than that.
    """
    columns = check_columns(relation, request.columns)
    for column, _ in request.sort:
        relation.column(column)
    params: list[Any] = []
    where = plan_where(relation, list(request.conditions), params)
    limit = request.limit if max_rows is None else min(request.limit, max_rows + 1)
    params.append(limit)
    params.append(request.offset)
    shape = (relation.qualified, columns, where, request.sort, request.strip_nulls)
    return shape, params


def select_list(columns: tuple[str, ...] | None) -> sql.Composable:
    if columns is None:
        return sql.SQL("*")
    return sql.SQL(", ").join(_select_item(*column_output(c)) for c in columns)


def _select_item(output: str, column: str) -> sql.Composable:
    if output == column:
        return sql.Identifier(column)
    return sql.SQL("{} AS {}").format(sql.Identifier(column), sql.Identifier(output))


def json_rows(alias: str, strip_nulls: bool) -> sql.Composable:
    """``coalesce(json_agg(alias.*), '[]')::text, count(*)`` (with ``json_strip_nulls``).

    ``alias.*`` is always the whole row; a bare ``alias`` would be a column of that name.
    """
    ident = sql.SQL("{}.*").format(sql.Identifier(alias))
    if strip_nulls:
        agg = sql.SQL("json_agg(json_strip_nulls(row_to_json({})))").format(ident)
    else:
        agg = sql.SQL("json_agg({})").format(ident)
    return sql.SQL("coalesce({}, '[]')::text, count(*)").format(agg)


def order_by_sql(sort: tuple[SortKey, ...]) -> sql.Composable:
    if not sort:
        return sql.SQL("")
    return sql.SQL(" ORDER BY ") + sql.SQL(", ").join(
        sql.SQL("{} DESC" if desc else "{} ASC").format(sql.Identifier(col)) for col, desc in sort
    )


def fetch_sql(shape: tuple[Any, ...]) -> sql.Composed:
    """The statement for a fetch shape (see the module docstring)."""
    qualified, columns, where, sort, strip_nulls = shape
    inner = (
        sql.SQL("SELECT {} FROM {}").format(select_list(columns), sql.Identifier(*qualified))
        + where_sql(where)
        + order_by_sql(sort)
        + sql.SQL(" LIMIT %s OFFSET %s")
    )
    return sql.SQL("SELECT {} FROM (").format(json_rows("t", strip_nulls)) + inner + sql.SQL(") t")


def count_sql(shape: tuple[Any, ...]) -> sql.Composed:
    """``('[]', total)`` for a fetch shape: the same WHERE, no order, no paging. Its params are
    the fetch's without the trailing LIMIT and OFFSET."""
    qualified, _columns, where, _sort, _strip = shape
    return sql.SQL("SELECT '[]'::text, count(*) FROM {}").format(
        sql.Identifier(*qualified)
    ) + where_sql(where)


@lru_cache(maxsize=4096)
def count_statement(shape: tuple[Any, ...]) -> bytes:
    return count_sql(shape).as_bytes(None)


@lru_cache(maxsize=4096)
def fetch_statement(shape: tuple[Any, ...]) -> bytes:
    """``fetch_sql(shape)`` rendered once; identifiers quoting needs no connection."""
    return fetch_sql(shape).as_bytes(None)


def build_fetch_query(
    relation: Relation, request: FetchRequest, *, max_rows: int | None = None
) -> tuple[sql.Composed, list[Any]]:
    """Convenience for callers that want the composed statement itself."""
    shape, params = plan_fetch(relation, request, max_rows=max_rows)
    return fetch_sql(shape), params
