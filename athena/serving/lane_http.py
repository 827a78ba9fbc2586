"""HTTP/1.1 for the hot lane's requests, read and written straight on the socket.

Under load, hypercorn and h11 cost more CPU per request than the gateway's own work: a task and
a memory channel per request, an idle-timer task restarted per request, h11's event machine
both ways, and a send per ASGI message. For the hot lane's requests this module does instead
what HTTP/1.1 needs: read the head, read a Content-Length body, call ``HotLane.answer``, write the
response with one ``send_all``.

It serves a request only when the request is plainly simple:
- HTTP/1.1, with an origin-form target on a hot route;
- exactly one Host header;
- every header line well formed (RFC 9110 token names; no control characters in values);
- a body framed by at most one Content-Length, within ``ATHENA_MAX_BODY_BYTES``;
- no Transfer-Encoding, Expect or Upgrade.

On anything else the connection is handed to hypercorn, with the bytes already read, and stays
there. So malformed requests get hypercorn's answers (400, 431), and chunked bodies, HTTP/1.0,
WebSockets and every other route are served as before. A client that mixes hot and other routes
on one keep-alive connection is served by hypercorn from its first other request on.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import trio

from athena.http import render
from athena.http.calls import headers_too_large, key_needed_before
from athena.http.hot_lane import HotLane
from athena.observability import tracing
from athena.serving.streams import Stalled, WrappedStream, send_with_progress

log = logging.getLogger("athena.http")

_RECV = 64 * 1024
_ONE_WRITE = 64 * 1024  # responses up to this size go out as one block
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") (/[\x21-\x7e]*) HTTP/1\.1")
# A field line: token name, colon, value without control characters (HTAB allowed).
_FIELD = re.compile(rb"(" + _TOKEN + rb"):([^\x00-\x08\x0a-\x1f\x7f]*)")
_UNSAFE_VALUE = re.compile(rb"[\x00\r\n]")
# Headers after which this module does not serve the request itself.
_NOT_SIMPLE = frozenset({b"transfer-encoding", b"expect", b"upgrade"})
_REASONS = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}

Request = tuple[str, bytes, list[tuple[str, str]], int, bool]
ConnectionHandler = Callable[[Any], Awaitable[None]]


def parse_head(head: bytes) -> Request | None:
    """``(method, target, headers, content length, close)`` of a simple request, else None.

    ``head`` is the request line and field lines without the final blank line. Header names
    come back lower-cased and values trimmed, decoded as Latin-1 (as ASGI servers give them).
    """
    lines = head.split(b"\r\n")
    first = _REQUEST_LINE.fullmatch(lines[0])
    if first is None:
        return None
    headers: list[tuple[str, str]] = []
    hosts = 0
    length: int | None = None
    close = False
    for line in lines[1:]:
        field = _FIELD.fullmatch(line)
        if field is None:
            return None
        name = field[1].lower()
        value = field[2].strip(b" \t")
        if name in _NOT_SIMPLE:
            return None
        if name == b"content-length":
            # 18 digits: beyond any body limit, and int() refuses over 4,300 (a ValueError
            # that dropped the connection unanswered); h11 answers a silly length with 400.
            if length is not None or not value.isdigit() or len(value) > 18:
                return None
            length = int(value)
        elif name == b"host":
            hosts += 1
        elif name == b"connection":
            tokens = {token.strip().lower() for token in value.split(b",")}
            if b"upgrade" in tokens:
                return None
            close = close or b"close" in tokens
        headers.append((name.decode("latin-1"), value.decode("latin-1")))
    if hosts != 1:
        return None
    return first[1].decode("ascii"), first[2], headers, length or 0, close


_date: tuple[int, bytes] = (0, b"")


def _http_date() -> bytes:
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, formatdate(now, usegmt=True).encode("ascii"))
    return _date[1]


def render_head(status: int, headers: list[tuple[bytes, bytes]], close: bool) -> bytes:
    """Status line, the given headers, Date, and the blank line that ends the head."""
    parts = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b""))]
    for name, value in headers:
        if _UNSAFE_VALUE.search(value):
            # A value that would split the header block is a bug upstream; never send it.
            log.error("dropped response header %r: its value has CR, LF or NUL", name)
            continue
        parts += (name, b": ", value, b"\r\n")
    parts += (b"date: ", _http_date(), b"\r\n")
    if close:
        parts.append(b"connection: close\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def render_response(
    status: int, headers: list[tuple[bytes, bytes]], payload: bytes, close: bool
) -> bytes:
    """The whole response in one block, for one write."""
    return render_head(status, headers, close) + payload


class LaneHttp:
    """The connection handler: hot-lane requests here, the connection to hypercorn otherwise."""

    def __init__(
        self,
        lane: HotLane,
        hand_over: ConnectionHandler,
        *,
        max_head: int,
        keep_alive: float,
        terminated: Any,
        body_min_rate: int = 64 * 1024,
    ) -> None:
        self.lane = lane
        self.hand_over = hand_over
        self.max_head = max_head
        self.keep_alive = keep_alive
        self.body_min_rate = body_min_rate
        self.terminated = terminated  # hypercorn's worker-context event: shutting down
        self._waiting: set[trio.CancelScope] = set()

    def close_idle(self) -> None:
        """Shutdown: connections waiting for a request close now; busy ones after it."""
        for scope in self._waiting:
            scope.cancel()

    async def __call__(self, stream: Any) -> None:
        try:
            peer = stream.socket.getpeername()
        except OSError:
            await stream.aclose()
            return
        remote = peer[0] if isinstance(peer, tuple) else None
        buf = bytearray()
        try:
            served = await self._serve(stream, buf, remote)
        except (trio.BrokenResourceError, trio.ClosedResourceError, Stalled):
            served = True  # the client went away, or stopped reading
        except Exception:  # a bug here must not take the listener down with it
            log.exception("error serving a connection; closing it")
            served = True
        if served:
            await stream.aclose()
        else:
            await self.hand_over(_Replay(stream, bytes(buf)))

    async def _serve(self, stream: Any, buf: bytearray, remote: str | None) -> bool:
        """Serve requests until the connection ends (True) or must go to hypercorn (False).

        On False, ``buf`` holds every byte read and not yet answered, from a request's start.
        """
        lane = self.lane
        while True:
            end = buf.find(b"\r\n\r\n")
            # The whole head must arrive within the keep-alive timeout, as under hypercorn,
            # so a client trickling a byte at a time cannot hold a connection for ever.
            head_deadline = trio.current_time() + self.keep_alive
            searched_to = 0  # each byte is searched once, however the head is split up
            while end < 0:
                if len(buf) > self.max_head:
                    # Refused whatever follows, in the envelope, as the call gate refuses a
                    # complete head over 32 KiB. Handed over, h11 would answer a bare 431 with
                    # no body: which of the two a client got hung on how TCP split the head.
                    await self._refuse_long_head(stream)
                    return True
                if buf.find(b"\n\n", searched_to) >= 0:
                    return False  # bare-LF lines: hypercorn's answer
                data = await self._receive(stream, head_deadline, waiting=True)
                if not data:
                    return True
                searched_to = max(0, len(buf) - 3)
                buf += data
                end = buf.find(b"\r\n\r\n", searched_to)
            if end > self.max_head:
                return False
            request = parse_head(bytes(buf[:end]))
            if request is None:
                return False
            method, target, headers, length, close = request
            raw_path, _, query_string = target.partition(b"?")
            matched = lane.match(method, unquote(raw_path.decode("ascii")))
            if matched is None or length > lane.max_body:
                return False
            start = end + 4
            if len(buf) < start + length and key_needed_before(length):
                # A large body is still to come: the key is checked first, so a caller without
                # a valid one cannot make us hold megabytes for it. Refused → answered and
                # closed, the body never read.
                refusal = await lane.refusal_before_body(matched, headers, remote)
                if refusal is not None:
                    status, response_headers, payload = await lane.answer(
                        refusal, method, headers, query_string, b"", remote
                    )
                    response = render_response(status, response_headers, payload, True)
                    await send_with_progress(stream, response, self.keep_alive)
                    return True
            # The whole body must arrive by this deadline (a minimum average rate), as the head
            # must: a client trickling a byte at a time cannot hold a connection for ever.
            body_deadline = trio.current_time() + self.keep_alive + length / self.body_min_rate
            while len(buf) < start + length:
                # ... and each read still gets at most the keep-alive timeout of silence
                deadline = min(body_deadline, trio.current_time() + self.keep_alive)
                data = await self._receive(stream, deadline, waiting=False)
                if not data:
                    return True
                buf += data
            body = bytes(buf[start : start + length])
            del buf[: start + length]
            status, response_headers, payload = await lane.answer(
                matched, method, headers, query_string, body, remote
            )
            close = close or self.terminated.is_set()
            if len(payload) <= _ONE_WRITE:
                response = render_response(status, response_headers, payload, close)
                await send_with_progress(stream, response, self.keep_alive)
            else:  # not worth copying a large payload just to save a write
                head = render_head(status, response_headers, close)
                await send_with_progress(stream, head, self.keep_alive)
                await send_with_progress(stream, payload, self.keep_alive)
            if tracing.TRACER is not None:
                tracing.finish()
            if close:
                return True

    async def _refuse_long_head(self, stream: Any) -> None:
        status, payload, content_type, extra = render.error_answer(headers_too_large())
        headers = [
            (b"content-type", content_type),
            (b"content-length", str(len(payload)).encode()),
            *extra,
        ]
        response = render_response(status, headers, payload, True)
        await send_with_progress(stream, response, self.keep_alive)

    async def _receive(self, stream: Any, deadline: float, *, waiting: bool) -> bytes | bytearray:
        """The next bytes, or b"" when the client closed or the deadline passed.
        ``waiting``: for a request's head, where a shutdown closes the connection."""
        with trio.move_on_at(deadline) as scope:
            if waiting:
                if self.terminated.is_set():
                    return b""
                self._waiting.add(scope)
            try:
                return await stream.receive_some(_RECV)
            finally:
                self._waiting.discard(scope)
        return b""


class _Replay(WrappedStream):
    """A stream that first gives back bytes already read from it."""

    def __init__(self, stream: Any, head: bytes) -> None:
        super().__init__(stream)
        self._head = head

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._head:
            data, self._head = self._head, b""
            await trio.lowlevel.checkpoint()
            return data
        return await self._stream.receive_some(max_bytes)
