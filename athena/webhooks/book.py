"""Webhooks in the catalog: validation, CRUD, and the in-memory index the write path asks.

The write path must know, without a round trip, whether a write to ``(client, table)`` fires
some webhook: ``WebhookIndex`` holds the enabled webhooks' filters, reloaded from the catalog
every ``ATHENA_WEBHOOK_REFRESH_SECONDS`` by every instance (and at once on the instance where a
webhook changed). A webhook therefore applies to writes on other instances within that delay.

Secrets: the HMAC key must be known in clear to sign, so it is stored as given (or generated,
and shown once, in the answer to the POST); no other answer ever shows it.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
import trio
from psycopg.rows import dict_row

from athena.errors import ApiError
from athena.services.events import normalize_table
from athena.services.outbound import OutboundPolicy
from athena.supervisor import BackgroundTask
from athena.webhooks.dispatcher import Dispatcher
from athena.webhooks.events import EVENT_NAMES, EVENTS, other_event_body
from athena.webhooks.outbox import ClientOutbox, run_mover

if TYPE_CHECKING:
    from athena.backups.jobs import JobRegistry
    from athena.runtime import Runtime

log = logging.getLogger("athena.webhooks")

FIELDS = ("name", "url", "events", "client_name", "table_name", "enabled", "secret")
MAX_NAME_CHARS = 200
MAX_URL_CHARS = 2048
MIN_SECRET_CHARS = 16

_SELECT = (
    "SELECT id, name, url, events, client_name, table_name, enabled, created_at, updated_at"
    " FROM athena.webhooks "
)


@dataclass(frozen=True)
class Filter:
    """What one enabled webhook listens to."""

    id: int
    events: frozenset[str]
    client_name: str | None
    table_name: str | None

    def wants(self, client: str, table: str | None, event: str) -> bool:
        if event not in self.events:
            return False
        if self.client_name is not None and self.client_name != client:
            return False
        return self.table_name is None or self.table_name == normalize_table(table)


class WebhookIndex:
    """The enabled webhooks' filters, as of the last reload."""

    def __init__(self) -> None:
        self.filters: tuple[Filter, ...] = ()
        self.loaded = False

    def matching(self, client: str, table: str | None, event: str) -> list[int]:
        return [f.id for f in self.filters if f.wants(client, table, event)]

    def clients(self, all_clients: list[str]) -> set[str]:
        """Clients some webhook may receive write events of (their outboxes are drained)."""
        names: set[str] = set()
        for f in self.filters:
            if any(e.startswith(("gateway.", "rest.")) for e in f.events):
                if f.client_name is None:
                    return set(all_clients)
                names.add(f.client_name)
        return names


def _invalid(message: str, field: str) -> ApiError:
    return ApiError("invalid_webhook", message, data={"field": field})


