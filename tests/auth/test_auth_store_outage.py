"""AuthStore while its catalog is down: the first lookup that finds it unavailable (at most one
pool timeout), then every uncached lookup fails closed at once, and the first answer after the
catalog is back reopens the way.

Before this, each request whose decision had expired waited out the pool timeout once for the
enforcement settings and once more for its key: ten seconds, so a 10 s catalog outage ended
with requests still waiting, and they passed when it came back (never one 503)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
import trio
from support.keys import seed_key
from support.pg import TestPostgres

from athena.auth.keys import parse_key
from athena.auth.store import AuthStore
from athena.db.catalog import migrate
from athena.db.database import Database, DatabaseUnavailable, make_pool

POOL_TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def own_catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestPostgres]:
    """A catalog of this module's own: the test stops and starts it."""
    pg = TestPostgres.start(tmp_path_factory.mktemp("outage-catalog"))
    with psycopg.connect(pg.superuser_uri(), autocommit=True) as conn:
        migrate(conn)
    yield pg
    pg.stop()


def _database(uri: str) -> Database:
    pool = make_pool(
        uri, name="outage-test", min_size=1, max_size=4, statement_timeout_ms=5000,
        connect_timeout_s=1, pool_timeout_s=POOL_TIMEOUT_S,
    )  # fmt: skip
    pool.wait(10)
    return Database("outage-test", pool, trio.CapacityLimiter(4), POOL_TIMEOUT_S, 10.0)


async def _timed(ask: object) -> tuple[float, str]:
    started = trio.current_time()
    try:
        await ask()  # type: ignore[operator]
        outcome = "ok"
    except DatabaseUnavailable:
        outcome = "unavailable"
    return trio.current_time() - started, outcome


async def test_after_one_wait_lookups_fail_closed_at_once_until_the_catalog_answers(
    own_catalog: TestPostgres,
) -> None:
    uri = own_catalog.superuser_uri()
    parsed = parse_key(seed_key(uri, rights=["gateway.read"]))
    assert parsed is not None
    public_id = parsed[0]
    db = _database(uri)
    store = AuthStore(db, ttl=60, default_enforce=True)
    try:
        async with trio.open_nursery() as nursery:
            store.nursery = nursery
            await trio.to_thread.run_sync(own_catalog.server.stop)

            # The first lookup cannot know: it finds its connection dead, or waits for a new
            # one as long as the pool lets it.
            first = await _timed(store.enforcement)
            assert first[1] == "unavailable" and first[0] < POOL_TIMEOUT_S + 1.0, first

            # Now known: a key nobody has cached fails closed without waiting again.
            then = await _timed(lambda: store.key(public_id))
            assert then[1] == "unavailable" and then[0] < POOL_TIMEOUT_S / 4, then
            again = await _timed(store.enforcement)
            assert again[1] == "unavailable" and again[0] < POOL_TIMEOUT_S / 4, again

            # The catalog comes back: the probe's answer reopens the way, well within a second.
            await trio.to_thread.run_sync(own_catalog.server.start)
            back_at = trio.current_time()
            with trio.fail_after(POOL_TIMEOUT_S * 3):
                while True:
                    took, outcome = await _timed(lambda: store.key(public_id))
                    if outcome == "ok":
                        break
                    assert took < POOL_TIMEOUT_S / 4, "still failing fast while it reconnects"
                    await trio.sleep(0.02)
            assert trio.current_time() - back_at < 1.5
            found = await store.key(public_id)
            assert found is not None and found.public_id == public_id
            assert (await store.enforcement()).global_flag
            nursery.cancel_scope.cancel()
    finally:
        db.pool.close()
        if not own_catalog.server._running():
            own_catalog.server.start()
