"""API keys, rights and enforcement settings: ``/admin/api-keys``, ``/admin/api-key-rights``,
``/admin/api-key-config``, ``/admin/api-key-clients`` (admin key only).

Thin: check the admin key, parse, call ``athena.services.api_keys``, render the spec's bare
shapes (``{api_keys}``, ``{api_key, record}``, ``{record}``, ``{right}``, ``{id}`` …).
"""

from __future__ import annotations

from quart import Blueprint, Response, request

from athena.auth.guard import require_admin
from athena.errors import ApiError
from athena.routes._http import ctx, json_object, json_response, rt
from athena.services import api_keys as svc

blueprint = Blueprint("admin_api_keys", __name__)

_MAX_PAGE = 1_000_000_000  # far beyond any catalog; keeps the value inside PostgreSQL's bigint


async def _admin() -> None:
    """Admin key check. The body is drained first: hypercorn 0.18 (trio) leaves a keep-alive
    connection hanging when a response completes before the request body was consumed, which
    a fast 401 to a POST would otherwise do. The body is bounded by ``max_body_bytes``."""
    await request.get_data(cache=True)
    require_admin(rt(), ctx())


def _paging() -> tuple[int | None, int]:
    """Optional ``?limit=&offset=`` on the key list (default: every key)."""
    query = ctx().query
    try:
        limit = int(query["limit"]) if query.get("limit") else None
        offset = int(query["offset"]) if query.get("offset") else 0
    except ValueError:
        raise ApiError("invalid_pagination", "limit and offset must be integers") from None
    if (limit is not None and limit < 0) or offset < 0:
        raise ApiError("invalid_pagination", "limit and offset may not be negative")
    if (limit or 0) > _MAX_PAGE or offset > _MAX_PAGE:
        raise ApiError("invalid_pagination", f"limit and offset may not exceed {_MAX_PAGE}")
    return limit, offset


# -- keys ----------------------------------------------------------------------------------


@blueprint.get("/admin/api-keys")
async def list_api_keys() -> Response:
    await _admin()
    limit, offset = _paging()
    keys = await svc.on_catalog(rt(), svc.list_keys, limit=limit, offset=offset)
    return json_response({"api_keys": keys})


@blueprint.post("/admin/api-keys")
async def create_api_key() -> Response:
    await _admin()
    req = svc.parse(svc.KeyCreate, await json_object())
    runtime = rt()
    full, record = await svc.on_catalog(
        runtime, svc.create_key, req, known_clients=svc.known_clients(runtime)
    )
    return json_response({"api_key": full, "record": record}, 201)


@blueprint.patch("/admin/api-keys/<id>")
async def update_api_key(id: str) -> Response:
    await _admin()
    uid = svc.parse_uuid(id)
    req = svc.parse(svc.KeyUpdate, await json_object())
    runtime = rt()
    record = await svc.on_catalog(
        runtime, svc.update_key, uid, req, known_clients=svc.known_clients(runtime)
    )
    return json_response({"record": record})


@blueprint.delete("/admin/api-keys/<id>")
async def delete_api_key(id: str) -> Response:
    await _admin()
    uid = svc.parse_uuid(id)
    return json_response({"id": await svc.on_catalog(rt(), svc.delete_key, uid)})


# -- rights --------------------------------------------------------------------------------


@blueprint.get("/admin/api-key-rights")
async def list_api_key_rights() -> Response:
    await _admin()
    return json_response({"rights": await svc.on_catalog(rt(), svc.list_rights)})


@blueprint.post("/admin/api-key-rights")
async def create_api_key_right() -> Response:
    await _admin()
    req = svc.parse(svc.RightCreate, await json_object())
    return json_response({"right": await svc.on_catalog(rt(), svc.create_right, req)}, 201)


@blueprint.patch("/admin/api-key-rights/<id>")
async def update_api_key_right(id: str) -> Response:
    await _admin()
    uid = svc.parse_uuid(id)
    req = svc.parse(svc.RightUpdate, await json_object())
    return json_response({"right": await svc.on_catalog(rt(), svc.update_right, uid, req)})


@blueprint.delete("/admin/api-key-rights/<id>")
async def delete_api_key_right(id: str) -> Response:
    await _admin()
    uid = svc.parse_uuid(id)
    return json_response({"id": await svc.on_catalog(rt(), svc.delete_right, uid)})


# -- enforcement ---------------------------------------------------------------------------


@blueprint.get("/admin/api-key-config")
async def get_api_key_config() -> Response:
    await _admin()
    runtime = rt()
    config = await svc.on_catalog(
        runtime, svc.get_config, default_enforce=runtime.settings.enforce_api_keys
    )
    return json_response(config)


@blueprint.put("/admin/api-key-config")
async def put_api_key_config() -> Response:
    await _admin()
    req = svc.parse(svc.GlobalConfigBody, await json_object())
    runtime = rt()
    config = await svc.on_catalog(
        runtime,
        svc.set_global_config,
        req.enforce_api_keys,
        req.ip_denylist,
        default_enforce=runtime.settings.enforce_api_keys,
    )
    return json_response(config)


@blueprint.get("/admin/api-key-clients")
async def list_api_key_clients() -> Response:
    await _admin()
    return json_response({"clients": await svc.on_catalog(rt(), svc.list_client_configs)})


@blueprint.put("/admin/api-key-clients/<client_name>")
async def put_api_key_client(client_name: str) -> Response:
    await _admin()
    req = svc.parse(svc.EnforcementBody, await json_object())
    runtime = rt()
    record = await svc.on_catalog(
        runtime,
        svc.set_client_enforcement,
        svc.parse_client_name(client_name),
        req.enforce_api_keys,
        known_clients=svc.known_clients(runtime),
    )
    return json_response({"client": record})


@blueprint.delete("/admin/api-key-clients/<client_name>")
async def delete_api_key_client(client_name: str) -> Response:
    await _admin()
    name = await svc.on_catalog(
        rt(), svc.delete_client_enforcement, svc.parse_client_name(client_name)
    )
    return json_response({"client_name": name})
