"""The request log: a bounded trio channel drained by a supervised writer that inserts in batches.

The request path only calls ``record()``, which never waits: when the channel is full the entry
is dropped and counted in ``athena_request_log_dropped_total``. The writer inserts up to
``batch_size`` rows at a time (one ``COPY``), at least every ``flush_seconds``; on shutdown what
is buffered — in the channel or in a batch being collected — is flushed before the pools close.

Every batch is written in a transaction holding the *shared* advisory lock ``LOG_WRITE_BARRIER``.
The statistics rollup takes the same lock *exclusively* for an instant to learn the highest id
whose transaction has finished: ids are handed out before commit, so without the barrier a batch
committing late (another worker, another instance) could land below a rollup's watermark and never
be counted.

A once-per-deployment pruner deletes rows older than ``ATHENA_REQUEST_LOG_RETENTION_DAYS`` — only
rows the statistics rollup has already folded in, so totals never lose a request — in batches,
every ``ATHENA_REQUEST_LOG_PRUNE_INTERVAL_S``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg
import trio
import trio.lowlevel
from prometheus_client.core import CounterMetricFamily
from psycopg import sql

from athena.context import CallContext
from athena.db.database import Database
from athena.observability.metrics import gauge
from athena.supervisor import LEASE_REQUEST_LOG_PRUNE, BackgroundTask

if TYPE_CHECKING:
    from athena.runtime import Runtime

log = logging.getLogger("athena.request_log")

# Advisory lock shared by log writers, taken exclusively by the statistics rollup (any constant
# distinct from the lease ids in runtime.py).
LOG_WRITE_BARRIER = 0x4154_0070

# A batch insert that takes longer than this at shutdown is abandoned (and counted as dropped):
# shutdown must finish within a few seconds even when the catalog hangs.
WRITE_TIMEOUT_S = 5.0

COLUMNS = (
    "created_at", "request_id", "client_name", "route", "method", "table_name", "operation",
    "status_code", "duration_ms", "cached", "api_key_public_id", "user_id", "company_id",
    "organization_id", "error_code", "remote_addr",
)  # fmt: skip

Row = tuple[object, ...]

_COPY = sql.SQL("COPY athena.gateway_request_log ({}) FROM STDIN").format(
    sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
)
PRUNE_BATCH = 10_000
_PRUNE = sql.SQL("""
DELETE FROM athena.gateway_request_log
 WHERE id IN (
    SELECT id FROM athena.gateway_request_log
     WHERE created_at < now() - make_interval(secs => %(age_s)s)
       AND id <= (SELECT last_log_id FROM athena.statistics_rollup_state WHERE singleton)
     ORDER BY id
     LIMIT %(batch)s)
