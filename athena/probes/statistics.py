"""Client statistics: folded incrementally from the request log by one rollup task per deployment.

Invariant: ``athena.statistics_rollup_state.last_log_id`` = W means every request log row with
``id <= W`` — and no other — is counted in ``client_statistics``, ``client_table_statistics`` and
``request_stats_hourly``. The rollup (lease ``LEASE_STATISTICS``, so N workers or instances run it
once) advances W; ``rebuild()`` (the admin refresh) recounts all three tables from the log in
one transaction with the very same fold statement, so both give identical numbers.

The safe upper bound for W comes from the log writers' barrier (see ``request_log``): holding the
barrier exclusively for an instant, no batch is in flight, so ``max(id)`` is final.

What counts (rows with a resolved ``client_name`` only — unknown client headers are never
counted, so statistics rows stay bounded by real clients):

* ``total_requests`` every row; ``successful_requests`` status < 400; ``failed_requests`` >= 400;
  ``total_cached_requests`` rows served from cache; ``total_operations`` rows with an operation.
* per table: rows with a table and an operation, ``error_operations`` those with status >= 400.

The 24-hour aggregates of ``/metrics`` are sums of the last 24 hourly buckets (the current UTC
hour and the 23 before it), read by every instance every rollup interval — never per scrape.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg
import trio
from psycopg import sql
from psycopg.rows import dict_row

from athena.observability.metrics import gauge
from athena.observability.request_log import LOG_WRITE_BARRIER
from athena.supervisor import LEASE_STATISTICS, BackgroundTask

if TYPE_CHECKING:
    from athena.runtime import Runtime

log = logging.getLogger("athena.statistics")

# Log ids folded per transaction: a long backlog (a rollup that was down) is caught up in
# bounded steps instead of one transaction holding locks for minutes.
CHUNK_IDS = 100_000

_BARRIER_EXCLUSIVE = sql.SQL("SELECT pg_advisory_xact_lock({})").format(
    sql.Literal(LOG_WRITE_BARRIER)
)
_MAX_ID = sql.SQL("SELECT coalesce(max(id), 0) FROM athena.gateway_request_log")

_LOCK_STATE = sql.SQL(
    "SELECT last_log_id FROM athena.statistics_rollup_state WHERE singleton FOR UPDATE"
)
_SET_STATE = sql.SQL(
    "UPDATE athena.statistics_rollup_state SET last_log_id = %(hi)s, updated_at = now()"
    " WHERE singleton"
)

_FOLD_CLIENTS = sql.SQL("""
INSERT INTO athena.client_statistics AS s
    (client_name, total_requests, successful_requests, failed_requests, total_cached_requests,
     total_operations, last_request_at, last_operation_at, updated_at)
SELECT client_name, count(*), count(*) FILTER (WHERE status_code < 400),
       count(*) FILTER (WHERE status_code >= 400), count(*) FILTER (WHERE cached),
       count(*) FILTER (WHERE operation IS NOT NULL), max(created_at),
       max(created_at) FILTER (WHERE operation IS NOT NULL), now()
  FROM athena.gateway_request_log
 WHERE id > %(lo)s AND id <= %(hi)s AND client_name IS NOT NULL
 GROUP BY client_name
ON CONFLICT (client_name) DO UPDATE SET
    total_requests = s.total_requests + EXCLUDED.total_requests,
    successful_requests = s.successful_requests + EXCLUDED.successful_requests,
    failed_requests = s.failed_requests + EXCLUDED.failed_requests,
    total_cached_requests = s.total_cached_requests + EXCLUDED.total_cached_requests,
    total_operations = s.total_operations + EXCLUDED.total_operations,
    last_request_at = greatest(s.last_request_at, EXCLUDED.last_request_at),
    last_operation_at = greatest(s.last_operation_at, EXCLUDED.last_operation_at),
    updated_at = now()
