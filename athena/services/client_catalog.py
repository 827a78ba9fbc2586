"""The client catalog: clients from configuration and from ``athena.athena_clients``, merged.

``ClientCatalog`` owns the rows of ``athena.athena_clients`` and keeps ``rt.clients`` (the live
pools) equal to them:

- an admin change writes the row, then reconciles this process at once;
- every ``catalog_poll_seconds`` each instance re-reads the rows and reconciles, so another
  gateway sharing the catalog picks the change up within a few seconds (``client_catalog_sync``,
  a plain background task — NOT a lease task: every instance must apply every change).

Reconciling only touches clients whose state changed: ``rt.replace_client`` swaps one registry
entry (keeping the warm pool when the URI is unchanged, e.g. on freeze), so requests in flight on
other clients never notice. A soft-deleted client's pool is closed off the event loop; its
connections on loan finish their statements first (psycopg_pool closes them on return).

Configuration clients (``source: config``) are the operator's: they can be frozen, deactivated
and described through the API, but their URI changes and deletion are refused with 409
``client_config_managed`` — the next restart would silently undo them.

Which clients exist is answered in one place, ``desired_clients(configured_clients(…), rows)``:
configuration (the config file and ``ATHENA_CLIENTS``, plus the embedded default ``athena``)
merged with the catalog rows, their sealed URIs opened. Start-up (``attach``) and every reload
(``ClientCatalog.sync``) call it, and ``athena check`` checks the clients it answers.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import trio
from psycopg.types.json import Jsonb

from athena.config import Settings
from athena.db.clients import ClientEntry
from athena.db.database import DatabaseUnavailable
from athena.db.uris import mask_uri
from athena.errors import ApiError
from athena.supervisor import BackgroundTask

if TYPE_CHECKING:
    from athena.runtime import Runtime

log = logging.getLogger("athena.client_catalog")
T = TypeVar("T")

# The client the embedded default layout adds (configured_clients); not in settings.
EMBEDDED_DEFAULT_CLIENT = "athena"
# Client names travel in headers and URL paths; keep them to a safe, readable alphabet.
CLIENT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}")
_ENV_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_PASSWORD_KV = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


# -- URIs ----------------------------------------------------------------------------------


def safe_uri(uri: str | None) -> str | None:
    """``uri`` with every password masked: userinfo, ``?password=`` and ``password=`` pairs."""
    if not uri:
        return uri
    if not uri.startswith(("postgres://", "postgresql://")):
        return _PASSWORD_KV.sub(r"\1***", uri)  # key=value conninfo
    masked = mask_uri(uri) or ""
    try:
        parts = urlsplit(masked)
    except ValueError:
        return "***"
    if parts.query and "password" in parts.query.lower():
        query = urlencode(
            [(k, "***" if k.lower() == "password" else v) for k, v in parse_qsl(parts.query)],
            safe="*",
        )
        masked = urlunsplit(parts._replace(query=query))
    return masked


def validate_pg_uri(value: Any) -> str:
    """A ``postgres://`` / ``postgresql://`` URI that libpq can parse, else 400."""
    if not isinstance(value, str) or not value.strip():
        raise ApiError("invalid_pg_uri", "pg_uri must be a non-empty string")
    uri = value.strip()
    if not uri.startswith(("postgres://", "postgresql://")):
        raise ApiError("invalid_pg_uri", "pg_uri must be a postgres:// or postgresql:// URI")
    try:
        parts = urlsplit(uri)
        _ = parts.port  # raises ValueError on a non-numeric port
        psycopg.conninfo.conninfo_to_dict(uri)
    except (ValueError, psycopg.Error):
        raise ApiError("invalid_pg_uri", "pg_uri cannot be parsed as a PostgreSQL URI") from None
    if not parts.hostname and "host=" not in parts.query:
        raise ApiError("invalid_pg_uri", "pg_uri must name a host")
    return uri


def check_reachable(uri: str, timeout_s: float) -> None:
    """Connect once and run ``SELECT 1`` (blocking); 400 ``pg_uri_unreachable`` on failure.

    The reason is libpq's message with any password text removed, never the URI itself.
    """
    try:
        with psycopg.connect(uri, connect_timeout=max(1, int(timeout_s)), autocommit=True) as c:
            c.execute("SELECT 1")
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        password = urlsplit(uri).password
        if password:
            reason = reason.replace(password, "***")
        raise ApiError(
            "pg_uri_unreachable",
            "the database named by pg_uri cannot be reached",
            detail=reason[:300],
        ) from None


# -- which clients exist ---------------------------------------------------------------------


