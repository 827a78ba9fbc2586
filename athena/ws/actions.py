"""What each WebSocket action does: the HTTP gateway's services, subscriptions, ping.

``gateway.*`` actions call the same functions as ``POST /gateway/<op>`` (``athena.services.
gateway``; ``gateway.rpc`` and ``gateway.transaction`` those of ``/gateway/rpc`` and
``/gateway/transaction``): client resolution, ``authorize`` and rights checks happen there, exactly as on HTTP.

Subscriptions (decided here, since the contract only says "subscribing needs the table's read
right"):

* ``{table}``: the table must exist in the client's schema (400 ``unknown_table`` otherwise) and
  the caller needs ``<table>.read`` (or ``gateway.read``, wildcards) — the right a fetch of that
  table needs.
* ``{event}``: the key must be valid for the client (401/403 like any request), and each event
  is delivered only if the key may read the table the event's rows came from. A subscriber thus
  never receives rows through an event that it could not fetch. With enforcement off for the
  client, as on HTTP, a valid key (or none) identifies and does not restrict.

Rights are checked when subscribing; a key deactivated later keeps its open subscriptions until
the socket closes (its next request is refused as usual).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import trio

from athena.auth.guard import Principal, authorize
from athena.auth.rights import table_right
from athena.context import CallContext
from athena.errors import ApiError
from athena.http import render
from athena.services.clients import resolve_client
from athena.services.events import ChangeEvent, normalize_table
from athena.ws import protocol

if TYPE_CHECKING:
    from athena.ws.connection import Connection

# Event names are chosen by publishers (X-Publish-Event); bound what a subscriber may send.
MAX_EVENT_NAME_CHARS = 200
# A subscribe waits at most this long for its announcement to the other instances.
ANNOUNCE_TIMEOUT_S = 2.0

log = logging.getLogger("athena.ws")


async def dispatch(
    conn: Connection, ctx: CallContext, message: protocol.ClientMessage
) -> tuple[str, int]:
    """Serve one message; returns the reply text and its HTTP-equivalent status."""
    action = message.action
    if action in protocol.GATEWAY_ACTIONS:
        return await _gateway(conn, ctx, message)
    if action == "subscribe":
        return await _subscribe(conn, ctx, message)
    if action == "unsubscribe":
        return _unsubscribe(conn, message)
    if action == "ping":
        reply = render.ws_data_reply(
            message.request_id, action, "pong", {"timestamp": round(time.time(), 3)}
        )
        return reply, 200
    raise ApiError("unknown_action", f"unknown action '{action}'")  # parse_message prevents it


def _rpc(rt: Any, ctx: CallContext, body: Any) -> Any:
    from athena.services.rest.rpc import gateway_rpc

    if not isinstance(body, dict):
        raise ApiError("invalid_request", "the body must be a JSON object")
    return gateway_rpc(rt, ctx, body)


def _transaction(rt: Any, ctx: CallContext, body: Any) -> Any:
    from athena.services.transaction import transaction

    return transaction(rt, ctx, body)


# Actions served by their own services, beside the data gateway's five.
_EXTRA_SERVICES = {"rpc": _rpc, "transaction": _transaction}


async def _gateway(
    conn: Connection, ctx: CallContext, message: protocol.ClientMessage
) -> tuple[str, int]:
    try:
        from athena.services import gateway  # the data gateway's services (shared with HTTP)
    except ImportError:
        raise ApiError(
            "service_unavailable", "the data gateway is not available in this build"
        ) from None
    operation = message.action.partition(".")[2]
    service = _EXTRA_SERVICES.get(operation) or getattr(gateway, operation)
    result = await service(conn.rt, ctx, message.body)
    reply = render.ws_success_reply(
        message.request_id, message.action, result.message, result.data_json, result.extras
    )
    return reply, result.status


def _text_field(body: dict[str, Any], *names: str) -> str | None:
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            raise ApiError(
                "invalid_request",
                f"field '{name}' must be a non-empty string",
                data={"field": name},
            )
        return value.strip()
    return None


async def _subscribe(
    conn: Connection, ctx: CallContext, message: protocol.ClientMessage
) -> tuple[str, int]:
    body = message.body
    event = _text_field(body, "event", "event_name")
    table = _text_field(body, "table", "table_name")
    if (event is None) == (table is None):
        raise ApiError(
            "invalid_request",
            "subscribe needs exactly one of body.event or body.table",
            data={"field": "body.event|body.table"},
        )
    if event is not None and len(event) > MAX_EVENT_NAME_CHARS:
        raise ApiError(
            "invalid_request",
            f"event names are at most {MAX_EVENT_NAME_CHARS} characters",
            data={"field": "body.event"},
        )
    if len(conn.subscriptions) >= conn.limits.max_subscriptions:
        raise ApiError(
            "too_many_subscriptions",
            f"a connection may hold at most {conn.limits.max_subscriptions} subscriptions",
            data={"limit": conn.limits.max_subscriptions},
        )

    rt = conn.rt
    entry = resolve_client(rt, ctx)
    ctx.operation = "subscribe"
    data: dict[str, Any] = {"client": entry.name}
    if table is not None:
        # Rights first: a caller without them learns nothing about which tables exist.
        await authorize(rt, ctx, entry.name, table_right(normalize_table(table) or table, "read"))
        relation = await rt.introspection.relation(entry, table)
        ctx.table_name = relation.name
        name = (
            relation.name if relation.schema == "public" else f"{relation.schema}.{relation.name}"
        )
        sub = conn.add_subscription(client=entry.name, table=name)
        data["table"] = name
    else:
        principal = await authorize(rt, ctx, entry.name, None)
        enforced = (await rt.auth_store.enforcement()).applies_to(entry.name)
        sub = conn.add_subscription(
            client=entry.name, event=event, allow=_readable_by(principal) if enforced else None
        )
        data["event"] = event
    await _announce(conn)
    return render.ws_data_reply(
        message.request_id,
        message.action,
        "Subscribed",
        {"subscription_id": sub.id, **data},
    ), 200


async def _announce(conn: Connection) -> None:
    """Tell the other instances about a new subscription before replying (see ws.relay), so a
    write the client makes after the reply reaches it wherever it is made."""
    relay = conn.rt.event_relay
    with trio.move_on_after(ANNOUNCE_TIMEOUT_S):
        try:
            await relay.wait_listening()
            await relay.announce_interest()
        except Exception:  # catalog trouble: local delivery still works; the refresh retries
            log.warning("announcing a subscription to other instances failed", exc_info=True)


def _readable_by(principal: Principal) -> Any:
    """Event filter: only rows of tables ``principal`` may read (None when it may read all)."""
    if principal.is_master or principal.anonymous:
        return None

    def allow(ev: ChangeEvent) -> bool:
        table = normalize_table(ev.table)
        return table is None or principal.can(table_right(table, "read"))

    return allow


def _unsubscribe(conn: Connection, message: protocol.ClientMessage) -> tuple[str, int]:
    sub_id = _text_field(message.body, "subscription_id", "subscriptionId", "id")
    if sub_id is None:
        raise ApiError(
            "invalid_request",
            "unsubscribe needs body.subscription_id",
            data={"field": "body.subscription_id"},
        )
    if conn.remove_subscription(sub_id) is None:
        raise ApiError(
            "unknown_subscription",
            f"no subscription '{sub_id[:64]}' on this connection",
            data={"subscription_id": sub_id[:64]},
        )
    return render.ws_data_reply(
        message.request_id, message.action, "Unsubscribed", {"subscription_id": sub_id}
    ), 200
