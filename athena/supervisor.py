"""Run background tasks forever: restart them with backoff when they crash, report their health.

Each task is an ``async def task() -> None`` that normally never returns. The supervisor runs
every task in its own child of the server's root nursery; a crash is logged, counted
(``athena_background_task_restarts_total``) and retried after an exponential backoff capped at
30 s. ``trio.Cancelled`` is never caught here: shutdown cancels the nursery and every task ends.

Work that must run once per deployment (statistics rollup, cluster probes, …) is wrapped with
``singleton(lease_id, task)``: the task runs only while this process holds a PostgreSQL advisory
lock on the catalog, so N workers or N gateway instances run it exactly once, and another takes
over within seconds when the holder dies (its session, and so its lock, goes away).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
import trio

log = logging.getLogger("athena.supervisor")

# Advisory-lock ids of the once-per-deployment tasks (any distinct constants).
LEASE_STATISTICS = 0x4154_0001
LEASE_CLUSTER_PROBES = 0x4154_0002
LEASE_REGISTRY = 0x4154_0003
LEASE_REQUEST_LOG_PRUNE = 0x4154_0004
LEASE_RATE_LIMIT_PRUNE = 0x4154_0150


@dataclass
class BackgroundTask:
    """A supervised task a capability adds at start-up; ``lease_id`` set → it runs once per
    deployment (``singleton``)."""

    name: str
    fn: Callable[[], Awaitable[None]]
    lease_id: int | None = None


TaskFn = Callable[[], Awaitable[None]]


@dataclass
class TaskState:
    name: str
    state: str = "starting"  # starting | running | backoff | standby
    restarts: int = 0
    last_error: str | None = None
    started_at: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "restarts": self.restarts,
            "last_error": self.last_error,
        }


class Supervisor:
    """Owns the background tasks of one process."""

    max_backoff = 30.0

    def __init__(self, on_restart: Callable[[str], None] | None = None) -> None:
        self.tasks: dict[str, TaskState] = {}
        self._on_restart = on_restart

    def start(self, nursery: trio.Nursery, name: str, fn: TaskFn) -> None:
        state = TaskState(name)
        self.tasks[name] = state
        nursery.start_soon(self._keep_running, state, fn, name=f"athena:{name}")

    async def _keep_running(self, state: TaskState, fn: TaskFn) -> None:
        backoff = 0.5
        while True:
            state.state = "running"
            started = trio.current_time()
            try:
                await fn()
                state.last_error = None
                log.warning("background task %s returned; restarting", state.name)
            except Exception as exc:  # Cancelled is a BaseException: it passes straight through
                state.last_error = f"{type(exc).__name__}: {exc}"[:500]
                log.exception("background task %s crashed", state.name)
            if trio.current_time() - started > 60:
                backoff = 0.5  # it ran fine for a while: start the backoff over
            state.restarts += 1
            state.state = "backoff"
            if self._on_restart is not None:
                self._on_restart(state.name)
            await trio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)

    def snapshot(self) -> list[dict[str, Any]]:
        return [s.as_dict() for s in self.tasks.values()]


def singleton(
    catalog_uri: str,
    lease_id: int,
    fn: TaskFn,
    *,
    state: Callable[[str], None] | None = None,
    retry_seconds: float = 2.0,
) -> TaskFn:
    """Wrap ``fn`` so it runs only while this process holds advisory lock ``lease_id``.

    The lease lives on a dedicated connection (outside any pool: a session-level lock must not
    be returned to a pool with the connection). The holder re-checks its connection every
    ``retry_seconds``; if it broke, the task is cancelled and the lease contended again.
    """

    async def run() -> None:
        while True:
            conn = await trio.to_thread.run_sync(_try_lease, catalog_uri, lease_id)
            if conn is None:
                if state:
                    state("standby")
                await trio.sleep(retry_seconds)
                continue
            try:
                if state:
                    state("running")
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_watch_lease, conn, retry_seconds, nursery.cancel_scope)
                    await fn()
                    nursery.cancel_scope.cancel()
            finally:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(_close_quietly, conn)

    return run


def _try_lease(uri: str, lease_id: int) -> psycopg.Connection | None:
    try:
        conn = psycopg.connect(uri, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError:
        return None
    got = conn.execute("SELECT pg_try_advisory_lock(%s)", (lease_id,)).fetchone()
    if got and got[0]:
        return conn
    conn.close()
    return None


async def _watch_lease(conn: psycopg.Connection, every: float, scope: trio.CancelScope) -> None:
    while True:
        await trio.sleep(every)
        alive = await trio.to_thread.run_sync(_ping, conn)
        if not alive:
            log.warning("lost the lease connection; standing down")
            scope.cancel()
            return


def _ping(conn: psycopg.Connection) -> bool:
    try:
        conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def _close_quietly(conn: psycopg.Connection) -> None:
    try:
        conn.close()
    except psycopg.Error:
        pass
