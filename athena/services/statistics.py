"""Client statistics as ``/admin/clients/…/statistics`` reads them from the catalog.

The tables are kept by the rollup in ``athena.probes.statistics`` (what counts, and the invariant
that makes a rollup and a rebuild give the same numbers, are written there).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

# Statistics rows plus every live client of the catalog (zeros until its first request), so a
# listing shows all clients whichever instance answers.
_LIST = sql.SQL("""
SELECT client_name,
       coalesce(s.total_requests, 0) AS total_requests,
       coalesce(s.successful_requests, 0) AS successful_requests,
       coalesce(s.failed_requests, 0) AS failed_requests,
       coalesce(s.total_cached_requests, 0) AS total_cached_requests,
       coalesce(s.total_operations, 0) AS total_operations,
       s.last_request_at, s.last_operation_at,
       coalesce(s.updated_at, now()) AS updated_at
  FROM athena.client_statistics s
  FULL JOIN (SELECT client_name FROM athena.athena_clients WHERE deleted_at IS NULL) c
 USING (client_name)
 {where}
 ORDER BY client_name
""")

_TABLES = sql.SQL("""
SELECT client_name, table_name, operation, total_operations, error_operations,
       last_operation_at, updated_at
  FROM athena.client_table_statistics
 WHERE client_name = %s
 ORDER BY table_name, operation
""")


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value


def _record(row: dict[str, Any]) -> dict[str, Any]:
    return {key: _iso(value) for key, value in row.items()}


def list_statistics(conn: psycopg.Connection, client: str | None = None) -> list[dict[str, Any]]:
    where = sql.SQL("WHERE client_name = %s" if client is not None else "")
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(_LIST.format(where=where), (client,) if client is not None else None)
        return [_record(r) for r in cur.fetchall()]


def table_statistics(conn: psycopg.Connection, client: str) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(_TABLES, (client,))
        return [_record(r) for r in cur.fetchall()]
