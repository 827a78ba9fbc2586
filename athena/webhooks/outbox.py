"""The outbox: a write's webhook event is committed in the write's own transaction.

A client's data and the catalog are different databases, so one transaction cannot span the
write and a catalog row. The event is therefore written where the write is: a table
``athena_outbox.events`` in the client's database (created on first use, owned by the client's
role), inserted in the SAME transaction as the gateway's write — a committed write always has
its event, a rolled-back one never does. A supervised mover in every instance then carries the
events into the catalog (``athena.webhook_deliveries``, one row per matching webhook) and
deletes them from the outbox:

    client DB: BEGIN; lock (advisory, one mover per client); SELECT events …
    catalog:   INSERT deliveries … ON CONFLICT (webhook_id, event_uuid) DO NOTHING; COMMIT
    client DB: DELETE those events; COMMIT

A crash between the two commits moves the events again; the unique event id makes the second
insert a no-op, so nothing is lost and nothing is doubled. One mover per client at a time keeps
the catalog's delivery order the order the events were written in.

The write path calls ``webhook_outbox(...)``: ``None`` (no webhook wants this write — the write
runs exactly as before) or an ``OutboxWrite`` that runs the statement and the event insert in
one transaction.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING, Any

import psycopg
import trio

from athena.db.clients import ClientEntry, require_db
from athena.errors import ApiError
from athena.services.events import normalize_table
from athena.webhooks.events import write_event_body

if TYPE_CHECKING:
    from athena.context import CallContext
    from athena.runtime import Runtime
    from athena.webhooks.book import WebhookBook

log = logging.getLogger("athena.webhooks.outbox")

OUTBOX_DDL = """
CREATE SCHEMA IF NOT EXISTS athena_outbox;
CREATE TABLE IF NOT EXISTS athena_outbox.events (
    id          bigserial PRIMARY KEY,
    event_uuid  uuid NOT NULL DEFAULT gen_random_uuid(),
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    event       text NOT NULL,
    table_name  text,
    request_id  text,
    webhook_ids bigint[] NOT NULL,
    row_count   integer NOT NULL,
    rows        json NOT NULL
);
"""
_INSERT_EVENT = (
    "INSERT INTO athena_outbox.events (event, table_name, request_id, webhook_ids, row_count,"
    " rows) VALUES (%s, %s, %s, %s, %s, %s::json)"
)
# Any constant: one mover per client database at a time (pg_try_advisory_xact_lock).
MOVER_LOCK = 0x4154_0201
MOVE_BATCH = 500


@dataclass
class OutboxWrite:
    """One write whose rows some webhooks want: runs it with its outbox row."""

    outbox: ClientOutbox
    event: str
    table: str | None
    request_id: str | None
    webhook_ids: list[int]

    def record(self, conn: psycopg.Connection, rows_json: str | bytes, count: int) -> None:
        """Insert the event inside the caller's open transaction (nothing for 0 rows)."""
        if count <= 0:
            return
        rows = rows_json.decode() if isinstance(rows_json, bytes) else rows_json
        conn.execute(
            _INSERT_EVENT,
            (self.event, self.table, self.request_id, self.webhook_ids, count, rows),
        )

    async def run_json(self, db: Any, statement: bytes, params: list[Any]) -> tuple[bytes, int]:
        """A gateway statement (one row: JSON text, count) and its event, one transaction."""
        await self.outbox.ensure(db)

        def work(conn: psycopg.Connection) -> tuple[bytes, int]:
            with conn.transaction():
                row = conn.execute(statement, params).fetchone()
                data, count = row if row is not None else ("[]", 0)
                text = data.decode() if isinstance(data, bytes) else str(data)
                self.record(conn, text, int(count))
            return text.encode(), int(count)

        result = await db.run(work)
        self.outbox.wake()
        return result  # type: ignore[no-any-return]


class ClientOutbox:
    """The outbox of one client database: created once, drained by the mover."""

    def __init__(self, name: str, wake: Callable[[], None]) -> None:
        self.name = name
        self.ready = False
        self._lock = trio.Lock()
        self.wake = wake

    async def ensure(self, db: Any) -> None:
        if self.ready:
            return
        async with self._lock:
            if self.ready:
                return

            def create(conn: psycopg.Connection) -> None:
                with conn.transaction():
                    conn.execute(OUTBOX_DDL)  # type: ignore[arg-type]  # constant DDL

            try:
                await db.run(create)
            except psycopg.Error as exc:
                raise ApiError(
                    "webhook_outbox_unavailable",
                    f"client '{self.name}' has webhooks, but their outbox table cannot be "
                    "created in its database (the client's role needs CREATE on the database)",
                    detail=getattr(exc, "sqlstate", None) or "",
                ) from None
            self.ready = True


