"""Unauthenticated memory pinning (issue 17, finding 4), over the real server's sockets.

- A large body is not read before the key is checked: keyless requests announcing 10 MiB get
  their 401 at once and the connection closes, and the server's memory does not grow.
- A body must arrive at a minimum average rate (ATHENA_BODY_MIN_BYTES_PER_S): a keyed client
  trickling bytes is cut off, although it is never silent for a whole keep-alive timeout.
- ATHENA_MAX_CONNECTIONS / ATHENA_MAX_CONNECTIONS_PER_IP: extra connections are answered
  503 / 429 in the error envelope and closed.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable

import pytest
from support.servers import AthenaServer

BIG = 10 * 1024 * 1024


def _rss_mib(server: AthenaServer) -> float:
    assert server.proc is not None
    with open(f"/proc/{server.proc.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _head(path: str, length: int, **headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: x", "Content-Type: application/json"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_response(sock: socket.socket, timeout: float) -> tuple[int, dict[str, str], bytes, bool]:
    """(status, headers, body, closed after it) — reads until the server closes."""
    sock.settimeout(timeout)
    data = b""
    closed = False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            closed = True
            break
        except TimeoutError:
            break
        if not chunk:
            closed = True
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines[0] else 0
    headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    return status, headers, body, closed


@pytest.fixture(scope="module")
def guarded(athena_factory: Callable[..., AthenaServer]) -> AthenaServer:
    return athena_factory(keep_alive_s="2", body_min_bytes_per_s="65536")


def test_keyless_large_bodies_are_refused_before_they_are_read(guarded: AthenaServer) -> None:
    before = _rss_mib(guarded)
    socks = []
    try:
        for _ in range(12):
            sock = socket.create_connection(("127.0.0.1", guarded.port), timeout=5)
            head = _head("/gateway/fetch", BIG, **{"X-Athena-Client": "athena"})
            # the head and almost all of the body, then the client stalls
            try:
                sock.sendall(head + b"{" + b" " * (BIG - 4096))
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server answered and closed before taking the body: what we want
            socks.append(sock)
        for sock in socks:
            status, _, body, closed = _read_response(sock, 5)
            assert status == 401, body
            assert json.loads(body)["code"] == "api_key_required"
            assert closed, "the connection must close: the body was never read"
        grown = _rss_mib(guarded) - before
        # 12 x 10 MiB buffered would be ~120 MiB; allow for allocator noise
        assert grown < 25, f"server RSS grew by {grown:.0f} MiB"
    finally:
        for sock in socks:
            sock.close()


def test_an_invalid_key_is_refused_before_the_body_too(guarded: AthenaServer) -> None:
    with socket.create_connection(("127.0.0.1", guarded.port), timeout=5) as sock:
        sock.sendall(_head("/rest/v1/anything", BIG, apikey="ath_0123456789abcdef.nope"))
        status, _, body, closed = _read_response(sock, 5)
    assert status == 401 and json.loads(body)["code"] == "invalid_api_key" and closed


def test_a_trickled_body_is_cut_at_the_minimum_rate(guarded: AthenaServer, admin_key: str) -> None:
    # 100 000 bytes at >= 64 KiB/s plus the 2 s keep-alive grace: done by ~3.5 s. The client
    # sends a byte every 0.5 s, never silent for a keep-alive timeout, so only the rate cuts it.
    length = 100_000
    with socket.create_connection(("127.0.0.1", guarded.port), timeout=5) as sock:
        head = _head("/gateway/fetch", length, apikey=admin_key, **{"X-Athena-Client": "athena"})
        sock.sendall(head + b"{")
        started = time.monotonic()
        closed_after = None
        while time.monotonic() - started < 12:
            time.sleep(0.5)
            try:
                sock.sendall(b" ")
                sock.settimeout(0.01)
                if sock.recv(1) == b"":
                    closed_after = time.monotonic() - started
                    break
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed_after = time.monotonic() - started
                break
    assert closed_after is not None, "a body trickled for 12 s was never cut off"
    assert closed_after < 8


def test_a_body_at_a_normal_pace_is_served(guarded: AthenaServer, admin_key: str) -> None:
    body = json.dumps({"table_name": "no_such_table", "pad": "x" * 200_000}).encode()
    with socket.create_connection(("127.0.0.1", guarded.port), timeout=5) as sock:
        head = _head("/gateway/fetch", len(body), apikey=admin_key, **{"X-Athena-Client": "athena"})
        sock.sendall(head)
        for i in range(0, len(body), 50_000):  # 4 pieces, 0.2 s apart
            sock.sendall(body[i : i + 50_000])
            time.sleep(0.2)
        sock.sendall(b"")
        status, _, payload, _ = _read_response(sock, 3)
    assert status == 400 and json.loads(payload)["code"] == "unknown_table"


def _connect(server: AthenaServer, source: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.settimeout(5)
    sock.connect(("127.0.0.1", server.port))
    return sock


def _ping_ok(sock: socket.socket) -> bool:
    sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
    sock.settimeout(5)
    return sock.recv(4096).startswith(b"HTTP/1.1 200")


def test_connection_caps_refuse_extra_connections(
    athena_factory: Callable[..., AthenaServer],
) -> None:
    server = athena_factory(max_connections="5", max_connections_per_ip="3")
    held: list[socket.socket] = []
    try:
        held += [_connect(server, "127.0.0.1") for _ in range(3)]
        assert all(_ping_ok(s) for s in held)  # served and still open (keep-alive)
        extra = _connect(server, "127.0.0.1")
        status, headers, body, closed = _read_response(extra, 5)
        extra.close()
        assert status == 429 and closed
        assert json.loads(body)["code"] == "too_many_connections_from_ip"
        assert headers["connection"] == "close"

        held += [_connect(server, "127.0.0.2") for _ in range(2)]  # another address: 5 in all
        assert all(_ping_ok(s) for s in held[3:])
        full = _connect(server, "127.0.0.3")
        status, _, body, closed = _read_response(full, 5)
        full.close()
        assert status == 503 and closed
        assert json.loads(body)["code"] == "too_many_connections"

        held.pop(0).close()  # one closes: room again
        deadline = time.monotonic() + 5
        while True:
            again = _connect(server, "127.0.0.3")
            try:
                if _ping_ok(again):
                    break
            except OSError:
                pass
            finally:
                again.close()
            assert time.monotonic() < deadline, "a freed slot was never reused"
            time.sleep(0.1)
    finally:
        for sock in held:
            sock.close()
