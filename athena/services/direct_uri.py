"""``x-pg-uri``: a call against a caller-named PostgreSQL database, when the operator allows it.

A caller-chosen database is an SSRF-and-credential risk by design, so the header is refused
(400 ``direct_uri_not_allowed``) unless ALL of these hold:

- ``ATHENA_ALLOW_DIRECT_URI=true`` on this gateway;
- the key holds ``gateway.direct_uri`` (403 ``insufficient_rights``);
- the URI is one ``postgres(ql)://`` host with only plain connection options (no socket
  directory, no ``hostaddr``, no ``options``/``service``/file paths: 400 ``invalid_direct_uri``);
- the host passes the outbound guard (``outbound.py``: 400 ``outbound_url_refused``); the pool
  then connects to the *checked address* (libpq ``hostaddr``) with the original name as
  ``host`` (TLS verification), so DNS cannot swap the address after the check.

The call then runs on a pool of its own for that URI, from a small bounded cache (LRU,
``ATHENA_DIRECT_URI_MAX_POOLS``; pools idle longer than ``ATHENA_DIRECT_URI_IDLE_S`` are closed
on the next direct call). The URI carries a password: it is never logged, echoed or used as a
label — the entry's name is ``direct-`` plus a keyed hash only this process can compute.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

import psycopg
import trio
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from athena.auth.guard import authorize
from athena.context import CallContext
from athena.db.clients import ClientEntry, close_entry
from athena.db.database import Database
from athena.errors import ApiError

if TYPE_CHECKING:
    from athena.runtime import Runtime

HEADER = "x-pg-uri"
RIGHT = "gateway.direct_uri"
CTX_KEY = "direct_entry"
# What a caller may set; everything else (options, service, passfile, ssl* file paths,
# hostaddr, target_session_attrs …) could read local files or escape the gateway's settings.
_ALLOWED_KEYS = {"host", "port", "dbname", "user", "password", "sslmode"}
_SSLMODES = {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}


def not_allowed() -> ApiError:
    return ApiError(
        "direct_uri_not_allowed",
        "x-pg-uri (a direct PostgreSQL URI per call) is not served here; name a client "
        "registered in the catalog with X-Athena-Client",
    )


def _invalid(reason: str) -> ApiError:
    # the reason names a rule, never a part of the URI
    return ApiError("invalid_direct_uri", f"x-pg-uri is not usable: {reason}")


def parse_uri(raw: str) -> dict[str, str]:
    """The URI's connection options, checked (400 ``invalid_direct_uri``)."""
    text = raw.strip()
    if not text.startswith(("postgresql://", "postgres://")):
        raise _invalid("it must be a postgresql:// URI")
    try:
        params = conninfo_to_dict(text)
    except psycopg.ProgrammingError:
        raise _invalid("it is not a valid connection URI") from None
    extra = sorted(set(params) - _ALLOWED_KEYS)
    if extra:
        raise _invalid(f"the option '{extra[0]}' is not accepted")
    host = str(params.get("host") or "")
    if not host or "," in host or host.startswith("/") or host.startswith("@"):
        raise _invalid("it must name exactly one network host")
    port_text = str(params.get("port") or "5432")
    # isascii: str.isdigit() is true of "²", which int() refuses
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise _invalid("the port must be one number")
    if not params.get("dbname") or not params.get("user"):
        raise _invalid("it must name a database and a user")
    if "sslmode" in params and params["sslmode"] not in _SSLMODES:
        raise _invalid("sslmode is not one of libpq's modes")
    return {k: str(v) for k, v in params.items()} | {"port": port_text}


class DirectPools:
    """URI → its ClientEntry (pools), bounded and closed when idle."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._secret = secrets.token_bytes(32)
        self._entries: OrderedDict[str, tuple[ClientEntry, float]] = OrderedDict()
        self._lock = trio.Lock()

    def name_of(self, conninfo: str) -> str:
        digest = hmac.new(self._secret, conninfo.encode(), hashlib.sha256).hexdigest()
        return f"direct-{digest[:16]}"

    async def entry(self, raw: str) -> ClientEntry:
        params = parse_uri(raw)
        address = await self.rt.outbound_policy.check_host(params["host"], int(params["port"]))
        # connect to the checked address; ``host`` stays the name for TLS verification
        conninfo = make_conninfo("", **params, hostaddr=str(address))
        async with self._lock:
            await self._close(self._expired())
            found = self._entries.pop(conninfo, None)
            if found is None:
                found = (self._open(self.name_of(conninfo), conninfo), 0.0)
            self._entries[conninfo] = (found[0], time.monotonic())  # most recently used last
            evicted = []
            while len(self._entries) > self.rt.settings.direct_uri_max_pools:
                evicted.append(self._entries.popitem(last=False)[1][0])
            await self._close(evicted)
            return found[0]

    def _open(self, name: str, conninfo: str) -> ClientEntry:
        reg = self.rt.clients
        entry = ClientEntry(name=name, uri=None, source="direct")
        entry.db = Database(
            name, reg.pool_factory(name, conninfo), reg.limiter, reg.pool_timeout_s, reg.deadline_s
        )
        if reg.raw_pool_factory is not None:
            entry.raw_db = Database(
                name, reg.raw_pool_factory(name, conninfo), reg.limiter, reg.pool_timeout_s,
                reg.deadline_s, single_use=True,
            )  # fmt: skip
        return entry

    def _expired(self) -> list[ClientEntry]:
        cutoff = time.monotonic() - self.rt.settings.direct_uri_idle_s
        stale = [key for key, (_, used) in self._entries.items() if used < cutoff]
        return [self._entries.pop(key)[0] for key in stale]

    async def _close(self, entries: list[ClientEntry]) -> None:
        for entry in entries:
            self.rt.introspection.invalidate(entry.name)
            await trio.to_thread.run_sync(close_entry, entry, limiter=self.rt.limiter)

    def close_all(self) -> None:
        """Blocking (shutdown, from a thread)."""
        while self._entries:
            close_entry(self._entries.popitem()[1][0])


async def admit(rt: Runtime, ctx: CallContext) -> None:
    """Called for every HTTP call carrying ``x-pg-uri``: refuse it, or attach its entry to the
    call (``resolve_client`` then answers that entry)."""
    if not rt.settings.allow_direct_uri:
        raise not_allowed()
    principal = await authorize(rt, ctx, ctx.client_header, RIGHT)
    if not principal.can(RIGHT):
        # with API keys not enforced authorize lets any caller through; this right is always
        # required: a caller-chosen database is never an anonymous feature
        raise ApiError(
            "insufficient_rights",
            f"the API key lacks the right '{RIGHT}'",
            data={"required_right": RIGHT},
        )
    ctx.extra[CTX_KEY] = await rt.direct_pools.entry(ctx.headers[HEADER])


def direct_entry(ctx: CallContext) -> ClientEntry | None:
    """The call's direct entry; a header that was never admitted is refused, not ignored."""
    entry = ctx.extra.get(CTX_KEY)
    if entry is None and HEADER in ctx.headers:
        raise not_allowed()
    return entry  # type: ignore[no-any-return]
