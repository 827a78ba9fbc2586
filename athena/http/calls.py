"""Opening and closing an HTTP call: the checks and bookkeeping every request gets.

Two paths serve HTTP — Quart for most routes and ``athena.http.hot_lane`` for the data gateway's hot
routes — and both go through one ``CallGate``, so limits, rate limits, metrics and the request
log cannot drift apart between them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import psycopg
import werkzeug.urls  # noqa: F401 — registers the 'werkzeug.url_quote' codec error handler

from athena.auth.guard import authenticate_early, check_global_denylist, require_admin
from athena.auth.keys import constant_time_equals, parse_key
from athena.context import CallContext, new_request_id
from athena.db.database import DatabaseUnavailable, StatementDeadlineExceeded
from athena.errors import ApiError
from athena.observability import logs, tracing
from athena.services import direct_uri
from athena.services.ratelimit import RateLimits

if TYPE_CHECKING:
    from athena.runtime import Runtime

# Liveness and scraping must keep working for load balancers even under rate limits.
UNLIMITED_ROUTES = frozenset({"/ping", "/metrics"})
# Where the global IP deny list is edited: always reachable (with the admin key), so that an
# operator who lists their own network by mistake can undo it over the API.
_DENYLIST_EXEMPT = UNLIMITED_ROUTES | {"/admin/api-key-config"}
MAX_QUERY_STRING_BYTES = 8 * 1024
MAX_HEADER_BYTES = 32 * 1024
# Query parameters that carry a key in other APIs; refused rather than read (see admit).
URL_KEY_PARAMS = frozenset({"api_key", "apikey", "x-api-key", "x_api_key", "access_token"})
# A body longer than this (or of unknown length: chunked) that has not been read yet waits for
# the key check, on every path that reads bodies; a shorter one costs no more than a read
# buffer, so the usual request pays no extra lookup.
EARLY_AUTH_BYTES = 64 * 1024


def key_needed_before(length: int | None) -> bool:
    """Whether a body of ``length`` bytes (``None``: chunked) waits for ``key_before_body``."""
    return length is None or length > EARLY_AUTH_BYTES


class CallGate:
    """Builds the call context, admits the call (size and rate limits), records its outcome."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.rate_limits = RateLimits.from_settings(runtime.settings, runtime.catalog, "http")

    def context(
        self,
        headers: Iterable[tuple[str, str]],
        *,
        remote_addr: str | None,
        route: str,
        method: str,
        query: dict[str, str],
    ) -> CallContext:
        lowered: dict[str, str] = {}
        for name, value in headers:  # later ones win
            lowered[name.lower()] = value
        ctx = CallContext(
            headers=lowered,
            # with tracing on, start_request makes the trace id the request id
            request_id=lowered.get("x-request-id")
            or ("" if tracing.TRACER is not None else new_request_id()),
            remote_addr=remote_addr,
            route=route,
            method=method,
            query=query,
        )
        if tracing.TRACER is not None:
            tracing.start_request(ctx)  # the request id becomes the trace id
        logs.current_call.set(ctx)  # log records of this task carry the call's ids
        return ctx

    async def admit(
        self, ctx: CallContext, query_string_bytes: int, *, rate_limited: bool = True
    ) -> None:
        """Raise ``ApiError`` (414, 431, 400, 403, 429) when the call must not be served.
        ``rate_limited=False``: a WebSocket upgrade, whose messages are rate-limited each."""
        if ctx.route not in _DENYLIST_EXEMPT:  # before anything else is looked at
            await check_denylist(self.runtime, ctx)
        if query_string_bytes > MAX_QUERY_STRING_BYTES:
            raise ApiError("uri_too_long", "the query string is longer than 8 KiB")
        # hypercorn's h11 limit only bounds *incomplete* requests; a complete one arriving in
        # one read passes it, so the total is checked here too.
        if sum(len(k) + len(v) for k, v in ctx.headers.items()) > MAX_HEADER_BYTES:
            raise headers_too_large()
        if direct_uri.HEADER in ctx.headers:
            # A caller-chosen database: refused unless the operator, the key's right and the
            # outbound guard all allow it (services/direct_uri.py) — never silently ignored.
            await direct_uri.admit(self.runtime, ctx)
        if ctx.query and self._key_in_url(ctx):
            raise ApiError(
                "api_key_in_url",
                "API keys are not accepted in the URL, where they land in access logs and "
                "browser history; send the key in the apikey header or Authorization: Bearer",
            )
        if rate_limited and ctx.route not in UNLIMITED_ROUTES:
            await self.rate_limits.check(ctx)

    async def key_before_body(self, ctx: CallContext) -> None:
        """Before a large body is read: raise ``ApiError`` (401, 503) unless the checks that
        need no body pass — the admin key on ``/admin/…`` routes, elsewhere a key present where
        enforcement wants one, valid, active and not expired (rights, which depend on what the
        body names, are checked later as usual). So a caller without a valid key cannot make
        the gateway hold megabytes for it."""
        if ctx.route.startswith("/admin/"):
            require_admin(self.runtime, ctx)
        else:
            await authenticate_early(self.runtime, ctx)

    def body_deadline_s(self, length: int | None) -> float:
        """How long a body of ``length`` bytes (``None``: chunked, up to the body limit) may
        take to arrive whole: the keep-alive timeout plus its length at the minimum rate, the
        plain-HTTP lane's rule (``athena.serving.lane_http``)."""
        settings = self.runtime.settings
        size = settings.max_body_bytes if length is None else length
        return settings.keep_alive_s + size / settings.body_min_bytes_per_s

    def _key_in_url(self, ctx: CallContext) -> bool:
        """A query parameter named like a key (``api_key``, ``apikey``; on /rest/v1 such names
        may be filtered columns, so there only by value), or any value that is a key."""
        rest = ctx.route.startswith("/rest/")
        admin_key = self.runtime.admin_key
        for name, value in ctx.query.items():
            if not rest and name.lower() in URL_KEY_PARAMS:
                return True
            if isinstance(value, str) and (
                parse_key(value) is not None or constant_time_equals(value, admin_key)
            ):
                return True
        return False

    def close(self, ctx: CallContext, status: int) -> None:
        """Metrics and the request log for a finished call (before its response is sent)."""
        runtime = self.runtime
        elapsed = time.perf_counter() - ctx.started
        name = ctx.client_name
        client = name if name and runtime.clients.get(name) else "-"
        runtime.metrics.observe(ctx.route, ctx.method, status, client, elapsed)
        if ctx.route != "unmatched" and ctx.extra.get("log", True):
            runtime.request_log.record(ctx, status, elapsed)
        logs.access(ctx, status, elapsed)
        logs.current_call.set(None)
        if tracing.TRACER is not None:
            tracing.close_request(ctx, status)


