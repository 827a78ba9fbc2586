"""``GET/POST /rpc/{function_name}`` (Athena RS 3.x): a function call in the gateway envelope.

Thin: the query string (and POST body) become a ``GatewayCall``; the one implementation of
calls (``athena.services.rest.rpc``) serves it, as it serves ``/gateway/rpc`` and
``/rest/v1/rpc/{fn}``.
"""

from __future__ import annotations

from quart import Blueprint, Response, request

from athena.http.render import gateway_envelope
from athena.routes._http import ctx, json_body, raw_json_response, rt
from athena.services.rest.rpc import call_gateway, gateway_call_from_query

blueprint = Blueprint("rpc", __name__)


@blueprint.route("/rpc/<function_name>", methods=["GET", "POST"])
async def rpc_call(function_name: str) -> Response:
    body = await json_body(required=False, default={}) if request.method == "POST" else None
    call = gateway_call_from_query(
        function_name, list(request.args.items(multi=True)), method=request.method, body=body
    )
    result = await call_gateway(rt(), ctx(), call)
    return raw_json_response(gateway_envelope(result), result.status)