def configured_clients(
    settings: Settings, default_client_uri: str | None = None
) -> dict[str, ClientEntry]:
    """The clients configuration names: the config file's and ``ATHENA_CLIENTS``' (both end up
    in ``settings.clients``), plus the embedded default database as ``athena`` unless one of them
    has that name. A URI named by an environment variable is read now."""
    entries = {
        name: ClientEntry(name, cfg.resolve_uri(), "config", cfg.description, cfg.pg_uri_env_var)
        for name, cfg in settings.clients.items()
    }
    if default_client_uri and EMBEDDED_DEFAULT_CLIENT not in entries:
        entries[EMBEDDED_DEFAULT_CLIENT] = ClientEntry(
            EMBEDDED_DEFAULT_CLIENT, default_client_uri, "config", "Embedded default database"
        )
    return entries


def desired_clients(
    configured: dict[str, ClientEntry], rows: list[dict[str, Any]]
) -> dict[str, ClientEntry]:
    """The clients this process should serve: ``configured`` merged with the catalog ``rows``
    (``athena.athena_clients`` as JSON objects, ``pg_uri`` already opened by the sealer).

    A configuration client keeps its configured URI unless its row was taken over by the API
    (``source: database``); a row whose client left the configuration, or that is soft-deleted,
    is not served; a database client's URI is its row's, else its environment variable's.
    """
    wanted: dict[str, ClientEntry] = {
        name: ClientEntry(name, base.uri, "config", base.description, base.pg_uri_env_var)
        for name, base in configured.items()
    }
    for row in rows:
        name = row["client_name"]
        base = configured.get(name)
        if row.get("deleted_at") is not None:
            continue  # a config client cannot be deleted, so its configured entry stays
        if row["source"] == "config" and base is None:
            continue  # removed from the configuration since it was synced: not served
        if base is not None and row["source"] != "database":
            uri = base.uri
        else:
            env_var = row.get("pg_uri_env_var")
            uri = (
                row.get("pg_uri")
                or (os.environ.get(env_var) if env_var else None)
                or (base.uri if base else None)
            )
        wanted[name] = ClientEntry(
            name=name,
            uri=uri,
            source=row["source"],
            description=row.get("description") or (base.description if base else None),
            pg_uri_env_var=row.get("pg_uri_env_var") or (base.pg_uri_env_var if base else None),
            config_uri_template=row.get("config_uri_template"),
            is_active=bool(row.get("is_active", True)),
            is_frozen=bool(row.get("is_frozen", False)),
        )
    return wanted


def _register_configured(conn: psycopg.Connection, configured: dict[str, ClientEntry]) -> None:
    """Record configuration clients as ``source: config`` rows (the API lists them, and their
    freeze / activation state lives there); a row the API took over stays ``database``."""
    for entry in configured.values():
        conn.execute(
            """INSERT INTO athena.athena_clients
                   (client_name, description, pg_uri_env_var, source, last_synced_from_config_at)
               VALUES (%s, %s, %s, 'config', now())
               ON CONFLICT (client_name) DO UPDATE
                  SET last_synced_from_config_at = now(),
                      source = CASE WHEN athena.athena_clients.source = 'database'
                                    THEN 'database' ELSE 'config' END""",
            (entry.name, entry.description, entry.pg_uri_env_var),
        )


# -- the catalog ---------------------------------------------------------------------------

_SELECT_ROWS = "SELECT to_jsonb(c) FROM athena.athena_clients c ORDER BY client_name"


def _fetch_rows(conn: psycopg.Connection) -> list[dict[str, Any]]:
    return [row[0] for row in conn.execute(_SELECT_ROWS).fetchall()]


def public_record(row: dict[str, Any]) -> dict[str, Any]:
    """An ``AthenaClientRecord`` with every URI masked."""
    record = dict(row)
    record["pg_uri"] = safe_uri(record.get("pg_uri"))
    record["config_uri_template"] = safe_uri(record.get("config_uri_template"))
    return record


def runtime_record(entry: ClientEntry) -> dict[str, Any]:
    """A ``RuntimeAthenaClient``: what this process serves right now."""
    return {
        "client_name": entry.name,
        "source": entry.source,
        "description": entry.description,
        "pg_uri": safe_uri(entry.uri),
        "pg_uri_env_var": entry.pg_uri_env_var,
        "config_uri_template": safe_uri(entry.config_uri_template),
        "is_active": entry.is_active,
        "is_frozen": entry.is_frozen,
        "pool_connected": entry.pool_connected,
    }


