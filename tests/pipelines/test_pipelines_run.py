"""``POST /pipelines`` over real tables: prebuilt, inline, overrides, transforms, dry runs."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import httpx
import psycopg


def _rows(conn: psycopg.Connection, query: str) -> list[tuple[object, ...]]:
    return conn.execute(query).fetchall()


def test_prebuilt_pipeline_copies_matching_rows(
    pl: httpx.Client, pl_tables: psycopg.Connection
) -> None:
    response = pl.post("/pipelines", json={"pipeline": "copy_paid"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success"
    assert body["rows_fetched"] == 9
    assert body["rows_inserted"] == 9
    assert body["errors"] == []
    assert [row["id"] for row in body["data"]] == [1, 2, 4, 5, 6, 8, 9, 10, 12]
    # data are the inserted rows as the sink stored them (defaults included)
    assert body["data"][0]["customer"] == "ada" and "copied_at" in body["data"][0]
    assert _rows(pl_tables, "SELECT id, customer, amount FROM pl_paid ORDER BY id")[:2] == [
        (1, "ada", Decimal("10.10")),
        (2, "bob", Decimal("5.20")),
    ]
    assert _rows(pl_tables, "SELECT count(*), sum(amount) FROM pl_paid") == [(9, Decimal("47.65"))]


def test_inline_pipeline_without_a_prebuilt_one(
    pl: httpx.Client, pl_tables: psycopg.Connection
) -> None:
    response = pl.post(
        "/pipelines",
        json={
            "source": {
                "table_name": "pl_orders",
                "columns": ["customer", "amount"],
                "conditions": [{"column": "amount", "operator": "gte", "value": 10}],
            },
            "sink": {"table_name": "pl_events"},
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["rows_inserted"] == 3
    assert _rows(pl_tables, "SELECT customer, amount FROM pl_events ORDER BY amount") == [
        ("ada", Decimal("10.10")),
        ("ada", Decimal("20.00")),
        ("cy", Decimal("99.00")),
    ]


def test_inline_sections_override_the_prebuilt_pipeline_key_by_key(
    pl: httpx.Client, pl_tables: psycopg.Connection
) -> None:
    # Same source conditions and sort as `copy_paid`, but only the first 2 rows, and the
    # columns and sink replaced.
    response = pl.post(
        "/pipelines",
        json={
            "pipeline": "copy_paid",
            "source": {"limit": 2, "columns": ["customer", "amount"]},
            "sink": {"table_name": "pl_events"},
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["pipeline"] == "copy_paid"
    assert (body["rows_fetched"], body["rows_inserted"]) == (2, 2)
    assert _rows(pl_tables, "SELECT customer, amount FROM pl_events ORDER BY amount") == [
        ("bob", Decimal("5.20")),
        ("ada", Decimal("10.10")),
    ]
    assert _rows(pl_tables, "SELECT count(*) FROM pl_paid") == [(0,)]


def test_transform_by_day_with_cumulative_sum(
    pl: httpx.Client, pl_tables: psycopg.Connection
) -> None:
    response = pl.post("/pipelines", json={"pipeline": "revenue_by_day"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["rows_fetched"] == 12
    assert body["rows_inserted"] == 3
    assert _rows(pl_tables, "SELECT created_at::text, amount FROM pl_revenue ORDER BY 1") == [
        ("2024-03-01", Decimal("114.60")),
        ("2024-03-02", Decimal("127.60")),
        ("2024-03-04", Decimal("150.15")),
    ]


def test_transform_by_hour_plain_sum(pl: httpx.Client, pl_tables: psycopg.Connection) -> None:
    response = pl.post(
        "/pipelines",
        json={
            "pipeline": "revenue_by_day",
            "source": {"conditions": [{"eq_column": "status", "eq_value": "paid"}]},
            "transform": {"time_granularity": "HOUR", "aggregation_strategy": None},
            "sink": {"table_name": "pl_revenue_hour"},
        },
    )
    assert response.status_code == 200, response.text
    stored = _rows(
        pl_tables,
        "SELECT to_char(created_at AT TIME ZONE 'UTC', 'MM-DD HH24:MI'), amount"
        " FROM pl_revenue_hour ORDER BY created_at",
    )
    assert stored == [
        ("03-01 09:00", Decimal("15.30")),
        ("03-01 10:00", Decimal("0.10")),
        ("03-01 23:00", Decimal("0.20")),
        ("03-02 00:00", Decimal("7.00")),
        ("03-02 08:00", Decimal("3.33")),
        ("03-02 11:00", Decimal("1.67")),
        ("03-04 12:00", Decimal("20.05")),
    ]


def test_transform_by_minute_cumulative_into_text_labels(
    pl: httpx.Client, pl_tables: psycopg.Connection
) -> None:
    response = pl.post(
        "/pipelines",
        json={
            "source": {
                "table_name": "pl_orders",
                "columns": ["created_at", "amount"],
                "sort_by": {"field": "id"},
                "limit": 5,
            },
            "transform": {
                "group_by": "created_at",
                "time_granularity": "minute",
                "aggregation_column": "amount",
                "aggregation_strategy": "cumulative_sum",
            },
            "sink": {"table_name": "pl_revenue_minute"},
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"] == [
        {"created_at": "2024-03-01T09:15:00Z", "amount": 15.3},
        {"created_at": "2024-03-01T09:45:00Z", "amount": 114.3},
        {"created_at": "2024-03-01T10:05:00Z", "amount": 114.4},
        {"created_at": "2024-03-01T23:59:00Z", "amount": 114.6},
    ]
    assert _rows(pl_tables, "SELECT count(*) FROM pl_revenue_minute") == [(4,)]


def test_transform_without_time_granularity_groups_by_value(
    pl: httpx.Client, pl_tables: psycopg.Connection
) -> None:
    response = pl.post(
        "/pipelines",
        json={
            "source": {"table_name": "pl_orders", "columns": ["customer", "amount"]},
            "transform": {"group_by": "customer", "aggregation_column": "amount"},
            "sink": {"table_name": "pl_customers"},
        },
    )
    assert response.status_code == 200, response.text
    assert _rows(pl_tables, "SELECT customer, amount FROM pl_customers ORDER BY 1") == [
        ("ada", Decimal("31.20")),
        ("bob", Decimal("11.23")),
        ("cy", Decimal("107.72")),
    ]


def test_transform_matches_the_fetch_post_processing(
    pl: httpx.Client, pl_tables: psycopg.Connection
) -> None:
    """The pipeline groups with the fetch's own code: same labels, same running totals."""
    options = {
        "group_by": "created_at",
        "time_granularity": "hour",
        "aggregation_column": "amount",
        "aggregation_strategy": "cumulative_sum",
    }
    fetched = pl.post(
        "/gateway/fetch",
        json={"table_name": "pl_orders", "columns": ["created_at", "amount"], **options},
    )
    assert fetched.status_code == 200, fetched.text
    expected = [
        {"created_at": g["label"], "amount": g["aggregation"]["cumulative"]}
        for g in fetched.json()["post_processing"]["grouped"]
    ]
    # batch_size 2 forces the groups to be merged across many batches
    dry = pl.post(
        "/pipelines?dry_run=true",
        json={
            "source": {
                "table_name": "pl_orders",
                "columns": ["created_at", "amount"],
                "batch_size": 2,
            },
            "transform": options,
            "sink": {"table_name": "pl_revenue_hour"},
        },
    )
    assert dry.status_code == 200, dry.text
    assert dry.json()["data"] == expected


