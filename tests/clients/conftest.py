"""Two gateways of our own sharing a fresh catalog (client-catalog tests are destructive)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from clients_support import POLL_SECONDS, Pair
from support.pg import TestPostgres
from support.servers import AthenaServer


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
    # a URI only reachable through an environment variable (clients saved with pg_uri_env_var)
    env_uri = {"ATHENA_TEST_CLIENT_URI": pg.app_uri(data_db)}
    a = athena_factory(
        clients=clients, catalog=catalog, catalog_poll_seconds=POLL_SECONDS, **env_uri
    )
    b = athena_factory(
        clients=clients, catalog=catalog, catalog_poll_seconds=POLL_SECONDS, **env_uri
    )
    yield Pair(a, b, catalog, admin_key)
    a.stop()
    b.stop()
    pg.drop_database(catalog)
