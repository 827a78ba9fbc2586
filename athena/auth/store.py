"""Catalog reads the guard needs, with a short-lived cache.

Decisions may be up to ``auth_cache_seconds`` (2 s) stale across instances. Within this instance
an admin change calls ``invalidate()``, so it applies on the very next request.

When an entry expires under load, every request in flight with that key would miss at once and
each ask the catalog; instead one lookup runs and the others wait for its answer (single
flight). Better still, an entry used in the second half of its life is refreshed in the
background (in the runtime's nursery), so a key in steady use never makes a request wait for
the catalog. The bound is unchanged: no answer older than the TTL is ever used. Lookups are
single statements run on the event loop (``Database.fetch_one``).

When a lookup finds the catalog unavailable (it waited out the pool timeout), the store
remembers it: until the catalog answers again, a request whose decision is not cached fails
closed at once instead of waiting out the pool timeout itself — or twice, once for the
enforcement settings and once for its key, which outlasted a 10 s outage and then passed.
One probe in the runtime's nursery keeps asking, so the first answer after the catalog is
back reopens the way (within the pool's connect retry, 0.25 s).
``last_used_at`` is recorded in memory and flushed in one statement by a background task, so the
hot path never writes to the catalog.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

import psycopg
import trio

from athena.auth.addresses import Network, networks
from athena.db.database import Database, DatabaseUnavailable, StatementDeadlineExceeded

T = TypeVar("T")
log = logging.getLogger("athena.auth")

# Between two probes that failed at once (a refused connect): short, as recovery waits on it.
_PROBE_PAUSE_S = 0.05

_KEY_SQL = """
SELECT k.id::text, k.public_id, k.client_name, k.key_salt, k.key_hash, k.is_active, k.expires_at,
       coalesce(array_agg(r.name) FILTER (WHERE r.name IS NOT NULL), '{}'),
       k.ip_allowlist::text[], k.ip_denylist::text[]
  FROM athena.api_keys k
  LEFT JOIN athena.api_key_right_grants g ON g.api_key_id = k.id
  LEFT JOIN athena.api_key_rights r ON r.id = g.right_id
 WHERE k.public_id = %s
 GROUP BY k.id
"""

_ENFORCEMENT_SQL = """
SELECT (SELECT enforce_api_keys FROM athena.api_key_config WHERE singleton),
       coalesce(json_object_agg(client_name, enforce_api_keys)
                FILTER (WHERE client_name IS NOT NULL), '{}'),
       (SELECT ip_denylist::text[] FROM athena.api_key_config WHERE singleton)
  FROM athena.api_key_client_config
