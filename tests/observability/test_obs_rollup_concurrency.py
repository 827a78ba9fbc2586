"""Several log writers (as N workers) batch concurrently while the rollup folds: every row is
counted exactly once, whatever order the batches commit in."""

from __future__ import annotations

import psycopg
import trio
import trio.lowlevel
from support.pg import TestPostgres

from athena.context import CallContext
from athena.db import catalog as catalog_db
from athena.db.database import Database, make_pool
from athena.observability.request_log import RequestLog
from athena.probes.statistics import rebuild, rollup_step

WRITERS = 4
PER_WRITER = 400


async def test_concurrent_writers_and_rollup_count_every_row_once(pg: TestPostgres) -> None:
    name = pg.create_database(owner="postgres")
    uri = pg.superuser_uri(name)
    with psycopg.connect(uri, autocommit=True) as conn:
        catalog_db.migrate(conn)
    pool = await trio.to_thread.run_sync(
        lambda: make_pool(
            uri,
            name="catalog",
            min_size=2,
            max_size=8,
            statement_timeout_ms=10_000,
            connect_timeout_s=3,
            pool_timeout_s=10,
        )
    )
    db = Database("catalog", pool, trio.CapacityLimiter(16), 10)
    drops: list[int] = []
    logs = [RequestLog(db, 10_000, 7, 0.01, lambda: drops.append(1)) for _ in range(WRITERS)]
    try:
        async with trio.open_nursery() as nursery:
            for rlog in logs:
                nursery.start_soon(rlog.run_writer)

            async def produce(rlog: RequestLog, k: int) -> None:
                for i in range(PER_WRITER):
                    ctx = CallContext(headers={}, route="/gateway/fetch", method="POST")
                    ctx.client_name, ctx.table_name, ctx.operation = "w", f"t{k}", "fetch"
                    rlog.record(ctx, 500 if i % 10 == 0 else 200, 0.001)
                    await trio.lowlevel.checkpoint()

            async def fold_forever() -> None:
                while True:
                    await db.run(rollup_step)
                    await trio.lowlevel.checkpoint()

            nursery.start_soon(fold_forever)
            async with trio.open_nursery() as producers:
                for k, rlog in enumerate(logs):
                    producers.start_soon(produce, rlog, k)
            await trio.sleep(0.3)  # let the writers and the rollup interleave a while longer
            nursery.cancel_scope.cancel()
        for rlog in logs:  # what the cancelled writers still held, as at shutdown
            await rlog.flush()
        assert sum(r.written for r in logs) == WRITERS * PER_WRITER
        await db.run(rollup_step)
        assert drops == []

        def totals(conn: psycopg.Connection) -> tuple:
            stats = conn.execute(
                "SELECT total_requests, failed_requests, total_operations"
                " FROM athena.client_statistics WHERE client_name = 'w'"
            ).fetchone()
            tables = conn.execute(
                "SELECT sum(total_operations), sum(error_operations)"
                " FROM athena.client_table_statistics WHERE client_name = 'w'"
            ).fetchone()
            hourly = conn.execute(
                "SELECT sum(requests), sum(failed) FROM athena.request_stats_hourly"
            ).fetchone()
            return tuple(stats) + tuple(tables) + tuple(hourly)

        total = WRITERS * PER_WRITER
        expected = (total, total // 10, total, total, total // 10, total, total // 10)
        assert await db.run(totals) == expected
        await db.run(rebuild)
        assert await db.run(totals) == expected
    finally:
        await trio.to_thread.run_sync(lambda: pool.close(timeout=2))
