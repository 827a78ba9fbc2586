"""Database.fetch_one drives libpq from the trio loop: same answers, errors, deadline and
cancellation behaviour as the worker-thread path, against the real test PostgreSQL."""

from __future__ import annotations

import psycopg
import pytest
import trio
from psycopg import sql
from support.pg import TestPostgres

from athena.db.errors import api_error_from_db
from athena.db.pools import Database, StatementDeadlineExceeded, make_pool


def _database(
    pg: TestPostgres, db: str, *, deadline: float | None = 10.0, size: int = 2
) -> Database:
    pool = make_pool(
        pg.app_uri(db),
        name="loop-test",
        min_size=size,
        max_size=size,
        statement_timeout_ms=5000,
        connect_timeout_s=3,
        pool_timeout_s=3,
    )
    pool.wait(10)
    return Database("loop-test", pool, trio.CapacityLimiter(4), 3.0, deadline)


async def test_rows_errors_and_parameters_match_the_thread_path(
    pg: TestPostgres, data_db: str
) -> None:
    db = _database(pg, data_db)
    try:
        query = "SELECT %s::int + 1 AS n, %s::text AS t, json_build_object('k', %s::text)::text"
        on_loop = await db.fetch_one(query, [41, "x'y", "z"])
        in_thread = await db.run(lambda c: c.execute(query, [41, "x'y", "z"]).fetchone())
        assert on_loop == in_thread == (42, "x'y", '{"k" : "z"}')
        assert await db.fetch_one("SELECT 1 WHERE false") is None
        composed = sql.SQL("SELECT {} AS c").format(sql.Literal(7))
        assert await db.fetch_one(composed) == (7,)
        with pytest.raises(psycopg.errors.DivisionByZero) as caught:
            await db.fetch_one("SELECT 1 / %s", [0])
        assert api_error_from_db(caught.value).status == 400
        # the connection that failed went back clean: every connection still answers
        for _ in range(6):
            assert await db.fetch_one("SELECT 1") == (1,)
        # repeated statements get prepared server-side by psycopg; still correct
        for i in range(8):
            assert await db.fetch_one("SELECT %s::int * 2", [i]) == (i * 2,)
    finally:
        db.pool.close()


async def test_concurrent_calls_share_the_pool_and_fall_back_to_threads(
    pg: TestPostgres, data_db: str
) -> None:
    db = _database(pg, data_db, size=2)
    results: list[tuple[int, ...] | None] = []
    try:
        async with trio.open_nursery() as nursery:
            for i in range(20):

                async def one(i: int = i) -> None:
                    results.append(await db.fetch_one("SELECT %s::int FROM pg_sleep(0.05)", [i]))

                nursery.start_soon(one)
        assert sorted(r[0] for r in results if r) == list(range(20))
        assert db.pool.get_stats()["pool_available"] == 2
    finally:
        db.pool.close()


async def test_deadline_cancels_the_statement_and_the_pool_recovers(
    pg: TestPostgres, data_db: str
) -> None:
    db = _database(pg, data_db, deadline=0.5, size=1)
    try:
        with pytest.raises(StatementDeadlineExceeded):
            await db.fetch_one("SELECT pg_sleep(5)")
        with trio.fail_after(10):
            while True:  # the interrupted connection is replaced by a fresh one
                try:
                    assert await db.fetch_one("SELECT 2") == (2,)
                    break
                except StatementDeadlineExceeded:
                    await trio.sleep(0.1)
        with pg.connect("postgres", superuser=True) as conn:
            still = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(5)'"
                " AND state = 'active'"
            ).fetchone()
        assert still == (0,), "the statement was cancelled server-side"
    finally:
        db.pool.close()


async def test_caller_cancellation_propagates(pg: TestPostgres, data_db: str) -> None:
    db = _database(pg, data_db, size=1)
    try:
        with trio.move_on_after(0.3) as scope:
            await db.fetch_one("SELECT pg_sleep(5)")
        assert scope.cancelled_caught
        with trio.fail_after(10):
            while db.pool.get_stats().get("pool_available", 0) < 1:  # noqa: ASYNC110 — polls the pool, not a trio event
                await trio.sleep(0.05)
        assert await db.fetch_one("SELECT 3") == (3,)
    finally:
        db.pool.close()
