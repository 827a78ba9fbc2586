"""The data gateway, shared by HTTP and WebSocket: fetch, insert, update, delete, query.

The backend is chosen here, once per call: ``X-Athena-Client: custom_supabase`` is served by a
Supabase project's PostgREST (``custom_supabase``), every other client by its PostgreSQL pool
(``postgres``; ``/gateway/transaction`` uses its ``prepare_*``). ``/query/sql`` with ``driver: athena`` runs CQL on ScyllaDB (``scylla``, through
``athena.services.raw_sql``). The backends share ``common`` and never import each other or
this module, so there is no cycle between them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from athena.context import CallContext
from athena.services.gateway import custom_supabase, postgres
from athena.services.gateway.common import GatewayResult, body_object, require_context_headers
from athena.services.gateway.postgres import (
    PreparedStatement,
    fetch_extras,
    prepare_delete,
    prepare_fetch,
    prepare_insert,
    prepare_update,
    publish,
)

if TYPE_CHECKING:
    from athena.runtime import Runtime

__all__ = [
    "GatewayResult", "PreparedStatement", "delete", "fetch", "fetch_extras", "insert",
    "prepare_delete", "prepare_fetch", "prepare_insert", "prepare_update", "publish", "query",
    "require_context_headers", "update",
]  # fmt: skip

CUSTOM_SUPABASE = custom_supabase.CLIENT_NAME


def is_custom_supabase(ctx: CallContext) -> bool:
    return ctx.client_header == CUSTOM_SUPABASE


async def fetch(rt: Runtime, ctx: CallContext, body: dict[str, Any]) -> GatewayResult:
    """Rows of a table or view matching the conditions (``/gateway/fetch``, ``/data`` …)."""
    backend = custom_supabase if is_custom_supabase(ctx) else postgres
    return await backend.fetch(rt, ctx, body_object(body))


async def insert(rt: Runtime, ctx: CallContext, body: dict[str, Any]) -> GatewayResult:
    backend = custom_supabase if is_custom_supabase(ctx) else postgres
    return await backend.insert(rt, ctx, body_object(body))


async def update(rt: Runtime, ctx: CallContext, body: dict[str, Any]) -> GatewayResult:
    """Update rows matching ``conditions`` with ``update_body``; without it, a fetch."""
    body = body_object(body)
    if body.get("update_body") is None:
        return await fetch(rt, ctx, body)
    backend = custom_supabase if is_custom_supabase(ctx) else postgres
    return await backend.update(rt, ctx, body)


async def delete(rt: Runtime, ctx: CallContext, body: dict[str, Any]) -> GatewayResult:
    backend = custom_supabase if is_custom_supabase(ctx) else postgres
    return await backend.delete(rt, ctx, body_object(body))


async def query(rt: Runtime, ctx: CallContext, body: dict[str, Any]) -> GatewayResult:
    """Raw SQL on the client's pool (right ``gateway.query``); PostgreSQL clients only."""
    return await postgres.query(rt, ctx, body)
