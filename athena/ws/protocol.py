"""The wire format of ``/wss/gateway`` (pure: no I/O).

Client → server, one JSON object per text (or binary UTF-8) message::

    {"request_id": "r1", "action": "gateway.fetch", "client_name": "athena",
     "headers": {"apikey": "ath_…"}, "body": {"table_name": "users"}}

Server → client:

* ``{"type":"connection","status":"success","message":…,"data":{…}}`` once, after the upgrade;
* one reply per message: ``{"type":"reply","request_id","action","status":"success",
  "message","data",…extras}`` or ``{"type":"reply","request_id","action","status":"error",
  "code","message","error","data"?}`` — the HTTP envelopes plus ``request_id``/``action``;
* ``{"type":"event","subscription_id",…,"rows":[…]}`` for subscriptions;
* ``{"type":"ping","timestamp"}`` when the client has been quiet; any message answers it
  (``{"type":"pong"}`` is accepted silently, ``{"action":"ping"}`` gets a reply).

Replies are assembled as text around the gateway's already-encoded ``data_json`` so rows built
by PostgreSQL are never decoded and re-encoded; they are built in ``athena.http.render``, beside
the HTTP envelopes they mirror.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from athena.errors import ApiError
from athena.http.bodies import strict_loads

GATEWAY_ACTIONS = (
    "gateway.fetch",
    "gateway.insert",
    "gateway.update",
    "gateway.delete",
    "gateway.query",
    "gateway.rpc",
    "gateway.transaction",
)
EVENT_ACTIONS = ("subscribe", "unsubscribe")
CONTROL_ACTIONS = ("ping",)
ACTIONS = GATEWAY_ACTIONS + EVENT_ACTIONS + CONTROL_ACTIONS

# request_id is echoed into every reply and the request log: keep it a short identifier.
MAX_REQUEST_ID_CHARS = 200
# Pseudo-action under which messages without a readable action are logged and counted (a
# bounded metrics label, whatever the client sends).
UNREADABLE = "invalid"


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


@dataclass
class ClientMessage:
    """One parsed client message."""

    action: str
    request_id: str | int | None = None
    client_name: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)
    heartbeat_only: bool = False  # {"type":"pong"}: counts as activity, gets no reply


class BadMessage(Exception):
    """A message that cannot be served; ``reply`` is the error reply to send back.

    Raised by ``parse_message``; the connection sends the reply and keeps the socket open.
    """

    def __init__(self, error: ApiError, request_id: str | int | None, action: str) -> None:
        super().__init__(error.message)
        self.error = error
        self.request_id = request_id
        self.action = action


def parse_message(raw: str | bytes) -> ClientMessage:
    """Validate one client message; raises ``BadMessage`` with a stable code on any defect."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadMessage(
                ApiError("invalid_json", "the message is not valid UTF-8 text"), None, UNREADABLE
            ) from None
    try:
        doc = strict_loads(raw)
    except (ValueError, RecursionError) as exc:  # nesting bombs too
        raise BadMessage(
            ApiError("invalid_json", "the message is not valid JSON", detail=str(exc)),
            None,
            UNREADABLE,
        ) from None
    if not isinstance(doc, dict):
        raise BadMessage(
            ApiError("invalid_request", "a message must be a JSON object"), None, UNREADABLE
        )

    request_id = doc.get("request_id", doc.get("requestId"))
    if request_id is not None and (
        isinstance(request_id, bool)
        or not isinstance(request_id, str | int)
        or len(str(request_id)) > MAX_REQUEST_ID_CHARS
    ):
        raise BadMessage(
            _field_error("request_id", f"a string or integer of at most {MAX_REQUEST_ID_CHARS}"),
            None,
            UNREADABLE,
        )

    action = doc.get("action")
    if action is None and doc.get("type") == "pong":
        return ClientMessage(action="pong", request_id=request_id, heartbeat_only=True)
    if action is None:
        raise BadMessage(_missing("action"), request_id, UNREADABLE)
    if not isinstance(action, str):
        raise BadMessage(_field_error("action", "a string"), request_id, UNREADABLE)
    if action not in ACTIONS:
        raise BadMessage(
            ApiError(
                "unknown_action",
                f"unknown action '{action[:64]}'",
                data={"actions": list(ACTIONS)},
            ),
            request_id,
            UNREADABLE,
        )

    client_name = doc.get("client_name", doc.get("clientName"))
    if client_name is not None and not isinstance(client_name, str):
        raise BadMessage(_field_error("client_name", "a string"), request_id, action)

    headers_in = doc.get("headers") or {}
    if not isinstance(headers_in, dict):
        raise BadMessage(_field_error("headers", "an object"), request_id, action)
    headers: dict[str, str] = {}
    for name, value in headers_in.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        if not isinstance(value, str | int | float):
            raise BadMessage(_field_error(f"headers.{name}", "a string"), request_id, action)
        headers[str(name).lower()] = str(value)

    body = doc.get("body")
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise BadMessage(_field_error("body", "an object"), request_id, action)
    return ClientMessage(action, request_id, client_name, headers, body)


def _missing(name: str) -> ApiError:
    return ApiError("invalid_request", f"missing field '{name}'", data={"field": name})


def _field_error(name: str, expected: str) -> ApiError:
    return ApiError("invalid_request", f"field '{name}' must be {expected}", data={"field": name})


def connection_message(data: dict[str, Any]) -> str:
    return dumps(
        {
            "type": "connection",
            "status": "success",
            "message": "connected to the Athena WebSocket gateway",
            "data": data,
        }
    )


def ping_message() -> str:
    return dumps({"type": "ping", "timestamp": round(time.time(), 3)})
