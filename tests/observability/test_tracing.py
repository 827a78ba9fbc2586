"""OpenTelemetry traces exported to a real OTLP/HTTP receiver on loopback.

The receiver is a small HTTP server that decodes the protobuf export
(``ExportTraceServiceRequest`` from opentelemetry-proto) exactly as a collector would.
"""

from __future__ import annotations

import http.server
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.keys import seed_key
from support.pg import TestPostgres
from support.servers import AthenaServer, server_env

from athena.db.embedded import free_port

TABLE = "traced_items"


class Receiver:
    """POST /v1/traces → decoded spans, kept as plain dicts."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        self.spans: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                assert self.path == "/v1/traces"
                assert self.headers["Content-Type"] == "application/x-protobuf"
                request = trace_service_pb2.ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.add(request)
                reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, request: Any) -> None:
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    with self.lock:
                        self.spans.append(
                            {
                                "name": span.name,
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent": span.parent_span_id.hex(),
                                "kind": span.kind,
                                "attributes": {a.key: _value(a.value) for a in span.attributes},
                                "resource": resource,
                                "status": span.status.code,
                            }
                        )

    def wait_for(
        self, trace_id: str, names: set[str], timeout: float = 20.0
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                spans = [s for s in self.spans if s["trace_id"] == trace_id]
            if names <= {s["name"] for s in spans}:
                return spans
            time.sleep(0.1)
        raise AssertionError(f"spans of {trace_id} never arrived: {spans}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _value(any_value: Any) -> Any:
    return getattr(any_value, any_value.WhichOneof("value"))


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def traced(
    receiver: Receiver,
    pg: TestPostgres,
    data_db: str,
    catalog_db: str,
    admin_key: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AthenaServer]:
    with pg.connect(data_db) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id serial PRIMARY KEY, name text)")
    env = server_env(
        catalog_uri=pg.superuser_uri(catalog_db),
        admin_key=admin_key,
        clients={"athena": {"pg_uri": pg.app_uri(data_db)}},
    )
    # Tracing switched on the standard way: only the OTLP endpoint is given.
    env.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
        OTEL_BSP_SCHEDULE_DELAY="100",
        OTEL_SERVICE_NAME="athena-under-test",
    )
    server = AthenaServer(tmp_path_factory.mktemp("traced"), env).start()
    yield server
    server.stop()


def _by_name(spans: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = [s for s in spans if s["name"] == name]
    assert found, (name, spans)
    return found[0]


def test_a_request_is_one_trace_continuing_the_callers(
    traced: AthenaServer, receiver: Receiver, catalog_db: str, pg: TestPostgres
) -> None:
    key = seed_key(pg.superuser_uri(catalog_db), rights=["*"], client="athena")
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    needle = f"needle-{secrets.token_hex(4)}"
    response = httpx.post(
        f"{traced.url}/gateway/fetch",
        headers={
            "apikey": key,
            "X-Athena-Client": "athena",
            "traceparent": f"00-{trace_id}-{parent_id}-01",
        },
        json={"table_name": TABLE, "conditions": [{"eq_column": "name", "eq_value": needle}]},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == trace_id  # the request id is the trace id

    spans = receiver.wait_for(trace_id, {"POST /gateway/fetch", "auth", "db.statement", "response"})
    root = _by_name(spans, "POST /gateway/fetch")
    assert root["parent"] == parent_id  # the caller's span
    assert root["kind"] == 2  # SPAN_KIND_SERVER
    attrs = root["attributes"]
    assert attrs["http.route"] == "/gateway/fetch" and attrs["http.request.method"] == "POST"
    assert attrs["http.response.status_code"] == 200
    assert attrs["athena.client"] == "athena"
    assert attrs["athena.key_id"] == key.split(".")[0].removeprefix("ath_")
    assert root["resource"]["service.name"] == "athena-under-test"
    for name in ("auth", "response"):
        assert _by_name(spans, name)["parent"] == root["span_id"]
    statements = [s for s in spans if s["name"] == "db.statement"]
    shaped = [s for s in statements if TABLE in s["attributes"].get("db.query.text", "")]
    assert shaped, statements
    assert all(s["parent"] == root["span_id"] for s in shaped)
    text = shaped[0]["attributes"]["db.query.text"]
    assert "%s" in text or "$1" in text  # the statement's shape, with its placeholder
    assert shaped[0]["attributes"]["db.namespace"] == "athena"
    assert shaped[0]["attributes"]["db.operation.name"] in ("SELECT", "WITH")
    assert needle not in str(spans)  # never the value


def test_raw_sql_text_and_quart_routes(
    traced: AthenaServer, receiver: Receiver, admin_key: str
) -> None:
    needle = f"literal-{secrets.token_hex(4)}"
    raw = httpx.post(
        f"{traced.url}/gateway/query",
        headers={"apikey": admin_key, "X-Athena-Client": "athena"},
        json={"query": f"SELECT '{needle}' AS x"},
        timeout=30,
    )
    assert raw.status_code == 200, raw.text
    trace_id = raw.headers["x-request-id"]
    assert len(trace_id) == 32 and int(trace_id, 16)
    spans = receiver.wait_for(trace_id, {"POST /gateway/query", "response"})
    assert needle not in str(spans)  # raw SQL carries literals: its text is never recorded

    # A route served by Quart (not the hot lane): its spans end once the response is sent.
    meta = httpx.get(f"{traced.url}/", timeout=30)
    assert meta.status_code == 200
    spans = receiver.wait_for(meta.headers["x-request-id"], {"GET /", "response"})
    root = _by_name(spans, "GET /")
    assert root["attributes"]["http.response.status_code"] == 200
    assert _by_name(spans, "response")["parent"] == root["span_id"]

    # An error status is recorded on the span.
    missing = httpx.post(
        f"{traced.url}/gateway/fetch",
        headers={"apikey": admin_key, "X-Athena-Client": "nope"},
        json={"table_name": TABLE},
        timeout=30,
    )
    assert missing.status_code >= 400
    spans = receiver.wait_for(missing.headers["x-request-id"], {"POST /gateway/fetch"})
    root = _by_name(spans, "POST /gateway/fetch")
    assert root["attributes"]["http.response.status_code"] == missing.status_code
    assert root["attributes"]["error.type"] == missing.json()["code"]


def test_tracing_off_imports_nothing_of_opentelemetry() -> None:
    """Every module of the gateway imports without pulling OpenTelemetry in."""
    code = (
        "import importlib, pkgutil, sys, athena\n"
        "for m in pkgutil.walk_packages(athena.__path__, 'athena.'):\n"
        "    if m.name != 'athena.__main__':\n"
        "        importlib.import_module(m.name)\n"
        "from athena.config import Settings\n"
        "from athena.observability import tracing\n"
        "assert not tracing.setup(Settings()), 'tracing must be off by default'\n"
        "leaked = sorted(n for n in sys.modules if n.startswith('opentelemetry'))\n"
        "assert not leaked, leaked\n"
        "print('ok')\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_tracing_switch() -> None:
    from athena.config import Settings
    from athena.observability.tracing import wanted

    assert not wanted(Settings())
    assert wanted(Settings(tracing=True))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
        assert wanted(Settings())
        assert not wanted(Settings(tracing=False))  # an explicit false wins
