"""``/rest/v1/{table}`` (GET, HEAD, POST, PATCH, DELETE) and ``/rest/v1/rpc/{fn}`` (GET, HEAD,
POST) with PostgREST's grammar.

Thin: collect the ordered query pairs, headers and body, and answer through
``athena.http.rest_answer`` (shared with the hot lane), which renders failures in the caller's
format: PostgREST's ``{code, message, details, hint}`` in native mode, the CONTRACT envelope (via
``ApiError`` and the app's handler) otherwise.
"""

from __future__ import annotations

from quart import Blueprint, Response, request

from athena.http.rest_answer import RestAnswer, answer, answer_call
from athena.routes._http import ctx, rt

blueprint = Blueprint("rest", __name__)


@blueprint.route("/rest/v1/rpc/<function>", methods=["GET", "HEAD", "POST"])
async def rest_call(function: str) -> Response:
    body = await request.get_data(cache=False) if request.method == "POST" else None
    result = await answer_call(
        rt(), ctx(), method=request.method, name=function,
        pairs=list(request.args.items(multi=True)), body=body,
        prefer=request.headers.getlist("Prefer"),
    )  # fmt: skip
    return _response(result)


@blueprint.route("/rest/v1/<table>", methods=["GET", "HEAD", "POST", "PATCH", "DELETE", "PUT"])
async def rest_table(table: str) -> Response:
    body = (
        await request.get_data(cache=False) if request.method in ("POST", "PATCH", "PUT") else None
    )
    result = await answer(
        rt(), ctx(), method=request.method, table=table,
        pairs=list(request.args.items(multi=True)), body=body,
        prefer=request.headers.getlist("Prefer"),
    )  # fmt: skip
    return _response(result)


def _response(result: RestAnswer) -> Response:
    response = Response(
        result.body, status=result.status, content_type=result.media, headers=result.headers
    )
    if result.empty and result.status != 204 and request.method != "HEAD":
        response.headers["Content-Length"] = "0"
    return response
