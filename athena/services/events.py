"""The event bus: writes made through Athena, fanned out to WebSocket subscribers.

Two kinds of subscription exist:

* **table**: every insert/update/delete made through Athena on ``(client, table)``;
* **event**: rows published under a name with ``X-Publish-Event`` on an insert of ``client``.

``publish()`` never blocks and never raises: each subscriber has a bounded queue, and a
subscriber whose queue is full is marked ``overflowed`` (its ``on_overflow`` callback closes its
socket with 1013) instead of slowing the publisher or the other subscribers. ``publish()`` also
hands the event to ``relays`` (the NOTIFY relay of ``athena.ws.relay`` carries it to the other
gateway instances, which call ``deliver()`` with it).

Usage::

    rt.events.publish(ChangeEvent("athena", "users", "insert", rows, event="user_created"))
"""

from __future__ import annotations

import itertools
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import trio

log = logging.getLogger("athena.events")

OPERATIONS = ("insert", "update", "delete")


def normalize_table(name: str | None) -> str | None:
    """``public.users`` and ``users`` name the same table: compare them the same way."""
    if name is None:
        return None
    return name[7:] if name.startswith("public.") else name


def _dumps(value: Any) -> str:
    # default=str: rows come from PostgreSQL JSON, but a publisher may hand us dates/decimals.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


@dataclass(frozen=True)
class ChangeEvent:
    """Rows written through Athena: a table change, optionally also a named event.

    ``origin`` is the instance id of the gateway where the write happened (set by the bus on
    publish); the relay uses it so an instance never delivers its own events twice.
    """

    client: str
    table: str | None
    operation: str  # insert | update | delete
    rows: list[dict[str, Any]]
    event: str | None = None  # X-Publish-Event name
    origin: str | None = None

    @cached_property
    def rows_json(self) -> str:
        """The rows encoded once, shared by every subscriber's message (fan-out to N sockets
        must not encode the same rows N times)."""
        return _dumps(self.rows)

    def message_text(self, subscription_id: str) -> str:
        """The ``{type: "event", …}`` message one subscriber receives, as JSON text."""
        head = {
            "type": "event",
            "subscription_id": subscription_id,
            "client": self.client,
            "table": self.table,
            "operation": self.operation,
        }
        if self.event is not None:
            head["event"] = self.event
        return _dumps(head)[:-1] + ',"rows":' + self.rows_json + "}"

    def as_message(self, subscription_id: str) -> dict[str, Any]:
        return json.loads(self.message_text(subscription_id))

    def wire_payload(self) -> str:
        """The JSON carried between instances (NOTIFY payload or outbox row)."""
        return _dumps(
            {
                "origin": self.origin,
                "client": self.client,
                "table": self.table,
                "operation": self.operation,
                "event": self.event,
                "rows_json": self.rows_json,
            }
        )

    @classmethod
    def from_wire(cls, payload: str | dict[str, Any]) -> ChangeEvent:
        """Inverse of ``wire_payload``; raises ``ValueError`` on anything malformed."""
        data = json.loads(payload) if isinstance(payload, str) else payload
        if not isinstance(data, dict):
            raise ValueError("event payload is not an object")
        client, operation = data.get("client"), data.get("operation")
        if not isinstance(client, str) or operation not in OPERATIONS:
            raise ValueError("event payload lacks client/operation")
        rows_json = data.get("rows_json")
        rows = json.loads(rows_json) if isinstance(rows_json, str) else data.get("rows", [])
        if not isinstance(rows, list):
            raise ValueError("event rows are not a list")
        ev = cls(
            client=client,
            table=data.get("table"),
            operation=operation,
            rows=rows,
            event=data.get("event"),
            origin=data.get("origin"),
        )
        if isinstance(rows_json, str):
            ev.__dict__["rows_json"] = rows_json  # already encoded: reuse it as is
        return ev


_ids = itertools.count(1)

# What a subscriber's queue holds: the subscription it matched, and the event.
Delivery = tuple[str, ChangeEvent]
# ("t", client, table) or ("e", client, event name): what an instance's subscribers listen to.
InterestKey = tuple[str, str, str]


def interest_keys_of(ev: ChangeEvent) -> list[InterestKey]:
    """The interest keys that ``ev`` would be delivered to."""
    keys: list[InterestKey] = [("t", ev.client, normalize_table(ev.table) or "")]
    if ev.event is not None:
        keys.append(("e", ev.client, ev.event))
    return keys


@dataclass(eq=False)
class Subscription:
    """One subscriber: what it wants, and the bounded queue its events wait in.

    ``channel``: the send side of a queue the subscriber owns (a WebSocket connection passes a
    clone of one queue for all its subscriptions, so one slow socket is one bounded buffer);
    without it the subscription gets a queue of its own (``receive``). ``allow`` is an extra
    filter (the gateway uses it so an event subscription only sees rows of tables the
    subscriber's key may read). ``on_overflow`` is called once, from the publisher's task, when
    the queue is full; it must not block.
    """

    client: str
    event: str | None
    table: str | None
    queue_size: int
    allow: Callable[[ChangeEvent], bool] | None = None
    on_overflow: Callable[[Subscription], None] | None = None
    channel: trio.MemorySendChannel[Delivery] | None = None
    id: str = field(default_factory=lambda: f"sub_{next(_ids)}")
    overflowed: bool = False
    delivered: int = 0

    def __post_init__(self) -> None:
        self.table = normalize_table(self.table)
        self.receive: trio.MemoryReceiveChannel[Delivery] | None = None
        if self.channel is not None:
            self.send = self.channel
        else:
            self.send, self.receive = trio.open_memory_channel[Delivery](self.queue_size)

    @property
    def interest_key(self) -> InterestKey:
        """What this subscription listens to, without its filter (for the relay's interest)."""
        if self.event is not None:
            return ("e", self.client, self.event)
        return ("t", self.client, self.table or "")

    def matches(self, ev: ChangeEvent) -> bool:
        if ev.client != self.client:
            return False
        if self.event is not None:
            wanted = ev.event == self.event
        else:
            wanted = normalize_table(ev.table) == self.table
        return wanted and (self.allow is None or self.allow(ev))


