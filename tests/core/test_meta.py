"""The foundation routes, over a real socket: /, /ping, documents, errors, request ids."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

SHARED_SPEC = Path(__file__).resolve().parents[3] / "shared" / "spec" / "openapi.yaml"


def test_ping_answers_pong(http: httpx.Client) -> None:
    response = http.get("/ping")
    assert response.status_code == 200
    assert response.text == "pong"
    assert response.headers["content-type"].startswith("text/plain")


def test_openapi_is_served_byte_identical(http: httpx.Client) -> None:
    response = http.get("/openapi.yaml")
    assert response.status_code == 200
    shipped = resources.files("athena").joinpath("spec", "openapi.yaml").read_bytes()
    assert response.content == shipped
    if SHARED_SPEC.exists():
        # The shipped spec is the shared contract plus the operations the issues added: every
        # seed operation is still there, byte for byte the same once parsed. New operations may
        # join a seed path (PUT beside /rest/v1/{table}'s seed methods), so compare per operation.
        shared = yaml.safe_load(SHARED_SPEC.read_bytes())["paths"]
        served = yaml.safe_load(response.content)["paths"]
        for path, ops in shared.items():
            for method, operation in ops.items():
                assert served.get(path, {}).get(method) == operation, f"{method.upper()} {path}"
    assert yaml.safe_load(response.content)["info"]["version"] == "1.3.0"


def test_openapi_wss_is_valid_yaml(http: httpx.Client) -> None:
    response = http.get("/openapi-wss.yaml")
    assert response.status_code == 200
    doc = yaml.safe_load(response.content)
    assert "/wss/gateway" in doc["paths"]


def test_root_lists_exactly_the_served_routes_with_spec_summaries(http: httpx.Client) -> None:
    body = http.get("/").json()
    assert body["message"] == "athena is online"
    assert body["athena_api"] == "online"
    assert body["athena_deadpool"] in {"online", "degraded", "offline"}
    assert body["athena_scylladb"] == "offline"
    assert body["version"] == body["cargo_toml_version"] == "1.3.0"
    spec = yaml.safe_load(http.get("/openapi.yaml").content)["paths"]
    listed = {r["path"]: r for r in body["routes"]}
    assert {"/", "/ping", "/openapi.yaml", "/metrics", "/docs"} <= set(listed)
    for path, route in listed.items():
        for method in route["methods"]:
            # every listed route really answers (not 404/405) …
            if method == "GET" and "{" not in path and path not in {"/wss/gateway"}:
                status = http.get(path).status_code
                assert status not in (404, 405), (path, status)
        # … and carries the spec's summary when the spec documents it
        spec_ops = spec.get(path, {})
        documented = [
            spec_ops[m.lower()]["summary"] for m in route["methods"] if m.lower() in spec_ops
        ]
        if documented:
            assert route["summary"] in documented
        assert route["summary"], f"{path} has no summary in openapi.yaml or openapi-wss.yaml"


def test_docs_redirects_permanently(http: httpx.Client) -> None:
    response = http.get("/docs")
    assert response.status_code == 308
    assert response.headers["location"] == "https://xylex.group/docs/athena"


def test_unknown_route_and_wrong_method_use_the_error_envelope(http: httpx.Client) -> None:
    missing = http.get("/no/such/route")
    assert missing.status_code == 404
    assert missing.json()["status"] == "error"
    assert missing.json()["code"] == "not_found"
    wrong = http.post("/ping")
    assert wrong.status_code == 405
    assert wrong.json()["code"] == "method_not_allowed"


def test_request_id_is_echoed_or_generated(http: httpx.Client) -> None:
    echoed = http.get("/ping", headers={"x-request-id": "req-123"})
    assert echoed.headers["x-request-id"] == "req-123"
    generated = http.get("/ping").headers["x-request-id"]
    assert len(generated) >= 16
    assert generated != http.get("/ping").headers["x-request-id"]
    assert http.get("/nope").headers.get("x-request-id")


def test_metrics_exposes_uptime_requests_and_pools(http: httpx.Client) -> None:
    http.get("/ping")
    http.get("/nope")
    text = http.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["athena_uptime_seconds"].samples[0].value > 0
    ping = [
        s for s in families["athena_requests"].samples
        if s.name == "athena_requests_total" and s.labels["route"] == "/ping"
        and s.labels["status"] == "200"
    ]  # fmt: skip
    assert ping and ping[0].value >= 1
    unmatched = [
        s for s in families["athena_requests"].samples if s.labels.get("route") == "unmatched"
    ]
    assert unmatched, "unknown paths are counted under one bounded label"
    assert all(
        "/nope" not in s.labels.get("route", "") for s in families["athena_requests"].samples
    )
    assert "athena_request_duration_seconds" in families
    pools = {s.labels["client"] for s in families["athena_pool_size"].samples}
    assert {"catalog", "athena"} <= pools


def test_keep_alive_survives_requests_whose_body_is_not_used(athena) -> None:  # type: ignore[no-untyped-def]
    """A body on a route that ignores it (or an error answered early) must not wedge the
    connection for the next request (hypercorn 0.18 hangs unless the body is drained)."""
    with httpx.Client(base_url=athena.url, timeout=5) as client:
        for _ in range(15):
            assert client.request("GET", "/ping", content=b'{"a":1}').text == "pong"
            assert client.post("/no/such/route", json={"a": 1}).status_code == 404
            assert client.post("/ping", json={"a": 1}).status_code == 405


def test_malformed_and_pathologically_nested_json_is_400(admin: httpx.Client) -> None:
    bad = admin.post(
        "/gateway/fetch", content=b'{"table_name": ', headers={"content-type": "application/json"}
    )
    assert bad.status_code == 400
    assert bad.json()["code"] == "invalid_json"
    deep = b"[" * 100_000 + b"]" * 100_000
    nested = admin.post(
        "/gateway/fetch", content=deep, headers={"content-type": "application/json"}
    )
    assert nested.status_code == 400
    assert nested.json()["code"] == "invalid_json"
