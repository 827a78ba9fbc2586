"""API keys, rights and enforcement settings in the catalog: the behaviour behind
``/admin/api-key*`` and ``athena keys``.

Every operation is a synchronous function of a catalog connection, so that the HTTP routes (in a
worker thread, through ``Database.run``) and the operator CLI (on its own connection) share one
implementation. Records are built as JSON by PostgreSQL (``json_build_object``), so timestamps
come out in ISO 8601 exactly as the catalog holds them.

Each change also sends ``NOTIFY athena_auth_changed`` in its transaction: every gateway process
listening on the catalog (``attach`` below) drops its cached auth decisions when the change
commits, so a revoke made on one instance — or with the CLI — applies on the next request
everywhere, not only after the cache TTL.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Collection, Iterable
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
import trio
from psycopg import sql
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from athena.auth.addresses import parse_cidrs
from athena.auth.keys import generate_key
from athena.db.database import DatabaseUnavailable
from athena.db.errors import api_error_from_db
from athena.errors import ApiError
from athena.supervisor import BackgroundTask

if TYPE_CHECKING:
    from athena.runtime import Runtime

log = logging.getLogger("athena.api_keys")
T = TypeVar("T")

NOTIFY_CHANNEL = "athena_auth_changed"
_NAME_MAX = 200

# -- request models ------------------------------------------------------------------------


class _Body(BaseModel):
    # Unknown fields are ignored: clients of other Athena versions send extras.
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        # PostgreSQL text cannot hold NUL; refuse it here as bad input instead of failing later.
        items = value if isinstance(value, list) else [value]
        if any(isinstance(item, str) and "\x00" in item for item in items):
            raise ValueError("may not contain NUL characters")
        return value


def _optional_text(value: Any) -> Any:
    """``""`` means "none" for optional text fields (forms and CLIs send empty strings)."""
    return None if value == "" else value


def _utc(value: datetime | None) -> datetime | None:
    """A timestamp without an offset is taken as UTC, never as the server's local time."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _rights_list(value: Any) -> Any:
    """Rights as a list of names; a comma string is accepted too. Duplicates collapse."""
    if isinstance(value, str):
        value = [part for part in value.split(",")]
    if isinstance(value, list):
        seen: dict[str, None] = {}
        for item in value:
            if not isinstance(item, str):
                return value  # let pydantic report the bad item
            name = item.strip()
            if name:
                seen[name] = None
        return list(seen)
    return value


def _cidr_list(value: Any) -> Any:
    """``ip_allowlist`` / ``ip_denylist``: CIDRs (list or comma string), normalised."""
    return parse_cidrs(value)


class KeyCreate(_Body):
    name: str = Field(min_length=1, max_length=_NAME_MAX)
    description: str | None = None
    client_name: str | None = Field(default=None, max_length=_NAME_MAX)
    expires_at: datetime | None = None
    rights: list[str] = Field(default_factory=list)
    # Optional: lets an operator recreate a key with a known public id (409 if taken).
    public_id: str | None = Field(default=None, pattern=r"^[0-9a-f]{16}$")
    # Empty: no list. With an allow list, only those networks may use the key.
    ip_allowlist: list[str] = Field(default_factory=list)
    ip_denylist: list[str] = Field(default_factory=list)

    _blank_none = field_validator("description", "client_name", "public_id", mode="before")(
        _optional_text
    )
    _cidrs = field_validator("ip_allowlist", "ip_denylist", mode="before")(_cidr_list)
    _rights = field_validator("rights", mode="before")(_rights_list)
    _expiry = field_validator("expires_at", mode="after")(_utc)


