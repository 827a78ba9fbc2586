"""HTTP/1.1 on the wire, over raw sockets: what athena/serving/lane_http.py serves itself, and the
requests it hands to hypercorn, must both behave like a careful HTTP/1.1 server.

Clients such as httpx never pipeline, split a head across packets on purpose, or send a
malformed line, so these tests write the bytes themselves.
"""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from support.servers import AthenaServer

FETCH_A1 = json.dumps(
    {"table_name": "gw_products", "columns": ["sku", "qty"],
     "conditions": [{"eq_column": "sku", "eq_value": "A-1"}]}
).encode()  # fmt: skip


def _request(
    method: str, path: str, body: bytes = b"", *, headers: dict[str, str] | None = None,
    key: str | None = None, close: bool = False,
) -> bytes:  # fmt: skip
    lines = [f"{method} {path} HTTP/1.1", "Host: athena.test"]
    if key:
        lines += [f"apikey: {key}", "X-Athena-Client: athena"]
    if body or method in ("POST", "PUT", "PATCH"):
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    if close:
        lines.append("Connection: close")
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class _Wire:
    """One raw connection, reading responses framed by Content-Length."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.file = sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def response(self) -> tuple[int, dict[str, str], bytes]:
        status_line = self.file.readline()
        assert status_line.startswith(b"HTTP/1.1 "), status_line
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while (line := self.file.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if status in (100, 204, 304):
            return status, headers, b""
        return status, headers, self.file.read(int(headers["content-length"]))

    def closed_by_server(self, within: float) -> bool:
        """Does the server close the connection within ``within`` seconds?"""
        self.sock.settimeout(within)
        try:
            return self.file.read(1) == b""
        except TimeoutError:
            return False


@pytest.fixture(scope="module")
def hypercorn_only(athena_factory: Callable[..., AthenaServer]) -> AthenaServer:
    return athena_factory(lane_http="false")


@pytest.fixture(params=["lane-http", "hypercorn"])
def server(request: pytest.FixtureRequest, athena: AthenaServer) -> AthenaServer:
    """Both ways a connection can be served: they must not differ on the wire."""
    if request.param == "lane-http":
        return athena
    return request.getfixturevalue("hypercorn_only")


@contextmanager
def _wire(server: AthenaServer) -> Iterator[_Wire]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        wire = _Wire(sock)
        with wire.file:
            yield wire


def test_the_switch_sends_every_connection_to_hypercorn(
    athena: AthenaServer, hypercorn_only: AthenaServer
) -> None:
    # lane_http writes the reason phrase; hypercorn (h11) leaves it empty
    for server, status_line in (
        (athena, b"HTTP/1.1 200 OK\r\n"),
        (hypercorn_only, b"HTTP/1.1 200 \r\n"),
    ):
        with _wire(server) as wire:
            wire.send(_request("GET", "/ping"))
            assert wire.file.readline() == status_line


def test_pipelined_requests_are_answered_in_order(
    server: AthenaServer, gw_schema: None, admin_key: str
) -> None:
    with _wire(server) as wire:
        wire.send(
            _request("GET", "/ping")
            + _request("POST", "/gateway/fetch", FETCH_A1, key=admin_key)
            + _request("POST", "/gateway/fetch", b'{"table_name":"gw_nowhere"}', key=admin_key)
            + _request("GET", "/ping")
        )
        answers = [wire.response() for _ in range(4)]
    assert [status for status, _, _ in answers] == [200, 200, 400, 200]
    assert answers[0][2] == answers[3][2] == b"pong"
    assert json.loads(answers[1][2])["data"] == [{"sku": "A-1", "qty": 5}]
    assert json.loads(answers[2][2])["code"] == "unknown_table"
    assert len({headers["x-request-id"] for _, headers, _ in answers}) == 4
    assert all("date" in headers for _, headers, _ in answers)


def test_a_request_dribbled_a_byte_at_a_time_is_served(
    server: AthenaServer, gw_schema: None, admin_key: str
) -> None:
    raw = _request("POST", "/gateway/fetch", FETCH_A1, key=admin_key)
    with _wire(server) as wire:
        wire.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(raw)):
            wire.send(raw[i : i + 1])
            if i % 16 == 0:
                time.sleep(0.002)  # let the bytes arrive as separate reads
        status, _, body = wire.response()
        assert status == 200
        assert json.loads(body)["data"] == [{"sku": "A-1", "qty": 5}]
        wire.send(_request("GET", "/ping"))  # and the connection is still in step
        assert wire.response()[2] == b"pong"


def test_a_large_response_arrives_whole_and_in_step(server: AthenaServer, admin_key: str) -> None:
    big = _request(
        "POST", "/gateway/query", b'{"query":"SELECT repeat(\'x\', 300000) AS big"}', key=admin_key
    )
    with _wire(server) as wire:
        wire.send(big + _request("GET", "/ping"))
        status, headers, body = wire.response()
        assert status == 200 and int(headers["content-length"]) == len(body) > 300_000
        assert json.loads(body)["data"] == [{"big": "x" * 300_000}]
        assert wire.response()[2] == b"pong"


def test_percent_encoded_rest_table_is_decoded_like_hypercorn_does(
    server: AthenaServer, gw_schema: None, admin_key: str
) -> None:
    with _wire(server) as wire:
        wire.send(_request("GET", "/rest/v1/gw%5Fproducts?select=sku&sku=eq.B-2", key=admin_key))
        status, _, body = wire.response()
    assert status == 200, body
    assert json.loads(body) == {"data": [{"sku": "B-2"}]}  # X-Athena-Client: the envelope


def test_connection_close_is_honoured(server: AthenaServer) -> None:
    with _wire(server) as wire:
        wire.send(_request("GET", "/ping", close=True))
        status, headers, body = wire.response()
        assert (status, body) == (200, b"pong")
        assert headers["connection"] == "close"
        assert wire.closed_by_server(within=5)


def test_http_1_0_is_served_and_closed(server: AthenaServer) -> None:
    with _wire(server) as wire:
        wire.send(b"GET /ping HTTP/1.0\r\n\r\n")
        line = wire.file.readline()
        assert line.startswith(b"HTTP/1.") and b" 200" in line
        rest = wire.file.read()  # the server closes after an HTTP/1.0 response
        assert rest.endswith(b"pong")


@pytest.mark.parametrize("on_hypercorn", [False, True], ids=["lane-http", "hypercorn"])
def test_a_client_that_half_closes_is_closed_at_once(
    athena: AthenaServer, on_hypercorn: bool
) -> None:
    """Not after the 30 s keep-alive timeout, which held a socket in CLOSE-WAIT per client.

    hypercorn did that after a hot-lane response (served through ASGI once a connection has
    moved to hypercorn); hypercorn_adapter._Connection ends the wait when the client has gone.
    """
    with _wire(athena) as wire:
        if on_hypercorn:
            wire.send(_request("GET", "/openapi-wss.yaml"))  # not the lane's: to hypercorn
            assert wire.response()[0] == 200
        wire.send(_request("GET", "/ping"))
        assert wire.response()[2] == b"pong"
        time.sleep(0.2)  # the connection is idle, waiting for a next request
        wire.sock.shutdown(socket.SHUT_WR)
        assert wire.closed_by_server(within=3)


def test_one_connection_moves_from_the_lane_to_hypercorn_and_stays_correct(
    athena: AthenaServer, gw_schema: None, admin_key: str
) -> None:
    chunked = (
        b"POST /gateway/fetch HTTP/1.1\r\nHost: x\r\napikey: " + admin_key.encode()
        + b"\r\nX-Athena-Client: athena\r\nContent-Type: application/json\r\n"
        + b"Transfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n" % len(FETCH_A1) + FETCH_A1 + b"\r\n0\r\n\r\n"
    )  # fmt: skip
    with _wire(athena) as wire:
        wire.send(_request("GET", "/ping"))
        assert wire.response()[2] == b"pong"
        # a chunked body is not the lane's; sent together with the next request, the bytes
        # already read must reach hypercorn intact
        wire.send(chunked + _request("GET", "/ping"))
        status, _, body = wire.response()
        assert status == 200 and json.loads(body)["data"] == [{"sku": "A-1", "qty": 5}]
        assert wire.response()[2] == b"pong"
        wire.send(_request("GET", "/openapi-wss.yaml"))
        status, headers, body = wire.response()
        assert status == 200 and "yaml" in headers["content-type"] and len(body) > 100
        wire.send(_request("POST", "/gateway/fetch", FETCH_A1, key=admin_key))
        assert json.loads(wire.response()[2])["data"] == [{"sku": "A-1", "qty": 5}]


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"GARBAGE\r\n\r\n", id="no-request-line"),
        pytest.param(b"GET /ping HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n", id="bad-field"),
        pytest.param(b"GET /ping HTTP/1.1\r\nHost: x\r\nX-A : b\r\n\r\n", id="space-before-colon"),
        pytest.param(b"GET /ping HTTP/1.1\r\nX-A: b\r\n\r\n", id="no-host"),
        pytest.param(b"GET /ping HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", id="two-hosts"),
        pytest.param(
            b"POST /gateway/fetch HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
            b"Content-Length: 3\r\n\r\n{}",
            id="two-lengths",
        ),
        pytest.param(
            b"POST /gateway/fetch HTTP/1.1\r\nHost: x\r\nContent-Length: -2\r\n\r\n{}",
            id="negative-length",
        ),
        pytest.param(  # int() refuses it: the lane dropped the connection without an answer
            b"POST /gateway/fetch HTTP/1.1\r\nHost: x\r\nContent-Length: "
            + b"1" * 5000
            + b"\r\n\r\n",
            id="5000-digit-length",
        ),
    ],
)
def test_malformed_requests_get_a_400_and_the_server_carries_on(
    server: AthenaServer, raw: bytes
) -> None:
    with _wire(server) as wire:
        wire.send(raw)
        line = wire.file.readline()
        assert line.startswith(b"HTTP/1.1 400"), line
    with _wire(server) as wire:
        wire.send(_request("GET", "/ping"))
        assert wire.response()[2] == b"pong"


def test_a_head_still_incomplete_past_the_limit_gets_the_431_envelope_in_the_lane(
    athena: AthenaServer,
) -> None:
    # Past h11's 64 KiB limit with no end in sight, the head went to hypercorn, whose 431 has
    # no body; a complete head of the same size got the gate's envelope. Which one a client saw
    # depended on how TCP split the head (tests/core/test_limits.py failed now and then).
    # Hypercorn alone (ATHENA_LANE_HTTP=false) still answers h11's bare 431.
    with _wire(athena) as wire:
        wire.send(b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * (70 * 1024))
        status, headers, body = wire.response()
    assert status == 431
    assert headers.get("connection") == "close"
    assert json.loads(body)["code"] == "headers_too_large"


def test_an_oversized_head_on_a_lane_route_is_refused(server: AthenaServer) -> None:
    with _wire(server) as wire:
        wire.send(_request("GET", "/ping", headers={"X-Big": "y" * 70_000}))
        line = wire.file.readline()
        assert line == b"" or line.split()[1] in (b"400", b"431"), line
    with _wire(server) as wire:
        wire.send(_request("GET", "/ping"))
        assert wire.response()[2] == b"pong"


def test_expect_100_continue_is_answered(
    server: AthenaServer, gw_schema: None, admin_key: str
) -> None:
    head = _request(
        "POST", "/gateway/fetch", b"", key=admin_key, headers={"Expect": "100-continue"}
    )
    head = head.replace(b"Content-Length: 0", b"Content-Length: %d" % len(FETCH_A1))
    with _wire(server) as wire:
        wire.send(head)
        assert wire.response()[0] == 100
        wire.send(FETCH_A1)
        status, _, body = wire.response()
    assert status == 200 and json.loads(body)["data"] == [{"sku": "A-1", "qty": 5}]


@pytest.mark.parametrize("lane_http", ["true", "false"], ids=["lane-http", "hypercorn"])
def test_idle_and_trickling_connections_are_closed_after_the_keep_alive_timeout(
    athena_factory: Callable[..., AthenaServer], lane_http: str
) -> None:
    server = athena_factory(keep_alive_s="1", lane_http=lane_http)
    with _wire(server) as idle, _wire(server) as trickling:
        idle.send(_request("GET", "/ping"))
        assert idle.response()[2] == b"pong"
        started = time.monotonic()
        head = _request("GET", "/ping", headers={"X-Pad": "p" * 40})
        closed = False
        for byte in head[:-2]:  # a byte every 0.1 s: never a whole head within 1 s
            try:
                trickling.send(bytes([byte]))
            except OSError:
                closed = True
                break
            time.sleep(0.1)
            if time.monotonic() - started > 4:
                break
        assert closed or trickling.closed_by_server(within=0.5)
        assert time.monotonic() - started < 3
        assert idle.closed_by_server(within=0.5)


@pytest.mark.parametrize("lane_http", ["true", "false"], ids=["lane-http", "hypercorn"])
def test_a_client_that_stops_reading_a_large_answer_is_dropped(
    athena_factory: Callable[..., AthenaServer], admin_key: str, lane_http: str
) -> None:
    """Not held for ever with the answer in memory: after the keep-alive timeout of no
    progress the connection closes, and the server carries on."""
    server = athena_factory(keep_alive_s="1", lane_http=lane_http)
    size = 30_000_000  # far more than the socket buffers on both sides hold
    query = b'{"query":"SELECT repeat(\'x\', %d) AS big"}' % size
    with _wire(server) as wire:
        wire.send(_request("POST", "/gateway/query", query, key=admin_key))
        time.sleep(4)  # not reading: the server's writes stall, then it gives up
        received = 0
        wire.sock.settimeout(10)
        try:
            while chunk := wire.sock.recv(1 << 20):
                received += len(chunk)
        except ConnectionResetError:
            pass
        assert received < size, "the whole answer went out: the client never stalled the server"
    with _wire(server) as wire:
        wire.send(_request("GET", "/ping"))
        assert wire.response()[2] == b"pong"


def test_shutdown_closes_idle_connections_and_finishes_busy_ones(
    athena_factory: Callable[..., AthenaServer], admin_key: str
) -> None:
    server = athena_factory()
    slow = _request(
        "POST", "/gateway/query", b'{"query":"SELECT 1 AS done FROM pg_sleep(1)"}', key=admin_key
    )
    with _wire(server) as idle, _wire(server) as busy:
        idle.send(_request("GET", "/ping"))
        assert idle.response()[2] == b"pong"
        busy.send(_request("GET", "/ping") + slow)
        assert busy.response()[2] == b"pong"
        time.sleep(0.3)  # the slow query is now running
        assert server.proc is not None
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert idle.closed_by_server(within=3), "an idle keep-alive connection closes at once"
        status, headers, body = busy.response()
        assert status == 200 and json.loads(body)["data"] == [{"done": 1}]
        assert headers.get("connection") == "close"
        assert server.proc.wait(10) == 0
        assert time.monotonic() - started < 5
