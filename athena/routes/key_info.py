"""``GET /auth/key``: who the presented key is and which rights it holds.

A client (the console, an SDK, a deploy check) learns what it may do before trying it: the
key's public id, client binding and granted rights, and for each right named in ``?rights=``
whether the key holds it (wildcards and ``gateway.*`` fallbacks resolved by the same matcher the
guard uses). The key is checked exactly as on a data route (active, not expired, secret);
nothing secret is echoed.
"""

from __future__ import annotations

from quart import Blueprint, Response, request

from athena.auth.guard import authorize, presented_keys
from athena.errors import ApiError
from athena.routes._http import ctx, json_response, rt

blueprint = Blueprint("key_info", __name__)

MAX_RIGHTS_ASKED = 500
MAX_RIGHT_CHARS = 200


def _asked_rights() -> list[str]:
    raw = request.args.get("rights", "")
    asked = [r.strip() for r in raw.split(",") if r.strip()]
    if len(asked) > MAX_RIGHTS_ASKED:
        raise ApiError("invalid_request", f"ask about at most {MAX_RIGHTS_ASKED} rights at once")
    if any(len(r) > MAX_RIGHT_CHARS or "\x00" in r for r in asked):
        raise ApiError("invalid_request", f"a right name is at most {MAX_RIGHT_CHARS} characters")
    return asked


@blueprint.get("/auth/key")
async def key_info() -> Response:
    runtime, call = rt(), ctx()
    asked = _asked_rights()
    if not presented_keys(call):
        raise ApiError(
            "api_key_required", "send the key to describe (apikey, x-api-key or Authorization)"
        )
    principal = await authorize(runtime, call, None, None)
    return json_response(
        {
            "key": {
                "public_id": principal.public_id,
                "admin": principal.is_master,
                "client_name": principal.client_name,
                "rights": sorted(principal.rights),
            },
            "granted": {right: principal.can(right) for right in asked},
        }
    )
