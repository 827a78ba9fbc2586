"""``create_app(runtime)`` → the QuartTrio application (``athena.http.gate`` puts the hot lane in
front of it).

``ROUTE_MODULES`` names every route module (one per path family) whose blueprint is registered; a
module is added only when its routes really work, so ``GET /`` (built from the live URL map) lists
exactly what the server serves. One set of hooks gives every response an ``x-request-id``, records
metrics and the request log, and renders every failure as the JSON error envelope.
"""

from __future__ import annotations

import logging

from quart import Quart, Response, g, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from athena.context import CallContext, new_request_id
from athena.errors import ApiError
from athena.http import render
from athena.http.calls import CallGate, key_needed_before
from athena.routes import (
    admin_api_keys,
    admin_clients,
    backup_schedules,
    backups,
    console,
    gateway,
    health,
    key_info,
    management,
    meta,
    pipelines,
    provision,
    query_sql,
    registry,
    request_log,
    rest,
    rpc,
    schema,
    statistics,
    supabase,
    unsupported,
    webhooks,
    wss,
)
from athena.runtime import Runtime, set_current_runtime

log = logging.getLogger("athena.app")


ROUTE_MODULES = (
    admin_api_keys,
    admin_clients,
    backup_schedules,
    backups,
    console,
    gateway,
    health,
    key_info,
    management,
    meta,
    pipelines,
    provision,
    query_sql,
    registry,
    request_log,
    rest,
    rpc,
    schema,
    statistics,
    supabase,
    unsupported,
    webhooks,
    wss,
)


def create_app(runtime: Runtime) -> Quart:
    app = QuartTrio("athena", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = runtime.settings.max_body_bytes
    app.config["JSON_SORT_KEYS"] = False
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    app.runtime = runtime  # type: ignore[attr-defined]
    set_current_runtime(runtime)

    for module in ROUTE_MODULES:
        app.register_blueprint(module.blueprint)

    gate = app.call_gate = CallGate(runtime)  # type: ignore[attr-defined]
    max_body = runtime.settings.max_body_bytes

    @app.before_request
    async def _open_call() -> None:
        ctx = g.athena_ctx = gate.context(
            request.headers.items(),
            remote_addr=request.remote_addr,
            route=request.url_rule.rule if request.url_rule else "unmatched",
            method=request.method,
            query=request.args.to_dict(),
        )
        length = request.content_length
        if length or "transfer-encoding" in request.headers:
            # hypercorn serves these bodies (chunked ones, HTTP/2, routes off the hot lane,
            # and everything with ATHENA_LANE_HTTP=false), under the plain-HTTP lane's rules:
            # a large one waits for the key check, and every one must arrive by a deadline.
            # (A body announced over the limit is answered 413 unread, key or not.)
            if key_needed_before(length) and (length is None or length <= max_body):
                await gate.key_before_body(ctx)
            request.body_timeout = gate.body_deadline_s(length)  # then 408 body_timeout
            # Read the body before anything can answer, so the connection stays usable
            # (athena.http.gate's body rule covers what is answered unread, e.g. 401, 413).
            # Bodies are bounded by MAX_CONTENT_LENGTH (413 beyond).
            await request.get_data(cache=True)
        await gate.admit(ctx, len(request.query_string))

    @app.before_websocket
    async def _open_ws_call() -> None:
        from quart import websocket

        ctx = g.athena_ctx = gate.context(
            websocket.headers.items(),
            remote_addr=websocket.remote_addr,
            route=websocket.url_rule.rule if websocket.url_rule else "unmatched",
            method="WS",
            query=websocket.args.to_dict(),
        )
        # Before the upgrade: header size, keys in the URL (an error here refuses the upgrade
        # with an HTTP answer); rate limits apply to each message instead.
        await gate.admit(ctx, len(websocket.query_string), rate_limited=False)

    @app.after_request
    async def _close_call(response: Response) -> Response:
        ctx: CallContext | None = g.get("athena_ctx")
        if ctx is None:  # failed before the context existed (e.g. body too large)
            response.headers["x-request-id"] = (
                request.headers.get("x-request-id") or new_request_id()
            )
            return response
        response.headers["x-request-id"] = ctx.request_id
        if response.status_code in (204, 304):
            # RFC 9110: no Content-Length on these (the hot lane sends none either)
            response.headers.pop("Content-Length", None)
        gate.close(ctx, response.status_code)
        return response

    @app.errorhandler(ApiError)
    async def _api_error(exc: ApiError) -> Response:
        ctx: CallContext | None = g.get("athena_ctx")
        if ctx is not None:
            ctx.error_code = exc.code
        return Response(
            render.error_body(exc), status=exc.status, content_type=render.JSON, headers=exc.headers
        )

    @app.errorhandler(HTTPException)
    async def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        if isinstance(exc, RequestEntityTooLarge):
            status = 413
        response = await _api_error(render.http_error(status, exc.description))
        if status == 405 and getattr(exc, "valid_methods", None):
            response.headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
        return response

    @app.errorhandler(Exception)
    async def _unexpected(exc: Exception) -> Response:
        ctx: CallContext | None = g.get("athena_ctx")
        request_id = ctx.request_id if ctx else new_request_id()
        log.error("unhandled error in request %s", request_id, exc_info=exc)
        return await _api_error(render.internal_error(request_id))

    return app
