"""Every body the gateway answers with: success envelopes and errors, for HTTP (Quart and the hot
lane) and the WebSocket gateway.

Success envelopes are assembled as bytes, so JSON that PostgreSQL built passes through without
being decoded and encoded again. Errors are ``ApiError`` (``athena.errors``: code, status,
message); this module turns one into the envelope ``{"status":"error","code","message","error",
"data"?}``, the hot lane's answer, or a WebSocket reply. A bug anywhere becomes
``internal_error(request_id)`` — built here only, so the 500 body cannot drift between paths.

``/rest/v1``'s PostgREST-native bodies (``{code, message, details, hint}``) belong to
``athena.services.rest``, which speaks PostgREST's own format.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from athena.context import CallContext
from athena.errors import ApiError

if TYPE_CHECKING:
    from athena.services.gateway import GatewayResult

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"

# What a hot-lane handler answers: (status, body, content type, extra headers).
Answer = tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str, ensure_ascii=False)


# -- success ---------------------------------------------------------------------------------


def success_bytes(message: str, data_json: bytes | str, **extras: Any) -> bytes:
    """The success envelope around already-encoded ``data_json``, plus ``extras``."""
    if isinstance(data_json, str):
        data_json = data_json.encode()
    parts = [b'{"status":"success","message":', dumps(message).encode(), b',"data":', data_json]
    for key, value in extras.items():
        parts.append(b"," + dumps(key).encode() + b":" + dumps(value).encode())
    parts.append(b"}")
    return b"".join(parts)


_HEADS: dict[str, bytes] = {}


def gateway_envelope(result: GatewayResult) -> bytes:
    """The data gateway's success envelope around the JSON text PostgreSQL built."""
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


def ping(ctx: CallContext) -> Answer:
    """``GET /ping``, on every path (hot lane or Quart)."""
    ctx.extra["log"] = False  # liveness probes would flood the request log
    return 200, b"pong", TEXT.encode(), []


# -- errors ----------------------------------------------------------------------------------


def internal_error(request_id: str) -> ApiError:
    """The one answer to a bug: 500 with the request id the log line carries, nothing more."""
    return ApiError(
        "internal_error",
        "an unexpected error occurred; quote the request id when reporting it",
        data={"request_id": request_id},
    )


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 408: "body_timeout",
               413: "payload_too_large", 415: "unsupported_media_type"}  # fmt: skip
_HTTP_MESSAGES = {
    "not_found": "no route matches this path",
    "method_not_allowed": "this path does not accept this method",
    "payload_too_large": "the request body is larger than the configured limit",
    "body_timeout": "the request body did not arrive in time (ATHENA_BODY_MIN_BYTES_PER_S)",
}


def http_error(status: int, description: str | None = None) -> ApiError:
    """An HTTP-level failure (no route, wrong method, body too large …) as an ``ApiError``."""
    code = _HTTP_CODES.get(status, "invalid_request" if status < 500 else "internal_error")
    return ApiError(code, _HTTP_MESSAGES.get(code, description or code), status=status)


def error_body(err: ApiError) -> bytes:
    """The error envelope, encoded."""
    return dumps(err.envelope()).encode()


def error_answer(err: ApiError) -> Answer:
    """An error as the hot lane answers it."""
    extra = [
        (k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in err.headers.items()
    ]
    return err.status, error_body(err), JSON.encode(), extra


# -- WebSocket -------------------------------------------------------------------------------
# Replies are ``{"type":"reply","request_id","action","status",…}``: the HTTP envelopes plus
# ``request_id``/``action`` (athena/spec/openapi-wss.yaml).

_WS_RESERVED = frozenset({"type", "request_id", "action", "status", "message", "data"})


def _ws_head(request_id: str | int | None, action: str, status: str) -> str:
    """The opening of a reply object, without the closing brace."""
    return (
        '{"type":"reply","request_id":' + dumps(request_id) + ',"action":' + dumps(action)
        + ',"status":"' + status + '"'
    )  # fmt: skip


def ws_success_reply(
    request_id: str | int | None,
    action: str,
    message: str,
    data_json: bytes | str,
    extras: dict[str, Any] | None = None,
) -> str:
    """A success reply around already-encoded ``data_json`` (spliced in, never decoded)."""
    if isinstance(data_json, bytes):
        data_json = data_json.decode("utf-8")
    parts = [_ws_head(request_id, action, "success"), ',"message":', dumps(message)]
    parts += [',"data":', data_json or "null"]
    for key, value in (extras or {}).items():
        if key in _WS_RESERVED:
            continue  # an extra can never overwrite the envelope's own fields
        parts += [",", dumps(key), ":", dumps(value)]
    parts.append("}")
    return "".join(parts)


def ws_data_reply(
    request_id: str | int | None, action: str, message: str, data: Any, **extras: Any
) -> str:
    return ws_success_reply(request_id, action, message, dumps(data), extras)


def ws_error_reply(request_id: str | int | None, action: str, error: ApiError) -> str:
    envelope = error.envelope()  # {"status":"error","code","message","error","data"?}
    envelope.pop("status", None)
    return _ws_head(request_id, action, "error") + "," + dumps(envelope)[1:]
