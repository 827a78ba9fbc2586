"""Request log retention: expired rows go, but only once the statistics rollup has counted them."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
from obs_helpers import scrape, wait_for
from support.pg import TestPostgres
from support.servers import AthenaServer

from athena.supervisor import LEASE_STATISTICS

_INSERT = (
    "INSERT INTO athena.gateway_request_log (created_at, request_id, route, method, status_code,"
    " duration_ms) SELECT now() - %s::interval, %s || g, '/retention', 'GET', 200, 1"
    " FROM generate_series(1, %s) g"
)


def _ids(conn: psycopg.Connection, prefix: str) -> list[str]:
    rows = conn.execute(
        "SELECT request_id FROM athena.gateway_request_log WHERE request_id LIKE %s ORDER BY id",
        [prefix + "%"],
    )
    return [r[0] for r in rows]


def test_expired_rows_are_pruned_after_the_rollup_counted_them(
    athena_factory: Callable[..., AthenaServer], pg: TestPostgres
) -> None:
    catalog = pg.create_database(owner="postgres")
    with pg.connect(catalog, superuser=True) as conn:
        # Hold the statistics rollup's lease: the watermark moves only when this test says so.
        conn.execute("SELECT pg_advisory_lock(%s)", [LEASE_STATISTICS])
        server = athena_factory(
            catalog=catalog,
            REQUEST_LOG_RETENTION_DAYS="1",
            REQUEST_LOG_PRUNE_INTERVAL_S="0.3",
        )
        conn.execute(_INSERT, ["3 days", "old-counted-", 3])
        conn.execute(_INSERT, ["1 minute", "new-counted-", 2])
        conn.execute(
            "UPDATE athena.statistics_rollup_state SET last_log_id ="
            " (SELECT max(id) FROM athena.gateway_request_log)"
        )
        conn.execute(_INSERT, ["3 days", "old-uncounted-", 2])

        wait_for(lambda: not _ids(conn, "old-counted-"), what="counted expired rows pruned")
        assert _ids(conn, "new-counted-") == ["new-counted-1", "new-counted-2"]
        assert _ids(conn, "old-uncounted-") == ["old-uncounted-1", "old-uncounted-2"], (
            "rows the rollup has not counted yet are kept, however old"
        )
        metrics = scrape(server)
        assert metrics[("athena_request_log_pruned_total", ())] >= 3

        # once counted, they go too
        conn.execute(
            "UPDATE athena.statistics_rollup_state SET last_log_id ="
            " (SELECT max(id) FROM athena.gateway_request_log)"
        )
        wait_for(lambda: not _ids(conn, "old-uncounted-"), what="newly counted rows pruned")
        assert _ids(conn, "new-counted-") == ["new-counted-1", "new-counted-2"]
