"""The request log: a bounded trio channel drained by a supervised writer that inserts in batches.

The request path only calls ``record()``, which never waits: when the channel is full the entry
is dropped and counted in ``athena_request_log_dropped_total``. The writer inserts up to
``batch_size`` rows at a time, at least every ``flush_seconds``; on shutdown what is buffered is
flushed before the pools close.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
import trio
from psycopg import sql

from athena.context import CallContext
from athena.db.pools import Database

log = logging.getLogger("athena.request_log")

COLUMNS = (
    "created_at", "request_id", "client_name", "route", "method", "table_name", "operation",
    "status_code", "duration_ms", "cached", "api_key_public_id", "user_id", "company_id",
    "organization_id", "error_code", "remote_addr",
)  # fmt: skip

Row = tuple[object, ...]

_INSERT = sql.SQL("INSERT INTO athena.gateway_request_log ({}) VALUES ({})").format(
    sql.SQL(", ").join(map(sql.Identifier, COLUMNS)),
    sql.SQL(", ").join(sql.Placeholder() * len(COLUMNS)),
)


@dataclass
class RequestLog:
    catalog: Database
    queue_size: int
    batch_size: int
    flush_seconds: float
    on_drop: Callable[[], None]
    enabled: bool = True

    def __post_init__(self) -> None:
        self._send, self._recv = trio.open_memory_channel[Row](self.queue_size)
        self.written = 0

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
            batch = [await self._recv.receive()]
            with trio.move_on_after(self.flush_seconds):
                while len(batch) < self.batch_size:
                    batch.append(await self._recv.receive())
            await self._insert(batch)

    async def flush(self) -> None:
        """Write whatever is buffered now (shutdown, tests)."""
        batch: list[Row] = []
        while True:
            try:
                batch.append(self._recv.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            if len(batch) >= self.batch_size:
                await self._insert(batch)
                batch = []
        if batch:
            await self._insert(batch)

    async def _insert(self, batch: list[Row]) -> None:
        def write(conn: psycopg.Connection) -> None:
            with conn.cursor() as cur:
                cur.executemany(_INSERT, batch)

        try:
            await self.catalog.run(write)
            self.written += len(batch)
        except Exception:
            # The catalog is down: these rows are lost, but requests must never wait for the
            # log. Counted as drops so the loss is visible.
            log.warning("request log write of %d rows failed", len(batch), exc_info=True)
            for _ in range(len(batch)):
                self.on_drop()
