"""The catalog of webhook trigger types (``GET /admin/webhooks/events``) and the event body.

Every delivery POSTs one JSON object::

    {"id": "<event uuid>", "event": "gateway.insert", "client": "athena", "table": "users",
     "request_id": "…", "occurred_at": "2026-…Z", "row_count": 2, "rows": [...]}

``rows`` are the rows the write returned (the columns it was asked to return, as the WebSocket
events carry them). Backup events carry ``job`` instead of ``table``/``rows``.
"""

from __future__ import annotations

import json
from typing import Any

EVENTS: dict[str, str] = {
    "gateway.insert": "Rows inserted (or upserted) through /gateway/insert and its aliases",
    "gateway.update": "Rows updated through /gateway/update and its aliases",
    "gateway.delete": "Rows deleted through /gateway/delete and its aliases",
    "rest.insert": "Rows inserted through POST /rest/v1/{table}",
    "rest.update": "Rows updated through PATCH /rest/v1/{table}",
    "rest.delete": "Rows deleted through DELETE /rest/v1/{table}",
    "backup.succeeded": "A backup job of a client succeeded (scheduled or not)",
    "backup.failed": "A backup job of a client failed or was cancelled",
}
EVENT_NAMES = tuple(EVENTS)
TEST_EVENT = "webhook.test"


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def write_event_body(
    *, event_uuid: str, event: str, client: str, table: str | None, request_id: str | None,
    occurred_at: str, row_count: int, rows_json: str,
) -> str:  # fmt: skip
    """The body of a write event; ``rows_json`` (built by PostgreSQL) is passed through."""
    head = _dumps(
        {
            "id": event_uuid,
            "event": event,
            "client": client,
            "table": table,
            "request_id": request_id,
            "occurred_at": occurred_at,
            "row_count": row_count,
        }
    )
    return head[:-1] + ',"rows":' + rows_json + "}"


def other_event_body(*, event_uuid: str, event: str, occurred_at: str, **fields: Any) -> str:
    return _dumps({"id": event_uuid, "event": event, "occurred_at": occurred_at, **fields})
