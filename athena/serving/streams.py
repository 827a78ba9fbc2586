"""Socket streams for the HTTP layer: wrappers that add to a stream, and writes that give up on
a peer that stopped reading."""

from __future__ import annotations

from typing import Any

import trio


class WrappedStream(trio.abc.HalfCloseableStream):
    """Passes every call to ``stream``; subclasses override what they add to.

    ``socket`` is the underlying socket's, because hypercorn reads the peer and local
    addresses from it.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.socket = stream.socket

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self._stream.receive_some(max_bytes)

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()


# Writes go out in slices this size, each with its own deadline: progress, not the whole
# write, is what a slow but live reader must show.
SEND_SLICE = 64 * 1024


class Stalled(Exception):
    """The peer accepted less than one slice within the stall timeout."""


async def send_with_progress(stream: Any, data: bytes | bytearray, stall_after: float) -> None:
    """``send_all``, giving up (``Stalled``) on a peer that stopped reading.

    Without this a client that requests a large result and never reads it pins the task, the
    socket and the payload for ever. After ``Stalled`` the stream is in an unknown state: close it.
    """
    view = memoryview(data)
    for start in range(0, max(len(view), 1), SEND_SLICE):
        with trio.move_on_after(stall_after) as scope:
            await stream.send_all(view[start : start + SEND_SLICE])
        if scope.cancelled_caught:
            raise Stalled
