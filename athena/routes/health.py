"""``/health/cluster``: this instance's state plus the latest probe of every configured mirror.

Served from memory (see ``probes.cluster``): the request path never probes a mirror and never
waits for the catalog.
"""

from __future__ import annotations

from quart import Blueprint, Response

from athena.routes._http import ctx, json_response, rt

blueprint = Blueprint("health", __name__)


@blueprint.get("/health/cluster")
async def cluster_health() -> Response:
    runtime = rt()
    ctx().extra["log"] = False  # polled by load balancers and dashboards: kept out of the log
    scylla = runtime.scylla
    mirrors = runtime.cluster_health.snapshot()
    online = sum(1 for m in mirrors if m["status"] == "online")
    return json_response(
        {
            "message": f"{online} of {len(mirrors)} mirrors online",
            "version": runtime.version,
            "athena_api": "online",
            "athena_deadpool": runtime.pool_health.overall(),
            "athena_scylladb": "online" if scylla is not None and scylla.online else "offline",
            "cargo_toml_version": runtime.version,
            "mirrors": mirrors,
        }
    )
