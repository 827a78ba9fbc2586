"""``/api/v2/supabase/ssl_enforcement``: a Supabase project's SSL enforcement.

``POST`` turns it on or off: ``{"enabled": bool, "access_token"?, "project_ref"?}``, falling
back to ``SUPABASE_ACCESS_TOKEN`` / ``PROJECT_REF``. (Only the spec's operation is served, so
``GET /`` lists exactly the documented API.)

Who may call: a request that brings its own access token is authenticated by Supabase itself;
a request that would use the gateway's own ``SUPABASE_ACCESS_TOKEN`` must carry the admin key
(``ATHENA_KEY_12``) — otherwise anyone who can reach the gateway could reboot the project.
"""

from __future__ import annotations

from quart import Blueprint, Response

from athena.auth.guard import require_admin
from athena.errors import ApiError
from athena.routes._http import ctx, json_object, rt, success
from athena.services.supabase_ssl import SslCredentials, SupabaseManagement, resolve_credentials

blueprint = Blueprint("supabase", __name__)

PATH = "/api/v2/supabase/ssl_enforcement"


def _client() -> SupabaseManagement:
    return rt().supabase_ssl


def _authorize(creds: SslCredentials) -> None:
    if creds.token_from_env:
        require_admin(rt(), ctx())


@blueprint.post(PATH)
async def set_ssl_enforcement() -> Response:
    body = await json_object()
    enabled = body.get("enabled")
    if not isinstance(enabled, bool):
        raise ApiError(
            "validation_error",
            "'enabled' is required and must be true or false",
            data={"field": "enabled"},
        )
    creds = resolve_credentials(body.get("access_token"), body.get("project_ref"))
    _authorize(creds)
    status, changed = await _client().ensure(creds, enabled)
    word = "enabled" if enabled else "disabled"
    if not status.applied_successfully:
        # Supabase accepted the request but reports the change as not (yet) applied.
        message = f"SSL enforcement {word} was requested but is not applied yet"
    elif changed:
        message = f"SSL enforcement {word}"
    else:
        message = f"SSL enforcement already {word}"
    return success(message, status.as_json())
