"""Everything one gateway process holds while it serves: settings, pools, caches, background work.

``Runtime.open()`` is called inside the server's root nursery; ``start_background()`` hands the
supervisor its tasks; ``aclose()`` flushes and closes everything at shutdown. Routes and the
WebSocket gateway reach the runtime through ``current_runtime()``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
import trio
from psycopg.rows import dict_row

from athena import __version__
from athena.auth.store import AuthStore
from athena.config import Settings
from athena.db.clients import ClientEntry, ClientRegistry, close_entry
from athena.db.database import Database, make_pool
from athena.db.introspection import IntrospectionCache, exposed_schemas
from athena.db.sealed import UriSealer
from athena.observability.metrics import Metrics, gauge
from athena.observability.request_log import RequestLog
from athena.services.events import EventBus
from athena.supervisor import BackgroundTask, Supervisor, singleton

log = logging.getLogger("athena.runtime")


@dataclass
class Runtime:
    settings: Settings
    admin_key: str
    catalog_uri: str
    catalog: Database
    clients: ClientRegistry
    limiter: trio.CapacityLimiter
    metrics: Metrics
    supervisor: Supervisor
    auth_store: AuthStore
    request_log: RequestLog
    version: str = __version__
    started_at: float = field(default_factory=time.time)
    shutting_down: trio.Event = field(default_factory=trio.Event)
    nursery: trio.Nursery | None = None
    background: list[BackgroundTask] = field(default_factory=list)
    introspection: IntrospectionCache = field(default_factory=IntrospectionCache)
    events: EventBus = field(default_factory=EventBus)
    # capabilities attach their own state here at start-up (introspection cache, event bus …)
    services: dict[str, Any] = field(default_factory=dict)
    # seals client URIs written to the catalog and opens those read from it
    sealer: UriSealer = field(default_factory=UriSealer)

    # -- construction ----------------------------------------------------------------------

    @classmethod
    async def open(
        cls, settings: Settings, *, admin_key: str, catalog_uri: str,
        default_client_uri: str | None = None, sealer: UriSealer | None = None,
    ) -> Runtime:  # fmt: skip
        limiter = trio.CapacityLimiter(settings.db_threads)
        metrics = Metrics()
        supervisor = Supervisor(on_restart=lambda name: metrics.task_restarts.labels(name).inc())

        def pool_factory(name: str, uri: str) -> Any:
            return make_pool(
                uri,
                name=name,
                min_size=settings.pool_min_size,
                max_size=settings.pool_max_size,
                statement_timeout_ms=settings.statement_timeout_ms,
                connect_timeout_s=settings.connect_timeout_s,
                pool_timeout_s=settings.pool_timeout_s,
            )

        def raw_pool_factory(name: str, uri: str) -> Any:
            # Raw SQL's own connections, each used once (db/clients.py), sized like the shared
            # pool: with ATHENA_POOL_MIN_SIZE ≥ 1 one is ready before a call needs it.
            return make_pool(
                uri,
                name=f"{name}-raw",
                application_name="athena-raw",
                min_size=settings.pool_min_size,
                max_size=settings.pool_max_size,
                statement_timeout_ms=settings.statement_timeout_ms,
                connect_timeout_s=settings.connect_timeout_s,
                pool_timeout_s=settings.pool_timeout_s,
            )

        catalog_pool = await trio.to_thread.run_sync(
            lambda: make_pool(
                catalog_uri,
                name="catalog",
                min_size=1,
                max_size=max(4, settings.pool_max_size // 2),
                statement_timeout_ms=settings.statement_timeout_ms,
                connect_timeout_s=settings.connect_timeout_s,
                pool_timeout_s=settings.pool_timeout_s,
                application_name="athena-catalog",
            )
        )
        # A call may wait for a connection, then run one statement; 2 s of grace on top.
        deadline = settings.pool_timeout_s + settings.statement_timeout_ms / 1000 + 2.0
        catalog = Database("catalog", catalog_pool, limiter, settings.pool_timeout_s, deadline)
        registry = ClientRegistry(
            limiter, pool_factory, raw_pool_factory, settings.pool_timeout_s, deadline
        )
        rt = cls(
            settings=settings,
            admin_key=admin_key,
            catalog_uri=catalog_uri,
            catalog=catalog,
            clients=registry,
            limiter=limiter,
            metrics=metrics,
            supervisor=supervisor,
            auth_store=AuthStore(catalog, settings.auth_cache_seconds, settings.enforce_api_keys),
            request_log=RequestLog(
                catalog,
                queue_size=settings.request_log_queue_size,
                batch_size=settings.request_log_batch_size,
                flush_seconds=settings.request_log_flush_seconds,
                on_drop=metrics.request_log_dropped.inc,
                enabled=settings.request_log_enabled,
            ),
        )
        rt.sealer = sealer or UriSealer(list(settings.encryption_keys))
        rt.introspection = IntrospectionCache(exposed=exposed_schemas(settings.rest_schemas))
        await trio.to_thread.run_sync(rt._load_clients, default_client_uri)
        metrics.add_collector(rt._pool_gauges)
        rt.background.append(BackgroundTask("request_log_writer", rt.request_log.run_writer))
        rt.background.append(BackgroundTask("api_key_last_used", rt.auth_store.flush_last_used))
        await attach_capabilities(rt)
        return rt

    def _load_clients(self, default_client_uri: str | None) -> None:
        """Config clients (synced into the catalog as ``source: config``) + database clients."""
        configured = dict(self.settings.clients)
        entries: dict[str, ClientEntry] = {}
        for name, cfg in configured.items():
            entries[name] = ClientEntry(
                name=name,
                uri=cfg.resolve_uri(),
                source="config",
                description=cfg.description,
                pg_uri_env_var=cfg.pg_uri_env_var,
            )
        if default_client_uri and "athena" not in entries:
            entries["athena"] = ClientEntry(
                name="athena",
                uri=default_client_uri,
                source="config",
                description="Embedded default database",
            )
        with psycopg.connect(self.catalog_uri, autocommit=True, row_factory=dict_row) as conn:
            for entry in entries.values():
                conn.execute(
                    """INSERT INTO athena.athena_clients
                           (client_name, description, pg_uri_env_var, source,
                            last_synced_from_config_at)
                       VALUES (%s, %s, %s, 'config', now())
                       ON CONFLICT (client_name) DO UPDATE
                          SET last_synced_from_config_at = now(),
                              source = CASE WHEN athena.athena_clients.source = 'database'
                                            THEN 'database' ELSE 'config' END""",
                    (entry.name, entry.description, entry.pg_uri_env_var),
                )
            rows = conn.execute(
                "SELECT * FROM athena.athena_clients WHERE deleted_at IS NULL"
            ).fetchall()
        for row in rows:
            name = row["client_name"]
            if row["source"] == "database" or name not in entries:
                stored = self.sealer.reveal_or_none(row["pg_uri"], f"client {name}")
                uri = stored or (entries[name].uri if name in entries else None)
                entries[name] = ClientEntry(
                    name=name,
                    uri=uri,
                    source=row["source"],
                    description=row["description"],
                    pg_uri_env_var=row["pg_uri_env_var"],
                    config_uri_template=row["config_uri_template"],
                )
            entries[name].is_active = row["is_active"]
            entries[name].is_frozen = row["is_frozen"]
        for entry in entries.values():
            self.clients.put(entry)

    def _pool_gauges(self) -> list[Any]:
        rows_size, rows_used, rows_wait, rows_err = [], [], [], []
        dbs = [("catalog", self.catalog)] + [
            (e.name, e.db) for e in self.clients.entries() if e.db is not None
        ]
        for name, db in dbs:
            stats = db.pool.get_stats()
            size = stats.get("pool_size", 0)
            rows_size.append(([name], size))
            rows_used.append(([name], size - stats.get("pool_available", 0)))
            rows_wait.append(([name], stats.get("requests_waiting", 0)))
            rows_err.append(([name], stats.get("connections_errors", 0)))
        return [
            gauge("athena_pool_size", "Open connections per pool", ["client"], rows_size),
            gauge("athena_pool_in_use", "Connections lent out per pool", ["client"], rows_used),
            gauge(
                "athena_pool_waiting", "Requests waiting for a connection", ["client"], rows_wait
            ),
            gauge("athena_pool_errors", "Connection errors per pool", ["client"], rows_err),
        ]

    # -- lifecycle -------------------------------------------------------------------------

    def start_background(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery
        self.auth_store.nursery = nursery  # refreshes cached auth entries ahead of expiry
        for task in self.background:
            fn = task.fn
            if task.lease_id is not None:
                fn = singleton(
                    self.catalog_uri, task.lease_id, fn, state=self._lease_state(task.name)
                )
            self.supervisor.start(nursery, task.name, fn)

    def _lease_state(self, name: str) -> Callable[[str], None]:
        def set_state(value: str) -> None:
            if name in self.supervisor.tasks:
                self.supervisor.tasks[name].state = value

        return set_state

    async def aclose(self) -> None:
        """Flush the request log, then close every pool (shielded: runs during shutdown)."""
        with trio.CancelScope(shield=True):
            with trio.move_on_after(3):
                await self.request_log.flush()
            await trio.to_thread.run_sync(self._close_pools)

    def _close_pools(self) -> None:
        self.clients.close_all()
        direct = self.services.get("direct_uri")
        if direct is not None:
            direct.close_all()
        try:
            self.catalog.pool.close(timeout=2.0)
        except Exception:
            log.warning("closing the catalog pool failed", exc_info=True)

    async def replace_client(self, entry: ClientEntry) -> None:
        """Hot-add or replace a client; the old pool is closed off the event loop."""
        old = self.clients.put(entry)
        if old is not None:
            await trio.to_thread.run_sync(close_entry, old)

    async def drop_client(self, name: str) -> None:
        old = self.clients.remove(name)
        if old is not None:
            await trio.to_thread.run_sync(close_entry, old)


# Packages whose modules may define ``async def attach(rt: Runtime) -> None``: called once at
# start-up to put their state in ``rt.services`` and their tasks in ``rt.background``. Each
# capability plugs itself in without a central list that every change would have to edit.
CAPABILITY_PACKAGES = (
    "athena.services",
    "athena.services.gateway",
    "athena.observability",
    "athena.probes",
    "athena.backups",
    "athena.webhooks",  # after backups: it hooks the events of finished backup jobs
    "athena.pipelines",
    "athena.ws",
)


async def attach_capabilities(rt: Runtime) -> None:
    import importlib
    import pkgutil

    for package_name in CAPABILITY_PACKAGES:
        package = importlib.import_module(package_name)
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            module = importlib.import_module(f"{package_name}.{info.name}")
            attach = getattr(module, "attach", None)
            if attach is not None:
                await attach(rt)


_current: Runtime | None = None


def set_current_runtime(rt: Runtime | None) -> None:
    global _current
    _current = rt


def current_runtime() -> Runtime:
    if _current is None:
        raise RuntimeError("no Athena runtime is running in this process")
    return _current
