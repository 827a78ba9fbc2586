"""/metrics parsed with prometheus-client's parser; pool health behind GET / and the gauges."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from obs_helpers import FAST, families, scrape, wait_for
from support.pg import TestPostgres
from support.servers import AthenaServer

from athena.db.embedded import free_port

NAMED_FAMILIES = {
    "athena_uptime_seconds",
    "athena_requests",
    "athena_request_duration_seconds",
    "athena_management_mutations",
    "athena_background_task_restarts",
    "athena_background_task_up",
    "athena_request_log_dropped",
    "athena_request_log_written",
    "athena_request_log_queue_depth",
    "athena_pool_size",
    "athena_pool_in_use",
    "athena_pool_waiting",
    "athena_pool_errors",
    "athena_pool_up",
    "athena_cluster_mirror_up",
    "athena_cluster_mirror_latency_seconds",
    "athena_cluster_mirror_download_bytes_per_second",
    "athena_requests_24h",
    "athena_requests_failed_24h",
    "athena_requests_cached_24h",
    "athena_request_duration_seconds_avg_24h",
}


def test_metrics_counts_requests_by_route_template(
    athena_factory: Callable[..., AthenaServer], pg: TestPostgres, data_db: str, admin_key: str
) -> None:
    server = athena_factory(
        clients={"athena": {"pg_uri": pg.app_uri(data_db)}},
        catalog=pg.create_database(owner="postgres"),
        **FAST,
    )
    with server.client() as http:
        for _ in range(4):
            assert http.get("/openapi.yaml").status_code == 200
        for name in ("a", "b", "c"):  # three raw paths, one route template
            assert http.get(f"/admin/clients/{name}/statistics").status_code == 401
        assert http.get(
            "/admin/clients/athena/statistics", headers={"apikey": admin_key}
        ).is_success
        assert http.get("/no/such/path").status_code == 404

    response = httpx.get(f"{server.url}/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    assert NAMED_FAMILIES <= families(server)
    metrics = scrape(server)
    template = "/admin/clients/<client_name>/statistics"

    def requests(route: str, status: str) -> float:
        key = (("client", "-"), ("method", "GET"), ("route", route), ("status", status))
        return metrics.get(("athena_requests_total", key), 0.0)

    assert requests("/openapi.yaml", "200") == 4
    assert requests(template, "401") == 3
    assert requests(template, "200") == 1
    assert requests("unmatched", "404") == 1
    # raw paths never become label values
    assert not any("/admin/clients/a/" in str(labels) for _, labels in metrics)
    duration = (("method", "GET"), ("route", "/openapi.yaml"))
    assert metrics[("athena_request_duration_seconds_count", duration)] == 4
    assert metrics[("athena_uptime_seconds", ())] > 0
    assert metrics[("athena_request_log_dropped_total", ())] == 0
    for pool in ("catalog", "athena"):
        assert metrics[("athena_pool_size", (("client", pool),))] >= 1
    wait_for(lambda: scrape(server).get(("athena_pool_up", (("client", "athena"),))) == 1,
             what="pool check")  # fmt: skip
    tasks = {labels[0][1]: v for (name, labels), v in scrape(server).items()
             if name == "athena_background_task_up"}  # fmt: skip
    assert tasks["request_log_writer"] == 1
    assert tasks["statistics_rollup"] == 1 and tasks["pool_health"] == 1


def test_root_reports_degraded_pools_when_a_client_database_is_down(
    athena_factory: Callable[..., AthenaServer], pg: TestPostgres, data_db: str
) -> None:
    dead = f"postgresql://nobody:x@127.0.0.1:{free_port()}/nothing"
    server = athena_factory(
        clients={"athena": {"pg_uri": pg.app_uri(data_db)}, "dead": {"pg_uri": dead}},
        catalog=pg.create_database(owner="postgres"),
        CONNECT_TIMEOUT_S="1",
        POOL_TIMEOUT_S="1",
        **FAST,
    )
    with server.client() as http:
        body = wait_for(
            lambda: (b := http.get("/").json())["athena_deadpool"] == "degraded" and b,
            what="degraded pools",
        )
        assert body["athena_api"] == "online"
        cluster = http.get("/health/cluster").json()
        assert cluster["athena_deadpool"] == "degraded"
    metrics = scrape(server)
    assert metrics[("athena_pool_up", (("client", "dead"),))] == 0
    assert metrics[("athena_pool_up", (("client", "athena"),))] == 1
    assert metrics[("athena_pool_up", (("client", "catalog"),))] == 1


def test_root_reports_online_pools_when_all_answer(obs: AthenaServer) -> None:
    with obs.client() as http:
        wait_for(lambda: http.get("/").json()["athena_deadpool"] == "online", what="online")


def test_the_raw_sql_pool_is_reported_like_the_others(
    athena_factory: Callable[..., AthenaServer], pg: TestPostgres
) -> None:
    """Raw SQL runs on a pool of its own whose connections are new for every call, so a
    database that refuses new connections shows there while the shared pool's open ones still
    answer: ``/health`` and ``/metrics`` report it as ``<client>:raw``."""
    db = pg.create_database()
    try:
        server = athena_factory(
            clients={"locked": {"pg_uri": pg.app_uri(db)}},
            catalog=pg.create_database(owner="postgres"),
            **FAST,
        )
        with server.client() as http:

            def pools() -> dict[str, str]:
                return dict(http.get("/health").json()["pools"])

            assert wait_for(lambda: pools().get("locked:raw") == "online", what="raw pool")
            assert pools()["locked"] == "online" and pools()["catalog"] == "online"
            metrics = scrape(server)
            assert metrics[("athena_pool_up", (("client", "locked:raw"),))] == 1
            assert metrics[("athena_pool_size", (("client", "locked:raw"),))] >= 0
            for gauge in ("athena_pool_in_use", "athena_pool_waiting", "athena_pool_errors"):
                assert (gauge, (("client", "locked:raw"),)) in metrics

            with pg.connect(db, superuser=True) as conn:
                conn.execute(f'ALTER DATABASE "{db}" CONNECTION LIMIT 0')
            try:
                wait_for(lambda: pools().get("locked:raw") == "offline", what="raw pool offline")
                body = http.get("/health").json()
                assert body["pools"]["locked"] == "online"  # its connections are open already
                assert body["status"] == "degraded"
                up = scrape(server)[("athena_pool_up", (("client", "locked:raw"),))]
                assert up == 0
            finally:
                with pg.connect(db, superuser=True) as conn:
                    conn.execute(f'ALTER DATABASE "{db}" CONNECTION LIMIT -1')
            wait_for(lambda: pools().get("locked:raw") == "online", what="raw pool back")
    finally:
        pg.drop_database(db)
