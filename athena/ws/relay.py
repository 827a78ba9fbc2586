"""Carry events between gateway instances over PostgreSQL LISTEN/NOTIFY on the catalog.

Every instance sharing a catalog runs both halves (no lease: each one must hear every event):

* **sender** (``event_notify`` task): ``EventBus.publish`` hands each local event to
  ``enqueue()``, which only puts it in a bounded trio channel — a write request never waits for
  the relay. The task drains the channel in batches and, in one transaction per batch, calls
  ``pg_notify('athena_events', payload)``. A payload of ``NOTIFY_LIMIT`` bytes or more (PostgreSQL
  refuses 8000) is stored in ``athena.event_outbox`` and the notification carries its id.
* **listener** (``event_relay`` task): a dedicated connection (outside the pool: a LISTEN lives on
  one session), read on the event loop when its socket is readable; each notification from
  another instance (payloads carry the sender's instance id) is decoded — fetched from the outbox
  when it carries an id — and delivered to this instance's subscribers.

* **interest**: an instance only relays an event that some other instance has a subscriber
  for — otherwise every write (and every large one into the outbox) would be NOTIFYed to a
  cluster where nobody listens. Each instance announces its interest keys (``("t", client,
  table)`` / ``("e", client, event)``) on the same channel when they change (a ``subscribe``
  waits for that announcement before it replies, so a write made after the reply is relayed),
  every ``INTEREST_REFRESH_S`` (entries expire after ``INTEREST_TTL_S``), and when a starting
  instance asks. Until it has heard the others (``WARMUP_S`` after its listener starts), or while
  its listener is down, an instance relays everything.

Delivery is at most once: NOTIFY is not durable, so events published while a listener is
reconnecting are not replayed to that instance. Outbox rows are deleted after
``OUTBOX_RETENTION_S`` by whichever instance gets there first (idempotent).
"""

from __future__ import annotations

import itertools
import json
import logging
from typing import TYPE_CHECKING, Any

import psycopg
import trio
from psycopg import sql

from athena.observability.metrics import gauge
from athena.services.events import ChangeEvent, InterestKey, interest_keys_of
from athena.supervisor import BackgroundTask

if TYPE_CHECKING:
    from athena.runtime import Runtime

log = logging.getLogger("athena.events.relay")

CHANNEL = "athena_events"
# PostgreSQL rejects NOTIFY payloads of 8000 bytes or more; keep a margin for the envelope.
NOTIFY_LIMIT = 7900
# Events per NOTIFY transaction: one round trip carries many events under load.
BATCH_SIZE = 200
OUTBOX_RETENTION_S = 600
OUTBOX_SWEEP_EVERY_S = 60.0
INTEREST_REFRESH_S = 10.0
INTEREST_TTL_S = 35.0  # three refreshes may be lost before an instance is forgotten
WARMUP_S = 2.0  # time for the others to answer a starting listener's interest request

_NOTIFY_MANY = (
    "SELECT pg_notify(%s, p) FROM unnest(%s::text[]) WITH ORDINALITY AS t(p, n) ORDER BY n"
)
_NOTIFY_ONE = "SELECT pg_notify(%s, %s)"
_OUTBOX_INSERT = "INSERT INTO athena.event_outbox (payload) VALUES (%s::jsonb) RETURNING id"
_OUTBOX_READ = "SELECT payload::text FROM athena.event_outbox WHERE id = %s"
_OUTBOX_SWEEP = (
    "DELETE FROM athena.event_outbox WHERE created_at < now() - make_interval(secs => %s)"
)


