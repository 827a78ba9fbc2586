"""Helpers every HTTP route uses: the call context, the JSON body, and success envelopes.

Success envelopes are assembled as bytes so that JSON built by PostgreSQL passes through
without being decoded and re-encoded.
"""

from __future__ import annotations

from typing import Any

from quart import Response, g, request

from athena.context import CallContext
from athena.http.bodies import parse_json, parse_json_object
from athena.http.render import JSON, dumps
from athena.runtime import Runtime, current_runtime


def rt() -> Runtime:
    return current_runtime()


def ctx() -> CallContext:
    return g.athena_ctx  # type: ignore[no-any-return]


async def json_body(*, required: bool = True, default: Any = None) -> Any:
    """The request body parsed as JSON; 400 ``invalid_json`` when it is not JSON."""
    return parse_json(await request.get_data(cache=True), required=required, default=default)


async def json_object(*, required: bool = True) -> dict[str, Any]:
    """The body as a JSON object (400 ``invalid_request`` for arrays/scalars)."""
    return parse_json_object(await request.get_data(cache=True), required=required)


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(value), status=status, content_type=JSON, headers=headers)


def raw_json_response(
    body: bytes | str, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(body, status=status, content_type=JSON, headers=headers)


def success(message: str, data: Any = None, status: int = 200, **extras: Any) -> Response:
    body: dict[str, Any] = {"status": "success", "message": message, "data": data}
    body.update(extras)
    return json_response(body, status)
