"""The hard deadline cannot be defeated from SQL (issue 17, finding 3), over the real server.

A PL/pgSQL loop that catches ``query_canceled`` survives a cancel; after the deadline the
gateway terminates its backend from a separate connection and drops the connection, so the pool
is whole again within a second. Ten such loops at once fill the pool they run on: the shared
pool (a view over the loop, read with ``/gateway/fetch``) and raw SQL's own pool (a ``DO``
block through ``/gateway/query``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from support.pg import TestPostgres
from support.servers import AthenaServer

POOL_SIZE = 10
STATEMENT_TIMEOUT_MS = 300
POOL_TIMEOUT_S = 1.0
# ClientRegistry's deadline: waiting for a connection + statement timeout + 2 s of grace.
DEADLINE_S = POOL_TIMEOUT_S + STATEMENT_TIMEOUT_MS / 1000 + 2.0

SPIN = """
CREATE FUNCTION spin() RETURNS int LANGUAGE plpgsql AS $$
BEGIN
  LOOP
    BEGIN
      PERFORM pg_sleep(0.02);
    EXCEPTION WHEN query_canceled THEN NULL;  -- the statement timeout and any cancel
    END;
  END LOOP;
END $$;
CREATE VIEW spinning AS SELECT spin() AS n;
CREATE TABLE calm (id int PRIMARY KEY);
INSERT INTO calm VALUES (1);
"""
RAW_SPIN = (
    "DO $$ BEGIN LOOP BEGIN PERFORM pg_sleep(0.02);"
    " EXCEPTION WHEN query_canceled THEN NULL; END; END LOOP; END $$"
)


@pytest.fixture(scope="module")
def spin_db(pg: TestPostgres) -> Iterator[str]:
    name = pg.create_database()
    with pg.connect(name) as conn:
        conn.execute(SPIN)
    yield name
    pg.drop_database(name)


@pytest.fixture(scope="module")
def gateway(
    athena_factory: Callable[..., AthenaServer], pg: TestPostgres, spin_db: str
) -> AthenaServer:
    return athena_factory(
        clients={"spin": {"pg_uri": pg.app_uri(spin_db)}},
        ATHENA_POOL_MIN_SIZE=str(POOL_SIZE),
        ATHENA_POOL_MAX_SIZE=str(POOL_SIZE),
        ATHENA_STATEMENT_TIMEOUT_MS=str(STATEMENT_TIMEOUT_MS),
        ATHENA_POOL_TIMEOUT_S=str(POOL_TIMEOUT_S),
    )


@pytest.fixture
def call(gateway: AthenaServer, admin_key: str) -> Iterator[Callable[[str, dict[str, Any]], Any]]:
    headers = {
        "apikey": admin_key,
        "X-Athena-Client": "spin",
        "X-User-Id": "u1",
        "X-Company-Id": "c1",
        "X-Organization-Id": "o1",
    }

    def post(path: str, body: dict[str, Any]) -> tuple[int, str, float]:
        with httpx.Client(base_url=gateway.url, headers=headers, timeout=30.0) as client:
            response = client.post(path, json=body)
            return response.status_code, response.text, time.monotonic()

    yield post


def pool_state(pg: TestPostgres, database: str, application: str) -> tuple[int, int]:
    """(backends still running a loop, idle connections of the pool named ``application``)."""
    with pg.connect(database, superuser=True) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE state = 'active' AND query ILIKE '%%LOOP%%'"
            "                          OR state = 'active' AND query ILIKE '%%spin%%'),"
            " count(*) FILTER (WHERE state = 'idle' AND application_name = %s)"
            " FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (application, database),
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def whole_again(pg: TestPostgres, database: str, application: str, since: float) -> float:
    """Seconds from ``since`` until no loop runs and the pool has all its connections idle."""
    while True:
        spinning, idle = pool_state(pg, database, application)
        if spinning == 0 and idle >= POOL_SIZE:
            return time.monotonic() - since
        assert time.monotonic() - since < 15, (spinning, idle)
        time.sleep(0.01)


def run_spinners(call: Callable[[str, dict[str, Any]], Any], spinner: tuple[str, Any]) -> float:
    """Ten spinners at once, each of which must get its 504; returns when the last one did."""
    with ThreadPoolExecutor(max_workers=POOL_SIZE) as threads:
        outcomes = list(threads.map(lambda _: call(*spinner), range(POOL_SIZE)))
    for status, text, _ in outcomes:
        assert status == 504, text
        assert '"statement_timeout"' in text
    return float(max(at for _, _, at in outcomes))


def all_succeed(call: Callable[[str, dict[str, Any]], Any], healthy: tuple[str, Any]) -> None:
    with ThreadPoolExecutor(max_workers=POOL_SIZE) as threads:
        for status, text, _ in threads.map(lambda _: call(*healthy), range(POOL_SIZE)):
            assert status == 200, text


def test_ten_loops_on_the_shared_pool_are_terminated(
    call: Callable[[str, dict[str, Any]], Any], pg: TestPostgres, spin_db: str
) -> None:
    all_succeed(call, ("/gateway/fetch", {"table_name": "calm"}))  # warm: schema, pool
    last_504 = run_spinners(call, ("/gateway/fetch", {"table_name": "spinning"}))
    recovery = whole_again(pg, spin_db, "athena", last_504)
    print(f"shared pool whole {recovery:.3f}s after the last 504")
    assert recovery < 1.0, f"the pool was whole again {recovery:.2f}s after the deadline"
    all_succeed(call, ("/gateway/fetch", {"table_name": "calm"}))


def test_ten_loops_in_raw_sql_are_terminated(
    call: Callable[[str, dict[str, Any]], Any], pg: TestPostgres, spin_db: str
) -> None:
    last_504 = run_spinners(call, ("/gateway/query", {"query": RAW_SPIN}))
    recovery = whole_again(pg, spin_db, "athena-raw", last_504)
    print(f"raw pool whole {recovery:.3f}s after the last 504")
    assert recovery < 1.0, f"the raw pool was whole again {recovery:.2f}s after the deadline"
    all_succeed(call, ("/gateway/query", {"query": "SELECT id FROM calm"}))
    all_succeed(call, ("/gateway/fetch", {"table_name": "calm"}))  # never involved
