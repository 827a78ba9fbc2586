"""The operator console's files: ``/console`` and ``/console/assets/{path}``.

Only static files come from here; every screen's data comes from the public API. Each answer
carries the console's strict Content-Security-Policy (no inline script, nothing but 'self') and
the usual anti-framing and no-sniff headers. Console files are not request-logged: loading the
page would otherwise drown the operator's own activity view.
"""

from __future__ import annotations

from quart import Blueprint, Response, request

from athena.console import SECURITY_HEADERS, asset, index_html
from athena.errors import ApiError
from athena.routes._http import ctx

blueprint = Blueprint("console", __name__)


def _quiet() -> None:
    ctx().extra["log"] = False


@blueprint.get("/console")
async def console_index() -> Response:
    _quiet()
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-store"}
    return Response(index_html(), content_type="text/html; charset=utf-8", headers=headers)


@blueprint.get("/console/assets/<path:path>")
async def console_asset(path: str) -> Response:
    _quiet()
    found = asset(path)
    if found is None:
        raise ApiError("not_found", "no console file has this name")
    # no-cache + ETag: the browser revalidates (304) instead of fetching plotly's 4.7 MB again,
    # and an upgraded package is picked up on the next load.
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache", "ETag": f'"{found.etag}"'}
    if found.etag in request.headers.get("if-none-match", ""):
        return Response(b"", status=304, headers=headers)
    return Response(found.body, content_type=found.content_type, headers=headers)
