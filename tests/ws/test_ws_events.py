"""Live events: table and named-event subscriptions, rights, two instances, slow consumers."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import psycopg
import pytest
import trio
from support.servers import AthenaServer
from trio_websocket import ConnectionClosed
from ws_helpers import WsClient, connect

CONTEXT = {"X-User-Id": "u1", "X-Company-Id": "c1", "X-Organization-Id": "o1"}


@pytest.fixture(scope="module")
def second(athena_factory: Callable[..., AthenaServer]) -> AthenaServer:
    """A second gateway sharing the catalog and the data database with ``athena``, with small
    per-socket queues so that a slow consumer overflows quickly."""
    return athena_factory(ws_event_queue_size="8", ws_outbound_queue_size="4")


async def _http_insert(
    server: AthenaServer, key: str, table: str, rows: object, event: str | None = None
) -> httpx.Response:
    headers = {"apikey": key, "X-Athena-Client": "athena", **CONTEXT}
    if event:
        headers["X-Publish-Event"] = event
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as http:
        response = await http.put(
            "/gateway/insert", json={"table_name": table, "insert_body": rows}
        )
    assert response.status_code == 200, response.text
    return response


async def _subscribe(ws: WsClient, **body: str) -> str:
    reply = await ws.request("subscribe", body)
    assert reply["status"] == "success", reply
    assert reply["message"] == "Subscribed"
    return reply["data"]["subscription_id"]


async def test_table_subscription_sees_inserts_updates_and_deletes(
    athena: AthenaServer, admin_key: str, seeded_key: Callable[..., str], items: psycopg.Connection
) -> None:
    reader = seeded_key(rights=["ws_items.read"])
    async with connect(athena, {"apikey": reader, "X-Athena-Client": "athena"}) as watcher:
        sub = await _subscribe(watcher, table="ws_items")
        # A write over HTTP …
        await _http_insert(athena, admin_key, "ws_items", {"name": "lamp", "qty": 1})
        ev = await watcher.event()
        assert ev == {
            "type": "event",
            "subscription_id": sub,
            "client": "athena",
            "table": "ws_items",
            "operation": "insert",
            "rows": [{"id": 1, "name": "lamp", "qty": 1, "note": None}],
        }
        # … and writes over another socket.
        upgrade = {"apikey": admin_key, "X-Athena-Client": "athena", **CONTEXT}
        async with connect(athena, upgrade) as writer:
            await writer.request(
                "gateway.update",
                {
                    "table_name": "ws_items",
                    "update_body": {"qty": 2},
                    "conditions": [{"eq_column": "id", "eq_value": 1}],
                },
            )
            updated = await watcher.event()
            assert updated["operation"] == "update"
            assert updated["rows"][0]["qty"] == 2
            await writer.request("gateway.delete", {"table_name": "ws_items", "resource_id": 1})
            deleted = await watcher.event()
            assert deleted["operation"] == "delete"
            assert deleted["rows"][0]["id"] == 1
            # A write to another table is not delivered.
            await writer.request(
                "gateway.insert", {"table_name": "ws_secrets", "insert_body": {"secret": "s"}}
            )
            await watcher.no_event()


async def test_named_events_from_x_publish_event(
    athena: AthenaServer, admin_key: str, seeded_key: Callable[..., str], items: psycopg.Connection
) -> None:
    reader = seeded_key(rights=["ws_items.read"])
    async with connect(athena, {"apikey": reader, "X-Athena-Client": "athena"}) as watcher:
        by_event = await _subscribe(watcher, event="ws_item_created")
        by_table = await _subscribe(watcher, table="ws_items")
        upgrade = {"apikey": admin_key, "X-Athena-Client": "athena", **CONTEXT}
        async with connect(athena, upgrade) as writer:
            reply = await writer.request(
                "gateway.insert",
                {"table_name": "ws_items", "insert_body": {"name": "mug"}},
                headers={"X-Publish-Event": "ws_item_created"},
            )
            assert reply["status"] == "success"
        got = [await watcher.event(), await watcher.event()]
        assert {e["subscription_id"] for e in got} == {by_event, by_table}
        for ev in got:
            assert ev["event"] == "ws_item_created"
            assert ev["rows"][0]["name"] == "mug"
        # Another event name does not match the event subscription (the table one still fires).
        await _http_insert(athena, admin_key, "ws_items", {"name": "cup"}, event="other_event")
        only = await watcher.event()
        assert only["subscription_id"] == by_table
        await watcher.no_event()


async def test_subscribing_needs_the_read_right(
    athena: AthenaServer, admin_key: str, seeded_key: Callable[..., str], items: psycopg.Connection
) -> None:
    reader = seeded_key(rights=["ws_items.read"])
    writer_only = seeded_key(rights=["ws_items.write"])
    async with connect(athena, {"X-Athena-Client": "athena"}) as ws:
        anonymous = await ws.request("subscribe", {"table": "ws_items"})
        assert anonymous["code"] == "api_key_required"
        denied = await ws.request(
            "subscribe", {"table": "ws_items"}, headers={"apikey": writer_only}
        )
        assert denied["code"] == "insufficient_rights"
        assert denied["data"]["required_right"] == "ws_items.read"
        secrets = await ws.request("subscribe", {"table": "ws_secrets"}, headers={"apikey": reader})
        assert secrets["code"] == "insufficient_rights"
        missing = await ws.request("subscribe", {"table": "ws_nope"}, headers={"apikey": admin_key})
        assert missing["code"] == "unknown_table"
        no_client = await ws.request(
            "subscribe", {"event": "x"}, headers={"apikey": reader, "X-Athena-Client": ""}
        )
        assert no_client["code"] == "missing_client_header"
        both = await ws.request("subscribe", {"event": "x", "table": "ws_items"})
        assert both["code"] == "invalid_request"

    # An event subscription only carries rows of tables the key may read.
    async with connect(athena, {"apikey": reader, "X-Athena-Client": "athena"}) as ws:
        sub = await _subscribe(ws, event="ws_mixed")
        await _http_insert(athena, admin_key, "ws_secrets", {"secret": "hidden"}, event="ws_mixed")
        await _http_insert(athena, admin_key, "ws_items", {"name": "shown"}, event="ws_mixed")
        ev = await ws.event()
        assert ev["subscription_id"] == sub
        assert ev["table"] == "ws_items"
        await ws.no_event()


async def test_unsubscribe_stops_delivery(
    athena: AthenaServer, admin_key: str, items: psycopg.Connection
) -> None:
    async with connect(athena, {"apikey": admin_key, "X-Athena-Client": "athena"}) as ws:
        sub = await _subscribe(ws, table="ws_items")
        await _http_insert(athena, admin_key, "ws_items", {"name": "a"})
        assert (await ws.event())["subscription_id"] == sub
        gone = await ws.request("unsubscribe", {"subscription_id": sub})
        assert gone["status"] == "success"
        assert gone["data"] == {"subscription_id": sub}
        await _http_insert(athena, admin_key, "ws_items", {"name": "b"})
        await ws.no_event()
        again = await ws.request("unsubscribe", {"subscription_id": sub})
        assert again["code"] == "unknown_subscription"


async def test_subscriptions_per_socket_are_bounded(
    athena: AthenaServer, admin_key: str, items: psycopg.Connection
) -> None:
    async with connect(athena, {"apikey": admin_key, "X-Athena-Client": "athena"}) as ws:
        limit = ws.hello["data"]["limits"]["max_subscriptions"]
        ids = [await ws.send("subscribe", {"table": "ws_items"}) for _ in range(limit)]
        subs = [(await ws.reply(rid))["data"]["subscription_id"] for rid in ids]
        assert len(set(subs)) == limit
        over = await ws.request("subscribe", {"table": "ws_items"})
        assert over["code"] == "too_many_subscriptions"
        assert (await ws.request("unsubscribe", {"subscription_id": subs[0]}))[
            "status"
        ] == "success"
        assert (await ws.request("subscribe", {"event": "ws_again"}))["status"] == "success"


async def test_events_reach_subscribers_on_another_instance(
    athena: AthenaServer,
    second: AthenaServer,
    admin_key: str,
    catalog_conn: psycopg.Connection,
    items: psycopg.Connection,
) -> None:
    upgrade = {"apikey": admin_key, "X-Athena-Client": "athena"}
    async with connect(second, upgrade) as remote, connect(athena, upgrade) as local:
        remote_sub = await _subscribe(remote, table="ws_items")
        remote_event = await _subscribe(remote, event="ws_cross")
        local_sub = await _subscribe(local, table="ws_items")
        # No waiting: a subscribe replies once the other instances know about it.

        await _http_insert(athena, admin_key, "ws_items", {"name": "far"}, event="ws_cross")
        got = [await remote.event(), await remote.event()]
        assert {e["subscription_id"] for e in got} == {remote_sub, remote_event}
        assert all(e["rows"][0]["name"] == "far" for e in got)
        # Delivered exactly once on the instance that wrote it (not again via its own NOTIFY).
        assert (await local.event())["subscription_id"] == local_sub
        await local.no_event(0.7)

        # Larger than NOTIFY's 8000-byte limit: it travels through the outbox.
        note = "x" * 20_000
        await _http_insert(athena, admin_key, "ws_items", {"name": "big", "note": note})
        big = await remote.event()
        assert big["subscription_id"] == remote_sub
        assert big["rows"][0]["note"] == note
        assert (await local.event())["rows"][0]["note"] == note
        outboxed = catalog_conn.execute(
            "SELECT count(*) FROM athena.event_outbox WHERE payload->>'table' = 'ws_items'"
        ).fetchone()
        assert outboxed is not None and outboxed[0] >= 1

        # And the other direction: a write on `second` reaches `athena`.
        await _http_insert(second, admin_key, "ws_items", {"name": "back"})
        back = await local.event()
        assert back["rows"][0]["name"] == "back"


async def test_writes_nobody_subscribes_to_are_not_relayed(
    athena: AthenaServer,
    second: AthenaServer,
    admin_key: str,
    catalog_conn: psycopg.Connection,
    items: psycopg.Connection,
) -> None:
    def outboxed() -> int:
        row = catalog_conn.execute(
            "SELECT count(*) FROM athena.event_outbox WHERE payload->>'table' = 'ws_secrets'"
        ).fetchone()
        return row[0] if row else 0

    secret = "z" * 20_000  # would need the outbox
    before = outboxed()
    await _http_insert(athena, admin_key, "ws_secrets", {"secret": secret})
    await trio.sleep(0.5)
    assert outboxed() == before, "a write nobody subscribes to was relayed"
    async with httpx.AsyncClient(base_url=athena.url) as http:
        metrics = (await http.get("/metrics")).text
    assert 'athena_event_relay{outcome="skipped_no_remote_subscriber"}' in metrics

    # Once a subscriber exists on the other instance, the same kind of write reaches it.
    async with connect(second, {"apikey": admin_key, "X-Athena-Client": "athena"}) as remote:
        await _subscribe(remote, table="ws_secrets")
        await _http_insert(athena, admin_key, "ws_secrets", {"secret": secret})
        ev = await remote.event()
        assert ev["rows"][0]["secret"] == secret
    assert outboxed() == before + 1


async def test_slow_consumer_is_closed_with_1013_without_blocking_anyone(
    second: AthenaServer, admin_key: str, items: psycopg.Connection
) -> None:
    upgrade = {"apikey": admin_key, "X-Athena-Client": "athena"}
    note = "y" * 256 * 1024  # big events fill the socket buffers quickly
    fast_got: list[int] = []
    insert_seconds: list[float] = []
    caught_up = trio.Event()
    info_done: list[bool] = []  # set once every insert is done

    async with (
        connect(second, upgrade, max_message_size=4 * 1024 * 1024) as slow,
        connect(second, upgrade, max_message_size=4 * 1024 * 1024) as fast,
    ):
        await _subscribe(slow, table="ws_items")
        await _subscribe(fast, table="ws_items")
        # From here on `slow` reads nothing: trio-websocket stops reading the socket once its
        # one-message queue is full, so the server's writes back up.

        async def read_fast() -> None:
            while True:
                ev = await fast.event(within=30)
                fast_got.append(ev["rows"][0]["qty"])
                if info_done and len(fast_got) >= len(insert_seconds):
                    caught_up.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_fast)
            async with httpx.AsyncClient(base_url=second.url, timeout=30) as http:
                for n in range(120):
                    started = trio.current_time()
                    response = await http.put(
                        "/gateway/insert",
                        headers={**upgrade, **CONTEXT},
                        json={
                            "table_name": "ws_items",
                            "insert_body": {"name": "e", "qty": n, "note": note},
                        },
                    )
                    assert response.status_code == 200
                    insert_seconds.append(trio.current_time() - started)
                    info = (await http.get("/wss/info")).json()["data"]
                    if info["connections"] == 1 and n >= 20:
                        break  # the slow socket has been dropped
            info_done.append(True)
            if len(fast_got) >= len(insert_seconds):
                caught_up.set()
            with trio.fail_after(20):
                await caught_up.wait()
            nursery.cancel_scope.cancel()

        assert info["connections"] == 1, "the slow consumer was never closed"
        # The fast subscriber got every event, in order; no insert waited on the slow socket.
        assert fast_got == list(range(len(insert_seconds)))
        assert max(insert_seconds) < 5

        # The slow client, reading at last, gets what was buffered and then the 1013 close.
        with pytest.raises(ConnectionClosed) as closed:
            with trio.fail_after(30):
                while True:
                    await slow.receive()
        assert closed.value.reason.code == 1013
        assert "slow consumer" in (closed.value.reason.reason or "")
