"""Even shares of connections for worker processes that listen on one socket.

With a shared listening socket every worker wakes for each new connection and whichever calls
``accept()`` first takes it. A burst of connections, such as a client's pool opening, then
splits unevenly between workers: 12/20 was typical for 32 connections over 2 workers. Keep-alive
connections stay where they landed, so the worker holding more of them queues more requests.
In ``scripts/bench`` its p99 was about 60 ms, against about 40 ms when the split was even.

Each worker publishes how many connections it holds on a small shared ``Board`` (a memfd the
parent process creates and the workers map). ``BalancedListener`` lets a pending connection wait
while another live worker holds fewer connections, so that worker takes it. It waits at most
``DEFER_SECONDS`` and then accepts anyway, so a busy, stalled or dead neighbour never leaves a
client unserved.

The board holds hints, not locks: each worker writes only its own slot, and a stale or torn read
costs at most one connection landing on the busier worker.
"""

from __future__ import annotations

import errno
import mmap
import os
import select
import socket
import time

import trio

from athena.serving.streams import WrappedStream

# How long a pending connection may wait for a less loaded worker to take it.
DEFER_SECONDS = 0.025
_DEFER_STEP = 0.001

# A worker that has not beaten for this long is treated as gone (crashed, or its loop stalled).
_BEAT_SECONDS = 1.0
_ALIVE_MS = 3_000

# Two int64 words per worker: its last heartbeat (monotonic ms; 0 = not accepting) and the
# number of connections it holds.
_WORDS = 2

# accept() errors that concern only the connection being accepted (trio ignores the same ones).
_IGNORED_ACCEPT_ERRNO_NAMES = (
    "ECONNABORTED", "EPROTO", "EPERM", "ENETDOWN", "ENOPROTOOPT", "EHOSTDOWN", "ENONET",
    "EHOSTUNREACH", "EOPNOTSUPP", "ENETUNREACH", "ETIMEDOUT",
)  # fmt: skip
_IGNORED_ACCEPT_ERRNOS = {
    getattr(errno, name) for name in _IGNORED_ACCEPT_ERRNO_NAMES if hasattr(errno, name)
}


def create_board(workers: int) -> int | None:
    """The parent's part: an anonymous shared file sized for ``workers`` slots (its fd)."""
    if not hasattr(os, "memfd_create"):
        return None
    fd = os.memfd_create("athena-workers")  # close-on-exec; subprocess pass_fds hands it on
    os.ftruncate(fd, workers * _WORDS * 8)
    return fd


def _now_ms() -> int:
    # CLOCK_MONOTONIC is one clock for every process on the machine, so beats compare.
    return int(time.monotonic() * 1000)


class Board:
    """One worker's view of the shared board: it writes its own slot and reads the others."""

    def __init__(self, fd: int, index: int, workers: int) -> None:
        self._map = mmap.mmap(fd, workers * _WORDS * 8)
        self._words = memoryview(self._map).cast("q")
        self._me = index
        self._others = [i for i in range(workers) if i != index]
        self._retired = False
        self.held = 0

    def beat(self) -> None:
        if not self._retired:
            self._words[self._me * _WORDS] = _now_ms()

    def retire(self) -> None:
        """This worker no longer accepts: the others must not wait for it to."""
        self._retired = True
        self._words[self._me * _WORDS] = 0

    def add(self, delta: int) -> None:
        self.held += delta
        self._words[self._me * _WORDS + 1] = self.held

    def ahead(self) -> bool:
        """Does another live, accepting worker hold fewer connections than this one?"""
        words = self._words
        now = _now_ms()
        for i in self._others:
            beat = words[i * _WORDS]
            if beat and now - beat < _ALIVE_MS and words[i * _WORDS + 1] < self.held:
                return True
        return False

    async def keep_beating(self) -> None:
        """Background task for the life of the worker (the listener retires it on close)."""
        while True:
            self.beat()
            await trio.sleep(_BEAT_SECONDS)

    def close(self) -> None:
        self._words.release()
        self._map.close()


class BalancedListener(trio.abc.Listener[trio.abc.HalfCloseableStream]):
    """Accepts from the shared socket, yielding pending connections to less loaded workers."""

    def __init__(self, sock: socket.socket, board: Board) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._board = board

    async def accept(self) -> trio.abc.HalfCloseableStream:
        while True:
            await trio.lowlevel.wait_readable(self._sock)
            deadline = trio.current_time() + DEFER_SECONDS
            while self._board.ahead() and trio.current_time() < deadline:
                await trio.sleep(_DEFER_STEP)
                if not _pending(self._sock):
                    break  # another worker took it
            try:
                conn, _ = self._sock.accept()
            except BlockingIOError:
                continue  # another worker took it
            except OSError as exc:
                if exc.errno in _IGNORED_ACCEPT_ERRNOS:
                    continue
                raise  # EMFILE and friends: trio.serve_listeners logs them and backs off
            self._board.add(1)
            stream = trio.SocketStream(trio.socket.from_stdlib_socket(conn))
            return CountedStream(stream, self._board)

    async def aclose(self) -> None:
        self._board.retire()
        self._sock.close()
        await trio.lowlevel.checkpoint()


def _pending(sock: socket.socket) -> bool:
    poller = select.poll()  # not select.select: it fails for descriptors above 1023
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class CountedStream(WrappedStream):
    """A socket stream that takes itself off the board when it closes."""

    def __init__(self, stream: trio.SocketStream, board: Board) -> None:
        super().__init__(stream)
        self._board = board
        self._counted = True

    async def aclose(self) -> None:
        if self._counted:
            self._counted = False
            self._board.add(-1)
        await self._stream.aclose()
