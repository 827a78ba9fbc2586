"""The in-process event bus on its own: matching, bounded queues, overflow, interest keys."""

from __future__ import annotations

from athena.services.events import ChangeEvent, EventBus, Subscription


def _ev(table: str = "orders", event: str | None = None, client: str = "shop") -> ChangeEvent:
    return ChangeEvent(client, table, "insert", [{"id": 1, "total": "9.90"}], event=event)


async def test_table_and_event_subscriptions_match_only_their_writes() -> None:
    bus = EventBus()
    by_table = bus.subscribe(client="shop", table="public.orders")  # same table as "orders"
    by_event = bus.subscribe(client="shop", event="order_created")
    other_client = bus.subscribe(client="blog", table="orders")

    bus.publish(_ev(event="order_created"))
    bus.publish(_ev(table="users"))
    assert by_table.receive is not None and by_event.receive is not None
    sub_id, ev = by_table.receive.receive_nowait()
    assert sub_id == by_table.id
    assert ev.origin == bus.instance_id, "publish tags events with this instance"
    assert by_event.receive.receive_nowait()[1].event == "order_created"
    assert other_client.receive is not None
    assert other_client.receive.statistics().current_buffer_used == 0
    assert bus.interest() == {
        ("t", "shop", "orders"),
        ("e", "shop", "order_created"),
        ("t", "blog", "orders"),
    }
    bus.unsubscribe(by_event.id)
    assert ("e", "shop", "order_created") not in bus.interest()


async def test_a_full_queue_overflows_that_subscriber_only() -> None:
    bus = EventBus()
    overflowed: list[Subscription] = []
    slow = bus.subscribe(client="shop", table="orders", queue_size=2, on_overflow=overflowed.append)
    fast = bus.subscribe(client="shop", table="orders", queue_size=100)
    for _ in range(5):
        bus.publish(_ev())  # synchronous: it cannot wait for any subscriber
    assert overflowed == [slow]
    assert slow.overflowed
    assert fast.receive is not None
    assert fast.receive.statistics().current_buffer_used == 5
    assert len(bus) == 1, "the overflowed subscription is gone"


async def test_filters_and_relays() -> None:
    bus = EventBus()
    relayed: list[ChangeEvent] = []
    bus.relays.append(relayed.append)
    only_orders = bus.subscribe(client="shop", event="audit", allow=lambda ev: ev.table == "orders")
    bus.publish(_ev(table="secrets", event="audit"))
    bus.publish(_ev(table="orders", event="audit"))
    assert only_orders.receive is not None
    assert only_orders.receive.receive_nowait()[1].table == "orders"
    assert only_orders.receive.statistics().current_buffer_used == 0
    assert len(relayed) == 2, "every local write goes to the relays"


def test_wire_format_round_trips_without_re_encoding_rows() -> None:
    ev = ChangeEvent("shop", "orders", "delete", [{"id": 7}], event=None, origin="abc")
    back = ChangeEvent.from_wire(ev.wire_payload())
    assert back == ev
    assert back.message_text("sub_9") == (
        '{"type":"event","subscription_id":"sub_9","client":"shop","table":"orders",'
        '"operation":"delete","rows":[{"id":7}]}'
    )


async def test_is_wanted_asks_local_subscribers_then_the_relay() -> None:
    bus = EventBus()
    assert not bus.is_wanted("shop", "orders")
    bus.subscribe(client="shop", event="order_created")
    assert bus.is_wanted("shop", "orders", "order_created")
    assert not bus.is_wanted("shop", "orders")
    bus.remote_interest.append(lambda ev: ev.table == "orders")
    assert bus.is_wanted("shop", "orders")
    assert not bus.is_wanted("shop", "users")
