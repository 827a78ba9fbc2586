"""The README walk-through: demo tables created by its SQL, the two shipped example pipelines."""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import psycopg
from support.servers import AthenaServer

ROOT = Path(__file__).resolve().parents[2]


def _readme_sql() -> str:
    section = (ROOT / "README.md").read_text().split("## Pipelines", 1)[1]
    found = re.search(r"--data @-\n(.*?)\nSQL\n", section, re.S)
    assert found, "the README's demo-table SQL block is missing"
    return found.group(1)


def test_readme_example_pipelines(
    athena_factory: Callable[..., AthenaServer], admin_key: str, data_conn: psycopg.Connection
) -> None:
    data_conn.execute("DROP TABLE IF EXISTS demo_orders, demo_paid_orders, demo_daily_revenue")
    server = athena_factory(pipelines_file=str(ROOT / "config" / "pipelines.yaml"))
    headers = {"apikey": admin_key, "X-Athena-Client": "athena"}
    with server.client(**headers) as client:
        created = client.post("/gateway/query", json={"query": _readme_sql()})
        assert created.status_code == 200, created.text

        dry = client.post("/pipelines?dry_run=true", json={"pipeline": "copy_paid_orders"})
        assert dry.status_code == 200, dry.text
        assert dry.json()["would_insert"] == 4
        assert [row["id"] for row in dry.json()["data"]] == [1, 2, 4, 5]
        assert data_conn.execute("SELECT count(*) FROM demo_paid_orders").fetchone() == (0,)

        copied = client.post("/pipelines", json={"pipeline": "copy_paid_orders"})
        assert copied.status_code == 200, copied.text
        assert (copied.json()["rows_fetched"], copied.json()["rows_inserted"]) == (4, 4)
        again = client.post("/pipelines", json={"pipeline": "copy_paid_orders"})
        assert again.status_code == 409
        assert again.json()["code"] == "unique_violation"
        assert again.json()["data"]["errors"][0]["index"] == 0

        revenue = client.post("/pipelines", json={"pipeline": "daily_revenue"})
        assert revenue.status_code == 200, revenue.text
        assert [(r["created_at"], r["amount"]) for r in revenue.json()["data"]] == [
            ("2024-05-01", 19.75),
            ("2024-05-02", 49.75),
            ("2024-05-03", 50.0),
        ]
    assert data_conn.execute("SELECT id FROM demo_paid_orders ORDER BY id").fetchall() == [
        (1,),
        (2,),
        (4,),
        (5,),
    ]
    assert data_conn.execute(
        "SELECT created_at::text, amount FROM demo_daily_revenue ORDER BY 1"
    ).fetchall() == [
        ("2024-05-01", Decimal("19.75")),
        ("2024-05-02", Decimal("49.75")),
        ("2024-05-03", Decimal("50.00")),
    ]
    data_conn.execute("DROP TABLE demo_orders, demo_paid_orders, demo_daily_revenue")
