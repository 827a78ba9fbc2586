"""Client statistics (admin): ``/admin/clients/statistics``, ``…/statistics/refresh`` and
``/admin/clients/{client_name}/statistics``. Reads come from ``services.statistics``;
the rebuild is the rollup's (``probes.statistics``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from quart import Blueprint, Response

from athena.auth.guard import require_admin
from athena.db.database import DatabaseUnavailable
from athena.errors import ApiError
from athena.routes._http import ctx, json_response, rt
from athena.services import statistics as stats

blueprint = Blueprint("statistics", __name__)

T = TypeVar("T")


async def _catalog(call: Callable[[], Awaitable[T]]) -> T:
    try:
        return await call()
    except DatabaseUnavailable:
        raise ApiError(
            "catalog_unavailable", "the catalog database is unavailable; try again shortly"
        ) from None
    except psycopg.errors.QueryCanceled:
        raise ApiError(
            "statement_timeout", "reading the statistics took too long; try again later"
        ) from None


@blueprint.get("/admin/clients/statistics")
async def list_statistics() -> Response:
    require_admin(rt(), ctx())
    rows = await _catalog(lambda: rt().catalog.run(stats.list_statistics))
    return json_response({"statistics": rows})


@blueprint.post("/admin/clients/statistics/refresh")
async def refresh_statistics() -> Response:
    require_admin(rt(), ctx())
    runtime = rt()
    await _catalog(runtime.statistics.rebuild)
    rows = await _catalog(lambda: runtime.catalog.run(stats.list_statistics))
    return json_response({"statistics": rows})


@blueprint.get("/admin/clients/<client_name>/statistics")
async def client_statistics(client_name: str) -> Response:
    runtime = rt()
    require_admin(runtime, ctx())

    def read(conn: psycopg.Connection) -> dict[str, Any] | None:
        rows = stats.list_statistics(conn, client_name)
        if not rows:
            return None
        return {"statistics": rows[0], "tables": stats.table_statistics(conn, client_name)}

    body = await _catalog(lambda: runtime.catalog.run(read))
    if body is None and runtime.clients.get(client_name) is not None:
        # Configured on this instance but not (yet) in the catalog: no traffic counted.
        body = {"statistics": _zero(client_name), "tables": []}
    if body is None:
        raise ApiError(
            "client_not_found",
            f"no statistics for client '{client_name}': it is not a known client",
            data={"client_name": client_name},
        )
    return json_response(body)


def _zero(client_name: str) -> dict[str, Any]:
    from datetime import UTC, datetime

    return {
        "client_name": client_name,
        "total_requests": 0,
        "successful_requests": 0,
        "failed_requests": 0,
        "total_cached_requests": 0,
        "total_operations": 0,
        "last_request_at": None,
        "last_operation_at": None,
        "updated_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
