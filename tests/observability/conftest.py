"""Gateways with a catalog of their own, so that other tests' traffic never changes the numbers
checked here."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg
import pytest
from obs_helpers import FAST
from support.pg import TestPostgres
from support.servers import AthenaServer


@pytest.fixture(scope="session")
def own_catalog(pg: TestPostgres) -> Iterator[str]:
    """A fresh catalog database for the observability gateways."""
    name = pg.create_database(owner="postgres")
    yield name


@pytest.fixture(scope="session")
def obs(
    athena_factory: Callable[..., AthenaServer], own_catalog: str, pg: TestPostgres, data_db: str
) -> AthenaServer:
    """A gateway on its own catalog with clients ``athena``, ``rest`` (real /rest/v1 traffic)
    and ``quiet`` (never used)."""
    uri = pg.app_uri(data_db)
    return athena_factory(
        clients={"athena": {"pg_uri": uri}, "rest": {"pg_uri": uri}, "quiet": {"pg_uri": uri}},
        catalog=own_catalog,
        keep=True,
        REGISTRY_CACHE_TTL_S="600",
        **FAST,
    )


@pytest.fixture
def obs_catalog(pg: TestPostgres, own_catalog: str) -> Iterator[psycopg.Connection]:
    with pg.connect(own_catalog, superuser=True) as conn:
        yield conn