""")

# The catalog's last_seen_at: when a client last served a request (the bookkeeping column the
# catalog trigger leaves out of updated_at, so catalog pollers see no change).
_TOUCH_CLIENTS = sql.SQL("""
UPDATE athena.athena_clients AS c SET last_seen_at = s.seen
  FROM (SELECT client_name, max(created_at) AS seen
          FROM athena.gateway_request_log
         WHERE id > %(lo)s AND id <= %(hi)s AND client_name IS NOT NULL
         GROUP BY client_name) s
 WHERE c.client_name = s.client_name AND (c.last_seen_at IS NULL OR c.last_seen_at < s.seen)
""")

_FOLD_TABLES = sql.SQL("""
INSERT INTO athena.client_table_statistics AS t
    (client_name, table_name, operation, total_operations, error_operations, last_operation_at,
     updated_at)
SELECT client_name, table_name, operation, count(*), count(*) FILTER (WHERE status_code >= 400),
       max(created_at), now()
  FROM athena.gateway_request_log
 WHERE id > %(lo)s AND id <= %(hi)s
   AND client_name IS NOT NULL AND table_name IS NOT NULL AND operation IS NOT NULL
 GROUP BY client_name, table_name, operation
ON CONFLICT (client_name, table_name, operation) DO UPDATE SET
    total_operations = t.total_operations + EXCLUDED.total_operations,
    error_operations = t.error_operations + EXCLUDED.error_operations,
    last_operation_at = greatest(t.last_operation_at, EXCLUDED.last_operation_at),
    updated_at = now()
""")

_FOLD_HOURLY = sql.SQL("""
INSERT INTO athena.request_stats_hourly AS h
    (hour, client_name, requests, failed, cached, duration_ms_sum)
SELECT date_trunc('hour', created_at AT TIME ZONE 'UTC'), coalesce(client_name, '-'), count(*),
       count(*) FILTER (WHERE status_code >= 400), count(*) FILTER (WHERE cached),
       sum(duration_ms)
  FROM athena.gateway_request_log
 WHERE id > %(lo)s AND id <= %(hi)s
 GROUP BY 1, 2
ON CONFLICT (hour, client_name) DO UPDATE SET
    requests = h.requests + EXCLUDED.requests,
    failed = h.failed + EXCLUDED.failed,
    cached = h.cached + EXCLUDED.cached,
    duration_ms_sum = h.duration_ms_sum + EXCLUDED.duration_ms_sum
""")

_REBUILD_TIMEOUT = sql.SQL("SET LOCAL statement_timeout = '300s'")

_CLEAR = [
    sql.SQL("DELETE FROM athena.client_statistics"),
    sql.SQL("DELETE FROM athena.client_table_statistics"),
    sql.SQL("DELETE FROM athena.request_stats_hourly"),
]

_AGGREGATES_24H = sql.SQL("""
SELECT client_name, sum(requests)::bigint AS requests, sum(failed)::bigint AS failed,
       sum(cached)::bigint AS cached, sum(duration_ms_sum) AS duration_ms_sum
  FROM athena.request_stats_hourly
 WHERE hour >= date_trunc('hour', now() AT TIME ZONE 'UTC') - interval '23 hours'
 GROUP BY client_name
 ORDER BY client_name
