"""A small trio-websocket client for the gateway tests."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
from support.servers import AthenaServer
from trio_websocket import WebSocketConnection, open_websocket_url


def ws_url(server: AthenaServer) -> str:
    return f"ws://127.0.0.1:{server.port}/wss/gateway"


_ids = itertools.count(1)


class WsClient:
    """One socket: send messages, await the reply to a request id, collect events on the way."""

    def __init__(self, ws: WebSocketConnection, *, auto_pong: bool = True) -> None:
        self.ws = ws
        self.auto_pong = auto_pong
        self.hello: dict[str, Any] = {}
        self.events: list[dict[str, Any]] = []
        self.replies: dict[str, dict[str, Any]] = {}
        self.pings = 0

    async def send(self, action: str | None = None, body: Any = None, **fields: Any) -> str:
        request_id = str(fields.pop("request_id", f"r{next(_ids)}"))
        message: dict[str, Any] = {"request_id": request_id, **fields}
        if action is not None:
            message["action"] = action
        if body is not None:
            message["body"] = body
        await self.ws.send_message(json.dumps(message))
        return request_id

    async def receive(self) -> dict[str, Any]:
        """The next message of any type, decoded (events/replies are also filed)."""
        doc = json.loads(await self.ws.get_message())
        kind = doc.get("type")
        if kind == "event":
            self.events.append(doc)
        elif kind == "reply":
            self.replies[str(doc.get("request_id"))] = doc
        elif kind == "ping":
            self.pings += 1
            if self.auto_pong:
                await self.ws.send_message('{"type":"pong"}')
        return doc

    async def reply(self, request_id: str, within: float = 15) -> dict[str, Any]:
        with trio.fail_after(within):
            while request_id not in self.replies:
                await self.receive()
        return self.replies.pop(request_id)

    async def request(self, action: str, body: Any = None, **fields: Any) -> dict[str, Any]:
        return await self.reply(await self.send(action, body, **fields))

    async def event(self, within: float = 10) -> dict[str, Any]:
        with trio.fail_after(within):
            while not self.events:
                await self.receive()
        return self.events.pop(0)

    async def no_event(self, wait: float = 0.5) -> None:
        with trio.move_on_after(wait):
            while not self.events:
                await self.receive()
        assert not self.events, f"unexpected event: {self.events[0]}"


@asynccontextmanager
async def connect(
    server: AthenaServer,
    headers: dict[str, str] | None = None,
    *,
    auto_pong: bool = True,
    **options: Any,
) -> AsyncIterator[WsClient]:
    """Open ``/wss/gateway`` with ``headers`` on the upgrade; yields after the hello."""
    extra = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    async with open_websocket_url(ws_url(server), extra_headers=extra, **options) as ws:
        client = WsClient(ws, auto_pong=auto_pong)
        with trio.fail_after(10):
            client.hello = json.loads(await ws.get_message())
        yield client
