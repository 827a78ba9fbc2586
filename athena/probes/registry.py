"""The API and router registries: catalog rows served from a per-worker cache with a TTL.

A row is served as its ``document`` with the row's columns laid over it: ``id`` always, ``name``
when set, ``created_at`` and ``updated_at`` — so a document can carry any fields, but never
contradict the row it lives in. PostgreSQL builds each row's JSON; the cache keeps the bytes.

``Cache-Control: no-cache`` on a request skips the cache, reloads the whole registry and stores
the fresh copy; otherwise a copy younger than ``ATHENA_REGISTRY_CACHE_TTL_S`` is served.
Concurrent misses share one reload (a lock per registry) instead of stampeding the catalog.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import psycopg
import trio
from psycopg import sql

if TYPE_CHECKING:
    from athena.runtime import Runtime

TABLES = {"api": "api_registry", "router": "router_registry"}

_SELECT = sql.SQL("""
SELECT id,
       (document
        || jsonb_strip_nulls(jsonb_build_object('id', id, 'name', name))
        || jsonb_build_object('created_at', created_at, 'updated_at', updated_at))::text
  FROM athena.{}
 ORDER BY created_at, id
""")


@dataclass
class RegistrySnapshot:
    rows: list[tuple[str, bytes]]
    loaded_at: float
    by_id: dict[str, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_id = dict(self.rows)

    def all_json(self) -> bytes:
        return b"[" + b",".join(doc for _, doc in self.rows) + b"]"

    def one_json(self, row_id: str) -> bytes:
        doc = self.by_id.get(row_id)
        return b"[" + doc + b"]" if doc is not None else b"[]"


@dataclass
class RegistryCache:
    rt: Runtime
    ttl_s: float
    loads: int = 0
    _snapshots: dict[str, RegistrySnapshot] = field(default_factory=dict)
    _locks: dict[str, trio.Lock] = field(default_factory=dict)

    async def get(self, kind: str, *, bypass: bool = False) -> tuple[RegistrySnapshot, bool]:
        """The registry ``kind`` (``api`` | ``router``), reloaded when stale or bypassed;
        the flag says whether this call's copy was read from the catalog after it arrived."""
        requested = time.monotonic()
        lock = self._locks.setdefault(kind, trio.Lock())
        async with lock:
            snap = self._snapshots.get(kind)
            # A reload that finished after this request arrived is fresh enough even for
            # no-cache: it read the catalog after the caller asked.
            if snap is not None and (
                snap.loaded_at >= requested
                or (not bypass and time.monotonic() - snap.loaded_at < self.ttl_s)
            ):
                return snap, snap.loaded_at >= requested
            table = sql.Identifier(TABLES[kind])

            def load(conn: psycopg.Connection) -> list[tuple[str, bytes]]:
                rows = conn.execute(_SELECT.format(table)).fetchall()
                return [(r[0], r[1].encode()) for r in rows]

            started = time.monotonic()
            rows = await self.rt.catalog.run(load)
            snap = RegistrySnapshot(rows, started)
            self._snapshots[kind] = snap
            self.loads += 1
            return snap, True
