"""ScyllaDB for ``/query/sql`` with ``driver: athena`` (via ``scylla-driver``).

Configured by ``ATHENA_SCYLLA_HOSTS`` (``host[:port]`` list). Without it the driver is
unavailable and ``/query/sql`` answers 503 "Athena/Scylla unavailable". The cluster connection
is made lazily on the first query, in a worker thread (the driver blocks), and re-tried on the
next query when it failed; ``online`` feeds ``athena_scylladb`` on ``GET /``.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import trio

from athena.errors import ApiError
from athena.query.raw import encode_rows
from athena.services.gateway.common import result_too_large

if TYPE_CHECKING:
    from athena.runtime import Runtime

DEFAULT_PORT = 9042
CONNECT_TIMEOUT_S = 3.0
QUERY_TIMEOUT_S = 15.0


def unavailable(reason: str | None = None) -> ApiError:
    return ApiError(
        "scylla_unavailable",
        "Athena/Scylla unavailable",
        detail=reason or "no ScyllaDB hosts are configured (ATHENA_SCYLLA_HOSTS)",
    )


def _contact_points(hosts: list[str]) -> tuple[list[str], int]:
    points, port = [], DEFAULT_PORT
    for host in hosts:
        name, sep, maybe_port = host.rpartition(":")
        if sep and maybe_port.isdigit() and name and not name.endswith(":"):
            points.append(name.strip("[]"))
            port = int(maybe_port)
        else:
            points.append(host)
    return points, port


class ScyllaService:
    """A lazily connected cluster session shared by the process."""

    def __init__(self, hosts: list[str]) -> None:
        self.hosts = hosts
        self.online = False
        self._session: Any = None
        self._lock = threading.Lock()

    def _connect(self) -> Any:
        with self._lock:
            if self._session is not None:
                return self._session
            from cassandra.cluster import Cluster  # imported only when Scylla is configured

            points, port = _contact_points(self.hosts)
            cluster = Cluster(
                contact_points=points,
                port=port,
                connect_timeout=CONNECT_TIMEOUT_S,
                control_connection_timeout=CONNECT_TIMEOUT_S,
            )
            try:
                self._session = cluster.connect()
            except Exception:
                cluster.shutdown()
                raise
            self.online = True
            return self._session

    def _execute(self, text: str, max_rows: int) -> tuple[bytes, int, bool]:
        """Runs in a worker thread: query, then encode there (never on the event loop)."""
        session = self._connect()
        result = session.execute(text, timeout=QUERY_TIMEOUT_S)
        columns = list(result.column_names or [])
        rows: list[tuple[Any, ...]] = []
        for row in result:
            rows.append(tuple(row))
            if len(rows) > max_rows:
                return b"[]", len(rows), True
        return encode_rows(columns, rows), len(rows), False

    async def execute(self, rt: Runtime, text: str) -> dict[str, Any]:
        """Run CQL ``text``; ``{data_json, meta, count}`` like the PostgreSQL path."""
        max_rows = rt.settings.max_result_rows
        try:
            data, count, too_many = await trio.to_thread.run_sync(
                self._execute, text, max_rows, limiter=rt.limiter, abandon_on_cancel=True
            )
        except Exception as exc:
            name = type(exc).__name__
            if name in (
                "InvalidRequest",
                "SyntaxException",
                "Unauthorized",
                "ConfigurationException",
            ):
                raise ApiError("query_failed", str(exc).split("\n")[0][:300]) from None
            self.online = False
            self._session = None if name == "NoHostAvailable" else self._session
            raise unavailable(name) from None
        if too_many:
            raise result_too_large(max_rows)
        meta = {
            "backend": "scylla",
            "returned_row_count": count,
            "rows_affected": 0,
            "statement_count": 1,
        }
        return {"data_json": data, "meta": meta, "count": count}