class EventRelay:
    """Both halves of the relay for one process, with counters for metrics."""

    def __init__(self, rt: Runtime, queue_size: int) -> None:
        self.rt = rt
        self.instance_id = rt.events.instance_id
        self._send, self._recv = trio.open_memory_channel[ChangeEvent](queue_size)
        # Serial numbers make every payload unique: PostgreSQL folds identical payloads sent
        # in one transaction into one notification, which would swallow repeated events.
        self._serial = itertools.count(1)
        self._listen_limiter = trio.CapacityLimiter(1)
        self.sent = 0
        self.sent_via_outbox = 0
        self.dropped = 0
        self.received = 0
        self.skipped = 0  # not relayed: no other instance subscribes to them
        self.listening = False
        self._listening_event = trio.Event()
        # origin → (its interest keys, or None for "everything"; trio time it expires)
        self.remote: dict[str, tuple[frozenset[InterestKey] | None, float]] = {}
        self._warm_until = 0.0
        self._announced: frozenset[InterestKey] | None = None
        self._announce_lock = trio.Lock()
        self._interest_dirty = trio.Event()
        rt.events.interest_listeners.append(self._mark_interest_dirty)

    # -- sender ------------------------------------------------------------------------------

    def enqueue(self, ev: ChangeEvent) -> None:
        """Relay hook of ``EventBus.publish``: queue without waiting; drop when full."""
        if not self.remote_wants(ev):
            self.skipped += 1
            return
        try:
            self._send.send_nowait(ev)
        except trio.WouldBlock:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("event relay queue full: %d events not relayed", self.dropped)

    async def run_sender(self) -> None:
        """Supervised task: NOTIFY queued events in batches, forever."""
        while True:
            batch = [await self._recv.receive()]
            while len(batch) < BATCH_SIZE:
                try:
                    batch.append(self._recv.receive_nowait())
                except trio.WouldBlock:
                    break
            payloads = [(self._payload(ev), ev) for ev in batch]
            try:
                await self.rt.catalog.run(lambda conn, p=payloads: self._notify(conn, p))
                self.sent += len(batch)
            except Exception:
                # Catalog down: these events stay local. The write itself already succeeded.
                self.dropped += len(batch)
                log.warning("NOTIFY of %d events failed", len(batch), exc_info=True)

    def _payload(self, ev: ChangeEvent) -> str:
        return f'{{"serial":{next(self._serial)},{ev.wire_payload()[1:]}'

    def _notify(self, conn: psycopg.Connection, payloads: list[tuple[str, ChangeEvent]]) -> None:
        small: list[str] = []
        with conn.transaction():  # notifications are sent at commit, together with outbox rows
            for payload, ev in payloads:
                if len(payload.encode("utf-8")) < NOTIFY_LIMIT:
                    small.append(payload)
                    continue
                row = conn.execute(_OUTBOX_INSERT, (payload,)).fetchone()
                assert row is not None
                reference = self._outbox_reference(ev, row[0])
                if len(reference.encode("utf-8")) >= NOTIFY_LIMIT:
                    # Only a pathological event name gets here; one event must not sink the
                    # whole batch's transaction.
                    log.warning("event name too long to relay; event stays local")
                    self.dropped += 1
                    continue
                small.append(reference)
                self.sent_via_outbox += 1
            conn.execute(_NOTIFY_MANY, (CHANNEL, small))

    def _outbox_reference(self, ev: ChangeEvent, outbox_id: int) -> str:
        """The notification for an outboxed event: its id plus what subscribers match on, so a
        listener with no matching subscriber never fetches the rows."""
        head = {
            "origin": ev.origin,
            "client": ev.client,
            "table": ev.table,
            "operation": ev.operation,
            "event": ev.event,
            "outbox_id": outbox_id,
        }
        return json.dumps(head, separators=(",", ":"), ensure_ascii=False)

    async def run_outbox_sweeper(self) -> None:
        """Supervised task: delete outbox rows every listener has had time to read."""
        while True:
            await trio.sleep(OUTBOX_SWEEP_EVERY_S)
            await self.rt.catalog.run(
                lambda conn: conn.execute(_OUTBOX_SWEEP, (OUTBOX_RETENTION_S,))
            )

    # -- interest ----------------------------------------------------------------------------

    def _mark_interest_dirty(self) -> None:
        self._interest_dirty.set()

    def remote_wants(self, ev: ChangeEvent) -> bool:
        """Whether another instance has a subscriber for ``ev`` (True when unsure)."""
        now = trio.current_time()
        if not self.listening or now < self._warm_until:
            return True  # we cannot know what the others want: relay everything
        keys = interest_keys_of(ev)
        for origin, (wanted, expires) in list(self.remote.items()):
            if expires < now:
                del self.remote[origin]
            elif wanted is None or any(key in wanted for key in keys):
                return True
        return False

    async def wait_listening(self) -> None:
        """Return once the listener is LISTENing (a subscriber would miss remote events before)."""
        await self._listening_event.wait()

    async def announce_interest(self, *, force: bool = False) -> None:
        """NOTIFY this instance's interest keys if they changed (or ``force``).

        Awaited by ``subscribe`` before it replies: PostgreSQL delivers the notification at
        commit, so the other instances know about the subscriber before its client can make
        the write it is waiting for.
        """
        async with self._announce_lock:
            keys = self.rt.events.interest()
            if not force and keys == self._announced:
                return
            doc: dict[str, Any] = {
                "kind": "interest",
                "origin": self.instance_id,
                "ttl": INTEREST_TTL_S,
                "keys": sorted(keys),
            }
            payload = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
            if len(payload.encode("utf-8")) >= NOTIFY_LIMIT:
                doc["keys"] = None  # too many to list: ask for everything
                payload = json.dumps(doc, separators=(",", ":"))
            await self.rt.catalog.run(lambda conn: conn.execute(_NOTIFY_ONE, (CHANNEL, payload)))
            self._announced = keys

    async def run_interest(self) -> None:
        """Supervised task: announce on change, and every ``INTEREST_REFRESH_S`` anyway."""
        while True:
            with trio.move_on_after(INTEREST_REFRESH_S) as waited:
                await self._interest_dirty.wait()
            self._interest_dirty = trio.Event()
            try:
                await self.announce_interest(force=waited.cancelled_caught)
            except Exception:
                log.warning("announcing event interest failed", exc_info=True)
                await trio.sleep(1.0)

    def _remember_interest(self, doc: dict[str, Any]) -> None:
        keys = doc.get("keys")
        wanted = None if keys is None else frozenset(tuple(k) for k in keys if len(k) == 3)
        ttl = float(doc.get("ttl") or INTEREST_TTL_S)
        self.remote[str(doc["origin"])] = (wanted, trio.current_time() + ttl)

    async def _request_interest(self) -> None:
        payload = json.dumps({"kind": "interest_request", "origin": self.instance_id})
        await self.rt.catalog.run(lambda conn: conn.execute(_NOTIFY_ONE, (CHANNEL, payload)))

    # -- listener ----------------------------------------------------------------------------

    async def run_listener(self) -> None:
        """Supervised task: LISTEN on a dedicated connection, deliver others' events locally.

        The connection is opened in a thread, then read on the event loop itself: trio waits
        for its socket to be readable and libpq's non-blocking ``consume_input`` /
        ``notifies`` take what arrived. A worker thread blocked in ``conn.notifies()`` would
        need the GIL back from a busy event loop several times per notification (the switch
        interval is 5 ms), which under fan-out load made cross-instance delivery lag.
        """
        conn = await trio.to_thread.run_sync(self._connect, limiter=self._listen_limiter)
        try:
            pgconn = conn.pgconn
            encoding = conn.info.encoding
            fd = pgconn.socket
            self.listening = True
            self._listening_event.set()
            self._warm_until = trio.current_time() + WARMUP_S
            await self._request_interest()  # the others answer with what they want
            self._interest_dirty.set()  # … and they learn what we want
            while True:
                while (note := pgconn.notifies()) is not None:
                    await self._handle(note.extra.decode(encoding))
                await trio.lowlevel.wait_readable(fd)
                pgconn.consume_input()  # raises OperationalError when the connection broke
        finally:
            self.listening = False
            self._listening_event = trio.Event()
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(_close_quietly, conn)

    def _connect(self) -> psycopg.Connection:
        settings = self.rt.settings
        conn = psycopg.connect(
            self.rt.catalog_uri,
            autocommit=True,
            connect_timeout=max(1, int(settings.connect_timeout_s)),
            application_name="athena-events",
            # A half-open TCP connection would otherwise look like a quiet channel forever.
            keepalives=1,
            keepalives_idle=30,
            keepalives_interval=10,
            keepalives_count=3,
        )
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
        return conn

    async def _handle(self, payload: str) -> None:
        try:
            doc: dict[str, Any] = json.loads(payload)
            if not isinstance(doc, dict) or doc.get("origin") == self.instance_id:
                return  # our own event: already delivered locally by publish()
            kind = doc.get("kind")
            if kind == "interest":
                self._remember_interest(doc)
                return
            if kind == "interest_request":
                self._interest_dirty.set()
                self._announced = None  # answer even if nothing changed here
                return
            outbox_id = doc.get("outbox_id")
            if outbox_id is not None:
                probe = ChangeEvent.from_wire({**doc, "rows": []})
                if not self.rt.events.wants(probe):
                    return  # nobody here subscribes to it: do not fetch the rows
                text = await self.rt.catalog.run(
                    lambda conn: conn.execute(_OUTBOX_READ, (int(outbox_id),)).fetchone()
                )
                if text is None:
                    log.warning("event outbox row %s is gone; event skipped", outbox_id)
                    return
                doc = json.loads(text[0])
            ev = ChangeEvent.from_wire(doc)
        except trio.Cancelled:
            raise
        except Exception:
            # One malformed or unreadable event must not stop the relay for all the others.
            log.warning("skipping an event notification that cannot be read", exc_info=True)
            return
        self.received += 1
        self.rt.events.deliver(ev)

    def collect(self) -> list[Any]:
        """Prometheus gauges of the relay (scrape-time callback)."""
        return [
            gauge(
                "athena_event_relay",
                "Events relayed between instances via NOTIFY, by outcome",
                ["outcome"],
                [
                    (["sent"], self.sent),
                    (["sent_via_outbox"], self.sent_via_outbox),
                    (["dropped"], self.dropped),
                    (["received"], self.received),
                    (["skipped_no_remote_subscriber"], self.skipped),
                ],
            ),
            gauge(
                "athena_event_subscriptions",
                "Live event subscriptions on this instance",
                [],
                [([], len(self.rt.events))],
            ),
        ]


def _close_quietly(conn: psycopg.Connection) -> None:
    try:
        conn.close()
    except psycopg.Error:
        pass


def attach(rt: Runtime) -> EventRelay:
    """Start-up (``Runtime._start_capabilities``): hook the relay into the bus and register its
    supervised tasks."""

    relay = EventRelay(rt, rt.settings.event_relay_queue_size)
    rt.events.relays.append(relay.enqueue)
    rt.events.remote_interest.append(relay.remote_wants)
    rt.background.append(BackgroundTask("event_relay", relay.run_listener))
    rt.background.append(BackgroundTask("event_notify", relay.run_sender))
    rt.background.append(BackgroundTask("event_outbox_sweeper", relay.run_outbox_sweeper))
    rt.background.append(BackgroundTask("event_interest", relay.run_interest))
    rt.metrics.add_collector(relay.collect)
    return relay
