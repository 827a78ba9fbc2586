"""WebSocket gateway tests: tables of their own (``ws_*``); the client is in ``ws_helpers``."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from support.pg import TestPostgres

WS_TABLES = """
CREATE TABLE IF NOT EXISTS ws_items (
    id serial PRIMARY KEY,
    name text NOT NULL,
    qty integer NOT NULL DEFAULT 0,
    note text
);
CREATE TABLE IF NOT EXISTS ws_secrets (
    id serial PRIMARY KEY,
    secret text NOT NULL
);
"""


@pytest.fixture(scope="session")
def ws_tables(pg: TestPostgres, data_db: str) -> Iterator[None]:
    """The ``ws_*`` tables in the default client's database (created before any server)."""
    with pg.connect(data_db) as conn:
        conn.execute(WS_TABLES)  # type: ignore[arg-type]
    yield


@pytest.fixture
def items(pg: TestPostgres, data_db: str, ws_tables: None) -> Iterator[psycopg.Connection]:
    """A direct connection with ``ws_items``/``ws_secrets`` emptied, to seed and check rows."""
    with pg.connect(data_db) as conn:
        conn.execute("TRUNCATE ws_items, ws_secrets RESTART IDENTITY")
        yield conn
