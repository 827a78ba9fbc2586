"""Everything one gateway process holds while it serves: settings, pools, caches, background work.

``Runtime.open()`` is called inside the server's root nursery: it opens the catalog pool, then
starts every capability in the order ``_start_capabilities`` lists them (the client catalog
first: it loads the clients, the same way every reload does). Each capability is a typed
attribute of ``Runtime`` (declared below in that same order), so this file is the one place
that says what a gateway process holds and in which order it comes up.
Starting a capability may append supervised tasks to ``background`` and metric collectors to
``metrics``; ``start_background()`` then hands the tasks to the supervisor in list order.
``aclose()`` flushes and closes everything at shutdown. Routes and the WebSocket gateway reach
the runtime through ``current_runtime()``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from athena import __version__
from athena.auth.store import AuthStore
from athena.backups import jobs as backup_jobs
from athena.backups import schedules as backup_schedules
from athena.config import Settings
from athena.db.clients import ClientEntry, ClientRegistry, close_entry
from athena.db.database import Database, make_pool
from athena.db.introspection import IntrospectionCache, exposed_schemas
from athena.db.sealed import UriSealer
from athena.observability import request_log
from athena.observability.metrics import Metrics, gauge
from athena.observability.request_log import RequestLog
from athena.pipelines.config import PipelineDefinition, load_pipelines
from athena.probes import cluster, pool_health, statistics, tasks
from athena.probes.registry import RegistryCache
from athena.services import api_keys, client_catalog, ratelimit
from athena.services.direct_uri import DirectPools
from athena.services.events import EventBus
from athena.services.gateway.scylla import ScyllaService
from athena.services.outbound import OutboundPolicy
from athena.services.ratelimit import RateLimits
from athena.services.rest.rpc import RpcService
from athena.services.rest.service import RestService
from athena.services.supabase_ssl import SupabaseManagement
from athena.supervisor import BackgroundTask, Supervisor, singleton
from athena.webhooks import book as webhook_book
from athena.ws import relay as event_relay

if TYPE_CHECKING:
    import httpx

    from athena.backups.jobs import JobRegistry
    from athena.backups.schedules import ScheduleBook
    from athena.probes.cluster import ClusterHealth
    from athena.probes.pool_health import PoolHealth
    from athena.probes.statistics import StatisticsRollup
    from athena.services.client_catalog import ClientCatalog
    from athena.webhooks.book import WebhookBook
    from athena.webhooks.dispatcher import Dispatcher
    from athena.ws.connection import Connection
    from athena.ws.relay import EventRelay

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
    # seals client URIs written to the catalog and opens those read from it
    sealer: UriSealer = field(default_factory=UriSealer)

    # -- capabilities, in the order _start_capabilities() starts them ------------------------
    # Set once by open(); every one exists while the runtime serves (scylla only when
    # ATHENA_SCYLLA_HOSTS names hosts).
    client_catalog: ClientCatalog = field(init=False, repr=False)
    outbound_policy: OutboundPolicy = field(init=False, repr=False)
    direct_pools: DirectPools = field(init=False, repr=False)
    rest: RestService = field(init=False, repr=False)
    rpc: RpcService = field(init=False, repr=False)
    statistics: StatisticsRollup = field(init=False, repr=False)
    supabase_ssl: SupabaseManagement = field(init=False, repr=False)
    scylla: ScyllaService | None = field(default=None, repr=False)
    cluster_health: ClusterHealth = field(init=False, repr=False)
    pool_health: PoolHealth = field(init=False, repr=False)
    registry_cache: RegistryCache = field(init=False, repr=False)
    backup_jobs: JobRegistry = field(init=False, repr=False)
    backup_schedules: ScheduleBook = field(init=False, repr=False)
    webhooks: WebhookBook = field(init=False, repr=False)
    webhook_dispatcher: Dispatcher = field(init=False, repr=False)
    pipelines: dict[str, PipelineDefinition] = field(default_factory=dict, repr=False)
    event_relay: EventRelay = field(init=False, repr=False)
    ws_rate_limits: RateLimits = field(init=False, repr=False)
    # -- state that fills while serving ----------------------------------------------------
    ws_connections: set[Connection] = field(default_factory=set, repr=False)
    # the HTTP client of custom Supabase upstreams, made on first use
    custom_supabase_http: httpx.AsyncClient | None = field(default=None, repr=False)

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
        metrics.add_collector(rt._pool_gauges)
        rt.background.append(BackgroundTask("request_log_writer", rt.request_log.run_writer))
        rt.background.append(BackgroundTask("api_key_last_used", rt.auth_store.flush_last_used))
        await rt._start_capabilities(
            client_catalog.configured_clients(settings, default_client_uri)
        )
        return rt

    async def _start_capabilities(self, configured: dict[str, ClientEntry]) -> None:
        """Every capability, in start order. The order is the order their supervised tasks
        start and their metrics are listed; the dependencies it carries are noted inline."""
        settings = self.settings
        api_keys.attach(self)  # api_key_invalidation: LISTEN for key changes
        # first: loads the clients (configured + catalog rows) before anything serves
        self.client_catalog = await client_catalog.attach(self, configured)
        self.outbound_policy = OutboundPolicy.from_settings(settings)
        self.direct_pools = DirectPools(self)  # x-pg-uri clients
        ratelimit.attach(self)  # rate_limit_prune, with shared buckets only
        self.rest = RestService(self)
        self.rpc = RpcService(self)
        self.statistics = statistics.attach(self)
        self.supabase_ssl = SupabaseManagement(
            settings.supabase_api_url, settings.supabase_api_timeout_s
        )
        if settings.scylla_hosts:  # else GET / reports it offline
            self.scylla = ScyllaService(list(settings.scylla_hosts))
        request_log.attach(self)  # its metrics, and the pruner when retention is set
        self.cluster_health = cluster.attach(self)
        self.pool_health = pool_health.attach(self)
        self.registry_cache = RegistryCache(self, settings.registry_cache_ttl_s)
        tasks.attach(self)  # athena_background_task_up
        self.backup_jobs = backup_jobs.attach(self)
        self.backup_schedules = backup_schedules.attach(self, self.backup_jobs)
        # after the jobs: webhooks hook the events of finished backup jobs
        self.webhooks, self.webhook_dispatcher = webhook_book.attach(self, self.backup_jobs)
        self.pipelines = load_pipelines(settings)
        self.event_relay = event_relay.attach(self)
        # the WebSocket gateway's buckets, separate from HTTP's (athena.http.calls)
        self.ws_rate_limits = RateLimits.from_settings(settings, self.catalog, "ws")

    def _pool_gauges(self) -> list[Any]:
        rows_size, rows_used, rows_wait, rows_err = [], [], [], []
        dbs = [("catalog", self.catalog), *self.clients.databases()]
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
        self.direct_pools.close_all()
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


_current: Runtime | None = None


def set_current_runtime(rt: Runtime | None) -> None:
    global _current
    _current = rt


def current_runtime() -> Runtime:
    if _current is None:
        raise RuntimeError("no Athena runtime is running in this process")
    return _current