def webhook_outbox(
    rt: Runtime, ctx: CallContext | None, entry: ClientEntry, table: str | None, event: str
) -> OutboxWrite | None:
    """The outbox write for this write, or ``None`` when no enabled webhook wants it."""
    book = rt.webhooks
    if not book.index.filters:
        return None
    table = normalize_table(table)
    ids = book.index.matching(entry.name, table, event)
    if not ids:
        return None
    return OutboxWrite(
        outbox=book.outbox(entry.name),
        event=event,
        table=table,
        request_id=ctx.request_id if ctx is not None else None,
        webhook_ids=ids,
    )


# -- the mover ---------------------------------------------------------------------------------


def move_events(client_conn: psycopg.Connection, catalog_pool: Any, client: str) -> int:
    """Carry one batch of ``client``'s outbox into the catalog; how many events moved.

    Runs in a worker thread with a connection to the client's database.
    """
    with client_conn.transaction():
        got = client_conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (MOVER_LOCK,)).fetchone()
        if not got or not got[0]:
            return 0  # another instance is moving this client's events right now
        exists = client_conn.execute(
            "SELECT to_regclass('athena_outbox.events') IS NOT NULL"
        ).fetchone()
        if not exists or not exists[0]:
            return 0
        rows = client_conn.execute(
            "SELECT id, event_uuid::text, created_at, event, table_name, request_id,"
            " webhook_ids, row_count, rows::text FROM athena_outbox.events ORDER BY id LIMIT %s",
            (MOVE_BATCH,),
        ).fetchall()
        if not rows:
            return 0
        deliveries = []
        for _, uid, created, event, table, request_id, ids, count, rows_json in rows:
            body = write_event_body(
                event_uuid=uid, event=event, client=client, table=table,
                request_id=request_id,
                occurred_at=created.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                row_count=count, rows_json=rows_json,
            )  # fmt: skip
            for webhook_id in ids:
                deliveries.append((webhook_id, event, uid, body))
        with catalog_pool.connection() as cat:
            with cat.transaction(), cat.cursor() as cur:
                # Webhooks deleted since the write have no deliveries (the JOIN drops them).
                cur.executemany(
                    """INSERT INTO athena.webhook_deliveries (webhook_id, event, event_uuid, payload)
                       SELECT w.id, %s, %s::uuid, %s FROM athena.webhooks w WHERE w.id = %s
                       ON CONFLICT (webhook_id, event_uuid) DO NOTHING""",
                    [(event, uid, body, wid) for wid, event, uid, body in deliveries],
                )
        client_conn.execute(
            "DELETE FROM athena_outbox.events WHERE id = ANY(%s)", ([r[0] for r in rows],)
        )
    return len(rows)


async def run_mover(rt: Runtime, book: WebhookBook) -> None:
    """Supervised in every instance: drain the outboxes of every client a webhook listens to,
    at once when a local write woke it, else every ``ATHENA_WEBHOOK_POLL_SECONDS``."""
    poll = float(rt.settings.webhook_poll_seconds)
    while True:
        book.mover_wakeup = trio.Event()
        moved = 0
        names = book.index.clients([e.name for e in rt.clients.entries()])
        for name in sorted(names):
            entry = rt.clients.get(name)
            if entry is None or (entry.db is None and not entry.uri):
                continue
            try:
                db = require_db(entry)
                while True:
                    n = await db.run(
                        lambda conn, name=name: move_events(conn, rt.catalog.pool, name)
                    )
                    moved += n
                    if n < MOVE_BATCH:
                        break
            except Exception:  # a client database that is away must not stop the others
                log.warning("moving webhook events of client %s failed", name, exc_info=True)
        if moved:
            book.dispatcher_wakeup.set()
        with trio.move_on_after(poll):
            await book.mover_wakeup.wait()


def rows_json_text(data: Any) -> str:
    """REST hands its event rows as text or decoded JSON: text either way."""
    if isinstance(data, (bytes, bytearray)):
        return bytes(data).decode()
    if isinstance(data, str):
        return data
    return json.dumps(data, separators=(",", ":"), default=str)
