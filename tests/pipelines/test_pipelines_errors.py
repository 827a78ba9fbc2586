"""``POST /pipelines`` failures: sink violations, bad requests, keys and rights."""

from __future__ import annotations

import httpx
import psycopg
from support.keys import seed_key
from support.servers import AthenaServer


def _count(conn: psycopg.Connection, table: str) -> int:
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # test-owned names


def test_sink_constraint_violation_inserts_nothing(
    pl: httpx.Client, pl_tables: psycopg.Connection
) -> None:
    # Order 3 (99.00) breaks pl_paid's CHECK (amount < 50); it is the third row read.
    response = pl.post(
        "/pipelines", json={"pipeline": "copy_paid_skipping", "sink": {"on_error": "rollback"}}
    )
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["status"] == "error"
    assert body["code"] == "check_violation"
    assert body["data"]["rows_inserted"] == 0
    [error] = body["data"]["errors"]
    assert error["index"] == 2
    assert error["code"] == "check_violation"
    assert error["constraint"] == "pl_paid_amount_check"
    assert "INSERT" not in response.text and "json_populate" not in response.text
    assert _count(pl_tables, "pl_paid") == 0


def test_duplicate_key_in_the_sink_rolls_everything_back(
    pl: httpx.Client, pl_tables: psycopg.Connection
) -> None:
    pl_tables.execute(
        "INSERT INTO pl_paid (id, customer, amount, created_at) VALUES (5, 'x', 1, now())"
    )
    response = pl.post("/pipelines", json={"pipeline": "copy_paid"})
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "unique_violation"
    assert body["data"]["errors"][0]["index"] == 3  # paid ids 1, 2, 4, 5: the fourth row
    assert "nothing was inserted" in body["message"]
    assert _count(pl_tables, "pl_paid") == 1


