"""The SDK test's own table (``gw_sdk_items``; data_db is shared with other areas)."""

from __future__ import annotations

import pytest
from support.pg import TestPostgres

SCHEMA_SQL = """
DROP TABLE IF EXISTS gw_sdk_items;
CREATE TABLE gw_sdk_items (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner text NOT NULL,
    name text NOT NULL,
    qty integer NOT NULL DEFAULT 1,
    note text,
    attrs jsonb,
    labels text[],
    UNIQUE (owner, name)
);
"""


@pytest.fixture(scope="session")
def sdk_schema(pg: TestPostgres, data_db: str) -> None:
    with pg.connect(data_db) as conn:
        conn.execute(SCHEMA_SQL)
