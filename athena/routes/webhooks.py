"""Outbound webhooks: ``/admin/webhooks*`` (admin key). Delivery is in ``athena.webhooks``."""

from __future__ import annotations

from quart import Blueprint, Response, request

from athena.auth.guard import require_admin
from athena.backups.jobs import decode_id_cursor, encode_cursor
from athena.db.database import DatabaseUnavailable
from athena.errors import ApiError
from athena.routes._http import ctx, json_object, json_response, rt
from athena.webhooks.book import WebhookBook, parse_webhook
from athena.webhooks.dispatcher import redeliver
from athena.webhooks.events import EVENTS

blueprint = Blueprint("webhooks", __name__)

_STATES = ("pending", "delivered", "dead")
MAX_DELIVERIES_LISTED = 500


def _book() -> WebhookBook:
    require_admin(rt(), ctx())
    return rt().webhooks


def _id(raw: str, what: str = "webhook") -> int:
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise ApiError("invalid_request", f"the {what} id is not an integer", data={"id": raw})
    return int(raw)


def _not_found(webhook_id: int) -> ApiError:
    return ApiError("webhook_not_found", "no webhook has this id", data={"id": webhook_id})


def _catalog_down() -> ApiError:
    return ApiError("catalog_unavailable", "the catalog database is unreachable")


@blueprint.get("/admin/webhooks")
async def list_webhooks() -> Response:
    book = _book()
    try:
        return json_response({"webhooks": await book.list()})
    except DatabaseUnavailable:
        raise _catalog_down() from None


@blueprint.get("/admin/webhooks/events")
async def list_events() -> Response:
    _book()
    events = [{"name": name, "description": text} for name, text in EVENTS.items()]
    return json_response({"events": events})


@blueprint.post("/admin/webhooks")
async def create_webhook() -> Response:
    """201 with the webhook and, this once, its ``secret``."""
    book = _book()
    values = await parse_webhook(await json_object(), book.policy)
    try:
        created = await book.create(values)
    except DatabaseUnavailable:
        raise _catalog_down() from None
    return json_response({**created, "secret": values["secret"]}, 201)


@blueprint.get("/admin/webhooks/<id>")
async def get_webhook(id: str) -> Response:
    book = _book()
    webhook_id = _id(id)
    found = await book.get(webhook_id)
    if found is None:
        raise _not_found(webhook_id)
    return json_response(found)


@blueprint.patch("/admin/webhooks/<id>")
async def update_webhook(id: str) -> Response:
    book = _book()
    webhook_id = _id(id)
    body = await json_object()
    current = await book.get(webhook_id)
    if current is None:
        raise _not_found(webhook_id)
    updated = await book.update(webhook_id, await parse_webhook(body, book.policy, current))
    if updated is None:
        raise _not_found(webhook_id)
    return json_response(updated)


@blueprint.delete("/admin/webhooks/<id>")
async def delete_webhook(id: str) -> Response:
    book = _book()
    webhook_id = _id(id)
    if not await book.delete(webhook_id):
        raise _not_found(webhook_id)
    return json_response({"id": webhook_id, "deleted": True})


@blueprint.get("/admin/webhooks/<id>/deliveries")
async def list_deliveries(id: str) -> Response:
    """Newest first, each with every attempt (time, status, latency, response excerpt)."""
    book = _book()
    webhook_id = _id(id)
    args = request.args
    state = args.get("state") or None
    if state is not None and state not in _STATES:
        raise ApiError("invalid_request", f"state must be one of {', '.join(_STATES)}")
    try:
        limit = int(args.get("limit", "50"))
    except ValueError:
        raise ApiError("invalid_pagination", "limit must be an integer") from None
    if not 1 <= limit <= MAX_DELIVERIES_LISTED:
        raise ApiError("invalid_pagination", f"limit must be between 1 and {MAX_DELIVERIES_LISTED}")
    before = decode_id_cursor(args["cursor"]) if args.get("cursor") else None
    if await book.get(webhook_id) is None:
        raise _not_found(webhook_id)
    rows, next_id = await book.deliveries(webhook_id, state=state, limit=limit, before_id=before)
    cursor = encode_cursor(next_id) if next_id is not None else None
    return json_response({"deliveries": rows, "next_cursor": cursor})


@blueprint.post("/admin/webhooks/<id>/test")
async def test_webhook(id: str) -> Response:
    """Send a ``webhook.test`` event now and answer the delivery with its attempt."""
    _book()
    webhook_id = _id(id)
    dispatcher = rt().webhook_dispatcher
    delivery = await dispatcher.send_test(webhook_id)
    if delivery is None:
        raise _not_found(webhook_id)
    return json_response({"delivery": delivery})


@blueprint.post("/admin/webhooks/deliveries/<id>/redeliver")
async def redeliver_delivery(id: str) -> Response:
    """Queue a delivery again (typically a ``dead`` one); 202 with it, now pending."""
    book = _book()
    delivery_id = _id(id, "delivery")
    found = await redeliver(rt(), book, delivery_id)
    if found is None:
        raise ApiError(
            "webhook_delivery_not_found", "no delivery has this id", data={"id": delivery_id}
        )
    return json_response({"delivery": found}, 202)
