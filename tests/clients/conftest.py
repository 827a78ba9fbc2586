"""Two gateways of our own sharing a fresh catalog (client-catalog tests are destructive)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from support.pg import TestPostgres
from support.servers import AthenaServer

POLL_SECONDS = "0.5"


@dataclass
class Pair:
    a: AthenaServer
    b: AthenaServer
    catalog: str
    admin_key: str

    def admin(self, server: AthenaServer, **headers: str) -> httpx.Client:
        return server.client(apikey=self.admin_key, **headers)


@pytest.fixture(scope="module")
def pair(
    pg: TestPostgres,
    data_db: str,
    admin_key: str,
    athena_factory: Callable[..., AthenaServer],
) -> Iterator[Pair]:
    catalog = pg.create_database(owner="postgres")
    clients = {
        "athena": {"pg_uri": pg.app_uri(data_db), "description": "default"},
        "cfg_only": {"pg_uri": pg.app_uri(data_db), "description": "from config"},
    }
    a = athena_factory(clients=clients, catalog=catalog, catalog_poll_seconds=POLL_SECONDS)
    b = athena_factory(clients=clients, catalog=catalog, catalog_poll_seconds=POLL_SECONDS)
    yield Pair(a, b, catalog, admin_key)
    a.stop()
    b.stop()
    pg.drop_database(catalog)
