"""Which clients a backup may be taken from and a restore may go into.

A restore replaces a database wholesale, so it is refused into a frozen or inactive client and
into any database that holds an Athena catalog: the catalog by URI, and — because two URIs can
name one database (``localhost`` vs ``127.0.0.1``, another gateway's catalog) — any database
that has the catalog's tables.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import psycopg
import trio
from psycopg.conninfo import conninfo_to_dict

from athena.backups.pgtools import ToolTarget
from athena.db.clients import ClientEntry
from athena.errors import ApiError

if TYPE_CHECKING:
    from athena.runtime import Runtime

# Both exist only in an Athena catalog database.
_CATALOG_MARKER_SQL = (
    "SELECT to_regclass('public.athena_schema_migrations') IS NOT NULL"
    " AND to_regclass('athena.backup_jobs') IS NOT NULL"
)


def client_for_backup(rt: Runtime, name: object) -> ClientEntry:
    """The named client, usable as a pg_dump source (400 when missing or unknown)."""
    entry = _named_client(rt, name)
    if not entry.uri:
        raise ApiError(
            "invalid_request",
            f"client '{entry.name}' has no PostgreSQL connection URI to back up",
            data={"client_name": entry.name},
        )
    return entry


async def client_for_restore(rt: Runtime, name: object) -> ClientEntry:
    """The named client, checked to be a database a restore may replace."""
    entry = _named_client(rt, name)
    if entry.is_frozen:
        raise ApiError(
            "client_frozen",
            f"client '{entry.name}' is frozen; unfreeze it before restoring into it",
            data={"client": entry.name},
        )
    if not entry.is_active:
        raise ApiError(
            "client_inactive", f"client '{entry.name}' is inactive", data={"client": entry.name}
        )
    if not entry.uri:
        raise ApiError(
            "invalid_request",
            f"client '{entry.name}' has no PostgreSQL connection URI to restore into",
            data={"client_name": entry.name},
        )
    if _same_database(entry.uri, rt.catalog_uri) or await _holds_catalog(entry.uri):
        raise ApiError(
            "restore_refused",
            f"client '{entry.name}' is an Athena catalog database; restoring into it is refused",
            data={"client_name": entry.name},
        )
    return entry


def _named_client(rt: Runtime, name: object) -> ClientEntry:
    if not isinstance(name, str) or not name.strip():
        raise ApiError(
            "invalid_request",
            "client_name is required",
            data={"details": {"missing_field": "client_name"}},
        )
    entry = rt.clients.get(name.strip())
    if entry is None:
        raise ApiError("unknown_client", f"unknown client '{name}'", data={"client": name})
    return entry


def _same_database(a: str, b: str) -> bool:
    try:
        pa, pb = conninfo_to_dict(a), conninfo_to_dict(b)
    except psycopg.ProgrammingError:
        return False

    def ident(p: dict[str, object]) -> tuple[str, str, str]:
        host = str(p.get("host") or "localhost")
        if host in ("localhost", "::1"):
            host = "127.0.0.1"
        return host, str(p.get("port") or "5432"), str(p.get("dbname") or p.get("user") or "")

    return ident(pa) == ident(pb)


async def _holds_catalog(uri: str) -> bool:
    target = ToolTarget.from_uri(uri)

    def check() -> bool:
        try:
            with psycopg.connect(uri, connect_timeout=10, autocommit=True) as conn:
                row = conn.execute(_CATALOG_MARKER_SQL).fetchone()
                return bool(row and row[0])
        except psycopg.Error as exc:
            raise ApiError(
                "client_unavailable",
                "the client's database is unreachable",
                detail=target.scrub(str(exc).strip()),
            ) from None

    return await trio.to_thread.run_sync(check)
