"""athena.serving.lane_http's pure parts: which request heads it serves itself, and what it writes."""

from __future__ import annotations

import re

import pytest

from athena.serving.lane_http import parse_head, render_response

HEAD = (
    b"POST /gateway/fetch?x=1 HTTP/1.1\r\nHost: gw.example\r\nContent-Type: application/json\r\n"
    b"APIKEY:  secret \t\r\nX-Empty:\r\nContent-Length: 42"
)


def test_a_simple_head_is_parsed_the_way_asgi_servers_present_it() -> None:
    parsed = parse_head(HEAD)
    assert parsed is not None
    method, target, headers, length, close = parsed
    assert (method, target, length, close) == ("POST", b"/gateway/fetch?x=1", 42, False)
    assert headers == [
        ("host", "gw.example"),
        ("content-type", "application/json"),
        ("apikey", "secret"),  # names lower-cased, values trimmed of spaces and tabs
        ("x-empty", ""),
        ("content-length", "42"),
    ]


def test_no_content_length_means_no_body_and_connection_close_is_seen() -> None:
    parsed = parse_head(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Close")
    assert parsed is not None
    assert parsed[3] == 0 and parsed[4] is True


@pytest.mark.parametrize(
    "head",
    [
        b"GET /ping HTTP/1.0\r\nHost: x",  # HTTP/1.0: hypercorn's
        b"GET http://x/ping HTTP/1.1\r\nHost: x",  # absolute form
        b"GET /ping HTTP/1.1",  # no Host
        b"GET /ping HTTP/1.1\r\nHost: a\r\nHost: b",
        b"GET /p ing HTTP/1.1\r\nHost: x",
        b"GET /ping\xff HTTP/1.1\r\nHost: x",
        b"GET  /ping HTTP/1.1\r\nHost: x",
        b"\r\nGET /ping HTTP/1.1\r\nHost: x",
        b"GET /ping HTTP/1.1\r\nHost: x\r\nBad Name: v",
        b"GET /ping HTTP/1.1\r\nHost: x\r\nName : v",
        b"GET /ping HTTP/1.1\r\nHost: x\r\n folded: v",
        b"GET /ping HTTP/1.1\r\nHost: x\r\nX: a\x00b",
        b"GET /ping HTTP/1.1\r\nHost: x\r\nX: a\nb",
        b"GET /ping HTTP/1.1\r\nHost: x\r\nX: a\rb",
        b"POST /gateway/fetch HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1",
        b"POST /gateway/fetch HTTP/1.1\r\nHost: x\r\nContent-Length: +1",
        b"POST /gateway/fetch HTTP/1.1\r\nHost: x\r\nContent-Length: 1 1",
        b"POST /gateway/fetch HTTP/1.1\r\nHost: x\r\nContent-Length: " + b"1" * 5000,
        b"POST /gateway/fetch HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked",
        b"POST /gateway/fetch HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: x",
        b"POST /gateway/fetch HTTP/1.1\r\nHost: x\r\nExpect: 100-continue",
        b"GET /ping HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade",
        b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: upgrade",
    ],
)
def test_anything_unusual_is_left_to_hypercorn(head: bytes) -> None:
    assert parse_head(head) is None


def test_a_response_is_one_block_with_date_and_framing() -> None:
    raw = render_response(
        200, [(b"content-type", b"text/plain"), (b"content-length", b"4")], b"pong", close=False
    )
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK"
    assert lines[1:3] == [b"content-type: text/plain", b"content-length: 4"]
    assert re.fullmatch(rb"date: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT", lines[3])
    assert body == b"pong"
    closing = render_response(404, [(b"content-length", b"0")], b"", close=True)
    assert closing.startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert b"\r\nconnection: close\r\n\r\n" in closing


def test_a_header_value_that_would_split_the_response_is_never_sent() -> None:
    raw = render_response(
        200,
        [(b"x-good", b"fine"), (b"x-evil", b"a\r\nset-cookie: stolen"), (b"x-nul", b"a\x00")],
        b"",
        close=False,
    )
    assert b"set-cookie" not in raw and b"x-nul" not in raw
    assert b"x-good: fine\r\n" in raw
