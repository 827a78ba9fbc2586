"""ATHENA_LOG_FORMAT=json and ATHENA_ACCESS_LOG, read from a real server's log."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from support.keys import seed_key
from support.pg import TestPostgres
from support.servers import AthenaServer

TABLE = "log_items"


def _table(pg: TestPostgres, db: str) -> None:
    with pg.connect(db) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id serial PRIMARY KEY, name text)")


def _records(text: str) -> list[dict[str, Any]]:
    """Every line of the log is one JSON object (this parses all of them or fails)."""
    out = []
    for line in text.splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                raise AssertionError(f"not a JSON log line: {line!r}") from None
    return out


def test_json_logs_carry_ids_and_never_values_or_secrets(
    athena_factory: Callable[..., AthenaServer],
    pg: TestPostgres,
    data_db: str,
    catalog_uri: str,
    admin_key: str,
) -> None:
    _table(pg, data_db)
    server = athena_factory(
        LOG_FORMAT="json", LOG_LEVEL="info", ACCESS_LOG="true", REQUEST_LOG_ENABLED="false"
    )
    key = seed_key(catalog_uri, rights=["*", "gateway.query"], client="athena")
    public_id = key.split(".")[0].removeprefix("ath_")
    h = {"apikey": key, "X-Athena-Client": "athena"}
    ctx = {"X-User-Id": "u1", "X-Company-Id": "c1", "X-Organization-Id": "o1"}
    needles = {n: f"{n}-{secrets.token_hex(4)}" for n in ("filter", "rest", "sql", "body")}
    wrong_secret = secrets.token_hex(32)

    with httpx.Client(base_url=server.url, timeout=30) as c:
        fetched = c.post(
            "/gateway/fetch",
            headers=h,
            json={
                "table_name": TABLE,
                "conditions": [{"eq_column": "name", "eq_value": needles["filter"]}],
            },
        )
        assert fetched.status_code == 200, fetched.text
        rest = c.get(f"/rest/v1/{TABLE}", params={"name": f"eq.{needles['rest']}"}, headers=h)
        assert rest.status_code == 200, rest.text
        query = c.post(
            "/gateway/query", headers=h, json={"query": f"SELECT '{needles['sql']}' AS x"}
        )
        assert query.status_code == 200, query.text
        inserted = c.put(
            "/gateway/insert",
            headers={**h, **ctx},
            json={"table_name": TABLE, "insert_body": {"name": needles["body"]}},
        )
        assert inserted.status_code == 200, inserted.text
        refused = c.post(
            "/gateway/fetch",
            headers={"apikey": f"ath_{'0' * 16}.{wrong_secret}", "X-Athena-Client": "athena"},
            json={"table_name": TABLE},
        )
        assert refused.status_code == 401
        admin = c.get("/admin/clients", headers={"X-Athena-Admin-Key": admin_key})
        assert admin.status_code == 200
    assert server.stop() == 0
    text = server.log()
    records = _records(text)

    for record in records:
        assert {"time", "level", "logger", "message"} <= record.keys(), record
        assert record["time"].endswith("Z") and "T" in record["time"]
    started = [r for r in records if r["logger"] == "athena.server"]
    assert any(r["message"].startswith("serving on http://127.0.0.1:") for r in started)

    access = [r for r in records if r["logger"] == "athena.access"]
    by_id = {r["request_id"]: r for r in access}
    for response, route in (
        (fetched, "/gateway/fetch"),
        (rest, "/rest/v1/<table>"),
        (query, "/gateway/query"),
        (inserted, "/gateway/insert"),
    ):
        line = by_id[response.headers["x-request-id"]]
        assert line["route"] == route and line["status"] == response.status_code
        assert line["client"] == "athena" and line["key_id"] == public_id, line
        assert line["duration_ms"] >= 0 and line["method"] in ("POST", "GET", "PUT")
    assert by_id[rest.headers["x-request-id"]]["table"] == TABLE
    assert by_id[refused.headers["x-request-id"]]["status"] == 401

    # Nothing a request carried as a value, and no secret, reached the log.
    for needle in needles.values():
        assert needle not in text, needle
    for secret in (key.split(".")[1], wrong_secret, admin_key, pg.app_password):
        assert secret not in text


def test_text_stays_the_default_and_access_log_goes_to_its_file(
    athena_factory: Callable[..., AthenaServer], tmp_path: Path
) -> None:
    access_file = tmp_path / "access.log"
    server = athena_factory(ACCESS_LOG=str(access_file))
    with httpx.Client(base_url=server.url, timeout=30) as c:
        pinged = c.get("/ping", headers={"X-Request-Id": "probe-1"})
        missing = c.get("/no/such/route")
    assert pinged.text == "pong" and missing.status_code == 404
    assert server.stop() == 0
    # The server's own stream: text, as before (not JSON), and no access lines.
    log = server.log()
    assert "athena: serving on http://127.0.0.1:" in log
    assert not any(line.startswith("{") for line in log.splitlines())
    assert "probe-1" not in log
    lines = access_file.read_text().splitlines()
    assert any('"GET /ping" 200' in line and "[request" not in line for line in lines), lines
    assert any('"GET unmatched" 404' in line for line in lines), lines


def test_json_log_lines_stay_json_under_concurrent_requests(
    athena_factory: Callable[..., AthenaServer], admin_key: str
) -> None:
    """Records come from many tasks at once; the listener thread writes whole lines."""
    import concurrent.futures

    server = athena_factory(LOG_FORMAT="json", ACCESS_LOG="-")
    with httpx.Client(base_url=server.url, timeout=30) as c:

        def hit(i: int) -> int:
            return c.get("/ping", headers={"X-Request-Id": f"r{i}"}).status_code

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            assert set(pool.map(hit, range(200))) == {200}
    assert server.stop() == 0
    records = _records(server.log())
    ids = {r.get("request_id") for r in records if r["logger"] == "athena.access"}
    assert {f"r{i}" for i in range(200)} <= ids
