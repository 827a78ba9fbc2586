"""Caps on open connections: ``ATHENA_MAX_CONNECTIONS`` per worker, ``ATHENA_MAX_CONNECTIONS_PER_IP``
per client address within a worker.

Each open connection costs a task, a socket and whatever it has buffered, and a client needs no
key to open one; without a cap a single host can hold as many as the file-descriptor limit
allows. A connection over a cap gets one canned answer — 503 ``too_many_connections`` or 429
``too_many_connections_from_ip``, in the error envelope, ``connection: close`` — and is closed
without its request being read. The answer goes out within a second or not at all.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from athena.errors import ApiError
from athena.serving.lane_http import render_response

log = logging.getLogger("athena.http")

Handler = Callable[[Any], Awaitable[None]]
_REFUSAL_SEND_S = 1.0  # a refused client gets this long to take the answer


def _refusal(code: str, message: str) -> bytes:
    error = ApiError(code, message)
    payload = json.dumps(error.envelope(), separators=(",", ":")).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    if error.status == 429:
        headers.append((b"retry-after", b"1"))
    return render_response(error.status, headers, payload, close=True)


class ConnectionLimit:
    """Wraps a connection handler; counts the connections it is serving."""

    def __init__(self, handler: Handler, *, max_total: int, max_per_ip: int) -> None:
        self.handler = handler
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self.open = 0
        self.by_ip: Counter[str] = Counter()
        self._full = _refusal(
            "too_many_connections",
            "the server has too many open connections; retry shortly",
        )
        self._ip_full = _refusal(
            "too_many_connections_from_ip",
            "too many open connections from this address; close some and retry",
        )

    async def __call__(self, stream: Any) -> None:
        try:
            peer = stream.socket.getpeername()
            ip = peer[0] if isinstance(peer, tuple) else ""
        except (OSError, AttributeError):
            ip = ""
        if self.max_total and self.open >= self.max_total:
            await self._refuse(stream, self._full)
            return
        if self.max_per_ip and ip and self.by_ip[ip] >= self.max_per_ip:
            await self._refuse(stream, self._ip_full)
            return
        self.open += 1
        self.by_ip[ip] += 1
        try:
            await self.handler(stream)
        finally:
            self.open -= 1
            self.by_ip[ip] -= 1
            if not self.by_ip[ip]:
                del self.by_ip[ip]

    async def _refuse(self, stream: Any, answer: bytes) -> None:
        with trio.move_on_after(_REFUSAL_SEND_S):
            try:
                await stream.send_all(answer)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        with trio.CancelScope(shield=True):
            await stream.aclose()
