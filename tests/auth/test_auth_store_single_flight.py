"""AuthStore against the real catalog: one lookup per expiry however many requests wait for it,
and nothing read before an invalidation is cached after it."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from support.keys import seed_key
from support.servers import AthenaServer

from athena.auth.keys import parse_key
from athena.auth.store import AuthStore
from athena.db.database import Database, make_pool


class CountingDatabase(Database):
    """The real catalog database, counting the statements the store sends."""

    calls: int = 0

    async def fetch_one(self, statement: Any, params: Any = None) -> Any:
        self.calls += 1
        await trio.sleep(0.05)  # a slow catalog: requests pile up behind the first lookup
        return await super().fetch_one(statement, params)


@pytest.fixture
def catalog(athena: AthenaServer, catalog_uri: str) -> CountingDatabase:  # athena: migrated
    pool = make_pool(
        catalog_uri, name="store-test", min_size=1, max_size=4, statement_timeout_ms=5000,
        connect_timeout_s=3, pool_timeout_s=3,
    )  # fmt: skip
    pool.wait(10)
    return CountingDatabase("store-test", pool, trio.CapacityLimiter(4), 3.0, 10.0)


async def test_concurrent_misses_share_one_lookup(
    catalog: CountingDatabase, catalog_uri: str
) -> None:
    parsed = parse_key(seed_key(catalog_uri, rights=["gateway.read"]))
    assert parsed is not None
    public_id = parsed[0]
    store = AuthStore(catalog, ttl=0.3, default_enforce=True)
    try:
        for _round in range(2):  # the first fill, then again once the entry has expired
            before = catalog.calls
            found: list[Any] = []
            async with trio.open_nursery() as nursery:
                for _ in range(20):
                    nursery.start_soon(_append, found, store.key, public_id)
                    nursery.start_soon(_append, found, store.enforcement)
            assert catalog.calls - before == 2, "one key lookup and one enforcement read"
            keys = [f for f in found if not hasattr(f, "applies_to")]
            assert len(keys) == 20 and all(k is not None and k.public_id == public_id for k in keys)
            assert all(f.global_flag for f in found if hasattr(f, "applies_to"))
            await trio.sleep(0.35)
    finally:
        catalog.pool.close()


async def test_a_key_in_steady_use_is_refreshed_ahead_and_never_waits(
    catalog: CountingDatabase, catalog_uri: str
) -> None:
    parsed = parse_key(seed_key(catalog_uri, rights=["gateway.read"]))
    assert parsed is not None
    store = AuthStore(catalog, ttl=0.4, default_enforce=True)
    try:
        async with trio.open_nursery() as nursery:
            store.nursery = nursery
            assert (await store.key(parsed[0])) is not None  # the first read waits
            first = catalog.calls
            slowest = 0.0
            deadline = trio.current_time() + 1.5
            while trio.current_time() < deadline:
                started = trio.current_time()
                assert (await store.key(parsed[0])) is not None
                slowest = max(slowest, trio.current_time() - started)
                await trio.sleep(0.02)
            nursery.cancel_scope.cancel()
        assert slowest < 0.04, "no request waited for the (50 ms) catalog once the key was known"
        assert catalog.calls - first >= 3, "refreshed in the background, several times"
        assert catalog.calls - first <= 8, "about once per half TTL, not per request"
    finally:
        catalog.pool.close()


async def test_a_lookup_overtaken_by_an_invalidation_is_not_cached(
    catalog: CountingDatabase, catalog_uri: str
) -> None:
    parsed = parse_key(seed_key(catalog_uri, rights=["gateway.read"]))
    assert parsed is not None
    store = AuthStore(catalog, ttl=60, default_enforce=True)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(store.key, parsed[0])
            await trio.sleep(0.01)  # the lookup is in flight
            store.invalidate()  # e.g. the key was just revoked
        before = catalog.calls
        assert (await store.key(parsed[0])) is not None
        assert catalog.calls == before + 1, "read again: the earlier answer was not kept"
        assert (await store.key(parsed[0])) is not None
        assert catalog.calls == before + 1, "now cached"
    finally:
        catalog.pool.close()


async def test_a_failed_lookup_reaches_every_waiter(catalog: CountingDatabase) -> None:
    store = AuthStore(catalog, ttl=60, default_enforce=True)
    catalog.pool.close()  # the catalog is gone
    errors: list[BaseException] = []

    async def ask() -> None:
        try:
            await store.key("0123456789abcdef")
        except Exception as exc:
            errors.append(exc)

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(ask)
    assert len(errors) == 3


async def _append(out: list[Any], ask: Any, *args: Any) -> None:
    out.append(await ask(*args))
