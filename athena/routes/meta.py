"""Root, liveness, documents and metrics: ``/``, ``/ping``, ``/openapi.yaml``,
``/openapi-wss.yaml``, ``/wss/info``, ``/docs``, ``/metrics``."""

from __future__ import annotations

from quart import Blueprint, Response, current_app, redirect

from athena.auth.guard import require_static_key
from athena.http import render
from athena.http.prefixes import DATA_FAMILIES, STORAGE_SERVED
from athena.routes._http import ctx, json_response, rt
from athena.services.release import release_info
from athena.spec import openapi_path, spec_bytes, summaries

blueprint = Blueprint("meta", __name__)

_HIDDEN_METHODS = {"HEAD", "OPTIONS"}
_REFUSALS = "unsupported."  # the blueprint of athena.routes.unsupported


def route_listing() -> list[dict[str, object]]:
    """Every registered route with its methods and the spec's summary, sorted by path."""
    by_path: dict[str, set[str]] = {}
    for rule in current_app.url_map.iter_rules():
        if rule.endpoint.startswith(_REFUSALS):
            continue  # SDK paths answered 404 not_supported are not served routes
        methods = set(rule.methods or ()) - _HIDDEN_METHODS
        if getattr(rule, "websocket", False):
            methods = {"GET"}
        by_path.setdefault(openapi_path(rule.rule), set()).update(methods)
    known = summaries()
    listing = []
    for path in sorted(by_path):
        methods = sorted(by_path[path])
        summary = next((known[(path, m)] for m in methods if (path, m) in known), "")
        listing.append({"path": path, "methods": methods, "summary": summary})
    return listing


# SDK 5 derives one base URL per service from its root URL (athena/http/prefixes.py).
SERVICE_PREFIXES = [
    {"prefix": "/db", "serves": [f"/{family}" for family in DATA_FAMILIES] + ["/"]},
    {"prefix": "/storage", "serves": [STORAGE_SERVED.removeprefix("/storage")]},
]


_SERVED: list[str] = []


def _served_paths() -> list[str]:
    """The spec paths of every route (the URL map is fixed once the app serves)."""
    if not _SERVED:
        _SERVED.extend(
            openapi_path(rule.rule)
            for rule in current_app.url_map.iter_rules()
            if not rule.endpoint.startswith(_REFUSALS)
        )
    return _SERVED


@blueprint.get("/")
async def root() -> Response:
    runtime = rt()
    deadpool = runtime.pool_health.overall()
    scylla = runtime.scylla
    return json_response(
        {
            "message": "athena is online",
            "version": runtime.version,
            "release": release_info(_served_paths()),
            "athena_api": "online",
            "athena_deadpool": deadpool,
            "athena_scylladb": "online" if scylla is not None and scylla.online else "offline",
            "cargo_toml_version": runtime.version,
            "routes": route_listing(),
            "service_prefixes": SERVICE_PREFIXES,
        }
    )


@blueprint.get("/health")
async def health() -> Response:
    """Liveness and pool state, from memory (the pool-health probe's last round): fast enough
    for a load balancer to poll, and kept out of the request log like ``/ping``."""
    runtime = rt()
    ctx().extra["log"] = False
    probe = runtime.pool_health
    state = probe.overall()
    pools = {name: "online" if check.ok else "offline" for name, check in probe.checks.items()}
    return json_response(
        {
            "status": "ok" if state == "online" else state,
            "message": "athena is online",
            "version": runtime.version,
            "release": release_info(_served_paths()),
            "athena_api": "online",
            "athena_deadpool": state,
            "pools": pools,
        }
    )


@blueprint.get("/ping")
async def ping() -> Response:
    status, body, content_type, _ = render.ping(ctx())
    return Response(body, status=status, content_type=content_type.decode())


@blueprint.get("/openapi.yaml")
async def openapi_yaml() -> Response:
    return Response(spec_bytes("openapi.yaml"), content_type="application/yaml")


@blueprint.get("/openapi-wss.yaml")
async def openapi_wss_yaml() -> Response:
    return Response(spec_bytes("openapi-wss.yaml"), content_type="application/yaml")


@blueprint.get("/docs")
async def docs() -> Response:
    return redirect(rt().settings.docs_url, code=308)  # type: ignore[return-value]


@blueprint.get("/metrics")
async def metrics() -> Response:
    from quart import g

    g.athena_ctx.extra["log"] = False
    runtime = rt()
    require_static_key(runtime, g.athena_ctx, runtime.settings.metrics_key, "ATHENA_METRICS_KEY")
    body = await runtime.metrics.exposition()
    return Response(body, content_type="text/plain; version=0.0.4; charset=utf-8")
