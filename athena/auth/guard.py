"""The one place API keys are checked.

Every data, query, management and WebSocket path calls ``authorize(rt, ctx, client, right)``
and gets a ``Principal`` back, or an ``ApiError`` with the exact status of CONTRACT.md:

    parse → load by public_id → hash → IP lists → active → not expired → client binding → rights

The key's IP lists come first after the key is proven genuine: an address outside them learns
nothing more about the key (not even whether it is active), and a wrong secret still reads
``invalid_api_key`` so that public ids cannot be probed from anywhere. (The global deny list
is checked earlier still, before rate limits: ``athena.http.calls``.)

401 ``api_key_required`` / ``invalid_api_key`` / ``inactive_api_key`` / ``expired_api_key``;
403 ``ip_denied`` / ``ip_not_allowed`` (the key's IP lists);
403 ``api_key_client_mismatch`` / ``api_key_not_client_bound`` / ``insufficient_rights``;
503 ``auth_unavailable`` when the catalog cannot be read (fail closed, never a silent pass).

The admin key ``ATHENA_KEY_12`` is a master key here: every right, every client. Admin routes
call ``require_admin`` instead, which accepts nothing but that key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import psycopg

from athena.auth.addresses import address, listed
from athena.auth.keys import constant_time_equals, parse_key, verify_secret
from athena.auth.rights import has_right
from athena.auth.store import Enforcement, StoredKey
from athena.context import CallContext
from athena.db.database import DatabaseUnavailable, StatementDeadlineExceeded
from athena.errors import ApiError
from athena.observability.tracing import traced

if TYPE_CHECKING:
    from athena.auth.store import StoredKey
    from athena.runtime import Runtime

log = logging.getLogger("athena.auth")

KEY_HEADERS = ("apikey", "x-api-key", "x-athena-key")
ADMIN_KEY_HEADERS = ("x-athena-admin-key", *KEY_HEADERS)


@dataclass(frozen=True)
class Principal:
    """Who is calling. ``anonymous`` only when enforcement is off and no key was sent."""

    key_id: str | None = None
    public_id: str | None = None
    client_name: str | None = None
    rights: tuple[str, ...] = ()
    is_master: bool = False
    anonymous: bool = False

    def can(self, right: str) -> bool:
        return self.is_master or has_right(self.rights, right)


MASTER = Principal(public_id="admin", rights=("*",), is_master=True)
ANONYMOUS = Principal(anonymous=True)


def presented_keys(ctx: CallContext, *, admin: bool = False) -> list[str]:
    """Every credential the caller sent, in precedence order (``apikey`` first).

    Supabase-style clients send two at once (``apikey`` plus ``Authorization: Bearer``), so the
    guard looks at all of them rather than only the first.
    """
    found: list[str] = []
    for name in ADMIN_KEY_HEADERS if admin else KEY_HEADERS:
        value = ctx.header(name)
        if value:
            found.append(value)
    auth = ctx.header("authorization")
    if auth and auth[:7].lower() == "bearer ":
        token = auth[7:].strip()
        if token:
            found.append(token)
    # Never from the query string (?api_key=): a key in a URL lands in access logs. The call
    # gate refuses such URLs with 400 api_key_in_url before any route runs.
    return found


def presented_key(ctx: CallContext, *, admin: bool = False) -> str | None:
    """The key the caller sent: the first Athena-formatted one, else the first of any kind."""
    candidates = presented_keys(ctx, admin=admin)
    return next((c for c in candidates if parse_key(c) is not None), None) or (
        candidates[0] if candidates else None
    )


def check_key_addresses(stored: StoredKey, remote_addr: str | None) -> None:
    """403 when the caller's address is in the key's deny list or outside its allow list."""
    if not stored.ip_allowlist and not stored.ip_denylist:
        return
    addr = address(remote_addr)
    if listed(addr, stored.ip_denylist):
        raise ApiError("ip_denied", "this API key may not be used from this address")
    if stored.ip_allowlist and not listed(addr, stored.ip_allowlist):
        raise ApiError("ip_not_allowed", "this API key may not be used from this address")


def check_global_denylist(enforcement: Enforcement | None, remote_addr: str | None) -> None:
    """403 ``ip_denied`` when the caller's address is in the global deny list."""
    if enforcement is not None and enforcement.ip_denylist:
        if listed(address(remote_addr), enforcement.ip_denylist):
            raise ApiError("ip_denied", "requests from this address are refused")


def _is_admin_key(rt: Runtime, candidates: list[str]) -> bool:
    # Every candidate is compared, each in constant time, so timing says nothing about which.
    matches = [constant_time_equals(c, rt.admin_key) for c in candidates]
    return any(matches)


def require_admin(rt: Runtime, ctx: CallContext) -> Principal:
    """Admin routes: only the static ``ATHENA_KEY_12`` passes; anything else is 401."""
    candidates = presented_keys(ctx, admin=True)
    if not candidates:
        raise ApiError(
            "admin_key_required",
            "this route requires the admin key (ATHENA_KEY_12) in apikey, x-api-key, "
            "X-Athena-Key, X-Athena-Admin-Key or Authorization: Bearer",
        )
    if not _is_admin_key(rt, candidates):
        raise ApiError("invalid_admin_key", "the admin key is not valid")
    ctx.key_public_id = "admin"
    return MASTER