def webhook_json(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["events"] = list(row["events"])
    for name in ("created_at", "updated_at"):
        value = row.get(name)
        out[name] = value.isoformat() if value is not None else None
    return out


async def parse_webhook(
    body: dict[str, Any], policy: OutboundPolicy, current: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The columns of a webhook from a POST body, or a PATCH body over ``current``."""
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise _invalid(f"unknown field(s): {', '.join(unknown)}", unknown[0])
    merged = {**(current or {}), **body}
    if current is None:
        for name in ("name", "url", "events"):
            if body.get(name) in (None, "", []):
                raise _invalid(f"{name} is required", name)
    name = merged.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS:
        raise _invalid(f"name must be a non-empty string of at most {MAX_NAME_CHARS}", "name")
    url = merged.get("url")
    if not isinstance(url, str) or len(url) > MAX_URL_CHARS:
        raise _invalid(f"url must be a string of at most {MAX_URL_CHARS} characters", "url")
    if "url" in body or current is None:
        await policy.check(url)  # 400 outbound_url_refused (checked again at each delivery)
    events = merged.get("events")
    if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
        raise _invalid("events must be a non-empty list of event names", "events")
    bad = sorted(set(events) - set(EVENT_NAMES))
    if bad:
        raise _invalid(
            f"unknown event(s): {', '.join(bad)} (see GET /admin/webhooks/events)", "events"
        )
    values: dict[str, Any] = {
        "name": name.strip(),
        "url": url,
        "events": sorted(set(events)),
        "enabled": merged.get("enabled", True),
    }
    if not isinstance(values["enabled"], bool):
        raise _invalid("enabled must be true or false", "enabled")
    for field in ("client_name", "table_name"):
        value = merged.get(field)
        if value is not None and (
            not isinstance(value, str) or not value.strip() or "\x00" in value
        ):
            raise _invalid(f"{field} must be a non-empty string or null", field)
        values[field] = value.strip() if isinstance(value, str) else None
    if values["table_name"] is not None:
        values["table_name"] = normalize_table(values["table_name"])
    secret = body.get("secret")
    if secret is not None:
        if not isinstance(secret, str) or len(secret) < MIN_SECRET_CHARS or "\x00" in secret:
            raise _invalid(
                f"secret must be a string of at least {MIN_SECRET_CHARS} characters", "secret"
            )
        values["secret"] = secret
    elif current is None:
        values["secret"] = "whsec_" + secrets.token_urlsafe(32)
    return values


class WebhookBook:
    """Webhook CRUD on the catalog, and the index the write path reads."""

    def __init__(self, rt: Any) -> None:
        self.rt = rt
        self.index = WebhookIndex()
        self.policy = OutboundPolicy.from_settings(rt.settings)
        self.refresh_seconds = float(rt.settings.webhook_refresh_seconds)
        self.changed = trio.Event()
        self.instance_id = uuid.uuid4().hex
        self.outboxes: dict[str, ClientOutbox] = {}
        self.mover_wakeup = trio.Event()
        self.dispatcher_wakeup = trio.Event()

    def outbox(self, client_name: str) -> ClientOutbox:
        box = self.outboxes.get(client_name)
        if box is None:
            box = self.outboxes[client_name] = ClientOutbox(client_name, self.wake_mover)
        return box

    def wake_mover(self) -> None:
        self.mover_wakeup.set()

    # -- the index -----------------------------------------------------------------------

    async def reload(self) -> None:
        def query(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
            return conn.execute(
                "SELECT id, events, client_name, table_name FROM athena.webhooks WHERE enabled"
            ).fetchall()

        rows = await self.rt.catalog.run(query)
        self.index.filters = tuple(Filter(int(r[0]), frozenset(r[1]), r[2], r[3]) for r in rows)
        self.index.loaded = True

    async def keep_index_fresh(self) -> None:
        """Supervised: reload every refresh period, or at once after a local change."""
        while True:
            try:
                await self.reload()
            except Exception:
                log.warning("reloading webhooks failed", exc_info=True)
            with trio.move_on_after(self.refresh_seconds):
                await self.changed.wait()
            self.changed = trio.Event()

    async def _after_change(self) -> None:
        await self.reload()
        self.changed.set()

    # -- CRUD ----------------------------------------------------------------------------

    async def list(self) -> list[dict[str, Any]]:
        def query(conn: psycopg.Connection) -> list[dict[str, Any]]:
            with conn.cursor(row_factory=dict_row) as cur:
                return cur.execute(_SELECT + "ORDER BY id").fetchall()

        return [webhook_json(r) for r in await self.rt.catalog.run(query)]

    async def get(self, webhook_id: int) -> dict[str, Any] | None:
        def query(conn: psycopg.Connection) -> dict[str, Any] | None:
            with conn.cursor(row_factory=dict_row) as cur:
                return cur.execute(_SELECT + "WHERE id = %s", (webhook_id,)).fetchone()

        row = await self.rt.catalog.run(query)
        return webhook_json(row) if row else None

    async def secret_and_url(self, webhook_id: int) -> tuple[str, str] | None:
        def query(conn: psycopg.Connection) -> tuple[str, str] | None:
            row = conn.execute(
                "SELECT secret, url FROM athena.webhooks WHERE id = %s", (webhook_id,)
            ).fetchone()
            return (str(row[0]), str(row[1])) if row else None

        return await self.rt.catalog.run(query)  # type: ignore[no-any-return]

    async def create(self, values: dict[str, Any]) -> dict[str, Any]:
        def insert(conn: psycopg.Connection) -> dict[str, Any]:
            with conn.cursor(row_factory=dict_row) as cur:
                row = cur.execute(
                    """INSERT INTO athena.webhooks
                           (name, url, events, client_name, table_name, enabled, secret)
                       VALUES (%(name)s, %(url)s, %(events)s, %(client_name)s, %(table_name)s,
                               %(enabled)s, %(secret)s)
                       RETURNING id""",
                    values,
                ).fetchone()
                assert row is not None
                return cur.execute(_SELECT + "WHERE id = %s", (row["id"],)).fetchone()  # type: ignore[return-value]

        created = webhook_json(await self.rt.catalog.run(insert))
        await self._after_change()
        return created

    async def update(self, webhook_id: int, values: dict[str, Any]) -> dict[str, Any] | None:
        def write(conn: psycopg.Connection) -> dict[str, Any] | None:
            with conn.cursor(row_factory=dict_row) as cur:
                row = cur.execute(
                    """UPDATE athena.webhooks
                          SET name = %(name)s, url = %(url)s, events = %(events)s,
                              client_name = %(client_name)s, table_name = %(table_name)s,
                              enabled = %(enabled)s, secret = coalesce(%(secret)s, secret),
                              updated_at = now()
                        WHERE id = %(id)s RETURNING id""",
                    {"secret": None, **values, "id": webhook_id},
                ).fetchone()
                if row is None:
                    return None
                return cur.execute(_SELECT + "WHERE id = %s", (webhook_id,)).fetchone()

        row = await self.rt.catalog.run(write)
        await self._after_change()
        return webhook_json(row) if row else None

    async def delete(self, webhook_id: int) -> bool:
        def delete(conn: psycopg.Connection) -> bool:
            return (
                conn.execute("DELETE FROM athena.webhooks WHERE id = %s", (webhook_id,)).rowcount
                > 0
            )

        deleted = bool(await self.rt.catalog.run(delete))
        await self._after_change()
        return deleted

    # -- deliveries ------------------------------------------------------------------------

    async def deliveries(
        self, webhook_id: int, *, state: str | None, limit: int, before_id: int | None
    ) -> tuple[list[dict[str, Any]], int | None]:
        """A page of the webhook's deliveries, newest first, each with its attempts."""

        def query(conn: psycopg.Connection) -> list[dict[str, Any]]:
            with conn.cursor(row_factory=dict_row) as cur:
                rows = cur.execute(
                    _SELECT_DELIVERIES
                    + """WHERE webhook_id = %(w)s
                           AND (%(state)s::text IS NULL OR state = %(state)s)
                           AND (%(before)s::bigint IS NULL OR id < %(before)s)
                         ORDER BY id DESC LIMIT %(limit)s""",
                    {"w": webhook_id, "state": state, "before": before_id, "limit": limit + 1},
                ).fetchall()
                _with_attempts(cur, rows)
                return rows

        rows = await self.rt.catalog.run(query)
        more = len(rows) > limit
        rows = rows[:limit]
        return [delivery_json(r) for r in rows], (int(rows[-1]["id"]) if more and rows else None)

    async def delivery(self, delivery_id: int) -> dict[str, Any] | None:
        def query(conn: psycopg.Connection) -> dict[str, Any] | None:
            with conn.cursor(row_factory=dict_row) as cur:
                rows = cur.execute(_SELECT_DELIVERIES + "WHERE id = %s", (delivery_id,)).fetchall()
                _with_attempts(cur, rows)
                return rows[0] if rows else None

        row = await self.rt.catalog.run(query)
        return delivery_json(row) if row else None


_SELECT_DELIVERIES = (
    "SELECT id, webhook_id, event, event_uuid::text AS event_uuid, state, tries, attempts,"
    " next_attempt_at, last_status, last_error, created_at, delivered_at, payload"
    " FROM athena.webhook_deliveries "
)


def _with_attempts(cur: psycopg.Cursor[Any], rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    found = cur.execute(
        """SELECT delivery_id, attempt, at, status, latency_ms, response_excerpt, error
             FROM athena.webhook_attempts WHERE delivery_id = ANY(%s) ORDER BY id""",
        ([r["id"] for r in rows],),
    ).fetchall()
    by_id: dict[int, list[dict[str, Any]]] = {}
    for a in found:
        by_id.setdefault(a["delivery_id"], []).append(
            {
                "attempt": a["attempt"],
                "at": a["at"].isoformat(),
                "status": a["status"],
                "latency_ms": round(a["latency_ms"], 3) if a["latency_ms"] is not None else None,
                "response_excerpt": a["response_excerpt"],
                "error": a["error"],
            }
        )
    for r in rows:
        r["attempt_log"] = by_id.get(r["id"], [])


def delivery_json(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for name in ("next_attempt_at", "created_at", "delivered_at"):
        value = row.get(name)
        out[name] = value.isoformat() if value is not None else None
    return out


def backup_event_hook(conn: psycopg.Connection, job: Any) -> None:
    """In the transaction recording a backup job's end: its backup.* deliveries."""
    if job.kind != "backup":
        return
    event = "backup.succeeded" if job.state == "succeeded" else "backup.failed"
    from datetime import UTC, datetime

    uid = str(uuid.uuid4())
    body = other_event_body(
        event_uuid=uid,
        event=event,
        occurred_at=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        client=job.client_name,
        job={
            "id": job.id, "state": job.state, "backup_key": job.backup_key, "label": job.label,
            "schedule_id": job.schedule_id, "size_bytes": job.bytes,
            "error_code": job.error_code, "error": job.error,
        },
    )  # fmt: skip
    conn.execute(
        """INSERT INTO athena.webhook_deliveries (webhook_id, event, event_uuid, payload)
           SELECT id, %s, %s::uuid, %s FROM athena.webhooks
            WHERE enabled AND %s = ANY(events)
              AND (client_name IS NULL OR client_name = %s)""",
        (event, uid, body, event, job.client_name),
    )


def attach(rt: Runtime, jobs: JobRegistry) -> tuple[WebhookBook, Dispatcher]:
    """Start-up (``Runtime._start_capabilities``): the webhook book, its index refresher, the
    outbox mover and the dispatcher; finished backup ``jobs`` raise their webhook events."""
    book = WebhookBook(rt)
    dispatcher = Dispatcher(rt, book)
    jobs.on_finish.append(backup_event_hook)
    rt.background.append(BackgroundTask("webhook_index", book.keep_index_fresh))
    rt.background.append(BackgroundTask("webhook_outbox_mover", lambda: run_mover(rt, book)))
    rt.background.append(BackgroundTask("webhook_dispatcher", dispatcher.run))
    return book, dispatcher


__all__ = ["EVENTS", "WebhookBook", "attach"]
