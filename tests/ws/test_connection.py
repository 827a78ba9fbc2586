"""The socket itself: hello, bad input, size limit, idle timeout, shutdown — over a real server."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
import trio
import yaml
from support.servers import AthenaServer
from trio_websocket import ConnectionClosed
from ws_helpers import connect


async def test_connect_sends_the_connection_message(athena: AthenaServer) -> None:
    async with connect(athena, {"X-Athena-Client": "athena"}) as ws:
        hello = ws.hello
        assert hello["type"] == "connection"
        assert hello["status"] == "success"
        assert hello["data"]["client"] == "athena"
        assert hello["data"]["connection_id"].startswith("ws_")
        assert {"gateway.fetch", "gateway.insert", "gateway.update", "gateway.delete",
                "gateway.query", "subscribe", "unsubscribe"} <= set(hello["data"]["actions"])  # fmt: skip
        assert hello["data"]["limits"]["max_concurrent_requests"] == 16
        pong = await ws.request("ping")
        assert pong["status"] == "success"
        assert pong["message"] == "pong"


def test_wss_info_says_live_and_matches_the_spec_shape(http: httpx.Client) -> None:
    body = http.get("/wss/info").json()
    assert body["status"] == "success"
    data = body["data"]
    assert data["state"] == "live"
    assert data["path"] == "/wss/gateway"
    assert data["transport"] == "wss"
    assert "gateway.fetch" in data["actions"]
    assert all(isinstance(note, str) for note in data["notes"])
    listed = {r["path"] for r in http.get("/").json()["routes"]}
    assert {"/wss/gateway", "/wss/info"} <= listed


def test_openapi_wss_documents_every_action_and_close_code(http: httpx.Client) -> None:
    doc = yaml.safe_load(http.get("/openapi-wss.yaml").content)
    actions = doc["components"]["schemas"]["ClientMessage"]["properties"]["action"]["enum"]
    info = http.get("/wss/info").json()["data"]
    assert set(info["actions"]) == set(actions)
    text = http.get("/openapi-wss.yaml").text
    for code in ("1001", "1009", "1013"):
        assert code in text


@pytest.mark.parametrize(
    ("raw", "code", "request_id"),
    [
        ("{not json", "invalid_json", None),
        # Python's json takes NaN/Infinity; JSON does not (nor does any client's encoder)
        ('{"request_id": "n1", "action": "ping", "body": {"x": NaN}}', "invalid_json", None),
        ("[1, 2]", "invalid_request", None),
        ('"just a string"', "invalid_request", None),
        ('{"request_id": "a1"}', "invalid_request", "a1"),
        ('{"request_id": "a2", "action": "gateway.explode"}', "unknown_action", "a2"),
        ('{"request_id": "a3", "action": 42}', "invalid_request", "a3"),
        ('{"request_id": "a4", "action": "gateway.fetch", "body": [1]}', "invalid_request", "a4"),
        (
            '{"request_id": "a5", "action": "gateway.fetch", "headers": "x"}',
            "invalid_request",
            "a5",
        ),
        ('{"request_id": {"x": 1}, "action": "ping"}', "invalid_request", None),
        ('{"request_id": "a6", "action": "subscribe", "body": {}}', "invalid_request", "a6"),
        ('{"request_id": "a7", "action": "unsubscribe", "body": {}}', "invalid_request", "a7"),
        (
            '{"request_id": "a8", "action": "unsubscribe", "body": {"subscription_id": "sub_x"}}',
            "unknown_subscription",
            "a8",
        ),
    ],
)
async def test_bad_messages_get_an_error_reply_and_the_socket_stays_open(
    athena: AthenaServer, raw: str, code: str, request_id: str | None
) -> None:
    async with connect(athena, {"X-Athena-Client": "athena"}) as ws:
        await ws.ws.send_message(raw)
        reply = await ws.receive()
        assert reply["type"] == "reply"
        assert reply["status"] == "error"
        assert reply["code"] == code
        assert reply["request_id"] == request_id
        assert reply["message"]
        assert "Traceback" not in json.dumps(reply)
        # … and the socket still serves the next message
        assert (await ws.request("ping"))["status"] == "success"


async def test_binary_utf8_messages_are_accepted(athena: AthenaServer) -> None:
    async with connect(athena) as ws:
        await ws.ws.send_message(b'{"request_id": "b1", "action": "ping"}')
        reply = await ws.reply("b1")
        assert reply["status"] == "success"
        await ws.ws.send_message(b"\xff\xfe")
        bad = await ws.receive()
        assert bad["code"] == "invalid_json"


async def test_oversize_message_gets_an_error_then_close_1009(athena: AthenaServer) -> None:
    limit = (await _info(athena))["limits"]["max_message_bytes"]
    async with connect(athena) as ws:
        big = json.dumps({"action": "ping", "body": {"pad": "x" * (limit + 10)}})
        await ws.ws.send_message(big)
        reply = await ws.receive()
        assert reply["status"] == "error"
        assert reply["code"] == "payload_too_large"
        assert reply["data"]["limit_bytes"] == limit
        with pytest.raises(ConnectionClosed) as closed:
            with trio.fail_after(5):
                await ws.receive()
        assert closed.value.reason.code == 1009


async def test_a_message_over_the_frame_limit_is_closed_with_1009(athena: AthenaServer) -> None:
    async with connect(athena) as ws:
        await ws.ws.send_message("x" * (1024 * 1024 + 1))  # beyond hypercorn's 1 MiB frames
        with pytest.raises(ConnectionClosed) as closed:
            with trio.fail_after(5):
                await ws.receive()
        assert closed.value.reason.code == 1009


async def test_a_message_just_under_the_limit_is_served(athena: AthenaServer) -> None:
    limit = (await _info(athena))["limits"]["max_message_bytes"]
    async with connect(athena) as ws:
        message = {"request_id": "big", "action": "ping", "body": {"pad": ""}}
        message["body"]["pad"] = "x" * (limit - len(json.dumps(message)) - 1)
        await ws.ws.send_message(json.dumps(message))
        assert (await ws.reply("big"))["status"] == "success"


async def _info(server: AthenaServer) -> dict:
    async with httpx.AsyncClient(base_url=server.url) as client:
        return (await client.get("/wss/info")).json()["data"]


@pytest.fixture(scope="module")
def quick_idle(athena_factory: Callable[..., AthenaServer]) -> AthenaServer:
    return athena_factory(
        ws_ping_interval_s="0.3",
        ws_idle_timeout_s="1.2",
        rate_limit_per_key="1",
        rate_limit_burst="3",
    )


async def test_idle_client_is_pinged_then_closed_with_1001(quick_idle: AthenaServer) -> None:
    async with connect(quick_idle, auto_pong=False) as ws:
        started = trio.current_time()
        ping = await ws.receive()
        assert ping["type"] == "ping"
        with pytest.raises(ConnectionClosed) as closed:
            with trio.fail_after(5):
                while True:
                    await ws.receive()
        assert closed.value.reason.code == 1001
        assert closed.value.reason.reason == "idle timeout"
        assert trio.current_time() - started >= 1.0


async def test_a_client_answering_pings_stays_connected(quick_idle: AthenaServer) -> None:
    async with connect(quick_idle) as ws:  # answers every ping with {"type":"pong"}
        with trio.move_on_after(2.5):
            while True:
                await ws.receive()
        assert ws.pings >= 2
        assert (await ws.request("ping"))["status"] == "success"


async def test_a_long_request_is_not_mistaken_for_idleness(
    quick_idle: AthenaServer, admin_key: str
) -> None:
    upgrade = {"apikey": admin_key, "X-Athena-Client": "athena"}
    async with connect(quick_idle, upgrade, auto_pong=False) as ws:
        # Longer than the idle timeout (1.2 s), and the client never answers a ping.
        reply = await ws.request("gateway.query", {"query": "SELECT pg_sleep(2.0), 1 AS done"})
        assert reply["status"] == "success"
        assert reply["data"][0]["done"] == 1


async def test_rate_limits_apply_per_message(quick_idle: AthenaServer) -> None:
    async with connect(quick_idle, {"apikey": "ath_0123456789abcdef.nope"}) as ws:
        codes = [
            (await ws.request("gateway.fetch", {"table_name": "ws_items"}, client_name="athena"))[
                "code"
            ]
            for _ in range(5)
        ]
        assert codes[:3] == ["invalid_api_key"] * 3  # the burst
        assert codes[3:] == ["rate_limited"] * 2
        limited = await ws.request("gateway.fetch", {"table_name": "ws_items"})
        assert limited["data"]["retry_after_seconds"] >= 1
        assert (await ws.request("ping"))["status"] == "success"  # heartbeats are not limited


# Last in this module on purpose: it stops the module's extra server.
async def test_shutdown_finishes_in_flight_requests_then_closes_with_1001(
    quick_idle: AthenaServer, admin_key: str
) -> None:
    async with connect(quick_idle, {"apikey": admin_key, "X-Athena-Client": "athena"}) as ws:
        assert (await ws.request("ping"))["status"] == "success"
        in_flight = await ws.send("gateway.query", {"query": "SELECT pg_sleep(1.0), 7 AS n"})
        await trio.sleep(0.2)  # the query is running when the signal arrives
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, quick_idle.stop)
            with pytest.raises(ConnectionClosed) as closed:
                with trio.fail_after(8):
                    while True:
                        await ws.receive()
        assert closed.value.reason.code == 1001
        assert closed.value.reason.reason == "server shutting down"
        assert ws.replies[in_flight]["data"] == [{"pg_sleep": "", "n": 7}]
    assert quick_idle.proc is not None and quick_idle.proc.returncode == 0