class KeyUpdate(_Body):
    name: str = Field(default="", min_length=1, max_length=_NAME_MAX)
    description: str | None = None
    client_name: str | None = Field(default=None, max_length=_NAME_MAX)
    expires_at: datetime | None = None
    is_active: bool = True
    rights: list[str] = Field(default_factory=list)
    ip_allowlist: list[str] = Field(default_factory=list)
    ip_denylist: list[str] = Field(default_factory=list)

    _blank_none = field_validator("description", "client_name", mode="before")(_optional_text)
    _cidrs = field_validator("ip_allowlist", "ip_denylist", mode="before")(_cidr_list)
    _rights = field_validator("rights", mode="before")(_rights_list)
    _expiry = field_validator("expires_at", mode="after")(_utc)

    @field_validator("name", "is_active", "rights", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("may not be null")
        return value


class RightCreate(_Body):
    name: str = Field(min_length=1, max_length=_NAME_MAX, pattern=r"^\S+$")
    description: str | None = None


class RightUpdate(_Body):
    name: str = Field(default="", min_length=1, max_length=_NAME_MAX, pattern=r"^\S+$")
    description: str | None = None

    @field_validator("name", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("may not be null")
        return value


class EnforcementBody(_Body):
    enforce_api_keys: bool


class GlobalConfigBody(_Body):
    """``PUT /admin/api-key-config``: the flag, the global IP deny list, or both."""

    enforce_api_keys: bool | None = None
    ip_denylist: list[str] | None = None

    _cidrs = field_validator("ip_denylist", mode="before")(
        lambda value: None if value is None else parse_cidrs(value)
    )

    @model_validator(mode="after")
    def _something(self) -> GlobalConfigBody:
        if self.enforce_api_keys is None and self.ip_denylist is None:
            raise ValueError("send enforce_api_keys, ip_denylist or both")
        return self


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], body: dict[str, Any]) -> M:
    """Validate ``body``; 400 ``validation_error`` naming each bad field (never its value)."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        problems = [
            {"field": ".".join(str(p) for p in err["loc"]) or "body", "problem": err["msg"]}
            for err in exc.errors(include_url=False, include_input=False)
        ]
        summary = "; ".join(f"{p['field']}: {p['problem']}" for p in problems)
        raise ApiError(
            "validation_error", f"invalid request body ({summary})", data={"errors": problems}
        ) from None


def parse_client_name(text: str) -> str:
    """A client name from a path: non-empty, bounded, no NUL; 400 ``validation_error``."""
    name = text.strip()
    if not name or len(name) > _NAME_MAX or "\x00" in name:
        raise ApiError(
            "validation_error",
            f"client_name must be 1 to {_NAME_MAX} characters without NUL",
            data={"errors": [{"field": "client_name", "problem": "invalid client name"}]},
        )
    return name


def parse_uuid(text: str, what: str = "id") -> uuid.UUID:
    """A path id as a UUID; 400 ``invalid_uuid`` otherwise."""
    try:
        return uuid.UUID(text)
    except ValueError:
        raise ApiError(
            "invalid_uuid", f"'{what}' must be a UUID", data={"field": what, "value": text[:100]}
        ) from None


# -- records -------------------------------------------------------------------------------

_KEY_RECORD = sql.SQL("""json_build_object(
    'id', k.id, 'public_id', k.public_id, 'name', k.name, 'description', k.description,
    'client_name', k.client_name, 'expires_at', k.expires_at, 'is_active', k.is_active,
    'last_used_at', k.last_used_at, 'created_at', k.created_at, 'updated_at', k.updated_at,
    'ip_allowlist', k.ip_allowlist::text[], 'ip_denylist', k.ip_denylist::text[],
    'rights', coalesce((SELECT json_agg(r.name ORDER BY r.name)
                          FROM athena.api_key_right_grants g
                          JOIN athena.api_key_rights r ON r.id = g.right_id
                         WHERE g.api_key_id = k.id), '[]'::json))""")

_RIGHT_RECORD = sql.SQL("""json_build_object(
    'id', r.id, 'name', r.name, 'description', r.description,
    'created_at', r.created_at, 'updated_at', r.updated_at)""")

_CLIENT_RECORD = sql.SQL("""json_build_object(
    'client_name', c.client_name, 'enforce_api_keys', c.enforce_api_keys,
    'created_at', c.created_at, 'updated_at', c.updated_at)""")


def _notify(conn: psycopg.Connection) -> None:
    conn.execute(sql.SQL("NOTIFY {}").format(sql.Identifier(NOTIFY_CHANNEL)))


def _key_record(conn: psycopg.Connection, key_id: uuid.UUID | str) -> dict[str, Any]:
    row = conn.execute(
        sql.SQL("SELECT {} FROM athena.api_keys k WHERE k.id = %s").format(_KEY_RECORD), (key_id,)
    ).fetchone()
    if row is None:
        raise ApiError("api_key_not_found", "no API key has this id", data={"id": str(key_id)})
    return row[0]  # type: ignore[no-any-return]


def _right_ids(conn: psycopg.Connection, names: Iterable[str]) -> dict[str, str]:
    """Name → id of each named right; 400 ``unknown_right`` listing those that do not exist."""
    names = list(names)
    if not names:
        return {}
    rows = conn.execute(
        "SELECT name, id FROM athena.api_key_rights WHERE name = ANY(%s)", (names,)
    ).fetchall()
    found = {name: right_id for name, right_id in rows}
    missing = [name for name in names if name not in found]
    if missing:
        raise ApiError(
            "unknown_right",
            f"unknown right(s): {', '.join(missing)}; define them with POST /admin/api-key-rights",
            data={"unknown_rights": missing},
        )
    return found


def _grant(conn: psycopg.Connection, key_id: Any, right_ids: Iterable[Any]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO athena.api_key_right_grants (api_key_id, right_id) VALUES (%s, %s)"
            " ON CONFLICT DO NOTHING",
            [(key_id, right_id) for right_id in right_ids],
        )


def _check_client(conn: psycopg.Connection, name: str | None, known: Collection[str]) -> None:
    """400 ``unknown_client`` for a name that is neither served here nor in the catalog.

    A typo in a binding or override would otherwise fail silently: the key would never work,
    or the override would protect nothing.
    """
    if name is None or name in known:
        return
    row = conn.execute(
        "SELECT 1 FROM athena.athena_clients WHERE client_name = %s AND deleted_at IS NULL",
        (name,),
    ).fetchone()
    if row is None:
        raise ApiError("unknown_client", f"unknown client '{name}'", data={"client": name})


# -- API keys ------------------------------------------------------------------------------


def list_keys(
    conn: psycopg.Connection, *, limit: int | None = None, offset: int = 0
) -> list[dict[str, Any]]:
    rows = conn.execute(
        sql.SQL(
            "SELECT {} FROM athena.api_keys k ORDER BY k.created_at, k.id LIMIT %s OFFSET %s"
        ).format(_KEY_RECORD),
        (limit, offset),
    ).fetchall()
    return [row[0] for row in rows]


def create_key(
    conn: psycopg.Connection, req: KeyCreate, *, known_clients: Collection[str] = ()
) -> tuple[str, dict[str, Any]]:
    """Insert a key and its grants; return ``(full key, record)``. The secret is not stored."""
    with conn.transaction():
        _check_client(conn, req.client_name, known_clients)
        right_ids = _right_ids(conn, req.rights)
        # A random 64-bit public id collides practically never; retry anyway rather than 409.
        for _attempt in range(3):
            new = generate_key(req.public_id)
            row = conn.execute(
                """INSERT INTO athena.api_keys
                       (public_id, name, description, client_name, key_salt, key_hash, expires_at,
                        ip_allowlist, ip_denylist)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s::cidr[], %s::cidr[])
                   ON CONFLICT (public_id) DO NOTHING RETURNING id""",
                (
                    new.public_id,
                    req.name,
                    req.description,
                    req.client_name,
                    new.salt,
                    new.key_hash,
                    req.expires_at,
                    req.ip_allowlist,
                    req.ip_denylist,
                ),
            ).fetchone()
            if row is not None or req.public_id is not None:
                break
        if row is None:
            raise ApiError(
                "api_key_exists",
                "an API key with this public_id already exists",
                data={"public_id": new.public_id},
            )
        _grant(conn, row[0], right_ids.values())
        _notify(conn)
        return new.full, _key_record(conn, row[0])


_KEY_COLUMNS = (
    "name", "description", "client_name", "expires_at", "is_active", "ip_allowlist", "ip_denylist"
)  # fmt: skip
_CIDR_COLUMNS = frozenset({"ip_allowlist", "ip_denylist"})


def update_key(
    conn: psycopg.Connection,
    key_id: uuid.UUID,
    req: KeyUpdate,
    *,
    known_clients: Collection[str] = (),
) -> dict[str, Any]:
    """Apply the fields present in the request; ``rights`` replaces the granted set."""
    given = req.model_fields_set
    with conn.transaction():
        exists = conn.execute(
            "SELECT 1 FROM athena.api_keys WHERE id = %s FOR UPDATE", (key_id,)
        ).fetchone()
        if exists is None:
            raise ApiError("api_key_not_found", "no API key has this id", data={"id": str(key_id)})
        if "client_name" in given:
            _check_client(conn, req.client_name, known_clients)
        right_ids = _right_ids(conn, req.rights) if "rights" in given else None
        columns = [c for c in _KEY_COLUMNS if c in given]
        assignments = [
            sql.SQL("{} = %s::cidr[]" if c in _CIDR_COLUMNS else "{} = %s").format(
                sql.Identifier(c)
            )
            for c in columns
        ]
        assignments.append(sql.SQL("updated_at = now()"))
        conn.execute(
            sql.SQL("UPDATE athena.api_keys SET {} WHERE id = %s").format(
                sql.SQL(", ").join(assignments)
            ),
            [*(getattr(req, c) for c in columns), key_id],
        )
        if right_ids is not None:
            conn.execute("DELETE FROM athena.api_key_right_grants WHERE api_key_id = %s", (key_id,))
            _grant(conn, key_id, right_ids.values())
        _notify(conn)
        return _key_record(conn, key_id)


def delete_key(conn: psycopg.Connection, key_id: uuid.UUID) -> str:
    with conn.transaction():
        row = conn.execute(
            "DELETE FROM athena.api_keys WHERE id = %s RETURNING id::text", (key_id,)
        ).fetchone()
        if row is None:
            raise ApiError("api_key_not_found", "no API key has this id", data={"id": str(key_id)})
        _notify(conn)
        return row[0]  # type: ignore[no-any-return]


def revoke_key(conn: psycopg.Connection, key: str) -> dict[str, Any]:
    """Deactivate a key given its id or its public id (the CLI's ``keys revoke``)."""
    try:
        key_uuid: uuid.UUID | None = uuid.UUID(key)
    except ValueError:
        key_uuid = None
    with conn.transaction():
        row = conn.execute(
            """UPDATE athena.api_keys SET is_active = false, updated_at = now()
                WHERE id = %s OR public_id = %s RETURNING id""",
            (key_uuid, key),
        ).fetchone()
        if row is None:
            raise ApiError("api_key_not_found", f"no API key has the id or public id '{key}'")
        _notify(conn)
        return _key_record(conn, row[0])


# -- rights --------------------------------------------------------------------------------


def list_rights(conn: psycopg.Connection) -> list[dict[str, Any]]:
    rows = conn.execute(
        sql.SQL("SELECT {} FROM athena.api_key_rights r ORDER BY r.name").format(_RIGHT_RECORD)
    ).fetchall()
    return [row[0] for row in rows]


def create_right(conn: psycopg.Connection, req: RightCreate) -> dict[str, Any]:
    row = conn.execute(
        sql.SQL(
            """INSERT INTO athena.api_key_rights AS r (name, description) VALUES (%s, %s)
               ON CONFLICT (name) DO NOTHING RETURNING {}"""
        ).format(_RIGHT_RECORD),
        (req.name, req.description),
    ).fetchone()
    if row is not None:
        _notify(conn)
    if row is None:
        raise ApiError(
            "right_exists", f"the right '{req.name}' already exists", data={"name": req.name}
        )
    return row[0]  # type: ignore[no-any-return]


def update_right(conn: psycopg.Connection, right_id: uuid.UUID, req: RightUpdate) -> dict[str, Any]:
    """Rename or re-describe a right; keys holding it keep it under its new name."""
    given = req.model_fields_set
    columns = [c for c in ("name", "description") if c in given]
    assignments = [sql.SQL("{} = %s").format(sql.Identifier(c)) for c in columns]
    assignments.append(sql.SQL("updated_at = now()"))
    query = sql.SQL("UPDATE athena.api_key_rights AS r SET {} WHERE r.id = %s RETURNING {}").format(
        sql.SQL(", ").join(assignments), _RIGHT_RECORD
    )
    try:
        with conn.transaction():
            row = conn.execute(query, [*(getattr(req, c) for c in columns), right_id]).fetchone()
            if row is None:
                raise ApiError(
                    "right_not_found", "no right has this id", data={"id": str(right_id)}
                )
            _notify(conn)
    except psycopg.errors.UniqueViolation:
        raise ApiError(
            "right_exists", f"the right '{req.name}' already exists", data={"name": req.name}
        ) from None
    return row[0]  # type: ignore[no-any-return]


def delete_right(conn: psycopg.Connection, right_id: uuid.UUID) -> str:
    """Delete a right and every grant of it (built-in rights are re-seeded at the next start)."""
    with conn.transaction():
        row = conn.execute(
            "DELETE FROM athena.api_key_rights WHERE id = %s RETURNING id::text", (right_id,)
        ).fetchone()
        if row is None:
            raise ApiError("right_not_found", "no right has this id", data={"id": str(right_id)})
        _notify(conn)
        return row[0]  # type: ignore[no-any-return]


# -- enforcement ---------------------------------------------------------------------------


def list_client_configs(conn: psycopg.Connection) -> list[dict[str, Any]]:
    rows = conn.execute(
        sql.SQL("SELECT {} FROM athena.api_key_client_config c ORDER BY c.client_name").format(
            _CLIENT_RECORD
        )
    ).fetchall()
    return [row[0] for row in rows]


def get_config(conn: psycopg.Connection, *, default_enforce: bool) -> dict[str, Any]:
    row = conn.execute(
        "SELECT json_build_object('enforce_api_keys', enforce_api_keys, 'updated_at', updated_at,"
        " 'ip_denylist', ip_denylist::text[]) FROM athena.api_key_config WHERE singleton"
    ).fetchone()
    current = (
        row[0]
        if row
        else {"enforce_api_keys": default_enforce, "updated_at": None, "ip_denylist": []}
    )
    return {"global": current, "clients": list_client_configs(conn)}


def set_global_config(
    conn: psycopg.Connection,
    enforce: bool | None,
    ip_denylist: list[str] | None = None,
    *,
    default_enforce: bool,
) -> dict[str, Any]:
    """Set the global enforcement flag and/or the global IP deny list (``None``: unchanged)."""
    with conn.transaction():
        conn.execute(
            """INSERT INTO athena.api_key_config AS c (singleton, enforce_api_keys, ip_denylist)
               VALUES (true, coalesce(%(enforce)s, %(default)s),
                       coalesce(%(deny)s::cidr[], '{}'))
               ON CONFLICT (singleton)
               DO UPDATE SET enforce_api_keys = coalesce(%(enforce)s, c.enforce_api_keys),
                             ip_denylist = coalesce(%(deny)s::cidr[], c.ip_denylist),
                             updated_at = now()""",
            {"enforce": enforce, "default": default_enforce, "deny": ip_denylist},
        )
        _notify(conn)
    return get_config(conn, default_enforce=default_enforce)


def set_client_enforcement(
    conn: psycopg.Connection, client: str, enforce: bool, *, known_clients: Collection[str] = ()
) -> dict[str, Any]:
    with conn.transaction():
        _check_client(conn, client, known_clients)
        row = conn.execute(
            sql.SQL(
                """INSERT INTO athena.api_key_client_config AS c (client_name, enforce_api_keys)
                   VALUES (%s, %s)
                   ON CONFLICT (client_name)
                   DO UPDATE SET enforce_api_keys = EXCLUDED.enforce_api_keys, updated_at = now()
                   RETURNING {}"""
            ).format(_CLIENT_RECORD),
            (client, enforce),
        ).fetchone()
        _notify(conn)
    return row[0]  # type: ignore[no-any-return,index]


def delete_client_enforcement(conn: psycopg.Connection, client: str) -> str:
    with conn.transaction():
        row = conn.execute(
            "DELETE FROM athena.api_key_client_config WHERE client_name = %s RETURNING client_name",
            (client,),
        ).fetchone()
        if row is None:
            raise ApiError(
                "client_config_not_found",
                f"client '{client}' has no enforcement override",
                data={"client_name": client},
            )
        _notify(conn)
        return row[0]  # type: ignore[no-any-return]


# -- running against the gateway's catalog -------------------------------------------------


async def on_catalog(rt: Runtime, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn(conn, *args, **kwargs)`` on the catalog in a worker thread.

    Cached auth decisions of this process are dropped afterwards whatever happened (a failure
    may come after the commit), so a change applies on the very next request.
    """
    try:
        return await rt.catalog.run(lambda conn: fn(conn, *args, **kwargs))
    except DatabaseUnavailable:
        raise ApiError(
            "catalog_unavailable", "the catalog database is unavailable; try again shortly"
        ) from None
    except psycopg.Error as exc:
        # Validation runs first, so this is rare (e.g. a value out of the column's range); it
        # is still the caller's input or the catalog's state, never a 500 with a traceback.
        log.warning("catalog statement failed: %s", type(exc).__name__)
        raise api_error_from_db(exc) from None
    finally:
        rt.auth_store.invalidate()


def known_clients(rt: Runtime) -> list[str]:
    return rt.clients.names()


# -- cross-process invalidation ------------------------------------------------------------


async def listen_for_changes(rt: Runtime) -> None:
    """Background task: drop cached auth decisions when any process changes keys or settings.

    One dedicated catalog connection waits for ``NOTIFY athena_auth_changed`` in a worker
    thread, in slices of one second so that cancellation (shutdown) is noticed promptly. If the
    connection breaks, the supervisor restarts this task; meanwhile the cache TTL still bounds
    staleness.
    """
    conn = await trio.to_thread.run_sync(
        partial(psycopg.connect, rt.catalog_uri, autocommit=True, connect_timeout=3)
    )
    try:
        await trio.to_thread.run_sync(
            conn.execute, sql.SQL("LISTEN {}").format(sql.Identifier(NOTIFY_CHANNEL))
        )
        rt.auth_store.invalidate()  # anything missed while not listening
        while True:
            got = await trio.to_thread.run_sync(_wait_notifies, conn)
            if got:
                rt.auth_store.invalidate()
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(conn.close)


def _wait_notifies(conn: psycopg.Connection) -> int:
    return sum(1 for _ in conn.notifies(timeout=1.0))


def attach(rt: Runtime) -> None:
    """Start-up (``Runtime._start_capabilities``): listen for key changes on the catalog."""
    rt.background.append(BackgroundTask("api_key_invalidation", partial(listen_for_changes, rt)))
