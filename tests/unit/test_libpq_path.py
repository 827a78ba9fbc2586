"""Database.fetch_json: the gateway's statements through libpq directly (athena/db/libpq.py),
checked against psycopg's own execution on the real test PostgreSQL."""

from __future__ import annotations

import psycopg
import pytest
import trio
from support.pg import TestPostgres

from athena.db import libpq
from athena.db.database import Database, StatementDeadlineExceeded, make_pool
from athena.db.libpq import numbered, text_params

JSON_STATEMENT = (
    b"SELECT coalesce(json_agg(t), '[]')::text, count(*) FROM "
    b"(SELECT g AS n, %s::text AS label FROM generate_series(1, %s) g WHERE g %% 2 = 1) t"
)


def _database(pg: TestPostgres, db: str, *, deadline: float = 10.0) -> Database:
    pool = make_pool(
        pg.app_uri(db), name="libpq-test", min_size=1, max_size=1, statement_timeout_ms=5000,
        connect_timeout_s=3, pool_timeout_s=3,
    )  # fmt: skip
    pool.wait(10)
    return Database("libpq-test", pool, trio.CapacityLimiter(4), 3.0, deadline)


def test_placeholders_are_numbered_and_percent_signs_kept() -> None:
    assert numbered(b"a = %s AND b = %s AND c LIKE 'x%%'") == b"a = $1 AND b = $2 AND c LIKE 'x%'"
    assert numbered(b"SELECT 1") == b"SELECT 1"


def test_only_text_integers_and_null_take_the_direct_path() -> None:
    assert text_params(["a'b", 7, None, -3]) == [b"a'b", b"7", None, b"-3"]
    assert text_params([]) == [] and text_params(None) == []
    for odd in (True, 1.5, ["x"], b"raw", {"a": 1}):
        assert text_params(["ok", odd]) is None, odd


async def test_same_answers_as_psycopg(pg: TestPostgres, data_db: str) -> None:
    db = _database(pg, data_db)
    try:
        for label, upto in (("x", 5), ('q"uote\\', 3), ("é ✓", 1), ("none", 0)):
            direct = await db.fetch_json(JSON_STATEMENT, [label, upto])
            through_psycopg = await db.fetch_one(JSON_STATEMENT, [label, upto])
            assert through_psycopg is not None and direct is not None
            assert direct == (through_psycopg[0].encode(), through_psycopg[1])
        # parameters psycopg must adapt (a bool here) take psycopg's path, same answer shape
        mixed = await db.fetch_json(
            b"SELECT json_build_array(%s::bool, %s::text)::text, 1", [True, "y"]
        )
        assert mixed == (b'[true, "y"]', 1)
    finally:
        db.pool.close()


async def test_errors_are_psycopg_errors_and_the_connection_stays_usable(
    pg: TestPostgres, data_db: str
) -> None:
    db = _database(pg, data_db)
    try:
        with pytest.raises(psycopg.errors.DivisionByZero) as caught:
            await db.fetch_json(b"SELECT (1 / %s)::text, 1", [0])
        assert caught.value.sqlstate == "22012"
        with pytest.raises(psycopg.errors.UndefinedTable):  # fails while being prepared
            await db.fetch_json(b"SELECT x::text, 1 FROM no_such_table WHERE x = %s", ["1"])
        assert await db.fetch_json(b"SELECT %s::text, 2", ["fine"]) == (b"fine", 2)
    finally:
        db.pool.close()


async def test_statements_deallocated_behind_its_back_are_prepared_again(
    pg: TestPostgres, data_db: str
) -> None:
    db = _database(pg, data_db)
    try:
        assert await db.fetch_json(JSON_STATEMENT, ["a", 1]) == (b'[{"n":1,"label":"a"}]', 1)
        await db.run(lambda c: c.execute("DEALLOCATE ALL"))  # the pool has one connection
        assert await db.fetch_json(JSON_STATEMENT, ["b", 1]) == (b'[{"n":1,"label":"b"}]', 1)
    finally:
        db.pool.close()


async def test_prepared_statements_per_connection_are_bounded(
    pg: TestPostgres, data_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(libpq, "MAX_PREPARED", 3)
    db = _database(pg, data_db)
    try:
        for i in range(8):  # eight different statements: three prepared, five run unnamed
            statement = b"SELECT %s::text, " + str(i).encode()
            assert await db.fetch_json(statement, ["v"]) == (b"v", i)
        prepared = await db.run(
            lambda c: c.execute(
                "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'athena%%'"
            ).fetchone()
        )
        assert prepared == (3,)
    finally:
        db.pool.close()


async def test_deadline_cancels_the_statement(pg: TestPostgres, data_db: str) -> None:
    db = _database(pg, data_db, deadline=0.5)
    try:
        with pytest.raises(StatementDeadlineExceeded):
            await db.fetch_json(b"SELECT pg_sleep(%s)::text, 1", [5])
        with trio.fail_after(10):
            while True:  # the interrupted connection is replaced by a fresh one
                try:
                    assert await db.fetch_json(b"SELECT %s::text, 1", ["ok"]) == (b"ok", 1)
                    break
                except StatementDeadlineExceeded:
                    await trio.sleep(0.1)
    finally:
        db.pool.close()
