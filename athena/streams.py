"""A socket stream with something added: the base of the wrappers the HTTP layer hands on."""

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
