"""Service prefixes: the paths SDK 5 derives from one root URL, as aliases of our routes.

``@xylex-group/athena`` 5.x turns ``createClient({url})`` into one base URL per service:
data calls go to ``<url>/db/…`` (``/db/gateway/fetch``, ``/db/rest/v1/…``, ``/db/health``),
storage and backups to ``<url>/storage/…`` (``/storage/admin/backups``), auth to ``<url>/auth…``.
``canonical_path`` maps those onto the one implementation behind the unprefixed path, so both
SDK generations (0.2.1 calls the root) are served by the same routes, rights and request log.

What SDK 5 calls there that the gateway does not have (storage catalogs and files, auth) is
answered 404 ``not_supported`` naming the feature (``athena.routes.unsupported``), never a bare
"no route" 404.

``ServicePrefixes`` applies the mapping to every ASGI request in front of Quart; the hot lane
applies ``canonical_path`` in its own route match, so the plain-HTTP lane serves ``/db/…``
exactly as it serves the root paths.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from athena.errors import ApiError

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]

# The path families /db/* serves: every data route (and the health/root the SDK's
# compatibility check asks for under the db base URL).
DATA_FAMILIES = ("gateway", "rest", "rpc", "query", "data", "health", "ping", "wss", "schema")
# /storage/* serves the backup routes; /storage/admin/backups… → /admin/backups….
STORAGE_SERVED = "/storage/admin/backups"
# What SDK 5's storage and auth modules call that Athena does not serve, by path family.
NOT_SUPPORTED = {
    "/storage/": "storage catalogs, files and connections",
    "/auth": "authentication (Athena Auth)",
}


def canonical_path(path: str) -> str:
    """The unprefixed path ``path`` is an alias of (``path`` itself when it is none)."""
    if path.startswith("/db"):
        rest = path[3:]
        if rest in ("", "/"):
            return "/"
        if rest.startswith("/"):
            family = rest[1:].split("/", 1)[0]
            if family in DATA_FAMILIES:
                return rest
        return path
    if path.startswith(STORAGE_SERVED) and path[len(STORAGE_SERVED) : len(STORAGE_SERVED) + 1] in (
        "",
        "/",
    ):
        return path[len("/storage") :]
    return path


def not_supported(feature: str) -> ApiError:
    return ApiError(
        "not_supported",
        f"Athena does not serve {feature}",
        data={"feature": feature},
    )


class ServicePrefixes:
    """ASGI wrapper: rewrites ``/db/…`` and ``/storage/admin/backups…`` to the routes they
    alias (``athena.routes.unsupported`` answers the rest of the SDK's service paths)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            path = scope["path"]
            canonical = canonical_path(path)
            if canonical != path:
                scope = {**scope, "path": canonical, "raw_path": canonical.encode("latin-1")}
        await self.app(scope, receive, send)
