"""The request log, read back (admin key): ``/admin/request-log`` (newest first, filtered,
paged by id) and ``/admin/request-log/series`` (per-minute requests, errors and latency).

Thin: check the admin key, parse the filters, run ``services.request_log_query`` on the
catalog. These reads are themselves logged like any admin call.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TypeVar

import psycopg
from quart import Blueprint, Response

from athena.auth.guard import require_admin
from athena.db.database import DatabaseUnavailable
from athena.errors import ApiError
from athena.routes._http import ctx, json_response, rt
from athena.services import request_log_query as q

blueprint = Blueprint("request_log", __name__)

T = TypeVar("T")

MAX_TEXT = 200


def _text(name: str) -> str | None:
    value = (ctx().query.get(name) or "").strip()
    if len(value) > MAX_TEXT or "\x00" in value:
        raise ApiError("invalid_request", f"{name} must be at most {MAX_TEXT} characters")
    return value or None


def _int(name: str, default: int | None, low: int, high: int) -> int | None:
    raw = (ctx().query.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError("invalid_request", f"{name} must be an integer") from None
    if not low <= value <= high:
        raise ApiError("invalid_request", f"{name} must be between {low} and {high}")
    return value


def _filter() -> q.LogFilter:
    return q.LogFilter(
        client_name=_text("client_name"),
        status=_text("status"),
        route=_text("route"),
        method=_text("method"),
        api_key=_text("api_key_public_id"),
    )


async def _on_catalog(fn: Callable[[psycopg.Connection], T]) -> T:
    try:
        return await rt().catalog.run(fn)
    except DatabaseUnavailable:
        raise ApiError(
            "catalog_unavailable", "the catalog database is unavailable; try again shortly"
        ) from None
    except psycopg.errors.QueryCanceled:
        raise ApiError("statement_timeout", "reading the request log took too long") from None


@blueprint.get("/admin/request-log")
async def list_request_log() -> Response:
    require_admin(rt(), ctx())
    flt = _filter()
    limit = _int("limit", 100, 1, q.MAX_PAGE)
    before_id = _int("before_id", None, 1, 2**63 - 1)
    rows = await _on_catalog(partial(q.list_entries, flt=flt, limit=limit, before_id=before_id))
    next_before = rows[-1]["id"] if rows and len(rows) == limit else None
    return json_response({"entries": rows, "next_before_id": next_before})


@blueprint.get("/admin/request-log/series")
async def request_log_series() -> Response:
    require_admin(rt(), ctx())
    flt = _filter()
    minutes = _int("minutes", 60, 1, q.MAX_SERIES_MINUTES)
    rows = await _on_catalog(partial(q.series, flt=flt, minutes=minutes))
    return json_response({"bucket_seconds": 60, "series": rows})
