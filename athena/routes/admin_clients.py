"""The client catalog over HTTP: ``/admin/clients`` (GET, POST), ``/admin/clients/{name}``
(PATCH, DELETE), ``/admin/clients/{name}/freeze`` (PUT) and the name lists ``/schema/clients``
and ``/clients``. All of them need the admin key."""

from __future__ import annotations

from quart import Blueprint, Response, request

from athena.auth.guard import require_admin
from athena.errors import ApiError
from athena.routes._http import ctx, json_object, json_response, rt

blueprint = Blueprint("admin_clients", __name__)


@blueprint.before_request
async def _read_body_first() -> None:
    # Answering before the request body is read (an auth error, say) leaves the unread bytes
    # on a keep-alive connection, and the next request on it can hang (measured: ~1 in 10
    # with hypercorn's trio worker). Reading it first (bounded by MAX_CONTENT_LENGTH) avoids it.
    await request.get_data(cache=True)


@blueprint.get("/admin/clients")
async def list_clients() -> Response:
    runtime = rt()
    require_admin(runtime, ctx())
    include_deleted = ctx().query.get("include_deleted", "").lower() in {"1", "true", "yes"}
    return json_response(await runtime.client_catalog.listing(include_deleted=include_deleted))


@blueprint.post("/admin/clients")
async def create_client() -> Response:
    runtime = rt()
    require_admin(runtime, ctx())
    body = await json_object()
    record = await runtime.client_catalog.create(body)
    ctx().client_name = record["client_name"]
    return json_response({"client": record}, 201)


@blueprint.patch("/admin/clients/<client_name>")
async def update_client(client_name: str) -> Response:
    runtime = rt()
    require_admin(runtime, ctx())
    body = await json_object()
    return json_response({"client": await runtime.client_catalog.update(client_name, body)})


@blueprint.delete("/admin/clients/<client_name>")
async def delete_client(client_name: str) -> Response:
    runtime = rt()
    require_admin(runtime, ctx())
    return json_response({"client": await runtime.client_catalog.delete(client_name)})


@blueprint.put("/admin/clients/<client_name>/freeze")
async def freeze_client(client_name: str) -> Response:
    runtime = rt()
    require_admin(runtime, ctx())
    body = await json_object()
    frozen = body.get("is_frozen")
    if not isinstance(frozen, bool):
        raise ApiError("invalid_request", "is_frozen (boolean) is required")
    return json_response({"client": await runtime.client_catalog.freeze(client_name, frozen)})


@blueprint.get("/schema/clients")
async def schema_clients() -> Response:
    runtime = rt()
    require_admin(runtime, ctx())
    return json_response({"clients": runtime.client_catalog.names()})


@blueprint.get("/clients")
async def clients() -> Response:
    runtime = rt()
    require_admin(runtime, ctx())
    return json_response({"clients": runtime.client_catalog.names()})
