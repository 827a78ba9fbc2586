"""Provisioning: apply the bundled Athena client schema (``athena/db/provision/*.sql``).

Used by ``POST /admin/provision``, ``GET /admin/provision/status`` and ``athena provision``. The
SQL is idempotent (``IF NOT EXISTS`` / ``ON CONFLICT DO NOTHING``) and runs in one transaction,
so a failed run leaves nothing half-made and a second run changes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from athena.db.errors import api_error_from_db
from athena.errors import ApiError

if TYPE_CHECKING:
    from athena.runtime import Runtime

# The tables the provisioning SQL creates (all in schema public); /admin/provision/status checks
# them.
PROVISIONED_TABLES: tuple[str, ...] = ("database_audit_log", "athena_provisioning")


@cache
def provisioning_statements() -> tuple[str, ...]:
    """The bundled SQL split into statements (files in name order; ``--`` comments dropped)."""
    folder = resources.files("athena.db").joinpath("provision")
    texts = sorted(
        (entry.name, entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    )
    statements: list[str] = []
    for _, text in texts:
        body = "\n".join(re.sub(r"--.*$", "", line) for line in text.splitlines())
        # The files use no dollar quoting or ';' inside literals (see the file header), so a
        # plain split is exact.
        statements.extend(part.strip() for part in body.split(";") if part.strip())
    return tuple(statements)


@dataclass(frozen=True)
class ProvisionResult:
    statements_executed: int
    tables: list[str]


def apply_provisioning(conn: psycopg.Connection) -> ProvisionResult:
    """Run every provisioning statement in one transaction on ``conn`` (blocking)."""
    statements = provisioning_statements()
    with conn.transaction():
        for text in statements:
            conn.execute(sql.SQL(text))  # type: ignore[arg-type]  # trusted package data
    return ProvisionResult(len(statements), list(PROVISIONED_TABLES))


def provision_status(conn: psycopg.Connection) -> dict[str, Any]:
    """Which provisioned tables exist on ``conn``'s database (blocking)."""
    present = []
    for name in PROVISIONED_TABLES:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"public.{name}",)).fetchone()
        if row and row[0]:
            present.append(name)
    missing = [name for name in PROVISIONED_TABLES if name not in present]
    return {"provisioned": not missing, "present_tables": present, "missing_tables": missing}


# -- the HTTP side (POST /admin/provision, GET /admin/provision/status) ----------------------

DEFAULT_REGISTER_NAME = "provisioned"


def _connect_and(uri: str, timeout_s: float, fn: Any) -> Any:
    """Open a one-off connection to ``uri`` and run ``fn(conn)`` (blocking)."""
    with psycopg.connect(uri, autocommit=True, connect_timeout=max(1, int(timeout_s))) as conn:
        return fn(conn)


async def provision(rt: Runtime, body: dict[str, Any]) -> dict[str, Any]:
    """Apply the provisioning SQL to ``uri`` or a registered ``client_name``; maybe register."""
    import trio

    from athena.services.client_catalog import (
        CLIENT_NAME,
        safe_uri,
        validate_pg_uri,
    )

    uri_value, client_name = body.get("uri"), body.get("client_name")
    register = body.get("register", False)
    register_name = body.get("register_name")
    if not isinstance(register, bool):
        raise ApiError("invalid_request", "register must be a boolean")
    if (uri_value is None) == (client_name is None):
        raise ApiError("invalid_request", "give exactly one of uri or client_name to provision")
    if register_name is not None and (
        not isinstance(register_name, str) or not CLIENT_NAME.fullmatch(register_name)
    ):
        # checked before anything runs, so a bad name never leaves a provisioned-but-unregistered
        # database behind
        raise ApiError(
            "invalid_request",
            "register_name must match [A-Za-z0-9_][A-Za-z0-9_.-]* (at most 63 characters)",
        )
    timeout = rt.settings.connect_timeout_s
    registered: str | None = None
    if client_name is not None:
        if not isinstance(client_name, str):
            raise ApiError("invalid_request", "client_name must be a string")
        entry = rt.clients.get(client_name)
        if entry is None or entry.kind != "postgres":
            raise ApiError(
                "unknown_client", f"unknown client '{client_name}'", data={"client": client_name}
            )
        result = await _run_on_entry(entry, apply_provisioning)
        target = client_name
    else:
        uri = validate_pg_uri(uri_value)
        try:
            result = await trio.to_thread.run_sync(_connect_and, uri, timeout, apply_provisioning)
        except psycopg.OperationalError:
            raise ApiError(
                "client_unavailable",
                f"cannot connect to {safe_uri(uri)} to provision it",
            ) from None
        except psycopg.Error as exc:
            raise api_error_from_db(exc) from None
        target = safe_uri(uri) or ""
        if register:
            registered = register_name or DEFAULT_REGISTER_NAME
            await _register(rt.client_catalog, registered, uri)
            target = registered
    return {
        "statements_executed": result.statements_executed,
        "client": target,
        "registered": registered,
        "tables": result.tables,
    }


async def _register(catalog: Any, name: str, uri: str) -> None:
    """Add ``name`` → ``uri`` to the catalog; the same URI already registered is a no-op."""
    existing = await catalog.row(name)
    if existing is not None and existing.get("deleted_at") is None:
        if existing.get("pg_uri") == uri:
            return
        raise ApiError(
            "client_exists",
            f"client '{name}' already exists with another database",
            data={"client": name},
        )
    await catalog.create({"client_name": name, "pg_uri": uri, "description": "provisioned"})


async def _run_on_entry(entry: Any, fn: Any) -> Any:
    from athena.db.clients import require_db

    try:
        return await require_db(entry).run(fn)
    except ApiError:
        raise
    except Exception as exc:
        raise api_error_from_db(exc, client=entry.name) from None


async def status(rt: Runtime, client_name: str | None) -> dict[str, Any]:
    if not client_name:
        raise ApiError(
            "invalid_request",
            "the query parameter client_name is required",
            data={"details": {"missing_parameter": "client_name"}},
        )
    entry = rt.clients.get(client_name)
    if entry is None or entry.kind != "postgres":
        raise ApiError(
            "unknown_client", f"unknown client '{client_name}'", data={"client": client_name}
        )
    found = await _run_on_entry(entry, provision_status)
    return {"client_name": client_name, **found}