class EventBus:
    """Subscribers of this process, and the relays that carry local writes elsewhere."""

    def __init__(self, instance_id: str | None = None) -> None:
        # Tags every event published here, so the relay can skip our own NOTIFYs.
        self.instance_id = instance_id or uuid.uuid4().hex
        self._subs: dict[str, Subscription] = {}
        # The same subscriptions by what they listen to: a delivery only visits its matches,
        # however many sockets listen to other things.
        self._by_key: dict[InterestKey, dict[str, Subscription]] = {}
        # Extra sinks (the NOTIFY relay to other instances) called for local publishes.
        # A relay must not block: it queues the event for its own background sender.
        self.relays: list[Callable[[ChangeEvent], None]] = []
        self.published = 0
        self.overflows = 0
        # Called (without arguments, must not block) when the set of interest keys may have
        # changed: the relay tells the other instances what this one wants.
        self.interest_listeners: list[Callable[[], None]] = []
        # Whether some other instance wants an event (the relay's view of the cluster).
        self.remote_interest: list[Callable[[ChangeEvent], bool]] = []

    def __len__(self) -> int:
        return len(self._subs)

    def subscribe(
        self,
        *,
        client: str,
        event: str | None = None,
        table: str | None = None,
        queue_size: int = 256,
        allow: Callable[[ChangeEvent], bool] | None = None,
        on_overflow: Callable[[Subscription], None] | None = None,
        channel: trio.MemorySendChannel[Delivery] | None = None,
    ) -> Subscription:
        if (event is None) == (table is None):
            raise ValueError("subscribe to exactly one of event or table")
        sub = Subscription(client, event, table, queue_size, allow, on_overflow, channel)
        self._subs[sub.id] = sub
        self._by_key.setdefault(sub.interest_key, {})[sub.id] = sub
        self._interest_changed()
        return sub

    def unsubscribe(self, sub_id: str) -> Subscription | None:
        sub = self._subs.get(sub_id)
        if sub is not None:
            self._remove(sub)
            sub.send.close()
            self._interest_changed()
        return sub

    def _remove(self, sub: Subscription) -> None:
        self._subs.pop(sub.id, None)
        same = self._by_key.get(sub.interest_key)
        if same is not None:
            same.pop(sub.id, None)
            if not same:
                del self._by_key[sub.interest_key]

    def _candidates(self, ev: ChangeEvent) -> list[Subscription]:
        found: list[Subscription] = []
        for key in interest_keys_of(ev):
            found.extend(self._by_key.get(key, {}).values())
        return found

    def interest(self) -> frozenset[InterestKey]:
        """Everything the local subscribers listen to."""
        return frozenset(self._by_key)

    def _interest_changed(self) -> None:
        for listener in self.interest_listeners:
            try:
                listener()
            except Exception:
                log.exception("interest listener failed")

    def wants(self, ev: ChangeEvent) -> bool:
        """Whether any local subscriber would receive ``ev`` (its rows are not looked at)."""
        for sub in self._candidates(ev):
            try:
                if not sub.overflowed and sub.matches(ev):
                    return True
            except Exception:
                continue
        return False

    def is_wanted(self, client: str, table: str | None, event: str | None = None) -> bool:
        """Whether a write to ``client``/``table`` (published as ``event``) would reach any
        subscriber, here or on another instance. Publishers may skip decoding rows (and
        ``publish``) when it would not."""
        probe = ChangeEvent(client, table, "insert", [], event=event, origin=self.instance_id)
        if self._candidates(probe):
            return True
        return any(wanted(probe) for wanted in self.remote_interest)

    def deliver(self, ev: ChangeEvent) -> int:
        """Fan ``ev`` out to matching local subscribers without waiting; returns how many got it."""
        delivered = 0
        for sub in self._candidates(ev):
            if sub.overflowed:
                continue
            try:
                if not sub.matches(ev):
                    continue
            except Exception:  # a broken filter must not stop the fan-out to the others
                log.exception("event filter of %s failed", sub.id)
                continue
            try:
                sub.send.send_nowait((sub.id, ev))
                sub.delivered += 1
                delivered += 1
            except trio.WouldBlock:
                self._overflow(sub)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                self._remove(sub)
        return delivered

    def _overflow(self, sub: Subscription) -> None:
        sub.overflowed = True
        self.overflows += 1
        self._remove(sub)
        sub.send.close()
        self._interest_changed()
        if sub.on_overflow is not None:
            try:
                sub.on_overflow(sub)
            except Exception:
                log.exception("overflow callback of %s failed", sub.id)

    def publish(self, ev: ChangeEvent) -> None:
        """A write made on this instance: deliver locally and hand it to the relays.

        Never blocks and never raises: the write it reports has already succeeded.
        """
        if ev.origin is None:
            ev = ChangeEvent(ev.client, ev.table, ev.operation, ev.rows, ev.event, self.instance_id)
        self.published += 1
        self.deliver(ev)
        for relay in self.relays:
            try:
                relay(ev)
            except Exception:
                log.exception("event relay failed")
