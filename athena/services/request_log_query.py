"""Reading the request log back: filtered pages of entries and per-minute series (pure SQL
builders plus the catalog calls that run them). Writing the log is ``request_log.py``'s job.

Filters are bound parameters; the route filter is a substring match with LIKE's wildcards
escaped, so ``%`` in a filter means a percent sign. PostgreSQL does the bucketing and the
percentiles; Python only moves the rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from athena.errors import ApiError

MAX_PAGE = 1000
MAX_SERIES_MINUTES = 7 * 24 * 60
_STATUS_CLASSES = {"2xx": (200, 299), "3xx": (300, 399), "4xx": (400, 499), "5xx": (500, 599)}
_COLUMNS = (
    "id", "created_at", "request_id", "client_name", "route", "method", "table_name",
    "operation", "status_code", "duration_ms", "cached", "api_key_public_id", "user_id",
    "company_id", "organization_id", "error_code",
)  # fmt: skip  # remote_addr stays in the catalog: an operator screen does not need it


@dataclass(frozen=True)
class LogFilter:
    client_name: str | None = None
    status: str | None = None
    route: str | None = None
    method: str | None = None
    api_key: str | None = None

    def where(self) -> tuple[sql.Composable, dict[str, Any]]:
        """The SQL condition (named placeholders) and its parameters."""
        parts: list[str] = []
        args: dict[str, Any] = {}
        if self.client_name:
            parts.append("client_name = %(client_name)s")
            args["client_name"] = self.client_name
        if self.status:
            args["status_low"], args["status_high"] = _status_range(self.status)
            parts.append("status_code BETWEEN %(status_low)s AND %(status_high)s")
        if self.route:
            parts.append("route LIKE %(route)s ESCAPE '\\'")
            args["route"] = "%" + _escape_like(self.route) + "%"
        if self.method:
            parts.append("method = %(method)s")
            args["method"] = self.method.upper()
        if self.api_key:
            parts.append("api_key_public_id = %(api_key)s")
            args["api_key"] = self.api_key
        return sql.SQL(" AND ".join(parts) or "TRUE"), args


def _status_range(status: str) -> tuple[int, int]:
    value = status.strip().lower()
    if value == "error":
        return 400, 599
    if value in _STATUS_CLASSES:
        return _STATUS_CLASSES[value]
    if value.isascii() and value.isdigit() and 100 <= int(value) <= 599:  # not "²": isdigit
        return int(value), int(value)
    raise ApiError("invalid_request", "status must be a code (404), a class (4xx) or 'error'")


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def list_entries(
    conn: psycopg.Connection, flt: LogFilter, *, limit: int, before_id: int | None
) -> list[dict[str, Any]]:
    """The newest ``limit`` entries matching ``flt`` (with ids below ``before_id``)."""
    where, args = flt.where()
    if before_id is not None:
        where = sql.SQL("{} AND id < %(before_id)s").format(where)
        args["before_id"] = before_id
    query = sql.SQL(
        "SELECT {cols} FROM athena.gateway_request_log WHERE {where}"
        " ORDER BY id DESC LIMIT %(limit)s"
    ).format(cols=sql.SQL(", ").join(map(sql.Identifier, _COLUMNS)), where=where)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, {**args, "limit": limit})
        rows = cur.fetchall()
    for row in rows:
        row["created_at"] = row["created_at"].isoformat()
    return rows


_SERIES = """
WITH buckets AS (
    SELECT generate_series(
        date_trunc('minute', now()) - make_interval(mins => %(minutes)s - 1),
        date_trunc('minute', now()), interval '1 minute') AS t
), log AS (
    SELECT date_trunc('minute', created_at) AS t, status_code, duration_ms
    FROM athena.gateway_request_log
    WHERE created_at >= date_trunc('minute', now()) - make_interval(mins => %(minutes)s - 1)
      AND {where}
)
SELECT b.t, count(l.t) AS requests,
       count(l.t) FILTER (WHERE l.status_code >= 400) AS errors,
       round(avg(l.duration_ms)::numeric, 2)::float8 AS avg_ms,
       round((percentile_cont(0.95) WITHIN GROUP (ORDER BY l.duration_ms))::numeric, 2)::float8
           AS p95_ms
FROM buckets b LEFT JOIN log l ON l.t = b.t
GROUP BY b.t ORDER BY b.t
"""


def series(conn: psycopg.Connection, flt: LogFilter, *, minutes: int) -> list[dict[str, Any]]:
    """One row per minute of the last ``minutes``: requests, errors, mean and p95 latency."""
    where, args = flt.where()
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql.SQL(_SERIES).format(where=where), {**args, "minutes": minutes})
        rows = cur.fetchall()
    for row in rows:
        row["t"] = row["t"].isoformat()
    return rows
