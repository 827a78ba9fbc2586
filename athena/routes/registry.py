"""``/registry``, ``/registry/{api_registry_id}`` and ``/router/registry``: catalog registry
rows from a TTL cache; ``Cache-Control: no-cache`` reloads (see ``probes.registry``)."""

from __future__ import annotations

from quart import Blueprint, Response, request

from athena.auth.guard import require_static_key
from athena.db.database import DatabaseUnavailable
from athena.errors import ApiError
from athena.probes.registry import RegistrySnapshot
from athena.routes._http import ctx, raw_json_response, rt

blueprint = Blueprint("registry", __name__)


def _bypass() -> bool:
    directives = request.headers.get("cache-control", "").lower()
    return any(part.strip() in ("no-cache", "no-store") for part in directives.split(","))


async def _snapshot(kind: str) -> tuple[RegistrySnapshot, str]:
    """The registry and how this copy was produced: ``hit`` (cached) or ``miss`` (just read)."""
    runtime = rt()
    require_static_key(runtime, ctx(), runtime.settings.registry_key, "ATHENA_REGISTRY_KEY")
    cache = runtime.registry_cache
    try:
        snap, loaded = await cache.get(kind, bypass=_bypass())
        return snap, "miss" if loaded else "hit"
    except DatabaseUnavailable:
        raise ApiError(
            "catalog_unavailable", "the registry cannot be read right now; try again shortly"
        ) from None


def _respond(body: bytes, cache: str) -> Response:
    # Tell the caller how this copy was produced; the body itself is the spec's bare array.
    return raw_json_response(body, headers={"x-athena-cache": cache})


@blueprint.get("/registry")
async def api_registry() -> Response:
    snap, cache = await _snapshot("api")
    return _respond(snap.all_json(), cache)


@blueprint.get("/registry/<api_registry_id>")
async def api_registry_entry(api_registry_id: str) -> Response:
    snap, cache = await _snapshot("api")
    return _respond(snap.one_json(api_registry_id), cache)


@blueprint.get("/router/registry")
async def router_registry() -> Response:
    snap, cache = await _snapshot("router")
    return _respond(snap.all_json(), cache)
