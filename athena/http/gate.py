"""The gate: what hypercorn (and the plain-HTTP lane) serve — the hot lane in front of Quart, and
the one rule about request bodies that every HTTP/1.1 path obeys.

A request on a hot route (``athena.http.hot_lane``) is answered there; everything else, and
everything with ``ATHENA_HOT_LANE=false``, goes to the Quart application (``athena.http.app``).

The body rule. On an HTTP/1.1 keep-alive connection the next request starts where this one's
body ends, so a response must not be sent while the body is still unread — yet the gateway
answers some requests without reading their body (413: the body is over
``ATHENA_MAX_BODY_BYTES``), and client libraries write a request's head, then its body a moment
later. hypercorn then waited for ever on the connection's next request. So, when the response
starts before the body has been read:

- the rest of the body is read and dropped first, when it is small (``DRAIN_BYTES``) and
  arrives promptly (``DRAIN_SECONDS``): the connection then stays usable;
- otherwise the response carries ``Connection: close``, and the gate keeps dropping what still
  arrives for up to ``DRAIN_SECONDS`` after it, so that closing does not reset the connection
  under the response before the client has read it (RFC 9112 §9.6).

A request that frames its body twice (Content-Length and Transfer-Encoding) is answered 400 and
the connection closed: two parties that disagree on where it ends is how requests are smuggled
(RFC 9112 §6.1; h11 lets Transfer-Encoding win silently). The plain-HTTP lane hands such
requests to hypercorn, so this is the one place that answers them.
"""

from __future__ import annotations

from typing import Any

import trio
from quart import Quart

from athena.context import new_request_id
from athena.errors import ApiError
from athena.http import render
from athena.http.app import create_app
from athena.http.hot_lane import HotLane
from athena.http.prefixes import ServicePrefixes
from athena.observability import tracing
from athena.runtime import Runtime

# A body left unread when the response starts is read first up to this size …
DRAIN_BYTES = 1024 * 1024
# … if it arrives within this long; the same bound applies to what is dropped after a
# response that closes the connection.
DRAIN_SECONDS = 1.0


def create_asgi(runtime: Runtime) -> HotLane | ServicePrefixes:
    """The hot lane in front of the Quart application (or Quart alone with
    ``ATHENA_HOT_LANE=false``), without the gate's body rule. SDK 5's ``/db/…`` and
    ``/storage/…`` prefixes are mapped on both paths (the hot lane in its route match,
    ``ServicePrefixes`` in front of Quart)."""
    app: Quart = create_app(runtime)
    served: Any = app
    if tracing.TRACER is not None:  # ends each call's spans once Quart has sent its response
        served = tracing.Middleware(app)
    quart = ServicePrefixes(served)
    if not runtime.settings.hot_lane:
        return quart
    return HotLane(quart, runtime, app.call_gate)  # type: ignore[attr-defined]


class Gate:
    """The ASGI application the servers run: ``create_asgi``'s app behind the body rule."""

    def __init__(self, runtime: Runtime) -> None:
        self.app = create_asgi(runtime)
        self.lane = self.app if isinstance(self.app, HotLane) else None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("http_version") not in ("1.1", "1.0"):
            await self.app(scope, receive, send)  # HTTP/2 streams end on their own
            return
        length: bytes | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                chunked = True
        if length is not None and chunked:
            await _refuse_double_framing(receive, send)
            return
        if not chunked and (length is None or length.strip() in (b"0", b"")):
            await self.app(scope, receive, send)  # no body: nothing can be left unread
            return
        exchange = _Exchange(receive, send)
        await self.app(scope, exchange.receive, exchange.send)
        await exchange.finish()


class _Exchange:
    """One request with a body: knows whether the body has been read when the response starts."""

    def __init__(self, receive: Any, send: Any) -> None:
        self._receive = receive
        self._send = send
        self.body_read = trio.Event()  # the whole body arrived, or the client left
        self.closing = False
        self._dropped = 0

    async def receive(self) -> dict[str, Any]:
        message: dict[str, Any] = await self._receive()
        if message["type"] == "http.request":
            if not message.get("more_body", False):
                self.body_read.set()
        else:  # http.disconnect: nothing more will arrive
            self.body_read.set()
        return message

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and not self.body_read.is_set():
            await self._drop_rest(DRAIN_BYTES)
            if not self.body_read.is_set():
                self.closing = True
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
        await self._send(message)

    async def finish(self) -> None:
        """After the response: on a closing connection, drop what still arrives for a while."""
        if self.closing and not self.body_read.is_set():
            await self._drop_rest(None)

    async def _drop_rest(self, limit: int | None) -> None:
        """Read and drop the body until it ends, ``limit`` bytes, or ``DRAIN_SECONDS``.

        Quart may read the same body concurrently (through ``receive``): the event tells
        either reader that the end came."""
        with trio.move_on_after(DRAIN_SECONDS):
            async with trio.open_nursery() as nursery:

                async def pull() -> None:
                    while limit is None or self._dropped <= limit:
                        message = await self.receive()
                        if self.body_read.is_set():
                            break
                        self._dropped += len(message.get("body", b""))
                    nursery.cancel_scope.cancel()

                nursery.start_soon(pull)
                await self.body_read.wait()
                nursery.cancel_scope.cancel()


async def _refuse_double_framing(receive: Any, send: Any) -> None:
    err = ApiError(
        "invalid_request",
        "a request may carry Content-Length or Transfer-Encoding, not both",
    )
    status, body, content_type, extra = render.error_answer(err)
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", new_request_id().encode()),
        *extra,
        (b"connection", b"close"),
    ]
    exchange = _Exchange(receive, send)
    exchange.closing = True
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    await exchange.finish()
