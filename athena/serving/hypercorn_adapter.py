"""hypercorn's HTTP/1.1 machinery, served from a listener Athena chooses.

``hypercorn.trio.serve`` builds its listeners from the configured sockets itself, so it cannot
take the ``BalancedListener`` that evens connections out between workers. This module puts
hypercorn's own parts (ASGI lifespan, ``TCPServer`` per connection, the worker context that
tells keep-alive connections to wind down) around ``trio.serve_listeners`` and a listener it is
given. Shutdown follows hypercorn's: stop accepting, let in-flight requests finish for
``config.graceful_timeout``, then run the app's lifespan shutdown.

Three changes to hypercorn's connection handling, in ``_Connection``:
- A connection whose client has closed its side is closed at once. hypercorn's trio server left
  such a socket in CLOSE-WAIT, with its task, until the keep-alive timer ran out (30 s), because
  only that timer ended an idle connection. A client that opens a connection per request then
  pins thousands of sockets.
- A write the peer accepts nothing of for the keep-alive timeout closes the connection, as in
  ``athena.serving.lane_http``. hypercorn's shielded write waited for ever.
- Closing the connection is shielded from cancellation, so that it is never left half done
  (see ``protocol_send``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.events import Closed, Event, RawData
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import wrap_app

from athena.http.hot_lane import HotLane
from athena.serving.connection_limit import ConnectionLimit
from athena.serving.lane_http import LaneHttp
from athena.serving.streams import Stalled, send_with_progress


class _Connection(TCPServer):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._client_gone = False
        self._idle_scope: trio.CancelScope | None = None

    async def _read_data(self) -> None:
        await super()._read_data()
        # Nothing more can arrive, so there is no next request to wait for. A response in
        # flight still goes out: the idle timer runs only between requests, and when it starts
        # after that response it finds the client gone and closes at once.
        self._client_gone = True
        if self._idle_scope is not None:
            self._idle_scope.cancel()

    async def protocol_send(self, event: Event) -> None:
        if isinstance(event, Closed):
            # Shielded: the close often runs inside the app's last send, and quart-trio
            # cancels that task as soon as its receiver sees the http.disconnect this close
            # queues — which left the socket open, the close half done, until the client
            # went away (every response with Connection: close to a request whose body was
            # not read: 401 before a large body, 413).
            with trio.CancelScope(shield=True):
                await super().protocol_send(event)
            return
        if not isinstance(event, RawData):
            await super().protocol_send(event)
            return
        # hypercorn's write, shielded as there, but given up on a peer that stopped reading:
        # otherwise the task, the socket and the data are pinned for ever (and a WebSocket
        # close queued behind the write never goes out).
        async with self.send_lock:
            try:
                with trio.CancelScope(shield=True):
                    await send_with_progress(
                        self.stream, event.data, self.config.keep_alive_timeout
                    )
            except Stalled:
                await self.stream.aclose()
                await self.protocol.handle(Closed())
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                await self.protocol.handle(Closed())

    async def _idle_timeout(self) -> None:
        # hypercorn's idle timer, which also ends when the client has gone
        if not self._client_gone:
            with trio.move_on_after(self.config.keep_alive_timeout) as self._idle_scope:
                await self.context.terminated.wait()
        with trio.CancelScope(shield=True):
            await self._initiate_server_close()


async def serve(
    app: Any,
    config: Config,
    listener: trio.abc.Listener[Any],
    *,
    shutdown_trigger: Callable[[], Awaitable[None]],
    lane: HotLane | None = None,
    max_connections: int = 0,
    max_connections_per_ip: int = 0,
    body_min_rate: int = 64 * 1024,
) -> None:
    """Serve ``app`` on ``listener`` until ``shutdown_trigger`` returns, then drain.

    ``max_connections`` / ``max_connections_per_ip`` cap the connections open at once (0: no
    cap; see ``athena.serving.connection_limit``); ``body_min_rate`` (bytes/s) bounds how long
    the lane waits for a request body.

    With ``lane`` (the hot lane, which ``app`` is or wraps), connections start in
    ``athena.serving.lane_http``, which answers the lane's plain requests itself and hands everything
    else to hypercorn.
    """
    asgi = wrap_app(app, config.wsgi_max_body_size, "asgi")
    lifespan_state: dict[str, Any] = {}
    lifespan = Lifespan(asgi, config, lifespan_state)
    context = WorkerContext(None)
    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        # The lifespan startup may have filled the state; every connection gets a copy.
        hypercorn = partial(
            _Connection, asgi, config, context, ConnectionState(lifespan_state.copy())
        )
        handler: Callable[[Any], Awaitable[None]] = hypercorn
        lane_http: LaneHttp | None = None
        if lane is not None:
            lane_http = handler = LaneHttp(
                lane,
                hypercorn,
                max_head=config.h11_max_incomplete_size,
                keep_alive=config.keep_alive_timeout,
                body_min_rate=body_min_rate,
                terminated=context.terminated,
            )
        handler = ConnectionLimit(
            handler, max_total=max_connections, max_per_ip=max_connections_per_ip
        )
        async with trio.open_nursery() as connections:
            async with trio.open_nursery() as accepting:
                accepting.start_soon(
                    partial(trio.serve_listeners, handler, [listener], handler_nursery=connections)
                )
                await shutdown_trigger()
                accepting.cancel_scope.cancel()
            # Idle keep-alive connections close now; busy ones after their current response.
            await context.terminated.set()
            if lane_http is not None:
                lane_http.close_idle()
            connections.cancel_scope.deadline = trio.current_time() + config.graceful_timeout
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()
