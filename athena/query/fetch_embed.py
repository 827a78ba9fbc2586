"""findMany selects that embed relations → the ``/rest/v1`` read builder (pure, no I/O).

SDK 5 sends a ``select`` object whose values are ``true`` (a column) or a relation node::

    {"table_name": "books",
     "select": {"title": true,
                "author": {"select": {"name": true}},                     # many-to-one
                "reviews": {"select": {"stars": true}, "as": "ratings"},  # one-to-many, alias
                "editor": {"select": {"name": true}, "via": "books_editor_id_fkey"}},
     "where": {...}, "orderBy": {...}, "limit": 10}

``select_items`` turns the object into the PostgREST select tree (``EmbedItem`` / ``ColumnItem``
— the same tree ``select=title,author(name),ratings:reviews(stars)`` parses into), so the
relationship resolution, the rights on every embedded table and the JSON building are the ones
``/rest/v1`` uses. Nothing is rendered to PostgREST text: the tree is built from the JSON.

The root filters stay the gateway's own (``where`` / ``conditions`` through ``plan_where``):
``embedded_fetch`` reads the root rows from ``(SELECT * FROM t WHERE …)`` with the values as
named parameters beside the builder's, then lets ``build_read`` order, page, count and embed.
"""

from __future__ import annotations

from typing import Any

from psycopg import sql

from athena.db.introspection import Relation, SchemaSnapshot
from athena.errors import ApiError
from athena.query.conditions import plan_where, where_sql
from athena.query.fetch import FetchRequest
from athena.query.postgrest.build import Statement, build_read
from athena.query.postgrest.errors import PgrstError
from athena.query.postgrest.grammar import (
    ColumnItem,
    EmbedItem,
    Field,
    OrderTerm,
    ParsedQuery,
    SelectItem,
    StarItem,
)
from athena.query.postgrest.relationships import Embeds, resolve_embeds

# Deeper relation trees than this are refused before any recursion can run away.
MAX_EMBED_DEPTH = 8
_NODE_KEYS = {"select", "as", "via", "schema"}


def has_embeds(body: dict[str, Any]) -> bool:
    """Whether the body's ``select`` object names a relation (one isinstance on the hot path)."""
    select = body.get("select")
    return isinstance(select, dict) and any(isinstance(v, dict) for v in select.values())


def select_items(
    select: dict[str, Any],
    schemas: list[tuple[EmbedItem, str]],
    *,
    path: str = "select",
    depth: int = 0,
) -> tuple[SelectItem, ...]:
    """The PostgREST select tree of an SDK 5 ``select`` object (400 on a malformed node);
    each node's ``schema`` is appended to ``schemas`` for ``check_schemas``."""
    if depth > MAX_EMBED_DEPTH:
        raise ApiError("invalid_request", f"select embeds deeper than {MAX_EMBED_DEPTH} levels")
    items: list[SelectItem] = []
    for key, value in select.items():
        if not isinstance(key, str) or not key.strip():
            raise ApiError("invalid_request", f"{path} keys must be column or relation names")
        if value is True:
            items.append(ColumnItem(Field(key)))
        elif value is False or value is None:
            continue
        elif isinstance(value, dict):
            items.append(_embed(key, value, schemas, f"{path}.{key}", depth))
        else:
            raise ApiError(
                "invalid_request", f"{path}.{key} must be true (a column) or a relation object"
            )
    if not items:
        raise ApiError("invalid_request", f"{path} must name at least one column or relation")
    return tuple(items)


def _embed(
    name: str, node: dict[str, Any], schemas: list[tuple[EmbedItem, str]], path: str, depth: int
) -> EmbedItem:
    unknown = sorted(set(node) - _NODE_KEYS)
    if unknown:
        raise ApiError(
            "unsupported_operation",
            f"{path}.{unknown[0]} is not supported on an embedded relation "
            "(select, as, via and schema are)",
            data={"field": f"{path}.{unknown[0]}"},
        )
    for key in ("as", "via", "schema"):
        if key in node and (not isinstance(node[key], str) or not node[key].strip()):
            raise ApiError("invalid_request", f"{path}.{key} must be a non-empty string")
    inner = node.get("select")
    if inner is None or inner is True or inner == {}:
        children: tuple[SelectItem, ...] = (StarItem(),)
    elif isinstance(inner, dict):
        children = select_items(inner, schemas, path=f"{path}.select", depth=depth + 1)
    else:
        raise ApiError("invalid_request", f"{path}.select must be an object")
    item = EmbedItem(name=name, children=children, alias=node.get("as"), hint=node.get("via"))
    if "schema" in node:
        schemas.append((item, node["schema"]))
    return item


def check_schemas(schemas: list[tuple[EmbedItem, str]], embeds: Embeds) -> None:
    """A node's ``schema`` (collected by ``select_items``) must be where its relation
    resolved."""
    for (_parent, item), rship in embeds.by_item.items():
        for wanted_item, wanted in schemas:
            if wanted_item == item and wanted != rship.target.schema:
                raise ApiError(
                    "unknown_relation",
                    f"'{item.name}' is in schema '{rship.target.schema}', not '{wanted}'",
                    data={"relation": item.name},
                )


def api_error(exc: PgrstError) -> ApiError:
    """The gateway's envelope code for a PostgREST planning/building error."""
    code = {
        "PGRST200": "unknown_relation",
        "PGRST201": "ambiguous_relation",
        "PGRST204": "unknown_column",
    }.get(exc.code, exc.envelope_code if exc.envelope_code else "invalid_request")
    data: dict[str, Any] = {}
    if exc.hint:
        data["hint"] = exc.hint
    if exc.details:
        data["details"] = exc.details
    return ApiError(code, exc.message, data=data or None)


def embedded_fetch(
    snapshot: SchemaSnapshot,
    rel: Relation,
    items: tuple[SelectItem, ...],
    request: FetchRequest,
    *,
    max_rows: int,
) -> tuple[Statement, Embeds]:
    """The statement ``(total, page_count, body, NULL)`` for an embedding fetch, and the
    resolved embeds (the caller checks the read right on every table they read)."""
    embeds = resolve_embeds(snapshot, rel, items)
    values: list[Any] = []
    where = plan_where(rel, list(request.conditions), values)
    names = iter(range(len(values)))

    def placeholder() -> sql.Composable:
        return sql.Placeholder(f"w{next(names)}")

    source = sql.SQL("(SELECT * FROM {}{})").format(
        sql.Identifier(*rel.qualified), where_sql(where, placeholder)
    )
    query = ParsedQuery(select=items)
    query.root.order = [OrderTerm(Field(column), desc) for column, desc in request.sort]
    built = build_read(
        snapshot,
        rel,
        query,
        limit=min(request.limit, max_rows + 1),
        offset=request.offset,
        count_exact=request.count or request.head,
        strip_nulls=request.strip_nulls,
        body=not request.head,
        embeds=embeds,
        source=source,
    )
    statement = built.statement
    statement.params.update({f"w{i}": v for i, v in enumerate(values)})
    return statement, embeds
