"""Which database a call is for: ``X-Athena-Client`` → a live ``ClientEntry``.

The client's name only ever selects a pool; it never reaches SQL text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from athena.context import CallContext
from athena.db.clients import ClientEntry
from athena.errors import ApiError
from athena.services.direct_uri import direct_entry

if TYPE_CHECKING:
    from athena.runtime import Runtime


def client_name_of(ctx: CallContext) -> str:
    """The requested client name, or 400 ``missing_client_header``."""
    name = ctx.client_header
    if not name:
        raise ApiError(
            "missing_client_header",
            "the X-Athena-Client header is required",
            data={"details": {"missing_header": "X-Athena-Client"}},
        )
    return name


def resolve_client(rt: Runtime, ctx: CallContext, *, for_data: bool = True) -> ClientEntry:
    """The entry for the call's client, checked usable for data (not frozen, active).

    ``for_data=False`` (admin and schema reads) lets frozen clients through. A call admitted
    with ``x-pg-uri`` gets the entry of that database (``services/direct_uri.py``).
    """
    direct = direct_entry(ctx)
    if direct is not None:
        ctx.client_name = direct.name
        return direct
    name = client_name_of(ctx)
    entry = rt.clients.get(name)
    if entry is None:
        raise ApiError("unknown_client", f"unknown client '{name}'", data={"client": name})
    ctx.client_name = entry.name
    if for_data:
        if entry.is_frozen:
            raise ApiError("client_frozen", f"client '{name}' is frozen", data={"client": name})
        if not entry.is_active:
            raise ApiError("client_inactive", f"client '{name}' is inactive", data={"client": name})
    return entry
