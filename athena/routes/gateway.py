"""The data gateway over HTTP: ``/gateway/fetch``, ``/gateway/data``, ``GET /data``,
``/gateway/update``, ``/gateway/insert``, ``/gateway/delete``, ``/gateway/query``.

Thin: read the body, call ``athena.services.gateway``, wrap the JSON text it returns in the
success envelope without decoding it.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, request

from athena.routes._http import ctx, json_object, raw_json_response, rt, success_bytes
from athena.services import gateway
from athena.services.gateway import GatewayResult

blueprint = Blueprint("gateway", __name__)

# GET /data query parameters that are integers or flags in the POST body.
_DATA_FIELDS = (
    "columns", "limit", "current_page", "page_size", "offset", "total_pages", "strip_nulls",
    "group_by", "time_granularity", "aggregation_column", "aggregation_strategy",
    "aggregation_dedup", "table_name", "view_name",
)  # fmt: skip


_HEADS: dict[str, bytes] = {}


def _respond(result: GatewayResult) -> Response:
    """The success envelope around the JSON text PostgreSQL built (never decoded here)."""
    extras = result.extras
    if len(extras) == 1 and type(extras.get("count")) is int:
        # The hot path (plain fetch/insert/update/delete): the envelope's head is a constant
        # per message, so it is encoded once instead of per request.
        head = _HEADS.get(result.message)
        if head is None:
            head = success_bytes(result.message, b"")[:-1]
            _HEADS[result.message] = head
        body = b"".join((head, result.data_json, b',"count":', str(extras["count"]).encode(), b"}"))
        return raw_json_response(body, result.status)
    return raw_json_response(
        success_bytes(result.message, result.data_json, **extras), result.status
    )


@blueprint.post("/gateway/fetch")
async def gateway_fetch() -> Response:
    return _respond(await gateway.fetch(rt(), ctx(), await json_object()))


@blueprint.post("/gateway/data")
async def gateway_data() -> Response:
    return _respond(await gateway.fetch(rt(), ctx(), await json_object()))


@blueprint.get("/data")
async def data_get() -> Response:
    """``GET /data?view=…&eq_column=…&eq_value=…``: the fetch body as query parameters."""
    args = request.args
    body: dict[str, Any] = {k: args[k] for k in _DATA_FIELDS if k in args}
    if "view" in args:
        body.setdefault("view_name", args["view"])
    if "table" in args:
        body.setdefault("table_name", args["table"])
    if "eq_column" in args:
        body["conditions"] = [{"eq_column": args["eq_column"], "eq_value": args.get("eq_value")}]
    return _respond(await gateway.fetch(rt(), ctx(), body))


@blueprint.post("/gateway/update")
async def gateway_update() -> Response:
    return _respond(await gateway.update(rt(), ctx(), await json_object()))


@blueprint.put("/gateway/insert")
async def gateway_insert() -> Response:
    return _respond(await gateway.insert(rt(), ctx(), await json_object()))


@blueprint.delete("/gateway/delete")
async def gateway_delete() -> Response:
    return _respond(await gateway.delete(rt(), ctx(), await json_object()))


@blueprint.post("/gateway/query")
async def gateway_query() -> Response:
    return _respond(await gateway.query(rt(), ctx(), await json_object()))