def test_on_error_skip_keeps_the_good_rows_and_lists_the_bad_ones(
    pl: httpx.Client, pl_tables: psycopg.Connection
) -> None:
    pl_tables.execute(
        "INSERT INTO pl_paid (id, customer, amount, created_at) VALUES (10, 'x', 1, now())"
    )
    response = pl.post(
        "/pipelines", json={"pipeline": "copy_paid_skipping", "source": {"batch_size": 4}}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["rows_fetched"] == 12
    assert body["rows_inserted"] == 10
    assert [(e["index"], e["code"]) for e in body["errors"]] == [
        (2, "check_violation"),
        (9, "unique_violation"),
    ]
    assert [row["id"] for row in body["data"]] == [1, 2, 4, 5, 6, 7, 8, 9, 11, 12]
    ids = [r[0] for r in pl_tables.execute("SELECT id FROM pl_paid ORDER BY id").fetchall()]
    assert ids == [1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12]


def test_unknown_pipeline_and_missing_header_are_400(
    pl_gateway: AthenaServer, pl: httpx.Client, admin_key: str
) -> None:
    unknown = pl.post("/pipelines", json={"pipeline": "no_such_pipeline"})
    assert unknown.status_code == 400
    assert unknown.json()["code"] == "unknown_pipeline"
    assert unknown.json()["data"] == {"pipeline": "no_such_pipeline"}
    with pl_gateway.client(apikey=admin_key) as client:
        missing = client.post("/pipelines", json={"pipeline": "copy_paid"})
    assert missing.status_code == 400
    assert missing.json()["code"] == "missing_client_header"
    assert missing.json()["data"]["details"]["missing_header"] == "X-Athena-Client"


def test_bad_requests_are_400_with_stable_codes(
    pl: httpx.Client, pl_tables: psycopg.Connection
) -> None:
    cases = [
        ({}, "invalid_request"),
        ({"source": {"table_name": "pl_orders"}}, "invalid_pipeline"),
        ({"source": {"table_name": "pl_nope"}, "sink": {"table_name": "pl_paid"}}, "unknown_table"),
        (
            {
                "source": {"table_name": "pl_orders", "columns": ["nope"]},
                "sink": {"table_name": "pl_paid"},
            },
            "unknown_column",
        ),
        (
            # pl_events has no `id`: the sink must hold every column the rows carry
            {
                "source": {"table_name": "pl_orders", "columns": ["id"]},
                "sink": {"table_name": "pl_events"},
            },
            "unknown_column",
        ),
        (
            {
                "source": {"table_name": "pl_orders"},
                "transform": {"group_by": "customer", "time_granularity": "week"},
                "sink": {"table_name": "pl_customers"},
            },
            "invalid_value",
        ),
        (
            {
                "source": {"table_name": "pl_orders"},
                "transform": {"group_by": "customer", "time_granularity": "day"},
                "sink": {"table_name": "pl_customers"},
            },
            "invalid_value",  # customer is not a timestamp
        ),
        (
            {
                "source": {"table_name": "pl_orders", "columns": ["customer"]},
                "transform": {"group_by": "customer", "aggregation_column": "amount"},
                "sink": {"table_name": "pl_customers"},
            },
            "invalid_request",  # amount is not selected
        ),
        ({"pipeline": "copy_paid", "source": {"limit": -1}}, "invalid_pipeline"),
        ({"pipeline": "copy_paid", "source": {"conditons": []}}, "invalid_pipeline"),
        ({"pipeline": "copy_paid", "sink": {"on_error": "ignore"}}, "invalid_pipeline"),
        (
            {
                "pipeline": "copy_paid",
                "source": {"conditions": [{"column": "id", "operator": "almost", "value": 1}]},
            },
            "invalid_operator",
        ),
        ({"pipeline": 5}, "invalid_request"),
        (
            # PostgreSQL rejects the value when the source cursor opens
            {
                "pipeline": "copy_paid",
                "source": {"conditions": [{"eq_column": "id", "eq_value": "abc"}]},
            },
            "invalid_input",
        ),
    ]
    for body, code in cases:
        response = pl.post("/pipelines", json=body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["code"] == code, (body, response.json())
    not_json = pl.post("/pipelines", content=b"{", headers={"content-type": "application/json"})
    assert not_json.status_code == 400 and not_json.json()["code"] == "invalid_json"
    assert _count(pl_tables, "pl_paid") == 0


def test_rights_source_read_and_sink_write(
    pl_gateway: AthenaServer, pl_tables: psycopg.Connection, catalog_uri: str
) -> None:
    def seeded_key(rights: list[str]) -> str:
        return seed_key(catalog_uri, rights=rights)

    headers = {"X-Athena-Client": "athena"}
    with pl_gateway.client(**headers) as anonymous:
        assert anonymous.post("/pipelines", json={"pipeline": "copy_paid"}).status_code == 401
    read_only = seeded_key(rights=["pl_orders.read"])
    with pl_gateway.client(apikey=read_only, **headers) as client:
        denied = client.post("/pipelines", json={"pipeline": "copy_paid"})
    assert denied.status_code == 403
    assert denied.json()["code"] == "insufficient_rights"
    assert denied.json()["data"]["required_right"] == "pl_paid.write"
    write_only = seeded_key(rights=["pl_paid.write"])
    with pl_gateway.client(apikey=write_only, **headers) as client:
        denied = client.post("/pipelines", json={"pipeline": "copy_paid"})
    assert denied.status_code == 403
    assert denied.json()["data"]["required_right"] == "pl_orders.read"
    assert _count(pl_tables, "pl_paid") == 0
    both = seeded_key(rights=["pl_orders.read", "pl_paid.write"])
    with pl_gateway.client(apikey=both, **headers) as client:
        allowed = client.post("/pipelines", json={"pipeline": "copy_paid"})
    assert allowed.status_code == 200, allowed.text
    assert _count(pl_tables, "pl_paid") == 9


def test_a_source_failure_midway_rolls_back_the_batches_already_inserted(
    pl: httpx.Client, pl_tables: psycopg.Connection
) -> None:
    # Reading the view fails at order 5 (division by zero): batches of 2 were inserted before.
    pl_tables.execute(
        "CREATE VIEW pl_fragile AS SELECT id, customer, amount / (id - 5) AS amount FROM pl_orders"
    )
    response = pl.post(
        "/pipelines",
        json={
            "source": {
                "view_name": "pl_fragile",
                "columns": ["customer", "amount"],
                "batch_size": 2,  # no sort: rows stream in table order, 1 to 4 get inserted
            },
            "sink": {"table_name": "pl_events"},
        },
    )
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_input"
    assert response.json()["message"] == "division by zero"
    assert _count(pl_tables, "pl_events") == 0
