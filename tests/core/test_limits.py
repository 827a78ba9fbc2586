"""Abuse limits: rate limits with Retry-After, body, header and query-string size limits."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from support.servers import AthenaServer

from athena.services.ratelimit import TokenBuckets


def test_token_bucket_refills_at_the_configured_rate() -> None:
    buckets = TokenBuckets(rate=2.0, burst=3)
    assert [buckets.take("k", now=100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("k", now=100.0) == pytest.approx(0.5)
    assert buckets.take("k", now=100.5) == 0.0, "one token back after 1/rate seconds"
    assert buckets.take("other", now=100.5) == 0.0, "identities do not share a bucket"


@pytest.fixture(scope="module")
def limited(athena_factory: Callable[..., AthenaServer]) -> AthenaServer:
    return athena_factory(
        rate_limit_per_ip="2", rate_limit_burst="5", max_body_bytes=str(64 * 1024)
    )


def test_per_ip_limit_answers_429_with_retry_after(limited: AthenaServer) -> None:
    with limited.client() as client:
        statuses = [client.get("/openapi-wss.yaml").status_code for _ in range(8)]
        assert statuses[:5] == [200] * 5
        assert 429 in statuses[5:]
        limited_response = client.get("/openapi-wss.yaml")
        assert limited_response.status_code == 429
        assert int(limited_response.headers["retry-after"]) >= 1
        body = limited_response.json()
        assert body["status"] == "error" and body["code"] == "rate_limited"
        # liveness probes are never limited
        assert all(client.get("/ping").status_code == 200 for _ in range(10))


def test_per_key_limit_counts_each_key_separately(
    athena_factory: Callable[..., AthenaServer],
) -> None:
    # One token every 10 s: a slow, loaded machine cannot refill the bucket between requests.
    server = athena_factory(rate_limit_per_key="0.1", rate_limit_burst="3")
    with server.client() as client:
        a = {"apikey": "ath_aaaaaaaaaaaaaaaa.x"}
        b = {"apikey": "ath_bbbbbbbbbbbbbbbb.x"}
        assert [client.get("/", headers=a).status_code for _ in range(3)] == [200] * 3
        assert client.get("/", headers=a).status_code == 429
        assert client.get("/", headers=b).status_code == 200
        assert client.get("/").status_code == 200, "no key: only the per-IP limit applies"


def test_body_over_the_limit_is_413_in_the_envelope(limited: AthenaServer) -> None:
    with httpx.Client(base_url=limited.url) as client:
        response = client.post(
            "/gateway/fetch",
            content=b'{"table_name":"' + b"x" * (70 * 1024) + b'"}',
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


def test_long_query_string_is_414(http: httpx.Client) -> None:
    response = http.get("/openapi-wss.yaml", params={"q": "x" * 9000})
    assert response.status_code == 414
    assert response.json()["code"] == "uri_too_long"


def test_oversized_headers_are_refused_without_hurting_the_server(athena: AthenaServer) -> None:
    with httpx.Client(base_url=athena.url) as client:
        try:
            response = client.get("/ping", headers={"x-big": "y" * 100_000})
            assert response.status_code == 431
            assert response.json()["code"] == "headers_too_large"
        except httpx.RemoteProtocolError:
            pass  # hypercorn may drop the connection outright: also a refusal
        assert client.get("/ping").text == "pong"


def test_slow_loris_clients_do_not_tie_up_the_server(athena: AthenaServer) -> None:
    """200 connections that never finish their headers; normal requests are still served."""
    import socket
    import time

    stalled = []
    try:
        for _ in range(200):
            sock = socket.create_connection(("127.0.0.1", athena.port), timeout=5)
            sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            stalled.append(sock)
        started = time.monotonic()
        with httpx.Client(base_url=athena.url, timeout=10) as client:
            assert all(client.get("/ping").text == "pong" for _ in range(20))
        assert time.monotonic() - started < 5
    finally:
        for sock in stalled:
            sock.close()
