"""The data gateway over HTTP: ``/gateway/fetch``, ``/gateway/data``, ``GET /data``,
``/gateway/update``, ``/gateway/insert``, ``/gateway/delete``, ``/gateway/query``,
``/gateway/rpc``, ``/gateway/transaction``.

Thin: read the body, call ``athena.services.gateway``, wrap the JSON text it returns in the
success envelope without decoding it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from quart import Blueprint, Response, request

from athena.context import CallContext
from athena.routes._http import ctx, json_object, raw_json_response, rt, success_bytes
from athena.services import gateway
from athena.services.gateway import GatewayResult
from athena.services.rest.rpc import gateway_rpc
from athena.services.transaction import transaction

if TYPE_CHECKING:
    from athena.runtime import Runtime

blueprint = Blueprint("gateway", __name__)

# GET /data query parameters that are integers or flags in the POST body.
_DATA_FIELDS = (
    "columns", "limit", "current_page", "page_size", "offset", "total_pages", "strip_nulls",
    "group_by", "time_granularity", "aggregation_column", "aggregation_strategy",
    "aggregation_dedup", "table_name", "view_name",
)  # fmt: skip


_HEADS: dict[str, bytes] = {}


def _respond(result: GatewayResult) -> Response:
    return raw_json_response(envelope(result), result.status)


def envelope(result: GatewayResult) -> bytes:
    """The success envelope around the JSON text PostgreSQL built (never decoded here)."""
    extras = result.extras
    if len(extras) == 1 and type(extras.get("count")) is int:
        # The hot path (plain fetch/insert/update/delete): the envelope's head is a constant
        # per message, so it is encoded once instead of per request.
        head = _HEADS.get(result.message)
        if head is None:
            head = success_bytes(result.message, b"")[:-1]
            _HEADS[result.message] = head
        return b"".join((head, result.data_json, b',"count":', str(extras["count"]).encode(), b"}"))
    return success_bytes(result.message, result.data_json, **extras)


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


# The body-in, envelope-out routes. ``athena.http.hot_lane`` serves them straight from ASGI; the
# Quart views below serve the requests it hands over (chunked or over-limit bodies).
Service = Callable[["Runtime", CallContext, dict[str, Any]], Awaitable[GatewayResult]]
BODY_ROUTES: dict[tuple[str, str], Service] = {
    ("POST", "/gateway/fetch"): gateway.fetch,
    ("POST", "/gateway/data"): gateway.fetch,
    ("POST", "/gateway/update"): gateway.update,
    ("PUT", "/gateway/insert"): gateway.insert,
    ("DELETE", "/gateway/delete"): gateway.delete,
    ("POST", "/gateway/query"): gateway.query,
    ("POST", "/gateway/rpc"): gateway_rpc,
    ("POST", "/gateway/transaction"): transaction,
}


def _view(service: Service) -> Callable[[], Awaitable[Response]]:
    async def view() -> Response:
        return _respond(await service(rt(), ctx(), await json_object()))

    return view


for (_method, _path), _service in BODY_ROUTES.items():
    blueprint.add_url_rule(
        _path, endpoint=_path.strip("/").replace("/", "_"), view_func=_view(_service),
        methods=[_method],
    )  # fmt: skip
