"""Helpers of the client-catalog tests."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from support.servers import AthenaServer

POLL_SECONDS = "0.5"


@dataclass
class Pair:
    """Two gateways of our own sharing one fresh catalog."""

    a: AthenaServer
    b: AthenaServer
    catalog: str
    admin_key: str

    def admin(self, server: AthenaServer, **headers: str) -> httpx.Client:
        return server.client(apikey=self.admin_key, **headers)