def require_static_key(rt: Runtime, ctx: CallContext, key: str | None, setting: str) -> None:
    """Routes an operator may close with a static key of their own (``ATHENA_METRICS_KEY``,
    ``ATHENA_REGISTRY_KEY``): with ``key`` unset anyone may call; set, the caller must send it
    (or the admin key) in a key header or ``Authorization: Bearer`` — Prometheus's
    ``authorization: {credentials: …}`` — else 401."""
    if not key:
        return
    candidates = presented_keys(ctx, admin=True)
    if not candidates:
        raise ApiError(
            "api_key_required",
            f"this route requires the key configured as {setting} "
            "(Authorization: Bearer, apikey or x-api-key)",
        )
    # each candidate against both keys, each in constant time
    if not any([constant_time_equals(c, k) for c in candidates for k in (key, rt.admin_key)]):
        raise ApiError("invalid_api_key", f"the key is not the one configured as {setting}")


async def _valid_key(rt: Runtime, ctx: CallContext, given: str) -> StoredKey:
    """parse → load by public_id → hash → IP lists (403) → active → not expired (401)."""
    parsed = parse_key(given)
    if parsed is None:
        raise ApiError("invalid_api_key", "the API key is not valid")
    public_id, secret = parsed
    stored = await rt.auth_store.key(public_id)
    if stored is None or not verify_secret(secret, stored.salt, stored.key_hash):
        raise ApiError("invalid_api_key", "the API key is not valid")
    ctx.key_public_id = stored.public_id
    check_key_addresses(stored, ctx.remote_addr)
    if not stored.is_active:
        raise ApiError("inactive_api_key", "the API key has been deactivated")
    if stored.expires_at is not None and stored.expires_at <= datetime.now(UTC):
        raise ApiError("expired_api_key", "the API key has expired")
    return stored


async def authenticate_early(rt: Runtime, ctx: CallContext) -> None:
    """The checks that need no request body: a key is present where enforcement wants one,
    and a presented key is valid, active and not expired. Run before a large body is read, so
    a caller without a valid key cannot make the gateway hold megabytes for it; the rights
    (which depend on the table the body names) are checked later by ``authorize`` as usual."""
    candidates = presented_keys(ctx)
    if candidates and _is_admin_key(rt, candidates):
        return
    given = presented_key(ctx)
    try:
        if given is None:
            if (await rt.auth_store.enforcement()).applies_to(ctx.header("x-athena-client")):
                raise ApiError(
                    "api_key_required",
                    "an API key is required (apikey, x-api-key or Authorization: Bearer)",
                )
            return
        await _valid_key(rt, ctx, given)
    except (DatabaseUnavailable, StatementDeadlineExceeded, psycopg.Error) as exc:
        log.warning("API key check failed, catalog unreadable: %s", type(exc).__name__)
        raise ApiError(
            "auth_unavailable", "API keys cannot be checked right now; try again shortly"
        ) from None


@traced("auth")
async def authorize(
    rt: Runtime,
    ctx: CallContext,
    client: str | None,
    right: str | None,
    *,
    require_bound_key: bool = False,
) -> Principal:
    """Check the caller may exercise ``right`` on ``client``.

    ``require_bound_key`` (management routes): a key bound to ``client`` holding ``right`` is
    required whatever the enforcement setting; the master key also passes.
    """
    direct = ctx.extra.get("direct_entry")
    if direct is not None and client == direct.name:
        # an x-pg-uri call: keys are bound to (and enforcement set for) the named client
        client = ctx.client_header
    candidates = presented_keys(ctx)
    if candidates and _is_admin_key(rt, candidates):
        ctx.key_public_id = "admin"
        return MASTER
    given = presented_key(ctx)

    try:
        if given is None:
            if require_bound_key:
                raise ApiError("api_key_required", "this route requires a client-bound API key")
            enforcement = await rt.auth_store.enforcement()
            if enforcement.applies_to(client):
                raise ApiError(
                    "api_key_required",
                    "an API key is required (apikey, x-api-key or Authorization: Bearer)",
                )
            return ANONYMOUS

        stored = await _valid_key(rt, ctx, given)
        if stored.client_name is not None and client is not None and stored.client_name != client:
            raise ApiError(
                "api_key_client_mismatch",
                f"the API key is bound to another client than '{client}'",
                data={"client": client},
            )
        rt.auth_store.mark_used(stored.id)
        principal = Principal(stored.id, stored.public_id, stored.client_name, stored.rights)

        if require_bound_key:
            if stored.client_name is None:
                raise ApiError(
                    "api_key_not_client_bound", "this route requires a key bound to the client"
                )
        elif not (await rt.auth_store.enforcement()).applies_to(client):
            return principal  # enforcement off: a valid key identifies, it does not restrict
        if right is not None and not principal.can(right):
            raise ApiError(
                "insufficient_rights",
                f"the API key lacks the right '{right}'",
                data={"required_right": right},
            )
        return principal
    except (DatabaseUnavailable, StatementDeadlineExceeded, psycopg.Error) as exc:
        # Fail closed: whatever stops us reading the catalog, the request does not pass.
        log.warning("API key check failed, catalog unreadable: %s", type(exc).__name__)
        raise ApiError(
            "auth_unavailable", "API keys cannot be checked right now; try again shortly"
        ) from None
