"""Client statistics: the rollup folds the log incrementally, refresh rebuilds the same numbers.

Rows for client traffic are written into the log exactly as a gateway's writer writes them (one
transaction holding the shared write barrier), so the numbers are known to the unit; the
server's own logged traffic (admin calls) is checked through the 24-hour aggregates.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import psycopg
from obs_helpers import scrape, wait_for
from support.servers import AthenaServer

from athena.observability.request_log import LOG_WRITE_BARRIER

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


def _log(conn: psycopg.Connection, rows: list[tuple]) -> None:
    """(client, table, operation, status, cached, minutes after T0) rows, like a writer."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock_shared(%s)", (LOG_WRITE_BARRIER,))
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO athena.gateway_request_log (created_at, client_name, route, method,"
                " table_name, operation, status_code, duration_ms, cached)"
                " VALUES (%s, %s, '/gateway/fetch', 'POST', %s, %s, %s, 2.5, %s)",
                [(T0 + timedelta(minutes=m), c, t, o, s, k) for c, t, o, s, k, m in rows],
            )


def _stats(http: httpx.Client) -> dict[str, dict]:
    response = http.get("/admin/clients/statistics")
    assert response.status_code == 200
    return {r["client_name"]: r for r in response.json()["statistics"]}


def _detail(http: httpx.Client, client: str) -> dict:
    response = http.get(f"/admin/clients/{client}/statistics")
    assert response.status_code == 200, response.text
    return response.json()


def _numbers(record: dict) -> tuple:
    return tuple(v for k, v in record.items() if k != "updated_at")


def test_rollup_counts_exactly_and_refresh_rebuilds_identical_numbers(
    obs: AthenaServer, obs_catalog: psycopg.Connection, admin_key: str
) -> None:
    _log(
        obs_catalog,
        [
            ("athena", "orders", "fetch", 200, False, 1),
            ("athena", "orders", "fetch", 200, True, 2),
            ("athena", "orders", "insert", 201, False, 3),
            ("athena", "orders", "insert", 409, False, 4),
            ("athena", "users", "fetch", 200, True, 5),
            ("athena", None, None, 401, False, 6),  # rejected before it reached a table
        ],
    )
    with obs.client(apikey=admin_key) as http:
        stats = wait_for(
            lambda: _stats(http)["athena"]["total_requests"] == 6 and _stats(http),
            what="the rollup of 6 rows",
        )
        athena = stats["athena"]
        assert _numbers(athena) == (
            "athena", 6, 4, 2, 2, 5, "2026-01-05T10:06:00Z", "2026-01-05T10:05:00Z",
        )  # fmt: skip
        # a configured client without traffic is listed with zeros
        assert _numbers(stats["quiet"]) == ("quiet", 0, 0, 0, 0, 0, None, None)

        detail = _detail(http, "athena")
        assert detail["statistics"] == athena | {"updated_at": detail["statistics"]["updated_at"]}
        assert [_numbers(t) for t in detail["tables"]] == [
            ("athena", "orders", "fetch", 2, 0, "2026-01-05T10:02:00Z"),
            ("athena", "orders", "insert", 2, 1, "2026-01-05T10:04:00Z"),
            ("athena", "users", "fetch", 1, 0, "2026-01-05T10:05:00Z"),
        ]

        # incremental: more rows are added to the running totals
        _log(obs_catalog, [("athena", "users", "delete", 500, False, 30)])
        wait_for(lambda: _stats(http)["athena"]["total_requests"] == 7, what="the incremental fold")
        before = _stats(http)
        before_tables = _detail(http, "athena")["tables"]
        assert _numbers(before["athena"]) == (
            "athena", 7, 4, 3, 2, 6, "2026-01-05T10:30:00Z", "2026-01-05T10:30:00Z",
        )  # fmt: skip

        refreshed = http.post("/admin/clients/statistics/refresh")
        assert refreshed.status_code == 200
        after = {r["client_name"]: r for r in refreshed.json()["statistics"]}
        assert {k: _numbers(v) for k, v in after.items()} == {
            k: _numbers(v) for k, v in before.items()
        }
        assert [_numbers(t) for t in _detail(http, "athena")["tables"]] == [
            _numbers(t) for t in before_tables
        ]
        # the rollup after a refresh does not count anything twice
        _log(obs_catalog, [("athena", "users", "fetch", 200, False, 31)])
        wait_for(lambda: _stats(http)["athena"]["total_requests"] == 8, what="fold after refresh")
        assert _stats(http)["athena"]["successful_requests"] == 5


def test_unknown_client_is_404_and_configured_idle_client_is_zero(
    obs: AthenaServer, admin_key: str
) -> None:
    with obs.client(apikey=admin_key) as http:
        missing = http.get("/admin/clients/nobody/statistics")
        assert missing.status_code == 404
        body = missing.json()
        assert body["status"] == "error" and body["code"] == "client_not_found"
        quiet = _detail(http, "quiet")
        assert _numbers(quiet["statistics"]) == ("quiet", 0, 0, 0, 0, 0, None, None)
        assert quiet["tables"] == []


