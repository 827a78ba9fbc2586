"""Pool health: every worker checks its own pools (catalog, and every client's shared and raw SQL
pools) with ``SELECT 1``.

Pools are per process, so this is not a lease task. ``overall()`` is what ``GET /`` reports as
``athena_deadpool``: ``online`` when every checked database answered, ``offline`` when none did,
``degraded`` in between. Each check has a timeout, and the checks run concurrently, so one dead
database never delays the verdict on the others.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg
import trio

from athena.db.database import Database
from athena.observability.metrics import gauge
from athena.supervisor import BackgroundTask

if TYPE_CHECKING:
    from athena.runtime import Runtime

log = logging.getLogger("athena.pool_health")

# A check waits at most this long for a connection and an answer: long enough for a busy pool to
# lend one, short enough that a dead database is reported within one interval.
CHECK_TIMEOUT_S = 3.0
# At most this many checks at once: hundreds of clients must not take every database thread.
CHECK_CONCURRENCY = 8


@dataclass
class PoolCheck:
    name: str
    ok: bool
    message: str | None
    checked_at: float


def _select_one(conn: psycopg.Connection) -> None:
    conn.execute("SELECT 1")


@dataclass
class PoolHealth:
    rt: Runtime
    interval_s: float
    checks: dict[str, PoolCheck] = field(default_factory=dict)

    def overall(self) -> str:
        """``online`` | ``degraded`` | ``offline`` from the last round of checks."""
        if not self.checks:
            return "online" if self.rt.catalog.pool.get_stats().get("pool_size", 0) else "degraded"
        up = sum(1 for c in self.checks.values() if c.ok)
        if up == len(self.checks):
            return "online"
        return "offline" if up == 0 else "degraded"

    def _databases(self) -> list[tuple[str, Database]]:
        return [("catalog", self.rt.catalog), *self.rt.clients.databases()]

    async def check_all(self) -> None:
        limiter = trio.CapacityLimiter(CHECK_CONCURRENCY)
        results: dict[str, PoolCheck] = {}

        async def check(name: str, db: Database) -> None:
            async with limiter:
                results[name] = await self._check(name, db)

        async with trio.open_nursery() as nursery:
            for name, db in self._databases():
                nursery.start_soon(check, name, db)
        self.checks = results  # one assignment: readers see a whole round, never half of one

    async def _check(self, name: str, db: Database) -> PoolCheck:
        message: str | None = None
        with trio.move_on_after(CHECK_TIMEOUT_S) as timer:
            try:
                await db.run(_select_one)
                return PoolCheck(name, True, None, time.time())
            except Exception as exc:  # any failure is "offline"; Cancelled passes through
                message = type(exc).__name__
        if timer.cancelled_caught:
            message = f"no answer within {CHECK_TIMEOUT_S:g} s"
        return PoolCheck(name, False, message, time.time())

    async def run(self) -> None:
        """Supervised task: a round of checks every interval."""
        while True:
            await self.check_all()
            await trio.sleep(self.interval_s)

    def collect(self) -> list[Any]:
        rows = [([c.name], 1 if c.ok else 0) for c in self.checks.values()]
        return [gauge("athena_pool_up", "1 if the pool answered its last check", ["client"], rows)]


def attach(rt: Runtime) -> PoolHealth:
    """Start-up (``Runtime._start_capabilities``): the probe, its metrics and its loop."""
    health = PoolHealth(rt, rt.settings.pool_health_interval_s)
    rt.metrics.add_collector(health.collect)
    rt.background.append(BackgroundTask("pool_health", health.run))
    return health
