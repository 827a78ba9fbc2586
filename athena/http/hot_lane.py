"""The hot routes, served straight from ASGI in front of Quart.

The data gateway's body-in, envelope-out routes (``/gateway/fetch`` and friends),
``/rest/v1/{table}`` (GET, POST, PATCH, DELETE) and ``/ping`` are most of a gateway's traffic. For them Quart's request and response objects, context locals
and hook dispatch cost about as much CPU as the whole data path (measured: ~250 µs of ~1.1 ms
per fetch in-process), so this lane serves them directly: read the body, open the call through
the same ``CallGate`` as Quart's hooks, call the same service, send the envelope.

Anything it does not serve goes to Quart unchanged: other routes, other methods (HEAD, PUT,
OPTIONS), WebSockets, lifespan, and requests on these paths whose body needs Quart's handling
(no Content-Length, or one over ``ATHENA_MAX_BODY_BYTES`` → Quart's 413). Behaviour is the
same on both paths: ``tests/gateway/test_hot_lane.py`` and ``tests/rest/test_rest_lane.py``
send each request both ways and compare the answers. ``ATHENA_HOT_LANE=false`` turns it off.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from athena.auth.guard import authenticate_early
from athena.context import CallContext
from athena.errors import ApiError
from athena.http import render
from athena.http.bodies import parse_json_object
from athena.http.body_routes import BODY_ROUTES
from athena.http.calls import CallGate, first_values, key_needed_before, query_pairs
from athena.http.prefixes import canonical_path
from athena.http.render import Answer
from athena.http.rest_answer import answer as rest_answer
from athena.observability import tracing
from athena.runtime import Runtime

log = logging.getLogger("athena.app")

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


@dataclass
class Call:
    """What a lane handler gets besides the call context."""

    method: str
    body: bytes
    headers: list[tuple[str, str]]  # every header, repeated ones included
    pairs: list[tuple[str, str]]  # the query string, in order
    param: str = ""  # the path parameter of a prefix route (the table of /rest/v1/{table})


Handler = Callable[[CallContext, Call], Awaitable[Answer]]

_JSON = render.JSON.encode()
_REST_PREFIX = "/rest/v1/"
_REST_METHODS = frozenset({"GET", "POST", "PATCH", "DELETE"})
_REST_ROUTE = "/rest/v1/<table>"  # the route template metrics and the request log use
# Statuses whose responses carry no body and no Content-Length (RFC 9110).
_NO_BODY = frozenset({204, 304})


class _ClientGone(Exception):
    """The client disconnected before its request body arrived."""


class HotLane:
    """ASGI app: exact (method, path) matches of the hot routes here, the rest to ``app``."""

    def __init__(self, app: ASGIApp, runtime: Runtime, gate: CallGate) -> None:
        self.app = app
        self.runtime = runtime
        self.gate = gate
        self.max_body = runtime.settings.max_body_bytes
        self.routes: dict[tuple[str, str], Handler] = {("GET", "/ping"): self._ping}
        for key, service in BODY_ROUTES.items():
            self.routes[key] = self._body_route(service)

    def match(self, method: str, path: str) -> tuple[Handler, str, str] | None:
        """The handler, route template and path parameter serving ``method path``, if any."""
        path = canonical_path(path)  # /db/gateway/fetch is /gateway/fetch (SDK 5)
        handler = self.routes.get((method, path))
        if handler is not None:
            return handler, path, ""
        if path.startswith(_REST_PREFIX) and method in _REST_METHODS:
            param = path[len(_REST_PREFIX) :]
            if param and "/" not in param:
                return self._rest, _REST_ROUTE, param
        return None

    def _plain_body_length(self, headers: list[tuple[str, str]]) -> int | None:
        """The body length when this lane can read the body itself, else ``None``."""
        length = 0
        for name, value in headers:
            if name == "content-length":
                try:
                    length = int(value)
                except ValueError:
                    return None
            elif name == "transfer-encoding":
                return None
        return length if 0 <= length <= self.max_body else None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            method = scope["method"]
            matched = self.match(method, scope["path"])
            if matched is not None:
                headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
                length = self._plain_body_length(headers)
                if length is not None:
                    client = scope.get("client")
                    remote = client[0] if client else None
                    body = b""
                    if length and key_needed_before(length):
                        # Here under hypercorn (ATHENA_LANE_HTTP=false, HTTP/2, Expect …): the
                        # key before a large body, as the plain-HTTP lane does. A refusal is
                        # answered unread; the gate's body rule then closes the connection.
                        refusal = await self.refusal_before_body(matched, headers, remote)
                        if refusal is not None:
                            matched, length = refusal, 0
                    if length:
                        try:
                            # Read the whole body first (athena.http.gate's body rule), by the
                            # lane's deadline: a trickling client is answered 408 and closed.
                            with trio.move_on_after(self.gate.body_deadline_s(length)):
                                body = await _read_body(receive)
                            if len(body) != length:
                                matched = _refused(render.http_error(408), matched)
                        except _ClientGone:
                            return
                    status, response_headers, payload = await self.answer(
                        matched, method, headers, scope.get("query_string") or b"", body, remote
                    )
                    await send(
                        {
                            "type": "http.response.start",
                            "status": status,
                            "headers": response_headers,
                        }
                    )
                    await send({"type": "http.response.body", "body": payload})
                    if tracing.TRACER is not None:
                        tracing.finish()
                    return
        await self.app(scope, receive, send)

    async def refusal_before_body(
        self, matched: tuple[Handler, str, str], headers: list[tuple[str, str]],
        remote_addr: str | None,
    ) -> tuple[Handler, str, str] | None:  # fmt: skip
        """Before a large body is read: None when the key checks that need no body pass, else
        a route that answers the refusal (through ``answer``, so it is logged and counted)."""
        ctx = self.gate.context(headers, remote_addr=remote_addr, route="", method="", query={})
        try:
            await authenticate_early(self.runtime, ctx)
        except ApiError as exc:
            return _refused(exc, matched)
        return None

    async def answer(
        self, matched: tuple[Handler, str, str], method: str, headers: list[tuple[str, str]],
        query_string: bytes, body: bytes, remote_addr: str | None,
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:  # fmt: skip
        """One request, whole: admitted, served and closed through the call gate.

        Returns the status, the response headers (without Date and framing beyond
        Content-Length) and the payload. Never raises for a request's fault or a bug: those
        are answered in the error envelope.
        """
        handler, route, param = matched
        gate = self.gate
        try:
            pairs = query_pairs(query_string)
        except UnicodeDecodeError:  # h11 only lets ASCII through; never reached in practice
            pairs = []
        ctx = gate.context(
            headers, remote_addr=remote_addr, route=route, method=method, query=first_values(pairs)
        )
        try:
            await gate.admit(ctx, len(query_string))
            call = Call(method, body, headers, pairs, param)
            status, payload, content_type, extra = await handler(ctx, call)
        except ApiError as exc:
            ctx.error_code = exc.code
            status, payload, content_type, extra = render.error_answer(exc)
        except Exception as exc:  # a bug: logged with the request id, answered 500
            log.error("unhandled error in request %s", ctx.request_id, exc_info=exc)
            err = render.internal_error(ctx.request_id)
            ctx.error_code = err.code
            status, payload, content_type, extra = render.error_answer(err)
        gate.close(ctx, status)
        response_headers = [(b"content-type", content_type)]
        if status in _NO_BODY:
            payload = b""
        else:
            response_headers.append((b"content-length", str(len(payload)).encode()))
        response_headers.append((b"x-request-id", ctx.request_id.encode("latin-1")))
        response_headers.extend(extra)
        return status, response_headers, payload

    async def _ping(self, ctx: CallContext, call: Call) -> Answer:
        return render.ping(ctx)

    def _body_route(self, service: Any) -> Handler:
        runtime = self.runtime

        async def handle(ctx: CallContext, call: Call) -> Answer:
            result = await service(runtime, ctx, parse_json_object(call.body))
            return result.status, render.gateway_envelope(result), _JSON, []

        return handle

    async def _rest(self, ctx: CallContext, call: Call) -> Answer:
        """``/rest/v1/{table}``: the same ``http.rest_answer.answer`` the Quart view uses."""
        prefer = [value for name, value in call.headers if name == "prefer"]
        result = await rest_answer(
            self.runtime, ctx, method=call.method, table=call.param, pairs=call.pairs,
            body=call.body, prefer=prefer,
        )  # fmt: skip
        extra = [
            (k.lower().encode("latin-1"), str(v).encode("latin-1"))
            for k, v in result.headers.items()
        ]
        return result.status, result.body, result.media.encode("latin-1"), extra


def _refused(err: ApiError, matched: tuple[Handler, str, str]) -> tuple[Handler, str, str]:
    """``matched``'s route, served by a handler that answers ``err``."""

    async def refuse(ctx: CallContext, call: Call) -> Answer:
        raise err

    return refuse, matched[1], matched[2]


async def _read_body(receive: Any) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
