"""Database.fetch_one drives libpq from the trio loop: same answers, errors, deadline and
cancellation behaviour as the worker-thread path, against the real test PostgreSQL. Callers of a
full pool wait for a connection on the loop, in turn, and never in a worker thread."""

from __future__ import annotations

import psycopg
import pytest
import trio
from psycopg import sql
from support.pg import TestPostgres

from athena.db.database import Database, DatabaseUnavailable, StatementDeadlineExceeded, make_pool
from athena.db.errors import api_error_from_db


def _database(
    pg: TestPostgres, db: str, *, deadline: float | None = 10.0, size: int = 2,
    pool_timeout: float = 3.0,
) -> Database:  # fmt: skip
    pool = make_pool(
        pg.app_uri(db),
        name="loop-test",
        min_size=size,
        max_size=size,
        statement_timeout_ms=5000,
        connect_timeout_s=3,
        pool_timeout_s=pool_timeout,
    )
    pool.wait(10)
    return Database("loop-test", pool, trio.CapacityLimiter(4), pool_timeout, deadline)


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


async def test_callers_of_a_full_pool_wait_on_the_loop_not_in_threads(
    pg: TestPostgres, data_db: str
) -> None:
    db = _database(pg, data_db, size=2)
    results: list[tuple[int, ...] | None] = []
    most_threads = 0

    async def watch_threads() -> None:
        nonlocal most_threads
        while True:
            most_threads = max(most_threads, db.limiter.statistics().borrowed_tokens)
            await trio.sleep(0.001)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_threads)
            async with trio.open_nursery() as calls:
                for i in range(20):

                    async def one(i: int = i) -> None:
                        results.append(
                            await db.fetch_one("SELECT %s::int FROM pg_sleep(0.05)", [i])
                        )

                    calls.start_soon(one)
            nursery.cancel_scope.cancel()
        assert sorted(r[0] for r in results if r) == list(range(20))
        assert most_threads == 0, "waiting for a connection never took a worker thread"
        assert db.pool.get_stats()["pool_available"] == 2
    finally:
        db.pool.close()


async def test_a_small_pool_grows_for_callers_waiting_on_the_loop(
    pg: TestPostgres, data_db: str
) -> None:
    pool = make_pool(
        pg.app_uri(data_db), name="grow-test", min_size=1, max_size=4,
        statement_timeout_ms=5000, connect_timeout_s=3, pool_timeout_s=5,
    )  # fmt: skip
    pool.wait(10)
    db = Database("grow-test", pool, trio.CapacityLimiter(4), 5.0, 10.0)
    try:
        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            for i in range(16):
                nursery.start_soon(db.fetch_one, "SELECT %s::int FROM pg_sleep(0.1)", [i])
        elapsed = trio.current_time() - started
        assert pool.get_stats()["pool_size"] == 4, "the pool grew to its maximum"
        # one connection would take 1.6 s; four take about 0.4 s plus connection set-up
        assert elapsed < 1.3, elapsed
    finally:
        pool.close()


async def test_thread_calls_and_loop_calls_share_one_queue(pg: TestPostgres, data_db: str) -> None:
    db = _database(pg, data_db, size=1)
    done: list[str] = []
    try:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                for i in range(6):

                    async def in_thread(i: int = i) -> None:
                        row = await db.run(lambda c: c.execute("SELECT pg_sleep(0.03)").fetchone())
                        assert row is not None
                        done.append(f"thread{i}")

                    async def on_loop(i: int = i) -> None:
                        assert await db.fetch_one("SELECT %s::int", [i]) == (i,)
                        done.append(f"loop{i}")

                    nursery.start_soon(in_thread)
                    nursery.start_soon(on_loop)
        assert len(done) == 12
        assert db.pool.get_stats()["pool_available"] == 1
    finally:
        db.pool.close()


async def test_a_pool_that_stays_full_answers_unavailable_after_the_pool_timeout(
    pg: TestPostgres, data_db: str
) -> None:
    db = _database(pg, data_db, size=1, pool_timeout=0.5)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: db.run(lambda c: c.execute("SELECT pg_sleep(2)"), deadline_s=None)
            )
            await trio.sleep(0.2)  # the only connection is busy now
            started = trio.current_time()
            with pytest.raises(DatabaseUnavailable):
                await db.fetch_one("SELECT 1")
            waited = trio.current_time() - started
            assert 0.4 <= waited < 1.5, waited
        assert await db.fetch_one("SELECT 4") == (4,), "usable again once the holder is done"
    finally:
        db.pool.close()


async def test_a_caller_cancelled_while_waiting_leaves_the_pool_intact(
    pg: TestPostgres, data_db: str
) -> None:
    db = _database(pg, data_db, size=1)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(db.fetch_one, "SELECT pg_sleep(0.3)")
            await trio.sleep(0.05)
            with trio.move_on_after(0.1) as scope:
                await db.fetch_one("SELECT 5")  # parks: the pool's one connection is busy
            assert scope.cancelled_caught
        assert len(db._returned) == 0
        assert await db.fetch_one("SELECT 6") == (6,)
        assert db.pool.get_stats()["pool_available"] == 1
    finally:
        db.pool.close()


async def test_unreachable_database_is_unavailable_not_a_hang() -> None:
    from athena.db.embedded import free_port

    pool = make_pool(
        f"postgresql://nobody:pw@127.0.0.1:{free_port()}/none",
        name="down", min_size=1, max_size=2, statement_timeout_ms=1000,
        connect_timeout_s=1, pool_timeout_s=0.5,
    )  # fmt: skip
    db = Database("down", pool, trio.CapacityLimiter(4), 0.5, 5.0)
    try:
        with trio.fail_after(5):
            with pytest.raises(DatabaseUnavailable):
                await db.fetch_one("SELECT 1")
            with pytest.raises(DatabaseUnavailable):
                await db.run(lambda c: c.execute("SELECT 1"))
    finally:
        pool.close()


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