""")
_BARRIER_SHARED = sql.SQL("SELECT pg_advisory_xact_lock_shared({})").format(
    sql.Literal(LOG_WRITE_BARRIER)
)


@dataclass
class RequestLog:
    catalog: Database
    queue_size: int
    batch_size: int
    flush_seconds: float
    on_drop: Callable[[], None]
    enabled: bool = True
    written: int = field(default=0, init=False)
    pruned: int = field(default=0, init=False)  # rows deleted by the retention pruner

    def __post_init__(self) -> None:
        self._send, self._recv = trio.open_memory_channel[Row](self.queue_size)
        # The batch being collected: kept on the instance so that a writer cancelled at shutdown
        # leaves it for ``flush()`` instead of losing it.
        self._pending: list[Row] = []
        self._in_flight = 0  # rows of batches being inserted right now

    @property
    def queue_depth(self) -> int:
        """Entries not yet written: in the channel, being collected, being inserted."""
        used = self._send.statistics().current_buffer_used
        return used + len(self._pending) + self._in_flight

    def record(self, ctx: CallContext, status: int, duration_s: float) -> None:
        """Queue one entry; never blocks, never raises."""
        if not self.enabled:
            return
        row = (
            datetime.now(UTC),
            ctx.request_id,
            ctx.client_name,
            ctx.route,
            ctx.method,
            ctx.table_name,
            ctx.operation,
            status,
            round(duration_s * 1000.0, 3),
            ctx.cached,
            ctx.key_public_id,
            ctx.header("x-user-id"),
            ctx.header("x-company-id"),
            ctx.header("x-organization-id"),
            ctx.error_code,
            ctx.remote_addr,
        )
        try:
            self._send.send_nowait(row)
        except trio.WouldBlock:
            self.on_drop()

    async def run_writer(self) -> None:
        """Supervised task: batch rows from the channel into the catalog forever."""
        while True:
            # receive() is atomic under cancellation: an entry is either in _pending or still
            # in the channel, never lost in between.
            self._pending.append(await self._recv.receive())
            with trio.move_on_after(self.flush_seconds):
                while len(self._pending) < self.batch_size:
                    self._pending.append(await self._recv.receive())
            batch, self._pending = self._pending, []
            await self._insert(batch)

    async def flush(self) -> None:
        """Write whatever is buffered now (shutdown, tests)."""
        batch, self._pending = self._pending, []
        while True:
            try:
                batch.append(self._recv.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            if len(batch) >= self.batch_size:
                # Each insert is shielded: without this check a hung catalog would cost every
                # remaining batch its full write timeout, past the caller's deadline.
                await trio.lowlevel.checkpoint_if_cancelled()
                await self._insert(batch)
                batch = []
        if batch:
            await trio.lowlevel.checkpoint_if_cancelled()
            await self._insert(batch)

    async def _insert(self, batch: list[Row]) -> None:
        def write(conn: psycopg.Connection) -> None:
            # One transaction: the barrier lock, then one COPY — all rows or none.
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(_BARRIER_SHARED)
                with cur.copy(_COPY) as copy:
                    for row in batch:
                        copy.write_row(row)

        # Shielded: a batch taken from the channel is written even when shutdown cancels the
        # writer mid-insert (a cancelled COPY would lose it). Bounded so shutdown never hangs.
        self._in_flight += len(batch)
        try:
            if await self._write_shielded(write, len(batch)):
                self.written += len(batch)
                return
        finally:
            self._in_flight -= len(batch)
        for _ in range(len(batch)):
            self.on_drop()

    async def _write_shielded(self, write: Callable[[psycopg.Connection], None], n: int) -> bool:
        with trio.CancelScope(shield=True):
            with trio.move_on_after(WRITE_TIMEOUT_S) as timer:
                try:
                    await self.catalog.run(write)
                    return True
                except Exception:
                    # The catalog is down: these rows are lost, but requests must never wait
                    # for the log. Counted as drops so the loss is visible.
                    log.warning("request log write of %d rows failed", n, exc_info=True)
            if timer.cancelled_caught:
                log.warning("request log write of %d rows timed out", n)
        return False

    def collect(self) -> list[Any]:
        written = CounterMetricFamily(
            "athena_request_log_written", "Request log entries written to the catalog"
        )
        written.add_metric([], self.written)
        pruned = CounterMetricFamily(
            "athena_request_log_pruned", "Request log entries deleted after the retention period"
        )
        pruned.add_metric([], self.pruned)
        depth = gauge(
            "athena_request_log_queue_depth",
            "Request log entries waiting to be written",
            [],
            [([], self.queue_depth)],
        )
        return [written, pruned, depth]


async def prune_forever(rt: Runtime) -> None:
    """Lease task: every interval, delete expired rows that the rollup has counted."""
    settings = rt.settings
    age_s = settings.request_log_retention_days * 86_400.0
    while True:
        await trio.sleep(settings.request_log_prune_interval_s)
        while True:  # batches keep each transaction (and its locks) short
            deleted = await rt.catalog.run(
                lambda c: c.execute(_PRUNE, {"age_s": age_s, "batch": PRUNE_BATCH}).rowcount
            )
            rt.request_log.pruned += deleted
            if deleted < PRUNE_BATCH:
                break


def attach(rt: Runtime) -> None:
    """Start-up (``Runtime._start_capabilities``): the log's metrics and, with a retention,
    its pruner (the writer is started by ``Runtime.open`` itself)."""
    rt.metrics.add_collector(rt.request_log.collect)
    if rt.settings.request_log_retention_days > 0:
        rt.background.append(
            BackgroundTask(
                "request_log_pruner",
                lambda: prune_forever(rt),
                lease_id=LEASE_REQUEST_LOG_PRUNE,
            )
        )
