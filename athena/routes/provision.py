"""Provisioning over HTTP: ``POST /admin/provision`` and ``GET /admin/provision/status``
(admin key)."""

from __future__ import annotations

from quart import Blueprint, Response, request

from athena.auth.guard import require_admin
from athena.routes._http import ctx, json_object, json_response, rt
from athena.services import provisioning

blueprint = Blueprint("provision", __name__)


@blueprint.before_request
async def _read_body_first() -> None:
    # Answering before the request body is read (an auth error, say) leaves the unread bytes
    # on a keep-alive connection, and the next request on it can hang (measured: ~1 in 10
    # with hypercorn's trio worker). Reading it first (bounded by MAX_CONTENT_LENGTH) avoids it.
    await request.get_data(cache=True)


@blueprint.post("/admin/provision")
async def provision() -> Response:
    runtime = rt()
    require_admin(runtime, ctx())
    body = await json_object()
    return json_response(await provisioning.provision(runtime, body))


@blueprint.get("/admin/provision/status")
async def provision_status() -> Response:
    runtime = rt()
    require_admin(runtime, ctx())
    return json_response(await provisioning.status(runtime, ctx().query.get("client_name")))