""")


def _safe_max_id(conn: psycopg.Connection) -> int:
    """The highest log id whose batch has committed (all lower ones have, too)."""
    with conn.transaction():
        conn.execute(_BARRIER_EXCLUSIVE)
        # A separate statement: READ COMMITTED takes its snapshot after the lock was granted.
        row = conn.execute(_MAX_ID).fetchone()
    return int(row[0]) if row else 0


def _fold(conn: psycopg.Connection, lo: int, hi: int) -> None:
    params = {"lo": lo, "hi": hi}
    for statement in (_FOLD_CLIENTS, _TOUCH_CLIENTS, _FOLD_TABLES, _FOLD_HOURLY):
        conn.execute(statement, params)
    conn.execute(_SET_STATE, params)


def rollup_step(conn: psycopg.Connection) -> int:
    """Fold the next chunk of committed log rows; return how many ids it covered (0 = caught up)."""
    high = _safe_max_id(conn)
    with conn.transaction():
        row = conn.execute(_LOCK_STATE).fetchone()
        low = int(row[0]) if row else 0
        if high <= low:
            return 0
        high = min(high, low + CHUNK_IDS)
        _fold(conn, low, high)
    return high - low


def rebuild(conn: psycopg.Connection) -> None:
    """Recompute every statistics table from the whole log, atomically."""
    high = _safe_max_id(conn)
    with conn.transaction():
        # An explicit admin action over the whole log may outlast the per-request timeout.
        conn.execute(_REBUILD_TIMEOUT)
        conn.execute(_LOCK_STATE)  # serializes with a rollup step running elsewhere
        for statement in _CLEAR:
            conn.execute(statement)
        _fold(conn, 0, high)


def read_aggregates(conn: psycopg.Connection) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(_AGGREGATES_24H)
        return cur.fetchall()


@dataclass
class StatisticsRollup:
    rt: Runtime
    interval_s: float
    aggregates: list[dict[str, Any]] = field(default_factory=list)
    aggregates_at: float | None = None
    rolled_up_ids: int = 0

    async def run_rollup(self) -> None:
        """Lease task: fold new log rows every interval, in chunks until caught up."""
        while True:
            while True:
                covered = await self.rt.catalog.run(rollup_step)
                self.rolled_up_ids += covered
                if covered < CHUNK_IDS:
                    break
            await trio.sleep(self.interval_s)

    async def run_aggregates(self) -> None:
        """Every instance: keep the 24-hour aggregates for /metrics in memory."""
        while True:
            self.aggregates = await self.rt.catalog.run(read_aggregates)
            self.aggregates_at = time.time()
            await trio.sleep(self.interval_s)

    async def rebuild(self) -> None:
        """``POST /admin/clients/statistics/refresh``: recount everything from the log."""
        await self.rt.catalog.run(rebuild)

    def collect(self) -> list[Any]:
        """The 24-hour gauges, from the last read (a scrape never queries the catalog)."""
        rows = self.aggregates
        families = [
            gauge(
                "athena_requests_24h",
                "Requests in the last 24 hours (hourly buckets), per client",
                ["client"],
                [([r["client_name"]], r["requests"]) for r in rows],
            ),
            gauge(
                "athena_requests_failed_24h",
                "Requests answered with status >= 400 in the last 24 hours, per client",
                ["client"],
                [([r["client_name"]], r["failed"]) for r in rows],
            ),
            gauge(
                "athena_requests_cached_24h",
                "Requests served from cache in the last 24 hours, per client",
                ["client"],
                [([r["client_name"]], r["cached"]) for r in rows],
            ),
            gauge(
                "athena_request_duration_seconds_avg_24h",
                "Mean request duration in the last 24 hours, per client",
                ["client"],
                [
                    ([r["client_name"]], r["duration_ms_sum"] / r["requests"] / 1000.0)
                    for r in rows
                    if r["requests"]
                ],
            ),
        ]
        if self.aggregates_at is not None:
            families.append(
                gauge(
                    "athena_aggregates_24h_updated_timestamp_seconds",
                    "When the 24-hour aggregates were last read from the catalog",
                    [],
                    [([], self.aggregates_at)],
                )
            )
        return families


def attach(rt: Runtime) -> StatisticsRollup:
    """Start-up (``Runtime._start_capabilities``): the service, its metrics and its rollups."""
    service = StatisticsRollup(rt, rt.settings.statistics_rollup_seconds)
    rt.metrics.add_collector(service.collect)
    rt.background.append(
        BackgroundTask("statistics_rollup", service.run_rollup, lease_id=LEASE_STATISTICS)
    )
    rt.background.append(BackgroundTask("statistics_aggregates", service.run_aggregates))
    return service
