"""The one place API keys are checked.

Every data, query, management and WebSocket path calls ``authorize(rt, ctx, client, right)``
and gets a ``Principal`` back, or an ``ApiError`` with the exact status of CONTRACT.md:

    parse → load by public_id → hash → active → not expired → client binding → rights

401 ``api_key_required`` / ``invalid_api_key`` / ``inactive_api_key`` / ``expired_api_key``;
403 ``api_key_client_mismatch`` / ``api_key_not_client_bound`` / ``insufficient_rights``;
503 ``auth_unavailable`` when the catalog cannot be read (fail closed, never a silent pass).

The admin key ``ATHENA_KEY_12`` is a master key here: every right, every client.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from athena.auth.keys import constant_time_equals, parse_key, verify_secret
from athena.auth.rights import has_right
from athena.context import CallContext
from athena.db.pools import DatabaseUnavailable
from athena.errors import ApiError

if TYPE_CHECKING:
    from athena.runtime import Runtime

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


def presented_key(ctx: CallContext, *, admin: bool = False) -> str | None:
    """The key the caller sent, from the first header that carries one."""
    for name in ADMIN_KEY_HEADERS if admin else KEY_HEADERS:
        value = ctx.header(name)
        if value:
            return value
    auth = ctx.header("authorization")
    if auth and auth[:7].lower() == "bearer ":
        token = auth[7:].strip()
        if token:
            return token
    if admin:
        return ctx.query.get("api_key") or None
    return None


def require_admin(rt: Runtime, ctx: CallContext) -> Principal:
    """Admin routes: only the static ``ATHENA_KEY_12`` passes."""
    given = presented_key(ctx, admin=True)
    if not given:
        raise ApiError("admin_key_required", "this route requires the admin key (ATHENA_KEY_12)")
    if not constant_time_equals(given, rt.admin_key):
        raise ApiError("invalid_admin_key", "the admin key is not valid")
    ctx.key_public_id = "admin"
    return MASTER


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
    given = presented_key(ctx)
    if given is not None and constant_time_equals(given, rt.admin_key):
        ctx.key_public_id = "admin"
        return MASTER

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

        parsed = parse_key(given)
        if parsed is None:
            raise ApiError("invalid_api_key", "the API key is not valid")
        public_id, secret = parsed
        stored = await rt.auth_store.key(public_id)
        if stored is None or not verify_secret(secret, stored.salt, stored.key_hash):
            raise ApiError("invalid_api_key", "the API key is not valid")
        ctx.key_public_id = stored.public_id
        if not stored.is_active:
            raise ApiError("inactive_api_key", "the API key has been deactivated")
        if stored.expires_at is not None and stored.expires_at <= datetime.now(UTC):
            raise ApiError("expired_api_key", "the API key has expired")
        if stored.client_name is not None and client is not None and stored.client_name != client:
            raise ApiError(
                "api_key_client_mismatch",
                f"the API key is bound to another client than '{client}'",
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
    except DatabaseUnavailable:
        raise ApiError(
            "auth_unavailable", "API keys cannot be checked right now; try again shortly"
        ) from None
