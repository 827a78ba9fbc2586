"""A loopback HTTP server that speaks the two Supabase Management API calls Athena uses.

``GET /v1/projects/{ref}/ssl-enforcement`` and ``PUT`` with ``{"requestedConfig": {"database":
bool}}``, answering ``{"currentConfig": {"database": bool}, "appliedSuccessfully": bool}`` like
api.supabase.com. Project refs with special behaviour:

- ``broken``: 500 ``{"message": "Internal server error"}``
- ``slow``: answers after ``SLOW_SECONDS`` (longer than the gateway's timeout in these tests)
- any request without ``Authorization: Bearer <VALID_TOKEN>``: 401 ``{"message": "Unauthorized"}``
- ``leaky``: 400 whose message echoes the bearer token (the gateway must scrub it)
- ``pending``: a PUT is accepted but answers ``appliedSuccessfully: false``
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

VALID_TOKEN = "sbp_valid_test_token_0123456789abcdef"
PROJECT = "abcdefghijklmnopqrst"
SLOW_SECONDS = 3.0
GATEWAY_TIMEOUT = "1"


@dataclass
class FakeManagementApi:
    """State of the fake API: SSL enforcement per project and every request it received."""

    url: str = ""
    projects: dict[str, bool] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.projects.clear()
            self.requests.clear()

    def calls(self, method: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if method is None or r["method"] == method]


def _handler(api: FakeManagementApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the gateway gave up waiting (the timeout test): expected

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            parts = self.path.strip("/").split("/")
            auth = self.headers.get("Authorization", "")
            with api.lock:
                api.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "authorization": auth,
                        "body": json.loads(raw) if raw else None,
                    }
                )
            if len(parts) != 4 or parts[:2] != ["v1", "projects"] or parts[3] != "ssl-enforcement":
                self._send(404, {"message": "Not Found"})
                return
            ref = parts[2]
            if ref == "slow":
                time.sleep(SLOW_SECONDS)
            if auth != f"Bearer {VALID_TOKEN}":
                self._send(401, {"message": "Unauthorized"})
                return
            if ref == "broken":
                self._send(500, {"message": "Internal server error"})
                return
            if ref == "leaky":
                self._send(400, {"message": f"token {auth.removeprefix('Bearer ')} is weird"})
                return
            with api.lock:
                if self.command == "PUT":
                    body = json.loads(raw or b"{}")
                    requested = body.get("requestedConfig", {}).get("database")
                    if not isinstance(requested, bool):
                        self._send(400, {"message": "requestedConfig.database must be a boolean"})
                        return
                    api.projects[ref] = requested
                current = api.projects.get(ref, False)
            applied = not (ref == "pending" and self.command == "PUT")
            self._send(
                200, {"currentConfig": {"database": current}, "appliedSuccessfully": applied}
            )

        def do_GET(self) -> None:
            self._handle()

        def do_PUT(self) -> None:
            self._handle()

    return Handler


@contextmanager
def serve_management_api() -> Iterator[FakeManagementApi]:
    """Run the fake API on a free loopback port for the duration of the block."""
    api = FakeManagementApi()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    server.daemon_threads = True
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
