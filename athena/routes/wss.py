"""``/wss/gateway`` (the WebSocket gateway) and ``/wss/info`` (its contract, summarised).

Thin: the connection logic lives in ``athena.ws``.
"""

from __future__ import annotations

from quart import Blueprint, Response, websocket

from athena.auth.guard import authenticate_early
from athena.routes._http import ctx, json_response, rt
from athena.ws import protocol
from athena.ws.connection import ROUTE, Connection, Limits

blueprint = Blueprint("wss", __name__)


@blueprint.websocket(ROUTE)
async def gateway_socket() -> None:
    runtime = rt()
    upgrade = ctx()
    if runtime.settings.ws_require_key:
        # ATHENA_WS_REQUIRE_KEY: the upgrade itself is authenticated (a valid key wherever
        # enforcement applies to its X-Athena-Client); refused with 401 before it is accepted.
        await authenticate_early(runtime, upgrade)
    connection = Connection(
        runtime,
        websocket._get_current_object(),  # type: ignore[attr-defined]  # tasks outlive the proxy lookup
        upgrade,
        Limits.from_settings(runtime.settings),
    )
    await connection.serve()


@blueprint.get("/wss/info")
async def wss_info() -> Response:
    runtime = rt()
    limits = Limits.from_settings(runtime.settings)
    relay = runtime.event_relay
    return json_response(
        {
            "status": "success",
            "message": "Athena WebSocket gateway",
            "data": {
                "transport": "wss",
                "path": ROUTE,
                "state": "live",
                "actions": list(protocol.ACTIONS),
                "notes": [
                    "Send JSON messages {request_id, action, client_name?, headers?, body?}; "
                    "each gets one reply {type:'reply', request_id, action, status, message, "
                    "data|error, code?} with the HTTP gateway's envelope.",
                    "Credentials and client come from the upgrade request headers (apikey, "
                    "X-Athena-Client, ...) or per message in headers / client_name.",
                    "Requests on one socket run concurrently (up to max_concurrent_requests); "
                    "replies may arrive out of order, matched by request_id.",
                    "subscribe {event} or {table} (needs <table>.read); deliveries are "
                    "{type:'event', subscription_id, event?, client, table, operation, rows}, "
                    "across every gateway instance sharing the catalog (LISTEN/NOTIFY).",
                    "The server sends {type:'ping'} to a quiet client; answer with any message "
                    "(e.g. {type:'pong'}) or the socket is closed with 1001 after "
                    "idle_timeout_s.",
                    "Close codes: 1009 message too big, 1013 slow consumer (event queue "
                    "overflowed), 1001 idle timeout or server shutdown.",
                    "Full contract: /openapi-wss.yaml",
                ],
                "limits": limits.as_dict(),
                "connections": len(runtime.ws_connections),
                "event_relay": "listening" if relay.listening else "not listening",
            },
        }
    )