async def check_denylist(runtime: Runtime, ctx: CallContext) -> None:
    """The global IP deny list (``/admin/api-key-config``), before anything else is looked at.

    It is read with the enforcement settings (cached as they are). If the catalog cannot be
    read, the last list this process saw still applies rather than none: an outage must not
    let a denied network in.
    """
    store = runtime.auth_store
    try:
        enforcement = await store.enforcement()
    except (DatabaseUnavailable, StatementDeadlineExceeded, psycopg.Error):
        enforcement = store.last_enforcement
    check_global_denylist(enforcement, ctx.remote_addr)


def headers_too_large() -> ApiError:
    """431: here for a complete head over the limit, in the lane for one that never ends."""
    return ApiError("headers_too_large", "the request headers are larger than 32 KiB")


def query_pairs(query_string: bytes) -> list[tuple[str, str]]:
    """The query string's (name, value) pairs, decoded exactly as werkzeug's ``request.args``."""
    if not query_string:
        return []
    return parse_qsl(query_string.decode(), keep_blank_values=True, errors="werkzeug.url_quote")


def first_values(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Query parameters as a dict, the first value of a repeated name winning (as werkzeug)."""
    out: dict[str, Any] = {}
    for name, value in pairs:
        out.setdefault(name, value)
    return out
