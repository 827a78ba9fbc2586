"""SSRF through ``X-Athena-Client: custom_supabase``: ``x-supabase-url`` comes from the caller.

A loopback HTTP server plays a cloud metadata service that hands out credentials on any path.
The gateway must not reach it by default (loopback, plain http), must not let a ``#`` or ``?``
in the URL choose the path it calls, and must never pass on a body that is not PostgREST JSON.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from support.servers import AthenaServer

SECRET = "wJalrXUtnFEMI-metadata-secret"


class _Metadata:
    """Answers every request with ``content_type`` / ``body``; records the paths asked for."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.status = 200
        self.content_type = "application/json"
        self.body = json.dumps({"AccessKeyId": "AKIAEXAMPLE", "SecretAccessKey": SECRET}).encode()
        meta = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                meta.paths.append(self.path)
                self.send_response(meta.status)
                self.send_header("content-type", meta.content_type)
                self.send_header("content-length", str(len(meta.body)))
                self.end_headers()
                self.wfile.write(meta.body)

            do_GET = do_POST = do_PATCH = do_DELETE = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def metadata() -> Iterator[_Metadata]:
    server = _Metadata()
    yield server
    server.close()


def _fetch(server: AthenaServer, admin_key: str, url: str) -> httpx.Response:
    headers = {
        "apikey": admin_key,
        "X-Athena-Client": "custom_supabase",
        "x-supabase-url": url,
        "x-supabase-key": "anything",
    }
    with server.client(**headers) as client:
        return client.post("/gateway/fetch", json={"table_name": "gw_items"})


def test_loopback_and_plain_http_upstreams_are_refused_by_default(
    athena: AthenaServer, admin_key: str, metadata: _Metadata
) -> None:
    creds = "/latest/meta-data/iam/security-credentials/role#"
    for url in (
        f"http://127.0.0.1:{metadata.port}{creds}",  # plain http, loopback literal
        f"https://127.0.0.1:{metadata.port}{creds}",  # https, but loopback
        f"https://localhost:{metadata.port}/",  # a name that resolves to loopback
        f"https://[::ffff:127.0.0.1]:{metadata.port}/",
        "https://169.254.169.254/latest/meta-data/",  # link-local: the metadata address
        "https://10.0.0.1/",
    ):
        answer = _fetch(athena, admin_key, url)
        assert answer.status_code == 400, (url, answer.text)
        assert answer.json()["code"] == "outbound_url_refused", url
        assert SECRET not in answer.text
    assert metadata.paths == []  # the gateway never connected


@pytest.mark.parametrize("host", ["a" * 64 + ".example", "a..example", "xn--zz.example"])
def test_a_host_name_that_cannot_be_looked_up_is_refused_not_a_500(
    athena: AthenaServer, admin_key: str, host: str
) -> None:
    # Resolving these raises UnicodeError (IDNA: an empty label, one over 63 characters, a bad
    # punycode label), not OSError: it was a 500.
    answer = _fetch(athena, admin_key, f"https://{host}/")
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "outbound_url_refused"


@pytest.fixture(scope="module")
def permissive(athena_factory: Callable[..., AthenaServer]) -> AthenaServer:
    """An operator opened loopback over http (as the custom_supabase tests need)."""
    return athena_factory(outbound_allow_cidrs="127.0.0.0/8", outbound_allow_http="true")


@pytest.mark.parametrize("trick", ["#", "?", "?x=1#", "/#/"])
def test_a_fragment_or_query_cannot_choose_the_path(
    permissive: AthenaServer, admin_key: str, metadata: _Metadata, trick: str
) -> None:
    url = f"http://127.0.0.1:{metadata.port}/latest/meta-data/iam/role{trick}"
    answer = _fetch(permissive, admin_key, url)
    assert metadata.paths, "the allowed upstream was called"
    path = metadata.paths[-1].split("?", 1)[0]
    assert path == "/latest/meta-data/iam/role/rest/v1/gw_items"
    # The metadata JSON is an object, not PostgREST's array of rows: never passed on.
    assert answer.status_code == 502, answer.text
    assert answer.json()["code"] == "upstream_error"
    assert SECRET not in answer.text and "AKIAEXAMPLE" not in answer.text


@pytest.mark.parametrize(
    ("status", "content_type", "body"),
    [
        (200, "application/json", json.dumps({"SecretAccessKey": SECRET})),
        (200, "application/json", json.dumps([SECRET])),  # an array, but not of rows
        (200, "text/plain", json.dumps([{"SecretAccessKey": SECRET}])),  # rows, not JSON-typed
        (200, "text/html", f"<html>{SECRET}</html>"),
        (404, "application/json", json.dumps({"message": SECRET, "Code": "x", "Token": "y"})),
        (500, "text/plain", SECRET),
        (302, "application/json", json.dumps([{"SecretAccessKey": SECRET}])),
    ],
)
def test_only_postgrest_json_is_passed_on(
    permissive: AthenaServer,
    admin_key: str,
    metadata: _Metadata,
    status: int,
    content_type: str,
    body: str,
) -> None:
    metadata.status, metadata.content_type, metadata.body = status, content_type, body.encode()
    answer = _fetch(permissive, admin_key, f"http://127.0.0.1:{metadata.port}")
    assert metadata.paths == ["/rest/v1/gw_items?select=%2A&limit=100&offset=0"]
    assert answer.status_code >= 400 and answer.status_code != 500, answer.text
    assert answer.json()["code"] == "upstream_error"
    assert SECRET not in answer.text


def test_postgrest_rows_still_pass(
    permissive: AthenaServer, admin_key: str, metadata: _Metadata
) -> None:
    metadata.content_type = "application/json; charset=utf-8"
    metadata.body = b'[{"id":1,"name":"a"}]'
    answer = _fetch(permissive, admin_key, f"http://127.0.0.1:{metadata.port}/")
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"] == [{"id": 1, "name": "a"}]


@pytest.mark.parametrize("key", [b"caf\xe9", b"a\x01b", b"a b"])
def test_a_key_that_cannot_be_a_header_is_400_and_never_sent(
    permissive: AthenaServer, admin_key: str, metadata: _Metadata, key: bytes
) -> None:
    # "caf\xe9" (a Latin-1 byte, which HTTP lets through) made httpx fail to encode it: a 500.
    headers = {
        "apikey": admin_key,
        "X-Athena-Client": "custom_supabase",
        "x-supabase-url": f"http://127.0.0.1:{metadata.port}/",
    }
    with permissive.client(**headers) as client:
        answer = client.post(
            "/gateway/fetch", json={"table_name": "gw_items"}, headers={"x-supabase-key": key}
        )
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "invalid_value"
    assert answer.json()["data"]["details"] == {"header": "x-supabase-key"}
    assert metadata.paths == []