"""


@dataclass(frozen=True)
class StoredKey:
    id: str
    public_id: str
    client_name: str | None
    salt: str
    key_hash: str
    is_active: bool
    expires_at: datetime | None
    rights: tuple[str, ...]
    ip_allowlist: tuple[Network, ...] = ()
    ip_denylist: tuple[Network, ...] = ()


@dataclass(frozen=True)
class Enforcement:
    global_flag: bool
    per_client: dict[str, bool]
    ip_denylist: tuple[Network, ...] = ()

    def applies_to(self, client: str | None) -> bool:
        if client is not None and client in self.per_client:
            return self.per_client[client]
        return self.global_flag


@dataclass
class _Lookup:
    """A catalog lookup in flight that other requests wait for."""

    done: trio.Event = field(default_factory=trio.Event)
    ok: bool = False
    value: Any = None
    # The catalog could not be read: every waiter fails with it. Running a lookup of its own
    # instead would make each wait out the pool timeout a second time, so during an outage a
    # request could hang for twice that and then pass once the catalog is back.
    error: BaseException | None = None


class AuthStore:
    def __init__(self, catalog: Database, ttl: float, default_enforce: bool) -> None:
        self._catalog = catalog
        self._ttl = ttl
        self._default_enforce = default_enforce
        self._keys: dict[str, tuple[float, StoredKey | None]] = {}
        self._enforcement: tuple[float, Enforcement] | None = None
        self._used: set[str] = set()
        self._in_flight: dict[str | None, _Lookup] = {}  # public id, or None for enforcement
        self._generation = 0  # bumped by invalidate(): lookups started before must not be cached
        # Where background refreshes run (the runtime's nursery, once it is serving).
        self.nursery: trio.Nursery | None = None
        self._refreshing: set[str | None] = set()
        # The newest enforcement read, kept past its TTL: the global deny list is applied from
        # it when the catalog cannot be read (athena.http.calls).
        self.last_enforcement: Enforcement | None = None
        # The catalog was found unavailable and has not answered since (see the module doc).
        self.unavailable = False
        self._probing = False

    def invalidate(self) -> None:
        """Forget every cached decision (called by the admin routes after any change)."""
        self._keys.clear()
        self._enforcement = None
        self._generation += 1
        self._in_flight.clear()  # later requests read the catalog afresh

    async def key(self, public_id: str) -> StoredKey | None:
        hit = self._keys.get(public_id)
        if hit is not None:
            age = time.monotonic() - hit[0]
            if age < self._ttl:
                if age > self._ttl / 2:
                    self._refresh_soon(public_id, partial(self._load_key, public_id))
                return hit[1]
        return await self._single_flight(public_id, partial(self._load_key, public_id))

    async def _load_key(self, public_id: str) -> StoredKey | None:
        started, generation = time.monotonic(), self._generation
        row = await self._catalog.fetch_one(_KEY_SQL, (public_id,))
        stored = None
        if row is not None:
            stored = StoredKey(
                *row[:7], tuple(row[7]), networks(row[8] or ()), networks(row[9] or ())
            )
        if generation == self._generation:
            if len(self._keys) > 10_000:  # bound memory against random public ids
                self._keys.clear()
            self._keys[public_id] = (started, stored)
        return stored

    async def enforcement(self) -> Enforcement:
        if self._enforcement is not None:
            age = time.monotonic() - self._enforcement[0]
            if age < self._ttl:
                if age > self._ttl / 2:
                    self._refresh_soon(None, self._load_enforcement)
                return self._enforcement[1]
        return await self._single_flight(None, self._load_enforcement)

    def _refresh_soon(self, name: str | None, load: Callable[[], Awaitable[Any]]) -> None:
        if self.nursery is None or name in self._refreshing or name in self._in_flight:
            return
        if self.unavailable:
            return  # the probe is asking; the entry expires and requests fail closed
        self._refreshing.add(name)
        self.nursery.start_soon(self._refresh, name, load)

    async def _refresh(self, name: str | None, load: Callable[[], Awaitable[Any]]) -> None:
        try:
            await self._single_flight(name, load)
        except Exception:  # the entry simply expires; the next request asks and fails closed
            log.debug("background refresh of an auth entry failed", exc_info=True)
        finally:
            self._refreshing.discard(name)

    async def _load_enforcement(self) -> Enforcement:
        started, generation = time.monotonic(), self._generation
        row = await self._catalog.fetch_one(_ENFORCEMENT_SQL)
        flag = self._default_enforce if row is None or row[0] is None else bool(row[0])
        value = Enforcement(
            flag, dict(row[1]) if row else {}, networks(row[2] or ()) if row else ()
        )
        if generation == self._generation:
            self._enforcement = (started, value)
        self.last_enforcement = value
        return value

    async def _single_flight(self, name: str | None, load: Callable[[], Awaitable[T]]) -> T:
        """``await load()`` once for everyone asking for ``name`` at the same time.

        If the catalog cannot be read, every waiter gets that error at once (503, fail
        closed); if the first caller was cancelled or failed otherwise, each waiter runs its
        own lookup.
        """
        if self.unavailable and self._probe():
            raise DatabaseUnavailable(self._catalog.name)
        pending = self._in_flight.get(name)
        if pending is not None:
            await pending.done.wait()
            if pending.ok:
                return pending.value  # type: ignore[no-any-return]
            if pending.error is not None:
                raise DatabaseUnavailable(self._catalog.name) from pending.error
            return await load()
        pending = self._in_flight[name] = _Lookup()
        try:
            pending.value = await load()
            pending.ok = True
            self.unavailable = False
            return pending.value  # type: ignore[no-any-return]
        except (DatabaseUnavailable, StatementDeadlineExceeded) as exc:
            pending.error = exc
            self.unavailable = True
            self._probe()
            raise
        except psycopg.Error as exc:
            pending.error = exc
            raise
        finally:
            if self._in_flight.get(name) is pending:
                del self._in_flight[name]
            pending.done.set()

    def _probe(self) -> bool:
        """Have one probe ask the catalog until it answers; False when none can run here
        (no nursery: the caller then asks the catalog itself, as before)."""
        if self.nursery is None:
            return False
        if not self._probing:
            self._probing = True
            self.nursery.start_soon(self._probe_until_answered)
        return True

    async def _probe_until_answered(self) -> None:
        try:
            while self.unavailable:
                try:
                    # Waits for a connection as a lookup would (the pool retries the connect
                    # while anyone waits), so it answers as soon as the catalog is back.
                    await self._catalog.fetch_one("SELECT 1")
                except (DatabaseUnavailable, StatementDeadlineExceeded, psycopg.Error):
                    await trio.sleep(_PROBE_PAUSE_S)  # a refusal can be instant: no busy loop
                else:
                    self.unavailable = False
        finally:
            self._probing = False

    def mark_used(self, key_id: str) -> None:
        self._used.add(key_id)

    async def flush_last_used(self) -> None:
        """Background task: write ``last_used_at`` for keys used since the last flush."""
        while True:
            await trio.sleep(2.0)
            if not self._used:
                continue
            ids, self._used = sorted(self._used), set()
            try:
                await self._catalog.run(partial(_touch_keys, ids=ids))
            except BaseException:
                # Keep them for the next attempt (the supervisor restarts this task); a
                # catalog outage must not lose the record that these keys were used.
                self._used.update(ids)
                raise


def _touch_keys(conn: psycopg.Connection, ids: list[str]) -> None:
    conn.execute(
        "UPDATE athena.api_keys SET last_used_at = now() WHERE id = ANY(%s::uuid[])", (ids,)
    )
