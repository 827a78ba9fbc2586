"""``/rest/v1/{table}`` (GET, HEAD, POST, PATCH, DELETE) and ``/rest/v1/rpc/{fn}`` (GET, HEAD,
POST) with PostgREST's grammar.

Thin: collect the ordered query pairs, headers and body, call the service, render. Failures are
rendered here in the caller's format: PostgREST's ``{code, message, details, hint}`` in native
mode, the CONTRACT envelope (via ``ApiError`` and the app's handler) otherwise.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from quart import Blueprint, Response, request

from athena.context import CallContext
from athena.errors import ApiError
from athena.query.postgrest.errors import PgrstError
from athena.routes._http import ctx, dumps, rt
from athena.services.rest import RestResult, is_native
from athena.services.rest.errors import api_error_from_pgrst, pgrst_from_api_error
from athena.services.rest.rpc import call_rest

if TYPE_CHECKING:
    from athena.runtime import Runtime

blueprint = Blueprint("rest", __name__)


@dataclass
class RestAnswer:
    """A /rest/v1 response, success or error, in the caller's format."""

    status: int
    body: bytes
    media: str
    headers: dict[str, str]
    empty: bool = False  # the service returned no body at all


async def answer(
    runtime: Runtime, call: CallContext, *, method: str, table: str,
    pairs: list[tuple[str, str]], body: bytes | None, prefer: list[str],
) -> RestAnswer:  # fmt: skip
    """Run the request; failures become PostgREST's ``{code, message, details, hint}`` in native
    mode and propagate as ``ApiError`` (the envelope) otherwise. Shared by the Quart view below
    and ``athena.http.hot_lane``."""
    native = is_native(runtime, call)

    async def run() -> RestResult:
        return await runtime.rest.handle(
            call,
            method=method,
            table=table,
            pairs=pairs,
            body=body if method in ("POST", "PATCH", "PUT") else None,
            native=native,
            prefer=", ".join(prefer) if prefer else None,
        )

    return await _rendered(call, native, run)


async def answer_call(
    runtime: Runtime, call: CallContext, *, method: str, name: str,
    pairs: list[tuple[str, str]], body: bytes | None, prefer: list[str],
) -> RestAnswer:  # fmt: skip
    """``/rest/v1/rpc/{fn}``, rendered like ``answer``."""
    native = is_native(runtime, call)

    async def run() -> RestResult:
        return await call_rest(
            runtime, call, method=method, name=name, pairs=pairs,
            body=body if method == "POST" else None, native=native,
            prefer=", ".join(prefer) if prefer else None,
        )  # fmt: skip

    return await _rendered(call, native, run)


async def _rendered(
    call: CallContext, native: bool, run: Callable[[], Awaitable[RestResult]]
) -> RestAnswer:
    try:
        result = await run()
    except PgrstError as err:
        if native:
            return _native_error(call, err)
        raise api_error_from_pgrst(err) from None
    except ApiError as err:
        if native:
            return _native_error(call, pgrst_from_api_error(err))
        raise
    return RestAnswer(
        result.status, result.body or b"", result.media, result.headers, result.body is None
    )


def _native_error(call: CallContext, err: PgrstError) -> RestAnswer:
    call.error_code = err.code
    return RestAnswer(
        err.status, dumps(err.body()).encode(), "application/json; charset=utf-8", dict(err.headers)
    )


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
