"""What a service needs to know about the call it serves, whatever the transport.

HTTP routes build a ``CallContext`` from the Quart request; the WebSocket gateway builds one per
message from the upgrade headers merged with the message's ``headers``. Services, the auth guard
and the request log only ever see this.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any


def new_request_id() -> str:
    return uuid.uuid4().hex


@dataclass
class CallContext:
    headers: dict[str, str]  # lower-cased names
    request_id: str = field(default_factory=new_request_id)
    remote_addr: str | None = None
    route: str = ""
    method: str = ""
    query: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    # filled while the call is served, read by the request log
    client_name: str | None = None
    # Set only once the caller was authorized for the table: each name the log holds becomes
    # a per-table statistics row that is never pruned, so a name from a caller without a key
    # (spraying /rest/v1/<anything> for 401s) must never reach it. An authorized caller's
    # misses are counted (as errors), under its key id.
    table_name: str | None = None
    operation: str | None = None
    key_public_id: str | None = None
    cached: bool = False
    error_code: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_pairs(cls, pairs: Any, **kwargs: Any) -> CallContext:
        """Build from any iterable of (name, value) header pairs (later ones win)."""
        headers: dict[str, str] = {}
        for name, value in pairs:
            headers[name.lower()] = value
        return cls(headers=headers, **kwargs)

    def header(self, name: str) -> str | None:
        value = self.headers.get(name.lower())
        if value is None:
            return None
        value = value.strip()
        return value or None

    @property
    def client_header(self) -> str | None:
        return self.header("x-athena-client")
