"""The registry of clients: name → ``ClientEntry`` with its own ``Database``.

Each PostgreSQL client has two: ``db``, the pool every gateway, REST and WebSocket call shares,
and ``raw_db``, the pool raw SQL (``gateway.query``) runs on. A raw call's connection is closed
after it (``single_use``), so nothing the caller's SQL leaves on a session — a prepared
statement, a ``SET``, a temporary table, a ``LISTEN`` — ever reaches another request.

Entries are replaced atomically (a dict assignment), so hot-adding a client never disturbs
requests in flight on another one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import trio
from psycopg_pool import ConnectionPool

from athena.db.database import Database
from athena.errors import ApiError

log = logging.getLogger("athena.db")

# How the raw SQL pool of client X is named in /health and /metrics: "X:raw".
RAW_POOL_SUFFIX = ":raw"


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
    # raw SQL only: its connections are used once (see the module docstring)
    raw_db: Database | None = None
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
    # The pool raw SQL runs on (same database, connections used once); None: no raw SQL.
    raw_pool_factory: Callable[[str, str], ConnectionPool] | None = None
    pool_timeout_s: float = 5.0
    deadline_s: float | None = None
    _entries: dict[str, ClientEntry] = field(default_factory=dict)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[ClientEntry]:
        return [self._entries[n] for n in sorted(self._entries)]

    def databases(self) -> list[tuple[str, Database]]:
        """Every client's pools, named as ``/health`` and ``/metrics`` report them: the
        client's name for its shared pool, the name + ``:raw`` for raw SQL's (a client name
        never holds a colon). The raw pool is checked on its own because its connections are
        new for every call: a database or role that refuses new connections shows there first,
        while the shared pool's open ones still work."""
        out: list[tuple[str, Database]] = []
        for entry in self.entries():
            if entry.db is not None:
                out.append((entry.name, entry.db))
            if entry.raw_db is not None:
                out.append((entry.name + RAW_POOL_SUFFIX, entry.raw_db))
        return out

    def get(self, name: str) -> ClientEntry | None:
        return self._entries.get(name)

    def put(self, entry: ClientEntry) -> ClientEntry | None:
        """Install ``entry`` (opening its pool if it has a URI); return the one it replaced.

        The caller closes the replaced entry's pool (``close_entry``) off the event loop.
        """
        old = self._entries.get(entry.name)
        if entry.db is None and entry.uri and entry.is_active:
            if old is not None and old.db is not None and old.uri == entry.uri:
                entry.db = old.db  # same database: keep the warm pools
                entry.raw_db = old.raw_db
            else:
                pool = self.pool_factory(entry.name, entry.uri)
                entry.db = Database(
                    entry.name, pool, self.limiter, self.pool_timeout_s, self.deadline_s
                )
                if self.raw_pool_factory is not None:
                    entry.raw_db = Database(
                        entry.name,
                        self.raw_pool_factory(entry.name, entry.uri),
                        self.limiter,
                        self.pool_timeout_s,
                        self.deadline_s,
                        single_use=True,
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
    """Close an entry's pools (blocking: call from a thread or at shutdown)."""
    if entry is None:
        return
    for db in (entry.db, entry.raw_db):
        if db is None:
            continue
        try:
            db.pool.close(timeout=5.0)
        except Exception:
            log.warning("closing pool of client %s failed", entry.name, exc_info=True)


def require_db(entry: ClientEntry) -> Database:
    """The entry's database, or 503 ``client_unavailable`` if it has none."""
    return _reachable(entry, entry.db)


def require_raw_db(entry: ClientEntry) -> Database:
    """The database raw SQL runs on (never the shared pool), or 503 ``client_unavailable``."""
    return _reachable(entry, entry.raw_db)


def _reachable(entry: ClientEntry, db: Database | None) -> Database:
    if db is None:
        raise ApiError(
            "client_unavailable",
            f"client '{entry.name}' has no reachable database",
            data={"client": entry.name},
        )
    return db
