"""A response sent before its request's body was read must not wedge the connection.

Client libraries write a request's head, then its body a moment later. When the gateway answers
before reading that body (413: the body is over ``ATHENA_MAX_BODY_BYTES``), the next request
on the connection used to hang on every HTTP path. The rule now (``athena/http/gate.py``): a
small unread body is read and dropped before the response, and the connection stays usable; a
large one is not, and the response carries ``Connection: close`` and arrives whole (no reset
under it); a client then opens a new connection for its next request.

A request that frames its body twice (Content-Length and Transfer-Encoding, RFC 9112 §6.1) is
answered 400 and the connection closed, on every path.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import pytest
from support.servers import AthenaServer

MAX_BODY = 2048
ROUNDS = 200
PATHS = {
    "default": {},
    "hypercorn": {"lane_http": "false"},
    "quart": {"hot_lane": "false"},
}


@pytest.fixture(scope="module", params=list(PATHS))
def server(
    request: pytest.FixtureRequest, athena_factory: Callable[..., AthenaServer]
) -> AthenaServer:
    return athena_factory(max_body_bytes=str(MAX_BODY), **PATHS[request.param])


def _head(length: int, *, extra: str = "") -> bytes:
    return (
        "POST /gateway/fetch HTTP/1.1\r\nHost: athena.test\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n{extra}\r\n"
    ).encode()


def _connect(server: AthenaServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=2)
    # Head and body go out as written (no Nagle wait for the head's ACK), as a client's do.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_response(file: socket.SocketIO) -> tuple[int, dict[str, str], bytes]:
    status_line = file.readline()
    if not status_line:
        raise EOFError("connection closed before a response")
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while (line := file.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, file.read(int(headers.get("content-length", "0")))


def _closed_by_server(sock: socket.socket, file: socket.SocketIO) -> bool:
    sock.settimeout(2)
    try:
        return file.read(1) == b""
    except TimeoutError:
        return False


def test_a_413_then_the_next_request(server: AthenaServer) -> None:
    """200 rounds of: head, then the over-limit body a moment later → 413; then /ping → 200."""
    body = b'{"x":"' + b"y" * (MAX_BODY * 2) + b'"}'
    outcomes: dict[str, int] = {}
    sock = _connect(server)
    file = sock.makefile("rb")
    try:
        for _ in range(ROUNDS):
            outcome = "ok"
            try:
                sock.sendall(_head(len(body)))
                time.sleep(0.001)
                sock.sendall(body)
                status, headers, payload = _read_response(file)
                assert status == 413 and b'"payload_too_large"' in payload, (status, payload)
                if headers.get("connection", "").lower() == "close":
                    assert _closed_by_server(sock, file), "Connection: close, but left open"
                    file.close()
                    sock.close()
                    sock = _connect(server)
                    file = sock.makefile("rb")
                sock.settimeout(2)
                sock.sendall(b"GET /ping HTTP/1.1\r\nHost: athena.test\r\n\r\n")
                status, _, payload = _read_response(file)
                assert (status, payload) == (200, b"pong")
            except TimeoutError:
                outcome = "hang"
            except (ConnectionError, EOFError) as exc:  # a reset would lose the 413
                outcome = type(exc).__name__
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if outcome != "ok":
                file.close()
                sock.close()
                sock = _connect(server)
                file = sock.makefile("rb")
    finally:
        file.close()
        sock.close()
    assert outcomes == {"ok": ROUNDS}


def test_a_large_unread_body_closes_the_connection_after_the_413(server: AthenaServer) -> None:
    """A body too large to drop is not read: the 413 says Connection: close and arrives whole
    (no reset under it) although the client goes on writing its body."""
    body = b"y" * (3 * 1024 * 1024)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        file = sock.makefile("rb")
        sock.sendall(_head(len(body)))
        time.sleep(0.01)
        try:
            sock.sendall(body)
        except ConnectionError:
            pass  # the server may stop reading once it has answered
        status, headers, payload = _read_response(file)
        assert status == 413 and b'"payload_too_large"' in payload
        assert headers.get("connection", "").lower() == "close"
        file.close()


def test_content_length_with_transfer_encoding_is_refused(server: AthenaServer) -> None:
    """RFC 9112 §6.1: a request with both is an attack vector (smuggling); 400 and close."""
    chunked = b"1c\r\n" + b'{"table_name":"gw_products"}' + b"\r\n0\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        file = sock.makefile("rb")
        sock.sendall(_head(28, extra="Transfer-Encoding: chunked\r\n") + chunked)
        status, headers, payload = _read_response(file)
        assert status == 400 and b'"invalid_request"' in payload
        assert headers.get("connection", "").lower() == "close"
        assert _closed_by_server(sock, file)
        file.close()
