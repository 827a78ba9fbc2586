"""The data gateway on a PostgreSQL client: fetch, insert, update, delete and raw query.

Every operation takes the call context and the JSON body and returns a ``GatewayResult`` whose
``data_json`` is the row array as JSON text built by PostgreSQL; the transport wraps it in the
success envelope. Each operation resolves the client from ``X-Athena-Client`` and calls
``authorize`` itself, so both transports enforce the same keys and rights.

The path of a fetch, kept lean on purpose (it is the hot path):

    resolve client → authorize (cached) → parse body → relation (cached) → plan (values only)
    → statement text (cached per shape) → ONE statement in a worker thread → bytes out
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from athena.auth.guard import authorize
from athena.auth.rights import table_right
from athena.context import CallContext
from athena.db.clients import ClientEntry, require_db
from athena.db.errors import api_error_from_db
from athena.db.introspection import Relation
from athena.errors import ApiError
from athena.query.conditions import parse_conditions
from athena.query.fetch import (
    FetchRequest,
    count_statement,
    fetch_statement,
    parse_columns,
    parse_fetch,
    plan_fetch,
    relation_name,
    strip_nulls_flag,
)
from athena.query.fetch_embed import api_error as embed_api_error
from athena.query.fetch_embed import check_schemas, embedded_fetch, has_embeds, select_items
from athena.query.mutations import (
    InsertRequest,
    insert_rows,
    mutation_statement,
    plan_delete,
    plan_insert,
    plan_update,
)
from athena.query.post_processing import check_columns, post_process, truthy
from athena.query.postgrest.build import Statement
from athena.query.postgrest.errors import PgrstError
from athena.query.postgrest.grammar import EmbedItem
from athena.query.postgrest.relationships import Embeds
from athena.query.raw import query_params, query_text
from athena.services.clients import resolve_client
from athena.services.events import ChangeEvent
from athena.services.gateway.common import (
    GatewayResult,
    body_object,
    require_context_headers,
    result_too_large,
)
from athena.services.gateway.raw_sql import execute as execute_raw
from athena.webhooks.outbox import OutboxWrite, webhook_outbox

if TYPE_CHECKING:
    from athena.runtime import Runtime

T = TypeVar("T")
# JSON bigger than this is decoded in a worker thread, so the event loop never stalls on it.
OFFLOAD_BYTES = 256 * 1024
# SQLSTATEs meaning the cached schema is stale (a table or column vanished under us).
_STALE_SCHEMA = {"42P01", "42703"}


async def _run(
    rt: Runtime, entry: ClientEntry, statement: bytes, params: list[Any], *, capped: bool = True,
    outbox: OutboxWrite | None = None,
) -> tuple[bytes, int]:  # fmt: skip
    """Run one JSON-returning statement; ``(json_bytes, row_count)``; DB errors → ApiError.

    ``capped``: reads answer 413 above the result limits. Writes are not capped: their rows
    are already committed when they come back, and a 413 would hide a write that happened
    (their size is bounded by the request body limit anyway).
    """
    db = require_db(entry)
    try:
        if outbox is not None:  # the write and its webhook event, one transaction
            row = await outbox.run_json(db, statement, params)
        else:
            row = await db.fetch_json(statement, params)
    except ApiError:
        raise
    except Exception as exc:
        if getattr(exc, "sqlstate", None) in _STALE_SCHEMA:
            rt.introspection.invalidate(entry.name)
        raise api_error_from_db(exc, client=entry.name) from None
    data, count = row if row is not None else (b"[]", 0)
    if not capped:
        return data, count
    settings = rt.settings
    if count > settings.max_result_rows:
        raise result_too_large(settings.max_result_rows)
    if len(data) > settings.max_result_bytes:
        raise result_too_large(bytes_limit=settings.max_result_bytes)
    return data, count


async def _planned(
    rt: Runtime, entry: ClientEntry, table: str, plan: Callable[[Relation], T]
) -> tuple[Relation, T]:
    """``plan(relation)`` against the cached schema; when it names a column the cache does not
    know, reload the schema once (rate-limited) and plan again — a column added by a migration
    outside Athena works without a restart."""
    relation = await rt.introspection.relation(entry, table)
    try:
        return relation, plan(relation)
    except ApiError as exc:
        if exc.code != "unknown_column" or not exc.data:
            raise
        fresh = await rt.introspection.relation(entry, table, column=exc.data.get("column"))
        if fresh is relation:
            raise
        return fresh, plan(fresh)


def _event_name(relation: Relation) -> str:
    return relation.name if relation.schema == "public" else f"{relation.schema}.{relation.name}"


async def _publish(
    rt: Runtime, ctx: CallContext, entry: ClientEntry, relation: Relation, operation: str,
    data: bytes, count: int,
) -> None:  # fmt: skip
    """Hand written rows to the event bus — decoded only when someone can receive them."""
    event = ctx.header("x-publish-event")
    bus = rt.events
    if count == 0:
        return
    table = _event_name(relation)
    # Ask the bus whether any subscriber (here or on another instance) would receive it: the
    # hot write path decodes no rows nobody will read.
    if not bus.is_wanted(entry.name, table, event):
        return
    if len(data) > OFFLOAD_BYTES:
        rows = await trio.to_thread.run_sync(json.loads, data, limiter=rt.limiter)
    else:
        rows = json.loads(data)
    bus.publish(ChangeEvent(entry.name, table, operation, rows, event=event))


# -- fetch -------------------------------------------------------------------------------------


async def _prepare_read(
    rt: Runtime, ctx: CallContext, body: dict[str, Any]
) -> tuple[ClientEntry, FetchRequest]:
    entry = resolve_client(rt, ctx)
    table = relation_name(body)
    ctx.operation = "fetch"
    await authorize(rt, ctx, entry.name, table_right(table, "read"))
    ctx.table_name = table  # authorized for it: the log may name it (see CallContext)
    return entry, parse_fetch(body, strip_nulls_header=ctx.header("x-strip-nulls"))


def _check_post_processing(relation: Relation, request: FetchRequest) -> None:
    if request.post is not None:
        check_columns(request.post, relation, request.columns, "selected")


@dataclass
class PreparedStatement:
    """An operation checked (rights, relation, columns) and planned, not yet run: what
    ``/gateway/transaction`` runs several of on one connection."""

    entry: ClientEntry
    relation: Relation
    operation: str  # fetch | insert | update | delete
    message: str
    statement: bytes
    params: list[Any]
    request: FetchRequest | None = None  # a fetch's request (post-processing)
    # count: "exact" → ('[]', total) with the same WHERE; its params are the fetch's without
    # LIMIT and OFFSET. Only planned when asked.
    count_statement: bytes | None = None
    # A write some webhook wants: its event is written in the write's transaction.
    outbox: OutboxWrite | None = None


async def prepare_fetch(rt: Runtime, ctx: CallContext, body: dict[str, Any]) -> PreparedStatement:
    """Authorize and plan a fetch (``/gateway/fetch`` body)."""
    entry, request = await _prepare_read(rt, ctx, body)
    max_rows = rt.settings.max_result_rows

    def plan(relation: Relation) -> tuple[tuple[Any, ...], list[Any]]:
        _check_post_processing(relation, request)
        return plan_fetch(relation, request, max_rows=max_rows)

    relation, (shape, params) = await _planned(rt, entry, request.relation, plan)
    counted = count_statement(shape) if request.count or request.head else None
    return PreparedStatement(
        entry, relation, "fetch", "Data fetched successfully", fetch_statement(shape), params,
        request, counted,
    )  # fmt: skip


async def fetch_extras(
    rt: Runtime, prepared: PreparedStatement, data: bytes, count: int
) -> dict[str, Any]:
    """``count``, and ``post_processing`` when the fetch asked for it."""
    return await _extras(rt, prepared.request, data, count)


async def _extras(
    rt: Runtime, request: FetchRequest | None, data: bytes, count: int
) -> dict[str, Any]:
    extras: dict[str, Any] = {"count": count}
    if request is not None and request.post is not None:
        spec = request.post
        if len(data) > OFFLOAD_BYTES:  # decoding and grouping a big result: off the event loop
            extras["post_processing"] = await trio.to_thread.run_sync(
                lambda: post_process(json.loads(data), spec), limiter=rt.limiter
            )
        else:
            extras["post_processing"] = post_process(json.loads(data), spec)
    return extras


async def fetch(rt: Runtime, ctx: CallContext, body: dict[str, Any]) -> GatewayResult:
    """Rows of a table or view matching the conditions (``/gateway/fetch``, ``/data`` …)."""
    body = body_object(body)
    if has_embeds(body):
        return await _fetch_embedded(rt, ctx, body)
    prepared = await prepare_fetch(rt, ctx, body)
    request = prepared.request
    if request is not None and request.head:
        data, count = b"[]", 0
    else:
        data, count = await _run(rt, prepared.entry, prepared.statement, prepared.params)
    if prepared.count_statement is not None:
        # The total, only when asked: one more planned statement with the same WHERE.
        _, count = await _run(
            rt, prepared.entry, prepared.count_statement, prepared.params[:-2], capped=False
        )
    return GatewayResult(prepared.message, data, await fetch_extras(rt, prepared, data, count))


async def _fetch_embedded(rt: Runtime, ctx: CallContext, body: dict[str, Any]) -> GatewayResult:
    """A findMany whose ``select`` embeds relations (``query/fetch_embed.py``): the root
    table's read right, then the one of every table the embeds read, then ONE statement
    built by the ``/rest/v1`` read builder (PostgreSQL nests the JSON)."""
    schemas: list[tuple[EmbedItem, str]] = []
    items = select_items(body["select"], schemas)
    entry, request = await _prepare_read(rt, ctx, {**body, "select": None})
    max_rows = rt.settings.max_result_rows
    snapshot = await rt.introspection.snapshot(entry)

    def plan(relation: Relation) -> tuple[Statement, Embeds]:
        _check_post_processing(relation, request)
        try:
            return embedded_fetch(snapshot, relation, items, request, max_rows=max_rows)
        except PgrstError as exc:
            raise embed_api_error(exc) from None

    relation, (statement, embeds) = await _planned(rt, entry, request.relation, plan)
    check_schemas(schemas, embeds)
    seen = {relation.qualified}
    for other in embeds.tables:
        if other.qualified not in seen:
            seen.add(other.qualified)
            await authorize(rt, ctx, entry.name, table_right(other.name, "read", other.schema))
    try:
        row = await require_db(entry).fetch_one(statement.query, statement.params)
    except Exception as exc:
        if getattr(exc, "sqlstate", None) in _STALE_SCHEMA:
            rt.introspection.invalidate(entry.name)
        raise api_error_from_db(exc, client=entry.name) from None
    assert row is not None  # an aggregate over the page always returns a row
    total, page_count, text = row[0], row[1], row[2]
    settings = rt.settings
    if page_count > settings.max_result_rows:
        raise result_too_large(settings.max_result_rows)
    data = b"[]" if text is None else text.encode()
    if len(data) > settings.max_result_bytes:
        raise result_too_large(bytes_limit=settings.max_result_bytes)
    count = total if (request.count or request.head) and total is not None else page_count
    message = "Data fetched successfully"
    return GatewayResult(message, data, await _extras(rt, request, data, count))


# -- insert / update / delete ------------------------------------------------------------------


async def _prepare_write(
    rt: Runtime, ctx: CallContext, body: dict[str, Any], operation: str, right: str
) -> tuple[ClientEntry, str]:
    entry = resolve_client(rt, ctx)
    table = relation_name(body)
    ctx.operation = operation
    await authorize(rt, ctx, entry.name, table_right(table, right))
    ctx.table_name = table  # authorized for it: the log may name it (see CallContext)
    return entry, table


async def prepare_insert(rt: Runtime, ctx: CallContext, body: dict[str, Any]) -> PreparedStatement:
    """Authorize and plan an insert/upsert (``/gateway/insert`` body)."""
    entry, table = await _prepare_write(rt, ctx, body, "insert", "write")
    require_context_headers(rt, ctx)
    update_body = body.get("update_body")
    if update_body is not None and not isinstance(update_body, dict):
        raise ApiError("invalid_request", "update_body must be an object")
    on_conflict = body.get("on_conflict", body.get("onConflict"))
    request = InsertRequest(
        rows=insert_rows(body.get("insert_body")),
        returning=parse_columns(body.get("columns")),
        on_conflict=on_conflict,
        update_body=update_body,
        upsert=on_conflict not in (None, "", []) or truthy(body.get("upsert")),
        ignore_duplicates=truthy(body.get("ignore_duplicates")),
        default_to_null=body.get("default_to_null") is True,
        strip_nulls=strip_nulls_flag(body, ctx.header("x-strip-nulls")),
    )
    relation, (shape, params) = await _planned(
        rt, entry, table, lambda rel: plan_insert(rel, request)
    )
    return _with_outbox(rt, ctx, PreparedStatement(
        entry, relation, "insert", "Data inserted successfully", mutation_statement(shape), params
    ))  # fmt: skip


async def prepare_update(rt: Runtime, ctx: CallContext, body: dict[str, Any]) -> PreparedStatement:
    """Authorize and plan an update (``/gateway/update`` body with ``update_body``)."""
    entry, table = await _prepare_write(rt, ctx, body, "update", "write")
    conditions = parse_conditions(body.get("conditions"))
    returning = parse_columns(body.get("columns"))
    strip = strip_nulls_flag(body, ctx.header("x-strip-nulls"))
    relation, (shape, params) = await _planned(
        rt, entry, table,
        lambda rel: plan_update(
            rel, body["update_body"], conditions, returning=returning, strip_nulls=strip
        ),
    )  # fmt: skip
    return _with_outbox(rt, ctx, PreparedStatement(
        entry, relation, "update", "Data updated successfully", mutation_statement(shape), params
    ))  # fmt: skip


async def prepare_delete(rt: Runtime, ctx: CallContext, body: dict[str, Any]) -> PreparedStatement:
    """Authorize and plan a delete (``/gateway/delete`` body)."""
    entry, table = await _prepare_write(rt, ctx, body, "delete", "delete")
    require_context_headers(rt, ctx)
    conditions = parse_conditions(body.get("conditions"))
    returning = parse_columns(body.get("columns"))
    strip = strip_nulls_flag(body, ctx.header("x-strip-nulls"))
    relation, (shape, params) = await _planned(
        rt, entry, table,
        lambda rel: plan_delete(
            rel, body.get("resource_id"), conditions, returning=returning, strip_nulls=strip
        ),
    )  # fmt: skip
    return _with_outbox(rt, ctx, PreparedStatement(
        entry, relation, "delete", "Data deleted successfully", mutation_statement(shape), params
    ))  # fmt: skip


def _with_outbox(rt: Runtime, ctx: CallContext, prepared: PreparedStatement) -> PreparedStatement:
    """Attach the webhook outbox write when an enabled webhook wants this write."""
    event = f"gateway.{prepared.operation}"
    prepared.outbox = webhook_outbox(rt, ctx, prepared.entry, _event_name(prepared.relation), event)
    return prepared


async def _write(rt: Runtime, ctx: CallContext, prepared: PreparedStatement) -> GatewayResult:
    data, count = await _run(
        rt, prepared.entry, prepared.statement, prepared.params, capped=False,
        outbox=prepared.outbox,
    )  # fmt: skip
    await publish(rt, ctx, prepared, data, count)
    return GatewayResult(prepared.message, data, {"count": count})


async def publish(
    rt: Runtime, ctx: CallContext, prepared: PreparedStatement, data: bytes, count: int
) -> None:
    """Hand the rows a committed write returned to the event bus."""
    await _publish(rt, ctx, prepared.entry, prepared.relation, prepared.operation, data, count)


async def insert(rt: Runtime, ctx: CallContext, body: dict[str, Any]) -> GatewayResult:
    """Insert ``insert_body`` (object or array) in one statement; upsert with ``update_body``
    or ``on_conflict``. Returns the inserted rows and ``count``."""
    body = body_object(body)
    return await _write(rt, ctx, await prepare_insert(rt, ctx, body))


async def update(rt: Runtime, ctx: CallContext, body: dict[str, Any]) -> GatewayResult:
    """Update rows matching ``conditions`` with ``update_body``; without it, a fetch."""
    body = body_object(body)
    if body.get("update_body") is None:
        return await fetch(rt, ctx, body)
    return await _write(rt, ctx, await prepare_update(rt, ctx, body))


async def delete(rt: Runtime, ctx: CallContext, body: dict[str, Any]) -> GatewayResult:
    """Delete by ``resource_id`` (column ``resource_id``, else ``id``) AND ``conditions``."""
    body = body_object(body)
    return await _write(rt, ctx, await prepare_delete(rt, ctx, body))


# -- raw query ---------------------------------------------------------------------------------


async def query(rt: Runtime, ctx: CallContext, body: dict[str, Any]) -> GatewayResult:
    """Raw SQL on the client's pool (right ``gateway.query``); results of the last statement."""
    body = body_object(body)
    entry = resolve_client(rt, ctx)
    ctx.operation = "query"
    await authorize(rt, ctx, entry.name, "gateway.query")
    text = query_text(body)
    outcome = await execute_raw(rt, entry, text, query_params(body))
    return GatewayResult(
        "Query executed successfully",
        outcome["data_json"],
        {"count": outcome["count"], "meta": outcome["meta"]},
    )
