"""The request log over a real server: what is recorded, batching, drops, flush on shutdown."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
import psycopg
from obs_helpers import FAST, scrape, wait_for
from support.pg import TestPostgres
from support.servers import AthenaServer


def _rows(conn: psycopg.Connection, where: str = "true") -> list[tuple]:
    return conn.execute(
        "SELECT route, method, status_code, client_name, user_id, company_id, organization_id,"
        " request_id, api_key_public_id, error_code, duration_ms, remote_addr"
        f" FROM athena.gateway_request_log WHERE {where} ORDER BY id"
    ).fetchall()


def test_requests_are_logged_with_route_template_context_and_outcome(
    obs: AthenaServer, obs_catalog: psycopg.Connection, admin_key: str
) -> None:
    tag = f"user-{time.monotonic_ns()}"
    context = {"X-User-Id": tag, "X-Company-Id": "co-7", "X-Organization-Id": "org-9"}
    with obs.client(**context) as http:
        for n in range(3):
            assert http.get("/openapi.yaml", headers={"x-request-id": f"{tag}-{n}"}).is_success
        denied = http.get("/admin/clients/quiet/statistics")  # no admin key: 401
        assert denied.status_code == 401
        allowed = http.get("/admin/clients/quiet/statistics", headers={"apikey": admin_key})
        assert allowed.status_code == 200
        # liveness, scrapes and unknown paths stay out of the log
        http.get("/ping")
        http.get("/metrics")
        assert http.get("/no/such/path").status_code == 404

    rows = wait_for(lambda: len(_rows(obs_catalog, f"user_id = '{tag}'")) == 5 and
                    _rows(obs_catalog, f"user_id = '{tag}'"), what="5 log rows")  # fmt: skip
    docs = [r for r in rows if r[0] == "/openapi.yaml"]
    assert [r[7] for r in docs] == [f"{tag}-0", f"{tag}-1", f"{tag}-2"]
    for row in docs:
        assert row[1:7] == ("GET", 200, None, tag, "co-7", "org-9")
        assert row[10] > 0
        assert row[11] == "127.0.0.1"
    admin = [r for r in rows if r[0] != "/openapi.yaml"]
    assert [(r[0], r[2], r[8], r[9]) for r in admin] == [
        ("/admin/clients/<client_name>/statistics", 401, None, "admin_key_required"),
        ("/admin/clients/<client_name>/statistics", 200, "admin", None),
    ]
    # nothing else carried this user id: /ping, /metrics and the 404 were not logged
    assert len(_rows(obs_catalog, f"user_id = '{tag}'")) == 5


def test_full_queue_drops_and_counts_instead_of_blocking(
    athena_factory: Callable[..., AthenaServer], pg: TestPostgres, data_db: str
) -> None:
    catalog = pg.create_database(owner="postgres")
    server = athena_factory(
        clients={"athena": {"pg_uri": pg.app_uri(data_db)}},
        catalog=catalog,
        REQUEST_LOG_QUEUE_SIZE="5",
        REQUEST_LOG_BATCH_SIZE="1",
        REQUEST_LOG_FLUSH_SECONDS="0.05",
    )
    with pg.connect(catalog, superuser=True) as conn:
        baseline = conn.execute("SELECT count(*) FROM athena.gateway_request_log").fetchone()[0]
    locker = psycopg.connect(pg.superuser_uri(catalog))
    try:
        # Hold the log table: the writer's COPY waits, the channel fills, requests go on.
        locker.execute("LOCK TABLE athena.gateway_request_log IN ACCESS EXCLUSIVE MODE")
        with server.client() as http:
            assert http.get("/openapi.yaml").is_success  # the writer takes it and blocks
            time.sleep(0.5)
            started = time.monotonic()
            for _ in range(19):
                assert http.get("/openapi.yaml").is_success
            elapsed = time.monotonic() - started
        metrics = scrape(server)
        assert metrics[("athena_request_log_dropped_total", ())] == 14  # 20 - 1 - 5 queued
        assert metrics[("athena_request_log_queue_depth", ())] == 6
        assert elapsed < 3.0, "requests waited for the log"
    finally:
        locker.rollback()
        locker.close()
    with pg.connect(catalog, superuser=True) as conn:
        wait_for(
            lambda: (
                conn.execute("SELECT count(*) FROM athena.gateway_request_log").fetchone()[0]
                == baseline + 6
            ),
            what="the 6 queued rows",
        )
    assert scrape(server)[("athena_request_log_written_total", ())] == baseline + 6


def test_shutdown_flushes_what_is_buffered(
    athena_factory: Callable[..., AthenaServer], pg: TestPostgres, data_db: str
) -> None:
    catalog = pg.create_database(owner="postgres")
    server = athena_factory(
        clients={"athena": {"pg_uri": pg.app_uri(data_db)}},
        catalog=catalog,
        REQUEST_LOG_FLUSH_SECONDS="60",  # nothing is written before the shutdown
        **FAST,
    )
    with server.client(**{"X-User-Id": "flush-me"}) as http:
        for _ in range(7):
            assert http.get("/openapi.yaml").is_success
    with pg.connect(catalog, superuser=True) as conn:
        count = "SELECT count(*) FROM athena.gateway_request_log WHERE user_id = 'flush-me'"
        assert conn.execute(count).fetchone()[0] == 0
        assert server.stop() == 0
        assert conn.execute(count).fetchone()[0] == 7


def test_logging_never_waits_under_concurrency(obs: AthenaServer) -> None:
    """Many concurrent requests all succeed while the writer batches them."""
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with httpx.Client(base_url=obs.url, timeout=10) as http:
                for _ in range(20):
                    assert http.get("/openapi.yaml").is_success
        except BaseException as exc:  # collected and re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert scrape(obs)[("athena_request_log_dropped_total", ())] == 0
