"""One ``/wss/gateway`` socket: read loop, concurrent requests, outbound queue, close codes.

Tasks of a connection (all in one nursery, cancelled together when the socket ends)::

    read loop ──parse──▶ request tasks (≤ ws_max_concurrent_requests) ──┐
    event bus ──▶ events queue (ws_event_queue_size) ──▶ event pump ────┼──▶ outbound queue ──▶ writer
    heartbeat (ping / idle close), shutdown watcher ────────────────────┘    (ws_outbound_queue_size)

* The writer is the only task that touches the socket, so a slow client only ever blocks it.
* Requests: the read loop waits for a free slot before it reads the next message, so a client
  that floods requests gets TCP back-pressure, not unbounded tasks. Replies go out as they finish
  (out of order), matched by ``request_id``.
* Events: the bus puts them in this connection's bounded events queue without waiting; when
  the queue is full (the client reads slower than events arrive) the bus calls ``_overflow`` and
  the socket is closed with 1013 — the publisher and other subscribers never wait.

Close codes: 1009 message too big (after an error reply), 1013 slow consumer, 1001 idle timeout
or server shutdown (after in-flight requests finish, bounded by ``SHUTDOWN_GRACE_S``).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from athena.config import Settings
from athena.context import CallContext, new_request_id
from athena.errors import ApiError
from athena.http import render
from athena.http.calls import check_denylist
from athena.services.events import Delivery, Subscription
from athena.ws import protocol
from athena.ws.actions import dispatch

if TYPE_CHECKING:
    from athena.runtime import Runtime

log = logging.getLogger("athena.ws")

ROUTE = "/wss/gateway"
# hypercorn closes with a bare 1009 above its own frame limit (serving/worker.py): keep ours below it so
# the client gets an error reply saying why.
HYPERCORN_MAX_MESSAGE_BYTES = 1024 * 1024
# Shutdown: time for in-flight requests to finish and their replies to leave, inside hypercorn's
# 4 s graceful window.
SHUTDOWN_GRACE_S = 2.5

CLOSE_GOING_AWAY = 1001
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_TRY_AGAIN_LATER = 1013


@dataclass(frozen=True)
class Limits:
    """The per-connection limits, from Settings (``ws_*``)."""

    max_message_bytes: int
    max_concurrent_requests: int
    outbound_queue_size: int
    event_queue_size: int
    max_subscriptions: int
    ping_interval_s: float
    idle_timeout_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            max_message_bytes=min(settings.ws_max_message_bytes, HYPERCORN_MAX_MESSAGE_BYTES - 1),
            max_concurrent_requests=max(1, settings.ws_max_concurrent_requests),
            outbound_queue_size=max(1, settings.ws_outbound_queue_size),
            event_queue_size=max(1, settings.ws_event_queue_size),
            max_subscriptions=max(0, settings.ws_max_subscriptions),
            ping_interval_s=settings.ws_ping_interval_s,
            idle_timeout_s=settings.ws_idle_timeout_s,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "max_message_bytes": self.max_message_bytes,
            "max_concurrent_requests": self.max_concurrent_requests,
            "max_subscriptions": self.max_subscriptions,
            "event_queue_size": self.event_queue_size,
            "ping_interval_s": self.ping_interval_s,
            "idle_timeout_s": self.idle_timeout_s,
        }


class Connection:
    """Serves one accepted WebSocket until the client leaves, a limit closes it, or shutdown."""

    def __init__(self, rt: Runtime, ws: Any, upgrade: CallContext, limits: Limits) -> None:
        self.rt = rt
        self.ws = ws  # quart's Websocket: accept(), receive(), send(), close()
        self.upgrade = upgrade
        self.limits = limits
        self.id = "ws_" + uuid.uuid4().hex[:16]
        self.subscriptions: dict[str, Subscription] = {}
        self._out_send, self._out_recv = trio.open_memory_channel[str | trio.Event](
            limits.outbound_queue_size
        )
        self._events_send, self._events_recv = trio.open_memory_channel[Delivery](
            limits.event_queue_size
        )
        self._slots = trio.Semaphore(limits.max_concurrent_requests)
        self._last_seen = trio.current_time()
        self._pinged = False
        self._in_flight = 0
        self._close: tuple[int, str] | None = None
        self._nursery: trio.Nursery | None = None
        self._read_scope = trio.CancelScope()

    # -- lifecycle ---------------------------------------------------------------------------

    async def serve(self) -> None:
        await self.ws.accept()
        self.rt.ws_connections.add(self)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._write_loop)
                nursery.start_soon(self._event_pump)
                nursery.start_soon(self._heartbeat)
                nursery.start_soon(self._watch_shutdown)
                await self._out_send.send(self._hello())
                with self._read_scope:
                    await self._read_loop(nursery)
        finally:
            self._release()
            self._events_send.close()
        if self._close is not None:
            await self._send_close(*self._close)

    def _hello(self) -> str:
        return protocol.connection_message(
            {
                "connection_id": self.id,
                "client": self.upgrade.client_header,
                "actions": list(protocol.ACTIONS),
                "limits": self.limits.as_dict(),
            }
        )

    def close_now(self, code: int, reason: str) -> None:
        """End the connection with ``code``: stop every task, then send the close frame.

        Synchronous, so the event bus can call it from the publisher's task.
        """
        if self._close is not None:
            return
        self._close = (code, reason)
        # Closed as far as anyone else can tell, right now: no more events are queued for it
        # and it stops counting as open, even while the writer is still stuck behind a client
        # that does not read (hypercorn's socket write cannot be interrupted).
        self._release()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def _release(self) -> None:
        self.rt.ws_connections.discard(self)
        for sub_id in list(self.subscriptions):
            self._drop_subscription(sub_id)

    def close_after_flush(self, code: int, reason: str, *, wait_requests: bool) -> None:
        """Stop reading, let queued replies (and in-flight requests) go out, then close."""
        if self._close is not None or self._nursery is None:
            return
        self._read_scope.cancel()
        self._nursery.start_soon(self._flush_then_close, code, reason, wait_requests)

    async def _flush_then_close(self, code: int, reason: str, wait_requests: bool) -> None:
        with trio.move_on_after(SHUTDOWN_GRACE_S):
            if wait_requests:
                # Every slot back in our hands = no request in flight.
                for _ in range(self.limits.max_concurrent_requests):
                    await self._slots.acquire()
            # A marker through the outbound queue: when the writer reaches it, every reply
            # queued before it has been handed to the socket.
            written = trio.Event()
            await self._out_send.send(written)
            await written.wait()
        self.close_now(code, reason)

    async def _send_close(self, code: int, reason: str) -> None:
        # No timeout here on purpose: behind a client that stopped reading, the close frame
        # waits for the frame hypercorn is still writing (its socket write cannot be cancelled);
        # abandoning it would lose the close code. A client that disconnects ends the wait, and
        # one that stopped reading is dropped once the stalled write gives up (no progress for
        # ATHENA_KEEP_ALIVE_S, athena/serving/hypercorn_adapter.py).
        try:
            await self.ws.close(code, reason)
        except Exception:  # the client went away first: nothing left to tell it
            log.debug("close of %s failed", self.id, exc_info=True)

    # -- tasks -------------------------------------------------------------------------------

    async def _read_loop(self, nursery: trio.Nursery) -> None:
        limit = self.limits.max_message_bytes
        while True:
            # Wait for a free slot *before* reading: a flooding client is slowed down by TCP.
            await self._slots.acquire()
            try:
                raw = await self.ws.receive()
            except BaseException:
                self._slots.release()
                raise
            self._last_seen = trio.current_time()
            self._pinged = False
            if _size(raw, limit) > limit:
                self._slots.release()
                await self._reject_oversize(limit)
                return
            try:
                message = protocol.parse_message(raw)
            except protocol.BadMessage as bad:
                self._slots.release()
                await self._reply_bad(bad)
                continue
            if message.heartbeat_only:
                self._slots.release()
                continue
            nursery.start_soon(self._serve_request, message)

    async def _write_loop(self) -> None:
        async for item in self._out_recv:
            if isinstance(item, trio.Event):
                item.set()
            else:
                await self.ws.send(item)

    async def _event_pump(self) -> None:
        async for sub_id, ev in self._events_recv:
            if sub_id in self.subscriptions:  # unsubscribed while queued: drop it
                await self._out_send.send(ev.message_text(sub_id))

    async def _heartbeat(self) -> None:
        """Ping a quiet client; close with 1001 when it stays silent past the idle timeout."""
        ping_every, idle_after = self.limits.ping_interval_s, self.limits.idle_timeout_s
        while True:
            if self._in_flight:
                # Busy with its requests (the read loop may be waiting for a free slot, so
                # the client's pongs are not even read yet): that is not idleness.
                self._last_seen = trio.current_time()
                self._pinged = False
            quiet = trio.current_time() - self._last_seen
            if idle_after > 0 and quiet >= idle_after:
                self.close_now(CLOSE_GOING_AWAY, "idle timeout")
                return
            if ping_every > 0 and quiet >= ping_every and not self._pinged:
                self._pinged = True
                try:
                    self._out_send.send_nowait(protocol.ping_message())
                except trio.WouldBlock:
                    pass  # the queue is full of data anyway; the client is not idle on our side
            deadlines = [self._last_seen + idle_after] if idle_after > 0 else []
            if ping_every > 0 and not self._pinged:
                deadlines.append(self._last_seen + ping_every)
            wake = min(deadlines) if deadlines else trio.current_time() + 3600
            if self._in_flight:
                wake = min(wake, trio.current_time() + 1.0)  # look again while it is busy
            await trio.sleep_until(max(wake, trio.current_time() + 0.05))

    async def _watch_shutdown(self) -> None:
        await self.rt.shutting_down.wait()
        self.close_after_flush(CLOSE_GOING_AWAY, "server shutting down", wait_requests=True)

    # -- messages ----------------------------------------------------------------------------

    async def _serve_request(self, message: protocol.ClientMessage) -> None:
        self._in_flight += 1
        try:
            ctx = self._context(message)
            try:
                if message.action != "ping":
                    await self._check_rate(ctx)
                text, status = await dispatch(self, ctx, message)
            except ApiError as err:
                ctx.error_code = err.code
                text, status = (
                    render.ws_error_reply(message.request_id, message.action, err),
                    err.status,
                )
            except Exception:  # a bug: the client gets a request id, never the traceback
                log.exception("unhandled error in WebSocket request %s", ctx.request_id)
                err = render.internal_error(ctx.request_id)
                ctx.error_code = err.code
                text, status = render.ws_error_reply(message.request_id, message.action, err), 500
            await self._out_send.send(text)
            if message.action != "ping":  # heartbeats would flood the request log
                self._record(ctx, status)
        finally:
            self._in_flight -= 1
            self._slots.release()

    async def _check_rate(self, ctx: CallContext) -> None:
        """``ATHENA_RATE_LIMIT_PER_IP`` / ``_PER_KEY`` apply per message, as per HTTP request
        (buckets of the WebSocket gateway, separate from the HTTP ones)."""
        await check_denylist(self.rt, ctx)
        await self.rt.ws_rate_limits.check(ctx)

    def _context(self, message: protocol.ClientMessage) -> CallContext:
        """The upgrade's headers, overridden by the message's ``headers`` and ``client_name``."""
        headers = dict(self.upgrade.headers)
        headers.update(message.headers)
        if message.client_name:
            headers["x-athena-client"] = message.client_name
        request_id = str(message.request_id) if message.request_id is not None else None
        return CallContext(
            headers=headers,
            request_id=request_id or new_request_id(),
            remote_addr=self.upgrade.remote_addr,
            route=ROUTE,
            method=message.action,
            query={},
            started=time.perf_counter(),
        )

    def _record(self, ctx: CallContext, status: int) -> None:
        elapsed = time.perf_counter() - ctx.started
        client = (
            ctx.client_name if ctx.client_name and self.rt.clients.get(ctx.client_name) else "-"
        )
        self.rt.metrics.observe(ROUTE, ctx.method, status, client, elapsed)
        self.rt.request_log.record(ctx, status, elapsed)

    async def _reply_bad(self, bad: protocol.BadMessage) -> None:
        ctx = CallContext(
            headers=dict(self.upgrade.headers),
            request_id=str(bad.request_id) if bad.request_id is not None else new_request_id(),
            remote_addr=self.upgrade.remote_addr,
            route=ROUTE,
            method=bad.action,
            error_code=bad.error.code,
        )
        await self._out_send.send(render.ws_error_reply(bad.request_id, bad.action, bad.error))
        self._record(ctx, bad.error.status)

    async def _reject_oversize(self, limit: int) -> None:
        err = ApiError(
            "payload_too_large",
            f"the message is larger than the limit of {limit} bytes",
            data={"limit_bytes": limit},
        )
        await self._reply_bad(protocol.BadMessage(err, None, protocol.UNREADABLE))
        self.close_after_flush(CLOSE_MESSAGE_TOO_BIG, "message too big", wait_requests=False)

    # -- subscriptions (used by athena.ws.actions) ------------------------------------------

    def add_subscription(self, **kwargs: Any) -> Subscription:
        sub = self.rt.events.subscribe(
            queue_size=self.limits.event_queue_size,
            channel=self._events_send.clone(),
            on_overflow=self._overflow,
            **kwargs,
        )
        self.subscriptions[sub.id] = sub
        return sub

    def _drop_subscription(self, sub_id: str) -> Subscription | None:
        sub = self.subscriptions.pop(sub_id, None)
        if sub is not None:
            self.rt.events.unsubscribe(sub_id)  # closes its clone of our events queue
        return sub

    def remove_subscription(self, sub_id: str) -> Subscription | None:
        return self._drop_subscription(sub_id)

    def _overflow(self, sub: Subscription) -> None:
        log.warning(
            "closing %s: %d events queued unread (slow consumer)",
            self.id,
            self.limits.event_queue_size,
        )
        self.close_now(CLOSE_TRY_AGAIN_LATER, "slow consumer: event queue overflowed")


def _size(raw: str | bytes, limit: int) -> int:
    """The message's size in bytes (UTF-8 for text), computed only when it could matter."""
    if isinstance(raw, bytes):
        return len(raw)
    if len(raw) * 4 <= limit:  # at most 4 bytes per character: certainly within the limit
        return len(raw)
    return len(raw.encode("utf-8"))
