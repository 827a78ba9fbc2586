"""The key before a large body, and a body deadline, on the paths hypercorn serves (issue 17,
finding 4, the rest), over the real server's sockets.

The plain-HTTP lane (``tests/core/test_connection_safety.py``) is one way in; hypercorn serves
the others, all reachable by default: a chunked body on any route, ``Expect: 100-continue``,
every route off the hot lane (the admin API among them), HTTP/2 and everything with
``ATHENA_LANE_HTTP=false``. There too a keyless caller announcing megabytes gets its 401 at once
and the connection closes, and a keyed one trickling its body is cut at the minimum rate.
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


def _head(path: str, length: int | None, **headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: x", "Content-Type: application/json"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    lines.append("Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _read_response(sock: socket.socket, timeout: float) -> tuple[int, dict[str, str], bytes, bool]:
    """(status, headers, body, closed after it): reads until the server closes or ``timeout``;
    a 100 Continue before the answer is skipped."""
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
    if data.startswith(b"HTTP/1.1 100"):
        data = data.partition(b"\r\n\r\n")[2]
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines[0] else 0
    headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    return status, headers, body, closed


def _send(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered and closed before taking it all: what we want


@pytest.fixture(scope="module")
def server(athena_factory: Callable[..., AthenaServer]) -> AthenaServer:
    return athena_factory(keep_alive_s="2", body_min_bytes_per_s="65536")


@pytest.fixture(scope="module")
def no_lane(athena_factory: Callable[..., AthenaServer]) -> AthenaServer:
    """hypercorn serves every connection; bodies up to 256 KiB."""
    return athena_factory(
        lane_http="false", keep_alive_s="2", body_min_bytes_per_s="65536",
        max_body_bytes=str(256 * 1024),
    )  # fmt: skip


def test_keyless_chunked_bodies_are_refused_before_they_are_read(server: AthenaServer) -> None:
    before = _rss_mib(server)
    socks = []
    try:
        for _ in range(12):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            head = _head("/gateway/fetch", None, X_Athena_Client="athena")
            # the head and almost 10 MiB of chunks, then the client stalls
            _send(sock, head + b"".join(_chunk(b" " * 65536) for _ in range(BIG // 65536 - 1)))
            socks.append(sock)
        for sock in socks:
            status, headers, body, closed = _read_response(sock, 5)
            assert status == 401, body
            assert json.loads(body)["code"] == "api_key_required"
            assert closed and headers.get("connection") == "close"
        grown = _rss_mib(server) - before
        # 12 x 10 MiB buffered would be ~120 MiB; allow for allocator noise
        assert grown < 25, f"server RSS grew by {grown:.0f} MiB"
    finally:
        for sock in socks:
            sock.close()


@pytest.mark.parametrize(
    ("path", "headers", "code"),
    [
        ("/admin/clients", {}, "admin_key_required"),
        ("/admin/clients", {"apikey": "ath_0123456789abcdef.nope"}, "invalid_admin_key"),
        ("/pipelines", {"X_Athena_Client": "athena"}, "api_key_required"),
        ("/gateway/fetch", {"X_Athena_Client": "athena", "Expect": "100-continue"}, "api_key_required"),
        ("/gateway/fetch", {"X_Athena_Client": "athena", "Expect": "100-continue",
                            "apikey": "ath_0123456789abcdef.nope"}, "invalid_api_key"),
    ],
    ids=["admin-keyless", "admin-bad-key", "off-lane-keyless", "expect-keyless", "expect-bad-key"],
)  # fmt: skip
def test_large_bodies_hypercorn_reads_wait_for_the_key(
    server: AthenaServer, path: str, headers: dict[str, str], code: str
) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        _send(sock, _head(path, BIG, **headers) + b"{")
        status, headers_seen, body, closed = _read_response(sock, 5)
    assert status == 401, body
    assert json.loads(body)["code"] == code
    assert closed and headers_seen.get("connection") == "close", "the body was never read"


def test_without_the_lane_the_hot_routes_wait_for_the_key(no_lane: AthenaServer) -> None:
    before = _rss_mib(no_lane)
    socks = []
    try:
        for _ in range(12):
            sock = socket.create_connection(("127.0.0.1", no_lane.port), timeout=5)
            length = 256 * 1024
            _send(sock, _head("/gateway/fetch", length, X_Athena_Client="athena") + b"{")
            socks.append(sock)
        for sock in socks:
            status, _, body, closed = _read_response(sock, 5)
            assert status == 401 and json.loads(body)["code"] == "api_key_required", body
            assert closed
        assert _rss_mib(no_lane) - before < 25
    finally:
        for sock in socks:
            sock.close()


def _trickle(server: AthenaServer, head: bytes, piece: bytes) -> tuple[float | None, bytes]:
    """Send ``head``, then ``piece`` every 0.5 s (never silent for a keep-alive timeout);
    (seconds until the server closed, what it answered)."""
    answer = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head)
        started = time.monotonic()
        while time.monotonic() - started < 12:
            time.sleep(0.5)
            try:
                sock.sendall(piece)
                sock.settimeout(0.01)
                while chunk := sock.recv(65536):
                    answer += chunk
                return time.monotonic() - started, answer
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - started, answer
    return None, answer


@pytest.mark.parametrize(
    ("which", "path", "chunked"),
    [
        ("server", "/admin/clients", False),  # a route off the hot lane: Quart reads it
        ("server", "/pipelines", False),  # another route off the lane, not an admin one
        ("no_lane", "/gateway/fetch", False),  # the hot lane's own reader under hypercorn
        ("no_lane", "/admin/clients", True),  # chunked, deadline from the 256 KiB body limit
    ],
)
def test_a_trickled_body_is_cut_at_the_minimum_rate(
    request: pytest.FixtureRequest, admin_key: str, which: str, path: str, chunked: bool
) -> None:
    # 100 000 bytes at >= 64 KiB/s plus the 2 s keep-alive grace: done by ~3.5 s (a chunked
    # body by 2 s + 256 KiB / 64 KiB/s = 6 s). hypercorn alone would wait 60 s (Quart's body
    # timeout) or, for the hot lane's reader, for ever.
    target: AthenaServer = request.getfixturevalue(which)
    head = _head(path, None if chunked else 100_000, apikey=admin_key, X_Athena_Client="athena")
    closed_after, answer = _trickle(target, head + (_chunk(b"{") if chunked else b"{"),
                                    _chunk(b" ") if chunked else b" ")  # fmt: skip
    assert closed_after is not None, "a body trickled for 12 s was never cut off"
    assert closed_after < (8 if chunked else 6)
    if answer:  # answered before closing: 408 in the error envelope
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["code"] == "body_timeout"


def test_a_large_keyed_body_at_a_normal_pace_is_served(
    server: AthenaServer, no_lane: AthenaServer, admin_key: str
) -> None:
    body = json.dumps({"table_name": "no_such_table", "pad": "x" * 200_000}).encode()
    for target, chunked in ((server, True), (no_lane, False)):
        with socket.create_connection(("127.0.0.1", target.port), timeout=5) as sock:
            head = _head("/gateway/fetch", None if chunked else len(body), apikey=admin_key,
                         X_Athena_Client="athena")  # fmt: skip
            sock.sendall(head)
            for i in range(0, len(body), 50_000):  # 5 pieces, 0.2 s apart
                piece = body[i : i + 50_000]
                sock.sendall(_chunk(piece) if chunked else piece)
                time.sleep(0.2)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
            status, _, payload, _ = _read_response(sock, 3)
        assert status == 400 and json.loads(payload)["code"] == "unknown_table", payload


def test_over_http2_a_large_body_waits_for_the_key_too(server: AthenaServer) -> None:
    """HTTP/2 with prior knowledge (hypercorn serves it on the same port): a keyless stream
    announcing 10 MiB gets its 401 before it has sent more than a byte."""
    import h2.config
    import h2.connection
    import h2.events

    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(conn.data_to_send())
        stream = conn.get_next_available_stream_id()
        conn.send_headers(
            stream,
            [(":method", "POST"), (":scheme", "http"), (":authority", "x"),
             (":path", "/gateway/fetch"), ("content-type", "application/json"),
             ("content-length", str(BIG)), ("x-athena-client", "athena")],
        )  # fmt: skip
        conn.send_data(stream, b"{")
        sock.sendall(conn.data_to_send())
        status, body, ended = None, b"", False
        while not ended:  # the socket's 5 s timeout bounds each read
            data = sock.recv(65536)
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = dict(event.headers)[b":status"]
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                    ended = True
            sock.sendall(conn.data_to_send())
    assert status == b"401", (status, body)
    assert json.loads(body)["code"] == "api_key_required"
