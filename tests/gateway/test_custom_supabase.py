"""``X-Athena-Client: custom_supabase``: the gateway body served by a PostgREST upstream.

The upstream is real PostgREST wire format: the shared gateway's own ``/rest/v1`` in PostgREST
mode, reached through a small loopback proxy that plays the Supabase project (it adds the
headers an Athena upstream needs and records what our gateway sent).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import psycopg
import pytest
from support.servers import AthenaServer


class _Upstream:
    def __init__(self, target: str) -> None:
        self.target = target
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "content-length")
                }
                upstream.seen.append((self.command, self.path, headers))
                headers["X-Athena-Client"] = "athena"
                headers["X-Athena-Rest-Format"] = "postgrest"
                response = httpx.request(
                    self.command,
                    upstream.target + self.path,
                    headers=headers,
                    content=body,
                    timeout=30,
                )
                self.send_response(response.status_code)
                for name in ("content-type", "content-range"):
                    if name in response.headers:
                        self.send_header(name, response.headers[name])
                self.send_header("content-length", str(len(response.content)))
                self.end_headers()
                self.wfile.write(response.content)

            do_GET = do_POST = do_PATCH = do_DELETE = _forward

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def athena(athena_factory: Callable[..., AthenaServer]) -> AthenaServer:
    """A gateway that may call loopback over plain http: the upstream below lives there.
    (By default the outbound guard refuses both; see test_custom_supabase_ssrf.py.)"""
    return athena_factory(outbound_allow_cidrs="127.0.0.0/8", outbound_allow_http="true")


@pytest.fixture
def upstream(athena: AthenaServer, gw_schema: None) -> Iterator[_Upstream]:
    server = _Upstream(athena.url)
    yield server
    server.close()


@pytest.fixture
def cs(gw: httpx.Client, upstream: _Upstream, admin_key: str) -> Iterator[httpx.Client]:
    headers = dict(gw.headers)
    headers.update(
        {
            "X-Athena-Client": "custom_supabase",
            "x-supabase-url": upstream.url,
            "x-supabase-key": admin_key,
        }
    )
    with httpx.Client(base_url=gw.base_url, headers=headers, timeout=30) as client:
        yield client


def test_custom_supabase_round_trip(
    cs: httpx.Client, upstream: _Upstream, db: psycopg.Connection
) -> None:
    who = "cs-" + secrets.token_hex(4)
    inserted = cs.put(
        "/gateway/insert",
        json={
            "table_name": "gw_items",
            "insert_body": [
                {"owner": who, "name": "a", "qty": 1, "note": "x,y (z)"},
                {"owner": who, "name": "b", "qty": 5},
            ],
        },
    )
    assert inserted.status_code == 200, inserted.text
    assert inserted.json()["message"] == "Data inserted successfully"
    assert inserted.json()["count"] == 2
    method, path, headers = upstream.seen[-1]
    assert method == "POST" and path.startswith("/rest/v1/gw_items")
    assert headers["Prefer"].startswith("return=representation")
    assert headers["Authorization"].startswith("Bearer ")

    fetched = cs.post(
        "/gateway/fetch",
        json={
            "table_name": "gw_items",
            "columns": ["name", "qty", "note"],
            "conditions": [
                {"eq_column": "owner", "eq_value": who},
                {"column": "qty", "operator": "in", "value": [1, 5, 7]},
                {"operator": "or", "value": 'qty.gt.3,note.eq."x,y (z)"'},
            ],
            "sort_by": {"field": "qty", "direction": "desc"},
        },
    )
    assert fetched.status_code == 200, fetched.text
    assert fetched.json()["data"] == [
        {"name": "b", "qty": 5, "note": None},
        {"name": "a", "qty": 1, "note": "x,y (z)"},
    ]
    stripped = cs.post(
        "/gateway/fetch",
        json={
            "table_name": "gw_items",
            "columns": "name,note",
            "conditions": [
                {"eq_column": "owner", "eq_value": who},
                {"column": "note", "operator": "is", "value": None},
            ],
        },
        headers={"X-Strip-Nulls": "true"},
    )
    assert stripped.json()["data"] == [{"name": "b"}]

    refused = cs.post("/gateway/update", json={"table_name": "gw_items", "update_body": {"qty": 0}})
    assert refused.json()["code"] == "update_requires_conditions"
    updated = cs.post(
        "/gateway/update",
        json={
            "table_name": "gw_items",
            "update_body": {"qty": 9},
            "conditions": [
                {"eq_column": "owner", "eq_value": who},
                {"eq_column": "name", "eq_value": "a"},
            ],
        },
    )
    assert updated.json()["data"][0]["qty"] == 9

    row_id = inserted.json()["data"][1]["id"]
    deleted = cs.request(
        "DELETE", "/gateway/delete", json={"table_name": "gw_items", "resource_id": row_id}
    )
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["count"] == 1
    assert db.execute("SELECT name, qty FROM gw_items WHERE owner = %s", (who,)).fetchall() == [
        ("a", 9)
    ]


def test_custom_supabase_errors_are_mapped(
    cs: httpx.Client, gw: httpx.Client, admin_key: str
) -> None:
    who = "cs-" + secrets.token_hex(4)
    row = {"table_name": "gw_items", "insert_body": {"owner": who, "name": "dup"}}
    assert cs.put("/gateway/insert", json=row).status_code == 200
    dup = cs.put("/gateway/insert", json=row)
    assert dup.status_code == 409
    assert dup.json()["code"] == "unique_violation"
    missing = cs.post("/gateway/fetch", json={"table_name": "gw_nothing_here"})
    assert missing.status_code == 400
    assert missing.json()["code"] == "unknown_table"
    evil = cs.post("/gateway/fetch", json={"table_name": "gw_items; drop table gw_items"})
    assert evil.json()["code"] == "invalid_identifier"

    headers = dict(gw.headers)
    headers.update({"X-Athena-Client": "custom_supabase", "x-supabase-key": admin_key})
    with httpx.Client(base_url=gw.base_url, headers=headers) as client:
        no_url = client.post("/gateway/fetch", json={"table_name": "gw_items"})
        assert no_url.status_code == 400
        assert no_url.json()["data"]["details"]["missing_header"] == "x-supabase-url"
        from athena.db.embedded import free_port

        down = client.post(
            "/gateway/fetch",
            json={"table_name": "gw_items"},
            headers={"x-supabase-url": f"http://127.0.0.1:{free_port()}"},
        )
        assert down.status_code == 502
        assert down.json()["code"] == "upstream_error"
