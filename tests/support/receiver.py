"""A real HTTP receiver on loopback for webhook tests, and the checks its deliveries need.

Shared by tests/webhooks (write events) and the backup-event tests, which start gateways of
their own; the outbound allow-list of those gateways names 127.0.0.0/8 for it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from athena.db.embedded import free_port


@dataclass
class Received:
    at: float
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)  # type: ignore[no-any-return]


@dataclass
class Receiver:
    """A loopback HTTP server recording every POST; ``answers`` are used up first, then 200."""

    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    answers_for: bytes = b""  # only requests whose body contains this use up ``answers``
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None
    # when set, each POST is recorded, then left unanswered until the event is set (or 30 s):
    # a delivery in flight, for crash tests
    hold: threading.Event | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a production receiver would

            def setup(self) -> None:
                super().setup()
                # head and body go out in two writes: without this, Nagle + delayed ACK
                # would add 40 ms to every answer on a kept-alive connection
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if receiver.server is None:  # stopped: a kept-alive connection dies unanswered
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                with receiver.lock:
                    receiver.received.append(Received(time.time(), dict(self.headers), body))
                    scripted = receiver.answers and receiver.answers_for in body
                    status = receiver.answers.pop(0) if scripted else 200
                    hold = receiver.hold
                if hold is not None:
                    hold.wait(30)
                self.send_response(status)
                reply = b'{"ok":true}' if status < 300 else b"receiver says no"
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def clear(self) -> None:
        with self.lock:
            self.received.clear()
            self.answers.clear()
            self.answers_for = b""

    def events(self, event: str | None = None) -> list[Received]:
        with self.lock:
            return [
                r for r in self.received if event is None or r.headers["X-Athena-Event"] == event
            ]


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def valid_signature(received: Received, secret: str) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), received.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(received.headers["X-Athena-Signature"], expected)
