"""Session-wide real parts: one throwaway PostgreSQL, one catalog, one Athena server.

Tests that need a differently configured gateway start their own with ``athena_factory``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from support.pg import TestPostgres
from support.servers import AthenaServer, server_env

ADMIN_KEY = "test_admin_" + secrets.token_hex(16)


@pytest.fixture(scope="session")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestPostgres]:
    server = TestPostgres.start(tmp_path_factory.mktemp("pg"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def catalog_db(pg: TestPostgres) -> str:
    return pg.create_database("athena_catalog", owner="postgres")


@pytest.fixture(scope="session")
def data_db(pg: TestPostgres) -> str:
    """The data database of the default client ``athena`` (owned by the non-superuser role)."""
    return pg.create_database("athena_data")


@pytest.fixture(scope="session")
def admin_key() -> str:
    return ADMIN_KEY


@pytest.fixture(scope="session")
def started_gateways() -> list[AthenaServer]:
    """Every gateway ``athena_factory`` started, in order (``_module_gateways`` reads it)."""
    return []


@pytest.fixture(scope="session")
def athena_factory(
    pg: TestPostgres,
    catalog_db: str,
    data_db: str,
    tmp_path_factory: pytest.TempPathFactory,
    started_gateways: list[AthenaServer],
) -> Iterator[Callable[..., AthenaServer]]:
    """Start extra gateways: ``athena_factory(clients=..., **ATHENA_settings)``.

    A gateway lives until the end of the test module that started it (``_module_gateways``
    stops it there); a session fixture passes ``keep=True`` for one that lives as long as the
    session. Idle gateways still run their probes and flushes; ninety of them kept to the end
    of the suite cost a core."""

    def start(
        *,
        clients: dict[str, dict[str, Any]] | None = None,
        catalog: str | None = None,
        args: list[str] | None = None,
        keep: bool = False,
        **settings: str,
    ) -> AthenaServer:
        env = server_env(
            catalog_uri=pg.superuser_uri(catalog or catalog_db),
            admin_key=ADMIN_KEY,
            clients=clients if clients is not None else {"athena": {"pg_uri": pg.app_uri(data_db)}},
            **settings,
        )
        server = AthenaServer(tmp_path_factory.mktemp("athena"), env, args or [], keep=keep)
        started_gateways.append(server)
        return server.start()

    yield start
    _stop_all(started_gateways)


def _stop_all(servers: list[AthenaServer]) -> None:
    """Signal every gateway first, then wait: they shut down in parallel (one after the other
    this took most of a minute at the end of the suite)."""
    for server in servers:
        server.signal_stop()
    for server in servers:
        server.stop()


@pytest.fixture(scope="module", autouse=True)
def _module_gateways(started_gateways: list[AthenaServer]) -> Iterator[None]:
    """Stop, at the end of each module, the gateways it started (all but ``keep=True`` ones).

    Autouse, so it is set up before the module's own fixtures and torn down after them; it
    needs only the list, so a module of unit tests starts no PostgreSQL for it."""
    first = len(started_gateways)
    yield
    _stop_all([server for server in started_gateways[first:] if not server.keep])


@pytest.fixture(scope="session")
def athena(athena_factory: Callable[..., AthenaServer]) -> AthenaServer:
    """The shared gateway: client ``athena`` → ``data_db``; enforcement on (the default).

    It keeps 1.3.0's strict context headers (``ATHENA_REQUIRE_CONTEXT_HEADERS=true``), which the
    gateway, WebSocket and SDK 0.2.1 tests assert; the SDK 5 tests start a default server."""
    return athena_factory(require_context_headers="true", keep=True)


@pytest.fixture
def http(athena: AthenaServer) -> Iterator[httpx.Client]:
    with athena.client() as client:
        yield client


@pytest.fixture
def admin(athena: AthenaServer) -> Iterator[httpx.Client]:
    """Requests with the admin (master) key and client ``athena``."""
    with athena.client(apikey=ADMIN_KEY, **{"X-Athena-Client": "athena"}) as client:
        yield client


@pytest.fixture
def data_conn(pg: TestPostgres, data_db: str) -> Iterator[psycopg.Connection]:
    """A direct connection to the default client's database, to check what the gateway did."""
    with pg.connect(data_db) as conn:
        yield conn


@pytest.fixture
def catalog_conn(pg: TestPostgres, catalog_db: str) -> Iterator[psycopg.Connection]:
    with pg.connect(catalog_db, superuser=True) as conn:
        yield conn


@pytest.fixture
def tmp_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture(scope="session")
def catalog_uri(pg: TestPostgres, catalog_db: str) -> str:
    return pg.superuser_uri(catalog_db)


@pytest.fixture
def seeded_key(athena: AthenaServer, catalog_uri: str) -> Callable[..., str]:
    """``seeded_key(rights=[...], client="athena")`` → a real key inserted into the catalog."""
    from support.keys import seed_key

    def make(**kwargs: Any) -> str:
        return seed_key(catalog_uri, **kwargs)

    return make