def _state(entry: ClientEntry) -> tuple[Any, ...]:
    return (
        entry.uri,
        entry.source,
        entry.description,
        entry.pg_uri_env_var,
        entry.config_uri_template,
        entry.is_active,
        entry.is_frozen,
    )


class ClientCatalog:
    """Reads and writes ``athena.athena_clients`` and keeps ``rt.clients`` in step with it."""

    def __init__(self, rt: Runtime, configured: dict[str, ClientEntry]) -> None:
        self.rt = rt
        # What configuration says (configured_clients), captured once at start-up.
        self.baseline = configured
        # Names this catalog put in the registry; entries other capabilities add are never
        # touched.
        self.managed: set[str] = {e.name for e in rt.clients.entries() if e.kind == "postgres"}
        self._lock = trio.Lock()
        self.last_sync_error: str | None = None
        # client → metadata.schema_version last seen: a change means another instance ran DDL
        # through /management, so this instance's introspection cache of it is stale.
        self._schema_versions: dict[str, Any] = {}

    # -- catalog access --------------------------------------------------------------------

    async def _run(self, fn: Callable[[psycopg.Connection], T]) -> T:
        try:
            return await self.rt.catalog.run(fn)
        except DatabaseUnavailable:
            raise ApiError(
                "catalog_unavailable", "the client catalog cannot be reached right now"
            ) from None

    async def rows(self) -> list[dict[str, Any]]:
        return [self._opened(row) for row in await self._run(_fetch_rows)]

    def _opened(self, row: dict[str, Any] | None) -> dict[str, Any] | None:
        """A catalog row with its sealed ``pg_uri`` opened (``None`` if no key opens it)."""
        if row is None or not row.get("pg_uri"):
            return row
        opened = dict(row)
        opened["pg_uri"] = self.rt.sealer.reveal_or_none(
            row["pg_uri"], f"client {row.get('client_name')}"
        )
        return opened

    async def row(self, name: str) -> dict[str, Any] | None:
        def fetch(conn: psycopg.Connection) -> dict[str, Any] | None:
            found = conn.execute(
                "SELECT to_jsonb(c) FROM athena.athena_clients c WHERE client_name = %s", (name,)
            ).fetchone()
            return found[0] if found else None

        return self._opened(await self._run(fetch))

    async def live_row(self, name: str) -> dict[str, Any]:
        """The client's row, or 404 ``client_not_found`` (also when soft-deleted)."""
        row = await self.row(name)
        if row is None or row.get("deleted_at") is not None:
            raise ApiError(
                "client_not_found", f"client '{name}' does not exist", data={"client": name}
            )
        return row

    # -- reads -----------------------------------------------------------------------------

    async def listing(self, *, include_deleted: bool = False) -> dict[str, Any]:
        rows = await self.rows()
        return {
            "clients": [
                public_record(r) for r in rows if include_deleted or r.get("deleted_at") is None
            ],
            "runtime": [
                runtime_record(e) for e in self.rt.clients.entries() if e.kind == "postgres"
            ],
        }

    def names(self) -> list[str]:
        """Names of the clients this process serves (the ``ClientsResponse`` list)."""
        return self.rt.clients.names()

    # -- writes ----------------------------------------------------------------------------

    async def _resolve_target(self, body: dict[str, Any]) -> tuple[str | None, str | None]:
        """(pg_uri, pg_uri_env_var) from a save body, validated and checked reachable."""
        pg_uri = body.get("pg_uri")
        env_var = body.get("pg_uri_env_var")
        if pg_uri is not None:
            pg_uri = validate_pg_uri(pg_uri)
        if env_var is not None:
            if not isinstance(env_var, str) or not _ENV_VAR.fullmatch(env_var):
                raise ApiError(
                    "invalid_request", "pg_uri_env_var must be an environment variable name"
                )
        effective = pg_uri
        if effective is None and env_var is not None:
            from_env = os.environ.get(env_var)
            if not from_env:
                raise ApiError(
                    "invalid_request",
                    f"environment variable {env_var} is not set on this gateway",
                    data={"pg_uri_env_var": env_var},
                )
            effective = validate_pg_uri(from_env)
        if effective is not None:
            timeout = self.rt.settings.connect_timeout_s
            await trio.to_thread.run_sync(check_reachable, effective, timeout)
        return pg_uri, env_var

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /admin/clients``: a new database client (or revive a soft-deleted one)."""
        name = body.get("client_name")
        if not isinstance(name, str) or not CLIENT_NAME.fullmatch(name):
            raise ApiError(
                "invalid_request",
                "client_name must match [A-Za-z0-9_][A-Za-z0-9_.-]* (at most 63 characters)",
                data={"field": "client_name"},
            )
        description = _optional_text(body, "description")
        is_active = _optional_bool(body, "is_active", True)
        if body.get("pg_uri") is None and body.get("pg_uri_env_var") is None:
            raise ApiError("invalid_request", "pg_uri or pg_uri_env_var is required")
        existing = await self.row(name)
        if name in self.baseline or (existing is not None and existing["deleted_at"] is None):
            raise ApiError(
                "client_exists", f"client '{name}' already exists", data={"client": name}
            )
        pg_uri, env_var = await self._resolve_target(body)

        def write(conn: psycopg.Connection) -> dict[str, Any] | None:
            # A soft-deleted row of the same name is revived with the new settings, so a name
            # can be reused; a live row makes the statement a no-op (raced create → 409).
            found = conn.execute(
                """INSERT INTO athena.athena_clients AS c
                       (client_name, description, pg_uri, pg_uri_env_var, source, is_active)
                   VALUES (%s, %s, %s, %s, 'database', %s)
                   ON CONFLICT (client_name) DO UPDATE
                      SET description = EXCLUDED.description, pg_uri = EXCLUDED.pg_uri,
                          pg_uri_env_var = EXCLUDED.pg_uri_env_var, source = 'database',
                          is_active = EXCLUDED.is_active, is_frozen = false,
                          deleted_at = NULL, updated_at = now(), created_at = now()
                    WHERE c.deleted_at IS NOT NULL
                   RETURNING to_jsonb(c)""",
                (name, description, self.rt.sealer.seal(pg_uri), env_var, is_active),
            ).fetchone()
            return found[0] if found else None

        row = self._opened(await self._run(write))
        if row is None:
            raise ApiError(
                "client_exists", f"client '{name}' already exists", data={"client": name}
            )
        await self.sync()
        return public_record(row)

    async def update(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """``PATCH /admin/clients/{name}``: change the fields present in ``body``."""
        row = await self.live_row(name)
        if body.get("client_name") not in (None, name):
            raise ApiError("invalid_request", "client_name cannot be changed (renames unsupported)")
        changes: dict[str, Any] = {}
        if "description" in body:
            changes["description"] = _optional_text(body, "description")
        if "is_active" in body:
            changes["is_active"] = _optional_bool(body, "is_active", True)
        if "is_frozen" in body:
            changes["is_frozen"] = _optional_bool(body, "is_frozen", False)
        if "pg_uri" in body or "pg_uri_env_var" in body:
            if row["source"] == "config" or name in self.baseline:
                raise ApiError(
                    "client_config_managed",
                    f"client '{name}' comes from configuration; change its URI there",
                    data={"client": name},
                )
            merged = {
                "pg_uri": body.get("pg_uri", row.get("pg_uri")),
                "pg_uri_env_var": body.get("pg_uri_env_var", row.get("pg_uri_env_var")),
            }
            if merged["pg_uri"] is None and merged["pg_uri_env_var"] is None:
                raise ApiError("invalid_request", "pg_uri or pg_uri_env_var is required")
            pg_uri, env_var = await self._resolve_target(merged)
            changes["pg_uri"] = self.rt.sealer.seal(pg_uri)
            changes["pg_uri_env_var"] = env_var
        return await self._apply_changes(name, changes)

    async def freeze(self, name: str, frozen: bool) -> dict[str, Any]:
        await self.live_row(name)
        return await self._apply_changes(name, {"is_frozen": frozen})

    async def delete(self, name: str) -> dict[str, Any]:
        """Soft-delete: the row keeps its history with ``deleted_at``; the pool is closed."""
        row = await self.live_row(name)
        if row["source"] == "config" or name in self.baseline:
            raise ApiError(
                "client_config_managed",
                f"client '{name}' comes from configuration; remove it there (or freeze it)",
                data={"client": name},
            )
        return await self._apply_changes(name, {"deleted_at": _NOW})

    async def touch(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Apply ``changes`` to a live row (used by provisioning registration)."""
        await self.live_row(name)
        return await self._apply_changes(name, changes)

    async def _apply_changes(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        from psycopg import sql

        if changes:
            assignments = [
                sql.SQL("{} = {}").format(
                    sql.Identifier(column),
                    sql.SQL("now()") if value is _NOW else sql.Placeholder(),
                )
                for column, value in changes.items()
            ]
            params = [
                Jsonb(v) if isinstance(v, dict) else v for v in changes.values() if v is not _NOW
            ]
            query = sql.SQL(
                "UPDATE athena.athena_clients AS c SET {}, updated_at = now()"
                " WHERE client_name = %s AND deleted_at IS NULL RETURNING to_jsonb(c)"
            ).format(sql.SQL(", ").join(assignments))
        else:
            query = sql.SQL(
                "SELECT to_jsonb(c) FROM athena.athena_clients c"
                " WHERE client_name = %s AND deleted_at IS NULL"
            )
            params = []

        def write(conn: psycopg.Connection) -> dict[str, Any] | None:
            found = conn.execute(query, [*params, name]).fetchone()
            return found[0] if found else None

        row = self._opened(await self._run(write))
        if row is None:  # deleted between the check and the write
            raise ApiError(
                "client_not_found", f"client '{name}' does not exist", data={"client": name}
            )
        await self.sync()
        return public_record(row)

    # -- reconciling the registry with the rows --------------------------------------------

    async def note_schema_change(self, name: str) -> None:
        """Bump the client's ``metadata.schema_version`` so every instance re-introspects it.

        Best effort: the DDL has already committed; if the catalog is briefly unreachable the
        other instances still refresh on their next cache miss.
        """

        def bump(conn: psycopg.Connection) -> None:
            conn.execute(
                """UPDATE athena.athena_clients
                      SET metadata = metadata || jsonb_build_object('schema_version',
                              coalesce((metadata->>'schema_version')::bigint, 0) + 1)
                    WHERE client_name = %s""",
                (name,),
            )

        try:
            await self._run(bump)
        except ApiError:
            log.warning("could not record the schema change of client %s in the catalog", name)
            return
        await self.sync()

    def _note_schema_versions(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            name = row["client_name"]
            version = (row.get("metadata") or {}).get("schema_version")
            if name in self._schema_versions and self._schema_versions[name] != version:
                self.rt.introspection.invalidate(name)
            self._schema_versions[name] = version

    async def sync(self) -> None:
        """Re-read the rows and make the registry match them (only changed clients move)."""
        rows = await self.rows()
        async with self._lock:
            self._note_schema_versions(rows)
            wanted = desired_clients(self.baseline, rows)
            for name, entry in wanted.items():
                current = self.rt.clients.get(name)
                if current is not None and current.kind != "postgres":
                    continue  # another capability's client (e.g. custom_supabase)
                if current is None or _state(current) != _state(entry):
                    try:
                        await self.rt.replace_client(entry)
                    except Exception:
                        # A row edited by hand into something libpq cannot use must not stop
                        # every other client's changes from being applied.
                        log.warning("client %s cannot be applied; skipped", name, exc_info=True)
                        continue
                    self.rt.introspection.invalidate(name)
                    log.info("client %s updated from the catalog", name)
                self.managed.add(name)
            for name in sorted(self.managed - set(wanted)):
                current = self.rt.clients.get(name)
                if current is not None and current.kind == "postgres":
                    await self.rt.drop_client(name)
                    self.rt.introspection.invalidate(name)
                    log.info("client %s removed (deleted in the catalog)", name)
                self.managed.discard(name)

    async def run_sync_loop(self) -> None:
        """Background task: poll the catalog every ``catalog_poll_seconds``."""
        interval = max(0.2, float(self.rt.settings.catalog_poll_seconds))
        while True:
            await trio.sleep(interval)
            try:
                await self.sync()
                self.last_sync_error = None
            except ApiError as exc:  # catalog briefly unreachable: keep serving, retry
                if self.last_sync_error != exc.code:
                    log.warning("client catalog sync failed: %s", exc.message)
                self.last_sync_error = exc.code


class _Now:
    """Marker: set the column to ``now()`` in SQL."""


_NOW = _Now()


def _optional_text(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise ApiError("invalid_request", f"{key} must be a string or null")
    return value


def _optional_bool(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise ApiError("invalid_request", f"{key} must be a boolean")
    return value


async def attach(rt: Runtime, configured: dict[str, ClientEntry]) -> ClientCatalog:
    """Start-up (``Runtime._start_capabilities``): record the ``configured`` clients in the
    catalog, load every client (the same ``sync`` a reload runs), then poll on every instance.

    A catalog that cannot be read here stops the start-up: serving without knowing the
    clients would answer ``unknown_client`` for every database the API added.
    """
    catalog = ClientCatalog(rt, configured)
    await rt.catalog.run(lambda conn: _register_configured(conn, configured))
    await catalog.sync()
    rt.background.append(BackgroundTask("client_catalog_sync", catalog.run_sync_loop))
    return catalog
