"""``/rest/v1/{table}``: GET, HEAD, POST, PATCH, DELETE with PostgREST's grammar.

Thin: collect the ordered query pairs, headers and body, call the service, render. Failures are
rendered here in the caller's format: PostgREST's ``{code, message, details, hint}`` in native
mode, the CONTRACT envelope (via ``ApiError`` and the app's handler) otherwise.
"""

from __future__ import annotations

from quart import Blueprint, Response, g, request

from athena.errors import ApiError
from athena.query.postgrest.errors import PgrstError
from athena.routes._http import ctx, dumps, rt
from athena.services.rest import is_native, rest_service
from athena.services.rest_errors import api_error_from_pgrst, pgrst_from_api_error

blueprint = Blueprint("rest", __name__)


def _native_error(err: PgrstError) -> Response:
    g.athena_ctx.error_code = err.code
    headers = dict(err.headers)
    return Response(
        dumps(err.body()),
        status=err.status,
        content_type="application/json; charset=utf-8",
        headers=headers,
    )


@blueprint.route("/rest/v1/<table>", methods=["GET", "HEAD", "POST", "PATCH", "DELETE", "PUT"])
async def rest_table(table: str) -> Response:
    runtime = rt()
    call = ctx()
    native = is_native(runtime, call)
    try:
        if request.method == "PUT":  # PostgREST's PUT (single-row upsert) is not offered
            raise PgrstError(
                405,
                "PGRST117",
                "Unsupported HTTP method: PUT",
                hint="Use POST with Prefer: resolution=merge-duplicates to upsert.",
                envelope_code="method_not_allowed",
                headers={"Allow": "GET, HEAD, POST, PATCH, DELETE"},
            )
        body = None
        if request.method in ("POST", "PATCH"):
            body = await request.get_data(cache=False)
        prefer = request.headers.getlist("Prefer")
        result = await rest_service(runtime).handle(
            call,
            method=request.method,
            table=table,
            pairs=list(request.args.items(multi=True)),
            body=body,
            native=native,
            prefer=", ".join(prefer) if prefer else None,
        )
    except PgrstError as err:
        if native:
            return _native_error(err)
        raise api_error_from_pgrst(err) from None
    except ApiError as err:
        if native:
            return _native_error(pgrst_from_api_error(err))
        raise
    response = Response(
        result.body if result.body is not None else b"",
        status=result.status,
        content_type=result.media,
        headers=result.headers,
    )
    if result.body is None and result.status != 204 and request.method != "HEAD":
        response.headers["Content-Length"] = "0"
    return response
