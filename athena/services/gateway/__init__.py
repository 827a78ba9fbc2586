"""The data gateway, shared by HTTP and WebSocket: fetch, insert, update, delete, query.

The backend is chosen here, once per call: ``X-Athena-Client: custom_supabase`` is served by a
Supabase project's PostgREST (``custom_supabase``), every other client by its PostgreSQL pool
(``postgres``; ``/gateway/transaction`` uses its ``prepare_*``). ``/query/sql`` picks by its
``driver``: ``athena`` runs CQL on ScyllaDB (``scylla``), the PostgreSQL drivers run the text on
the client's raw pool (``raw_sql``, also behind ``/gateway/query`` through ``postgres``). The
backends share ``common``, never import this module, and only ``postgres`` imports another one
(``raw_sql``), so there is no cycle between them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from athena.auth.guard import authorize
from athena.context import CallContext
from athena.db.clients import ClientEntry
from athena.errors import ApiError
from athena.query.raw import query_params, query_text
from athena.services.gateway import custom_supabase, postgres, raw_sql, scylla
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
    "query_sql", "require_context_headers", "update",
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


POSTGRES_DRIVERS = ("postgresql", "postgres", "supabase")
DRIVERS = (*POSTGRES_DRIVERS, "athena")


def _client_by_name(rt: Runtime, name: Any) -> ClientEntry:
    """The client ``db_name`` names, checked usable (400 unknown, 403 frozen/inactive)."""
    if not isinstance(name, str) or not name.strip():
        raise ApiError(
            "invalid_request", "db_name must name a configured client", data={"field": "db_name"}
        )
    entry = rt.clients.get(name.strip())
    if entry is None:
        raise ApiError("unknown_client", f"unknown client '{name}'", data={"client": name})
    if entry.is_frozen:
        raise ApiError("client_frozen", f"client '{name}' is frozen", data={"client": name})
    if not entry.is_active:
        raise ApiError("client_inactive", f"client '{name}' is inactive", data={"client": name})
    return entry


async def query_sql(rt: Runtime, ctx: CallContext, body: dict[str, Any]) -> dict[str, Any]:
    """``/query/sql``: ``driver`` postgresql|supabase → client ``db_name``'s pool; ``athena`` →
    ScyllaDB (503 when not configured); anything else 400 ``unsupported_driver``."""
    driver = body.get("driver")
    if not isinstance(driver, str) or driver.strip().lower() not in DRIVERS:
        raise ApiError(
            "unsupported_driver",
            "driver must be one of athena, postgresql, supabase",
            data={"driver": driver, "supported": ["athena", "postgresql", "supabase"]},
        )
    driver = driver.strip().lower()
    ctx.operation = "query"
    text = query_text(body)
    params = query_params(body)
    if driver == "athena":
        await authorize(rt, ctx, body.get("db_name") or None, "gateway.query")
        if params is not None:
            raise ApiError(
                "invalid_request", "params are served for PostgreSQL drivers only",
                data={"field": "params", "driver": driver},
            )  # fmt: skip
        service = rt.scylla
        if service is None:
            raise scylla.unavailable()
        return await service.execute(rt, text)
    entry = _client_by_name(rt, body.get("db_name"))
    ctx.client_name = entry.name
    await authorize(rt, ctx, entry.name, "gateway.query")
    return await raw_sql.execute(rt, entry, text, params)
