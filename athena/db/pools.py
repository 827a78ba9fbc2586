"""Connection pools and the one way the event loop talks to PostgreSQL.

psycopg's async API speaks asyncio, not trio, so every database call runs a synchronous
function in a worker thread (``trio.to_thread.run_sync``) bounded by one ``CapacityLimiter``.
The event loop never blocks on a socket to Postgres.

``ClientRegistry`` maps a client name to a ``ClientEntry`` with its own ``ConnectionPool``.
Entries are replaced atomically (a dict assignment), so hot-adding a client never disturbs
requests in flight on another one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
import trio
from psycopg_pool import ConnectionPool, PoolTimeout

from athena.errors import ApiError

log = logging.getLogger("athena.db")
T = TypeVar("T")


_DEFAULT = object()


class StatementDeadlineExceeded(Exception):
    """A call outlived its hard deadline (statement timeout plus grace) and was cancelled.

    ``statement_timeout`` bounds each statement server-side, but SQL sent by a trusted key could
    ``SET statement_timeout = 0``; this deadline, enforced from the event loop, cannot be
    switched off from SQL. Mapped to 504 ``statement_timeout``.
    """


class DatabaseUnavailable(Exception):
    """No connection could be had within the pool timeout (server down or pool exhausted).

    Raised by ``Database.run``; routes turn it into 503 ``client_unavailable`` (or
    ``auth_unavailable`` / ``catalog_unavailable`` for the catalog).
    """


def mask_uri(uri: str | None) -> str | None:
    """The URI with its password replaced by ``***`` — the only form any response may show."""
    if not uri:
        return uri
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "***"
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, ""))


def make_pool(
    uri: str,
    *,
    name: str,
    min_size: int,
    max_size: int,
    statement_timeout_ms: int,
    connect_timeout_s: float,
    pool_timeout_s: float,
    application_name: str = "athena",
) -> ConnectionPool:
    """A pool whose connections are autocommit and carry a statement timeout.

    ``open(wait=False)``: an unreachable database must not stop the gateway from starting; its
    requests get 503 until it comes back, and the pool reconnects by itself.
    """
    pool = ConnectionPool(
        uri,
        name=f"athena-{name}",
        min_size=min_size,
        max_size=max_size,
        timeout=pool_timeout_s,
        # A broken connection is dropped on return; checking on borrow costs a round trip
        # per request, so we rely on reconnect_failed + discard of BAD connections instead.
        kwargs={
            "autocommit": True,
            "connect_timeout": max(1, int(connect_timeout_s)),
            "application_name": application_name,
            "options": f"-c statement_timeout={int(statement_timeout_ms)}",
        },
        reconnect_timeout=0,  # keep retrying forever: the database may come back
        open=False,
    )
    pool.open(wait=False)
    return pool


@dataclass
class Database:
    """A pool plus the limiter that bounds the threads using it."""

    name: str
    pool: ConnectionPool
    limiter: trio.CapacityLimiter
    pool_timeout_s: float = 5.0
    # Hard bound on one call: waiting for a connection + the statement timeout + grace.
    deadline_s: float | None = None

    async def run(
        self, fn: Callable[[psycopg.Connection], T], *, deadline_s: float | object | None = _DEFAULT
    ) -> T:
        """Run ``fn(conn)`` in a worker thread with a pooled connection.

        On cancellation (client gone, shutdown, the hard deadline) the running statement is
        cancelled server-side and the connection goes back to the pool clean;
        ``trio.Cancelled`` propagates, the deadline raises ``StatementDeadlineExceeded``.
        ``deadline_s`` overrides the pool's deadline for long jobs (``None``: no deadline).
        """
        deadline = self.deadline_s if deadline_s is _DEFAULT else deadline_s
        if deadline is None:
            return await self._run(fn)
        assert isinstance(deadline, (int, float))
        with trio.move_on_after(deadline) as scope:
            return await self._run(fn)
        assert scope.cancelled_caught
        raise StatementDeadlineExceeded(self.name)

    async def _run(self, fn: Callable[[psycopg.Connection], T]) -> T:
        holder: dict[str, psycopg.Connection] = {}

        def work() -> T:
            try:
                with self.pool.connection(timeout=self.pool_timeout_s) as conn:
                    holder["conn"] = conn
                    try:
                        return fn(conn)
                    finally:
                        holder.pop("conn", None)
            except PoolTimeout:
                raise DatabaseUnavailable(self.name) from None
            except psycopg.OperationalError as exc:
                if _is_connection_failure(exc):
                    raise DatabaseUnavailable(self.name) from exc
                raise

        try:
            return await trio.to_thread.run_sync(work, limiter=self.limiter, abandon_on_cancel=True)
        except trio.Cancelled:
            conn = holder.get("conn")
            if conn is not None:
                # Ask the server to stop the statement; the abandoned thread then returns the
                # connection to the pool, which rolls back anything left open.
                threading.Thread(target=_cancel_quietly, args=(conn,), daemon=True).start()
            raise


def _cancel_quietly(conn: psycopg.Connection) -> None:
    try:
        conn.cancel_safe(timeout=2.0)
    except Exception:  # best effort: the statement timeout bounds it anyway
        pass


_CONNECTION_SQLSTATES = {"08000", "08003", "08006", "08001", "08004", "57P01", "57P02", "57P03"}


def _is_connection_failure(exc: psycopg.OperationalError) -> bool:
    state = getattr(exc, "sqlstate", None)
    return state is None or state in _CONNECTION_SQLSTATES


@dataclass
class ClientEntry:
    """A client as the gateway serves it right now."""

    name: str
    uri: str | None
    source: str = "config"  # "config" | "database"
    description: str | None = None
    pg_uri_env_var: str | None = None
    config_uri_template: str | None = None
    is_active: bool = True
    is_frozen: bool = False
    db: Database | None = None
    # custom_supabase and similar clients have no pool
    kind: str = "postgres"

    @property
    def pool_connected(self) -> bool:
        if self.db is None:
            return False
        stats = self.db.pool.get_stats()
        return stats.get("pool_size", 0) > 0 or stats.get("pool_available", 0) > 0


@dataclass
class ClientRegistry:
    """Name → ClientEntry, with hot add/replace/remove."""

    limiter: trio.CapacityLimiter
    pool_factory: Callable[[str, str], ConnectionPool]
    pool_timeout_s: float = 5.0
    deadline_s: float | None = None
    _entries: dict[str, ClientEntry] = field(default_factory=dict)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[ClientEntry]:
        return [self._entries[n] for n in sorted(self._entries)]

    def get(self, name: str) -> ClientEntry | None:
        return self._entries.get(name)

    def put(self, entry: ClientEntry) -> ClientEntry | None:
        """Install ``entry`` (opening its pool if it has a URI); return the one it replaced.

        The caller closes the replaced entry's pool (``close_entry``) off the event loop.
        """
        old = self._entries.get(entry.name)
        if entry.db is None and entry.uri and entry.is_active:
            if old is not None and old.db is not None and old.uri == entry.uri:
                entry.db = old.db  # same database: keep the warm pool
            else:
                pool = self.pool_factory(entry.name, entry.uri)
                entry.db = Database(
                    entry.name, pool, self.limiter, self.pool_timeout_s, self.deadline_s
                )
        self._entries[entry.name] = entry
        if old is None or old.db is None or old.db is entry.db:
            return None
        return old

    def remove(self, name: str) -> ClientEntry | None:
        return self._entries.pop(name, None)

    def close_all(self) -> None:
        for entry in list(self._entries.values()):
            close_entry(entry)
        self._entries.clear()


def close_entry(entry: ClientEntry | None) -> None:
    """Close an entry's pool (blocking: call from a thread or at shutdown)."""
    if entry is not None and entry.db is not None:
        try:
            entry.db.pool.close(timeout=5.0)
        except Exception:
            log.warning("closing pool of client %s failed", entry.name, exc_info=True)


def require_db(entry: ClientEntry) -> Database:
    """The entry's database, or 503 ``client_unavailable`` if it has none."""
    if entry.db is None:
        raise ApiError(
            "client_unavailable",
            f"client '{entry.name}' has no reachable database",
            data={"client": entry.name},
        )
    return entry.db


def pool_stats(db: Database) -> dict[str, Any]:
    return dict(db.pool.get_stats())
