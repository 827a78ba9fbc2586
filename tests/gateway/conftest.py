"""Fixture tables for the data gateway (prefix ``gw_``: data_db is shared with other areas).

``gw_products`` carries every type a condition needs (uuid, text, int, numeric, bool,
timestamptz, jsonb, text[], nullable columns) and is read-only: tests that write use
``gw_items`` with values of their own, or the single-purpose tables below.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import psycopg
import pytest
from support.pg import TestPostgres
from support.servers import AthenaServer

SCHEMA_SQL = """
DROP VIEW IF EXISTS gw_active_products;
DROP TABLE IF EXISTS gw_orders, gw_products, gw_items, gw_docs, gw_events, gw_burst,
    gw_nopk, gw_victim CASCADE;
CREATE TABLE gw_products (
    id uuid PRIMARY KEY,
    sku text NOT NULL UNIQUE,
    name text NOT NULL,
    qty integer NOT NULL,
    price numeric(10,2),
    active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL,
    tags text[] NOT NULL DEFAULT '{}',
    meta jsonb,
    note text
);
INSERT INTO gw_products VALUES
 ('00000000-0000-0000-0000-000000000001','A-1','Anvil',      5,  19.99, true,
  '2024-03-01T09:15:00Z', '{tools,heavy}', '{"color":"black","weight":50}', 'classic'),
 ('00000000-0000-0000-0000-000000000002','B-2','Bolt',      100,  0.10, true,
  '2024-03-01T09:45:00Z', '{tools}', '{"color":"silver"}', NULL),
 ('00000000-0000-0000-0000-000000000003','C-3','Crate',      12,  7.50, false,
  '2024-03-01T10:05:00Z', '{storage}', NULL, 'wooden'),
 ('00000000-0000-0000-0000-000000000004','D-4','Drill',       3, 89.00, true,
  '2024-03-02T08:00:00Z', '{tools,power}', '{"color":"yellow","weight":2}', NULL),
 ('00000000-0000-0000-0000-000000000005','E-5','Eraser',      0,  NULL, false,
  '2024-03-03T23:59:00Z', '{}', '{}', 'it''s "quoted", with commas');

CREATE VIEW gw_active_products AS
  SELECT id, sku, name, qty, price FROM gw_products WHERE active;

CREATE TABLE gw_items (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner text NOT NULL,
    name text NOT NULL,
    qty integer NOT NULL DEFAULT 1 CHECK (qty >= 0),
    price numeric(10,2),
    flag boolean,
    seen_at timestamptz,
    attrs jsonb,
    labels text[],
    note text,
    UNIQUE (owner, name)
);
CREATE TABLE gw_orders (
    id bigserial PRIMARY KEY,
    item_id uuid NOT NULL REFERENCES gw_items(id),
    amount numeric(10,2) NOT NULL
);
CREATE TABLE gw_docs (
    id serial PRIMARY KEY,
    resource_id text UNIQUE NOT NULL,
    title text
);
CREATE TABLE gw_events (
    id serial PRIMARY KEY,
    kind text NOT NULL,
    at timestamptz NOT NULL,
    amount numeric(12,2) NOT NULL
);
INSERT INTO gw_events (kind, at, amount) VALUES
 ('sale',   '2024-05-01T10:15:00Z', 10.10),
 ('sale',   '2024-05-01T10:45:00Z', 20.20),
 ('refund', '2024-05-01T11:05:00Z', 5.05),
 ('sale',   '2024-05-02T09:00:00Z', 0.10),
 ('sale',   '2024-05-02T09:00:30Z', 0.20),
 ('sale',   '2024-05-02T09:00:30Z', 0.20);
CREATE TABLE gw_burst (id serial PRIMARY KEY, n integer NOT NULL, tag text NOT NULL);
CREATE TABLE gw_nopk (a integer, b text);
CREATE TABLE gw_victim (id serial PRIMARY KEY, v text);
INSERT INTO gw_victim (v) VALUES ('one'), ('two');
"""


@pytest.fixture(scope="session")
def gw_schema(pg: TestPostgres, data_db: str) -> None:
    """Create the gateway fixture tables once per session."""
    with pg.connect(data_db) as conn:
        conn.execute(SCHEMA_SQL)


def gateway_headers(admin_key: str, **extra: str) -> dict[str, str]:
    headers = {
        "apikey": admin_key,
        "X-Athena-Client": "athena",
        "X-User-Id": "user-1",
        "X-Company-Id": "company-1",
        "X-Organization-Id": "org-1",
    }
    headers.update(extra)
    return headers


@pytest.fixture
def gw(athena: AthenaServer, gw_schema: None, admin_key: str) -> Iterator[httpx.Client]:
    """The master key, client ``athena`` and all context headers."""
    with athena.client(**gateway_headers(admin_key)) as client:
        yield client


@pytest.fixture
def db(data_conn: psycopg.Connection, gw_schema: None) -> psycopg.Connection:
    """A direct connection to check what the gateway did."""
    return data_conn
