"""A gateway with a test pipelines file, and fresh ``pl_`` tables for every test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from support.servers import AthenaServer

RESULT_CAP = 50

TEST_PIPELINES = """
pipelines:
  copy_paid:
    source:
      table_name: pl_orders
      columns: [id, customer, amount, created_at]
      conditions:
        - eq_column: status
          eq_value: paid
      sort_by: {field: id, direction: asc}
    sink:
      table_name: pl_paid

  revenue_by_day:
    source:
      table_name: pl_orders
      columns: [created_at, amount]
    transform:
      group_by: created_at
      time_granularity: day
      aggregation_column: amount
      aggregation_strategy: cumulative_sum
    sink:
      table_name: pl_revenue

  copy_paid_skipping:
    source:
      table_name: pl_orders
      columns: [id, customer, amount, created_at]
      sort_by: {field: id, direction: asc}
    sink:
      table_name: pl_paid
      on_error: skip
"""

# 12 orders over three days and several hours/minutes; ids 1..12.
ORDERS = [
    # id, customer, status, amount, created_at (UTC)
    (1, "ada", "paid", "10.10", "2024-03-01 09:15:10+00"),
    (2, "bob", "paid", "5.20", "2024-03-01 09:15:50+00"),
    (3, "cy", "open", "99.00", "2024-03-01 09:45:00+00"),
    (4, "ada", "paid", "0.10", "2024-03-01 10:05:00+00"),
    (5, "bob", "paid", "0.20", "2024-03-01 23:59:59+00"),
    (6, "cy", "paid", "7.00", "2024-03-02 00:00:00+00"),
    (7, "ada", "open", "1.00", "2024-03-02 08:30:00+00"),
    (8, "bob", "paid", "3.33", "2024-03-02 08:30:30+00"),
    (9, "cy", "paid", "1.67", "2024-03-02 11:00:00+00"),
    (10, "ada", "paid", "20.00", "2024-03-04 12:00:00+00"),
    (11, "bob", "open", "2.50", "2024-03-04 12:00:00+00"),
    (12, "cy", "paid", "0.05", "2024-03-04 12:01:00+00"),
]

SCHEMA = """
DROP VIEW IF EXISTS pl_fragile;
DROP TABLE IF EXISTS pl_orders, pl_paid, pl_revenue, pl_revenue_hour, pl_revenue_minute,
                     pl_revenue_ts, pl_customers, pl_events CASCADE;
CREATE TABLE pl_orders (
    id integer PRIMARY KEY,
    customer text NOT NULL,
    status text NOT NULL,
    amount numeric(12,2) NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE TABLE pl_paid (
    id integer PRIMARY KEY,
    customer text NOT NULL,
    amount numeric(12,2) NOT NULL CHECK (amount < 50),
    created_at timestamptz NOT NULL,
    copied_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE pl_revenue (created_at date PRIMARY KEY, amount numeric(14,2) NOT NULL);
CREATE TABLE pl_revenue_hour (created_at timestamptz PRIMARY KEY, amount numeric(14,2));
CREATE TABLE pl_revenue_minute (created_at text PRIMARY KEY, amount numeric(14,2));
CREATE TABLE pl_customers (customer text PRIMARY KEY, amount numeric(14,2));
CREATE TABLE pl_events (customer text, amount numeric(14,2));
"""


@pytest.fixture(scope="session")
def pipelines_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pipelines") / "pipelines.yaml"
    path.write_text(TEST_PIPELINES)
    return path


@pytest.fixture(scope="session")
def pl_gateway(athena_factory: Callable[..., AthenaServer], pipelines_file: Path) -> AthenaServer:
    """The gateway under test: client ``athena`` → the test data database; enforcement on.

    ``max_result_rows`` is small so that the response of a large run is seen capped."""
    return athena_factory(
        pipelines_file=str(pipelines_file), max_result_rows=str(RESULT_CAP), keep=True
    )


@pytest.fixture
def pl(pl_gateway: AthenaServer, admin_key: str) -> Iterator[httpx.Client]:
    """Requests with the admin (master) key and ``X-Athena-Client: athena``."""
    with pl_gateway.client(apikey=admin_key, **{"X-Athena-Client": "athena"}) as client:
        yield client


@pytest.fixture
def pl_tables(data_conn: psycopg.Connection) -> psycopg.Connection:
    """Fresh ``pl_`` tables with ``ORDERS`` loaded; returns the direct connection."""
    data_conn.execute(SCHEMA)
    with data_conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO pl_orders (id, customer, status, amount, created_at)"
            " VALUES (%s, %s, %s, %s, %s)",
            ORDERS,
        )
    data_conn.commit()
    return data_conn