def test_small_batches_give_the_same_result(
    pl: httpx.Client, pl_tables: psycopg.Connection, data_conn: psycopg.Connection
) -> None:
    # 600 rows read 7 at a time: the source is streamed, groups are merged across batches.
    data_conn.execute(
        "INSERT INTO pl_orders SELECT 100 + g, 'bulk', 'paid', (g % 10) + 0.25,"
        " timestamptz '2024-03-05 00:00:00+00' + g * interval '7 minutes'"
        " FROM generate_series(1, 600) g"
    )
    body = {
        "pipeline": "revenue_by_day",
        "source": {"conditions": [{"eq_column": "customer", "eq_value": "bulk"}], "batch_size": 7},
    }
    response = pl.post("/pipelines", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["rows_fetched"] == 600
    stored = _rows(pl_tables, "SELECT created_at::text, amount FROM pl_revenue ORDER BY 1")
    expected = _rows(
        pl_tables,
        "SELECT d::text, sum(s) OVER (ORDER BY d) FROM ("
        " SELECT (created_at AT TIME ZONE 'UTC')::date d, sum(amount) s FROM pl_orders"
        " WHERE customer = 'bulk' GROUP BY 1) x ORDER BY 1",
    )
    assert stored == expected and len(stored) == 3
    # and the copy pipeline streamed in batches inserts every row once
    copied = pl.post(
        "/pipelines",
        json={
            "pipeline": "copy_paid",
            "source": {
                "columns": ["customer", "amount"],
                "conditions": [{"eq_column": "customer", "eq_value": "bulk"}],
                "batch_size": 7,
            },
            "sink": {"table_name": "pl_events"},
            "transform": None,
        },
    )
    assert copied.status_code == 200, copied.text
    copy_body = copied.json()
    assert copy_body["rows_inserted"] == 600
    assert pl_tables.execute("SELECT count(*) FROM pl_events").fetchone() == (600,)
    # the response lists the inserted rows up to ATHENA_MAX_RESULT_ROWS, then says so
    assert copy_body["data_truncated"] is True
    assert 0 < len(copy_body["data"]) <= 50  # the cap pl_gateway runs with
    assert copy_body["pipeline"] == "copy_paid"


def test_dedup_counts_identical_rows_once(pl: httpx.Client, pl_tables: psycopg.Connection) -> None:
    pl_tables.execute(
        "INSERT INTO pl_orders VALUES (50, 'dup', 'paid', 4.00, '2024-03-09 10:00+00'),"
        " (51, 'dup', 'paid', 4.00, '2024-03-09 10:00+00'), (52, 'dup', 'paid', 1.00, '2024-03-09 11:00+00')"
    )
    body = {
        "source": {
            "table_name": "pl_orders",
            "columns": ["customer", "amount", "created_at"],
            "conditions": [{"eq_column": "customer", "eq_value": "dup"}],
            "batch_size": 1,
        },
        "transform": {
            "group_by": "customer",
            "aggregation_column": "amount",
            "aggregation_dedup": True,
        },
        "sink": {"table_name": "pl_customers"},
    }
    response = pl.post("/pipelines", json=body)
    assert response.status_code == 200, response.text
    assert _rows(pl_tables, "SELECT customer, amount FROM pl_customers") == [
        ("dup", Decimal("5.00"))
    ]


def test_dry_run_writes_nothing_and_returns_what_would_be_inserted(
    pl: httpx.Client, pl_tables: psycopg.Connection
) -> None:
    copy = pl.post("/pipelines?dry_run=true", json={"pipeline": "copy_paid"})
    assert copy.status_code == 200, copy.text
    body = copy.json()
    assert body["dry_run"] is True
    assert body["rows_fetched"] == 9
    assert body["rows_inserted"] == 0
    assert body["would_insert"] == 9
    first = body["data"][0]
    assert (first["id"], first["customer"], first["amount"]) == (1, "ada", 10.10)
    assert datetime.fromisoformat(first["created_at"]) == datetime(
        2024, 3, 1, 9, 15, 10, tzinfo=UTC
    )
    grouped = pl.post("/pipelines", params={"dry_run": "true"}, json={"pipeline": "revenue_by_day"})
    assert grouped.status_code == 200
    assert grouped.json()["data"] == [
        {"created_at": "2024-03-01", "amount": 114.6},
        {"created_at": "2024-03-02", "amount": 127.6},
        {"created_at": "2024-03-04", "amount": 150.15},
    ]
    assert _rows(
        pl_tables, "SELECT (SELECT count(*) FROM pl_paid), (SELECT count(*) FROM pl_revenue)"
    ) == [(0, 0)]


def test_many_groups_over_many_small_batches(
    pl: httpx.Client, pl_tables: psycopg.Connection
) -> None:
    # 1100 one-minute groups read 5 rows at a time: the per-batch group summaries are compacted
    # while reading, and the final running totals still match PostgreSQL's own.
    pl_tables.execute(
        "INSERT INTO pl_orders SELECT 1000 + g, 'many', 'paid', (g % 7) + 0.01,"
        " timestamptz '2024-04-01 00:00:00+00' + g * interval '1 minute'"
        " FROM generate_series(1, 1100) g"
    )
    response = pl.post(
        "/pipelines",
        json={
            "source": {
                "table_name": "pl_orders",
                "columns": ["created_at", "amount"],
                "conditions": [{"eq_column": "customer", "eq_value": "many"}],
                "batch_size": 5,
            },
            "transform": {
                "group_by": "created_at",
                "time_granularity": "minute",
                "aggregation_column": "amount",
                "aggregation_strategy": "cumulative_sum",
            },
            "sink": {"table_name": "pl_revenue_minute"},
        },
    )
    assert response.status_code == 200, response.text
    assert (response.json()["rows_fetched"], response.json()["rows_inserted"]) == (1100, 1100)
    stored = _rows(pl_tables, "SELECT created_at, amount FROM pl_revenue_minute ORDER BY 1")
    expected = _rows(
        pl_tables,
        "SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:00\"Z\"'),"
        " sum(amount) OVER (ORDER BY created_at) FROM pl_orders WHERE customer = 'many'"
        " ORDER BY 1",
    )
    assert stored == expected
