"""The in-process event bus: writes made through Athena, fanned out to WebSocket subscribers.

``publish()`` never blocks: each subscriber has a bounded queue, and a subscriber whose queue is
full is marked ``overflowed`` (its socket is then closed with 1013) instead of slowing the
publisher or other subscribers.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio


@dataclass(frozen=True)
class ChangeEvent:
    """Rows written through Athena: a table change, optionally also a named event."""

    client: str
    table: str | None
    operation: str  # insert | update | delete
    rows: list[dict[str, Any]]
    event: str | None = None  # X-Publish-Event name

    def as_message(self, subscription_id: str) -> dict[str, Any]:
        message: dict[str, Any] = {
            "type": "event",
            "subscription_id": subscription_id,
            "client": self.client,
            "table": self.table,
            "operation": self.operation,
            "rows": self.rows,
        }
        if self.event is not None:
            message["event"] = self.event
        return message


_ids = itertools.count(1)


@dataclass(eq=False)
class Subscription:
    client: str
    event: str | None
    table: str | None
    queue_size: int
    id: str = field(default_factory=lambda: f"sub_{next(_ids)}")
    overflowed: bool = False

    def __post_init__(self) -> None:
        self.send, self.receive = trio.open_memory_channel[dict[str, Any]](self.queue_size)

    def matches(self, ev: ChangeEvent) -> bool:
        if self.event is not None:
            return ev.event == self.event and ev.client == self.client
        return ev.client == self.client and ev.table == self.table


class EventBus:
    def __init__(self) -> None:
        self._subs: dict[str, Subscription] = {}
        # Extra sinks (e.g. the NOTIFY relay to other instances) called for local publishes.
        self.relays: list[Callable[[ChangeEvent], None]] = []

    def subscribe(
        self,
        *,
        client: str,
        event: str | None = None,
        table: str | None = None,
        queue_size: int = 256,
    ) -> Subscription:
        sub = Subscription(client, event, table, queue_size)
        self._subs[sub.id] = sub
        return sub

    def unsubscribe(self, sub_id: str) -> Subscription | None:
        sub = self._subs.pop(sub_id, None)
        if sub is not None:
            sub.send.close()
        return sub

    def deliver(self, ev: ChangeEvent) -> int:
        """Fan ``ev`` out to matching local subscribers; returns how many got it."""
        delivered = 0
        for sub in list(self._subs.values()):
            if sub.overflowed or not sub.matches(ev):
                continue
            try:
                sub.send.send_nowait(ev.as_message(sub.id))
                delivered += 1
            except trio.WouldBlock:
                sub.overflowed = True
                sub.send.close()
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                self._subs.pop(sub.id, None)
        return delivered

    def publish(self, ev: ChangeEvent) -> None:
        """A write made on this instance: deliver locally and hand it to the relays."""
        self.deliver(ev)
        for relay in self.relays:
            relay(ev)