def test_statistics_routes_need_the_admin_key(obs: AthenaServer) -> None:
    with obs.client() as http:
        for method, path in [
            ("GET", "/admin/clients/statistics"),
            ("POST", "/admin/clients/statistics/refresh"),
            ("GET", "/admin/clients/athena/statistics"),
        ]:
            response = http.request(method, path)
            assert response.status_code == 401, path
            assert response.json()["code"] == "admin_key_required"
        wrong = http.get("/admin/clients/statistics", headers={"apikey": "nope"})
        assert wrong.status_code == 401 and wrong.json()["code"] == "invalid_admin_key"


def test_24h_aggregates_match_the_log(
    obs: AthenaServer, obs_catalog: psycopg.Connection, admin_key: str
) -> None:
    """The server's own logged traffic (no client) shows up in the '-' bucket of /metrics."""
    with obs.client(apikey=admin_key) as http:
        for _ in range(3):
            assert http.get("/admin/clients/statistics").status_code == 200
        assert http.get("/admin/clients/statistics", headers={"apikey": "bad"}).status_code == 401

    def in_log() -> tuple[int, int]:
        row = obs_catalog.execute(
            "SELECT count(*), count(*) FILTER (WHERE status_code >= 400)"
            " FROM athena.gateway_request_log WHERE client_name IS NULL"
            " AND created_at >= date_trunc('hour', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
            " - interval '23 hours'"
        ).fetchone()
        return int(row[0]), int(row[1])

    def metric_matches() -> bool:
        metrics = scrape(obs)
        total, failed = in_log()
        return (
            metrics.get(("athena_requests_24h", (("client", "-"),))) == total
            and metrics.get(("athena_requests_failed_24h", (("client", "-"),))) == failed
            and total >= 4
        )

    wait_for(metric_matches, what="24h aggregates equal to the log")
    metrics = scrape(obs)
    assert metrics[("athena_request_duration_seconds_avg_24h", (("client", "-"),))] > 0


def test_rest_traffic_is_logged_and_counted_per_table(
    obs: AthenaServer,
    obs_catalog: psycopg.Connection,
    data_conn: psycopg.Connection,
    admin_key: str,
) -> None:
    data_conn.execute("DROP TABLE IF EXISTS obs_items")
    data_conn.execute("CREATE TABLE obs_items (id int PRIMARY KEY, label text)")
    data_conn.execute("INSERT INTO obs_items VALUES (1, 'a'), (2, 'b')")
    headers = {"apikey": admin_key, "X-Athena-Client": "rest", "X-User-Id": "u-rest"}
    with obs.client(**headers) as http:
        for _ in range(3):
            assert http.get("/rest/v1/obs_items").status_code == 200
        assert http.get("/rest/v1/obs_items", params={"id": "eq.not-a-number"}).status_code == 400
        assert http.get("/rest/v1/obs_missing").status_code == 400  # unknown_table

    rows = wait_for(
        lambda: (
            (
                r := obs_catalog.execute(
                    "SELECT route, method, client_name, table_name, operation, status_code,"
                    " api_key_public_id, user_id FROM athena.gateway_request_log"
                    " WHERE client_name = 'rest' ORDER BY id"
                ).fetchall()
            )
            and len(r) == 5
            and r
        ),
        what="5 REST log rows",
    )
    assert [row[3:6] for row in rows] == [
        ("obs_items", "fetch", 200),
        ("obs_items", "fetch", 200),
        ("obs_items", "fetch", 200),
        ("obs_items", "fetch", 400),
        ("obs_missing", "fetch", 400),
    ]
    assert {row[:3] + row[6:] for row in rows} == {
        ("/rest/v1/<table>", "GET", "rest", "admin", "u-rest")
    }
    with obs.client(apikey=admin_key) as http:
        detail = wait_for(
            lambda: (d := _detail(http, "rest"))["statistics"]["total_requests"] == 5 and d,
            what="the rollup of the REST rows",
        )
    assert _numbers(detail["statistics"])[:6] == ("rest", 5, 3, 2, 0, 5)
    assert [_numbers(t)[:5] for t in detail["tables"]] == [
        ("rest", "obs_items", "fetch", 4, 1),
        ("rest", "obs_missing", "fetch", 1, 1),
    ]


def test_last_seen_at_follows_the_requests_a_client_served(
    obs: AthenaServer, obs_catalog: psycopg.Connection, admin_key: str
) -> None:
    def listed(http: httpx.Client) -> dict[str, dict]:
        response = http.get("/admin/clients")
        assert response.status_code == 200
        return {r["client_name"]: r for r in response.json()["clients"]}

    with obs.client(apikey=admin_key) as http:
        before = listed(http)
        assert before["quiet"]["last_seen_at"] is None, "never used: never seen"
        started = datetime.now(UTC)
        served = http.post(
            "/gateway/fetch", headers={"X-Athena-Client": "rest"}, json={"table_name": "nowhere"}
        )
        assert served.status_code == 400  # still a request the client served, and logged

        def seen() -> str | None:
            value = listed(http)["rest"]["last_seen_at"]
            return value if value and datetime.fromisoformat(value) >= started else None

        wait_for(seen, what="last_seen_at of client rest")
        after = listed(http)
        assert after["quiet"]["last_seen_at"] is None
        # bookkeeping, not an edit: catalog pollers must not see a changed client
        assert after["rest"]["updated_at"] == before["rest"]["updated_at"]
