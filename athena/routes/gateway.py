"""The data gateway over HTTP: ``/gateway/fetch``, ``/gateway/data``, ``GET /data``,
``/gateway/update``, ``/gateway/insert``, ``/gateway/delete``, ``/gateway/query``,
``/gateway/rpc``, ``/gateway/transaction``.

Thin: read the body, call ``athena.services.gateway``, wrap the JSON text it returns in the
success envelope without decoding it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from quart import Blueprint, Response, request

from athena.http.body_routes import BODY_ROUTES, BodyService
from athena.http.render import gateway_envelope
from athena.routes._http import ctx, json_object, raw_json_response, rt
from athena.services import gateway
from athena.services.gateway import GatewayResult

blueprint = Blueprint("gateway", __name__)

# GET /data query parameters that are integers or flags in the POST body.
_DATA_FIELDS = (
    "columns", "limit", "current_page", "page_size", "offset", "total_pages", "strip_nulls",
    "group_by", "time_granularity", "aggregation_column", "aggregation_strategy",
    "aggregation_dedup", "table_name", "view_name",
)  # fmt: skip


def _respond(result: GatewayResult) -> Response:
    return raw_json_response(gateway_envelope(result), result.status)


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


def _view(service: BodyService) -> Callable[[], Awaitable[Response]]:
    async def view() -> Response:
        return _respond(await service(rt(), ctx(), await json_object()))

    return view


for (_method, _path), _service in BODY_ROUTES.items():
    blueprint.add_url_rule(
        _path, endpoint=_path.strip("/").replace("/", "_"), view_func=_view(_service),
        methods=[_method],
    )  # fmt: skip
