"""Least privilege and bounded work: what even a trusted raw-SQL key cannot do.

Data routes connect as the non-superuser role ``athena_app`` (the embedded default creates it;
tests use it for every client), so server-side programs, configuration and files are out of
reach. Every statement is bounded by a timeout that SQL cannot switch off, and results are capped.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from support.servers import AthenaServer

HOSTILE = [
    ("COPY (SELECT 1) TO PROGRAM 'id'", "insufficient_privilege"),
    ("COPY (SELECT 1) TO '/tmp/athena-pwned'", "insufficient_privilege"),
    # refused even before the privilege check: raw SQL always runs inside a transaction
    ("ALTER SYSTEM SET work_mem = '1GB'", "query_failed"),
    ("SELECT pg_read_file('/etc/passwd')", "insufficient_privilege"),
    ("SELECT pg_ls_dir('.')", "insufficient_privilege"),
    ("CREATE ROLE intruder SUPERUSER", "insufficient_privilege"),
    ("SELECT lo_import('/etc/passwd')", "insufficient_privilege"),
]


@pytest.mark.parametrize(("statement", "code"), HOSTILE)
def test_raw_sql_runs_without_superuser_powers(
    admin: httpx.Client, statement: str, code: str
) -> None:
    response = admin.post("/gateway/query", json={"query": statement})
    body = response.json()
    assert body["code"] == code, response.text
    assert response.status_code == (403 if code == "insufficient_privilege" else 400)
    assert "Traceback" not in response.text
    assert statement not in response.text, "SQL text never comes back in an error"


def test_the_data_role_is_not_a_superuser(admin: httpx.Client) -> None:
    response = admin.post(
        "/gateway/query",
        json={
            "query": "SELECT current_user AS who, usesuper FROM pg_user WHERE usename = current_user"
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"] == [{"who": "athena_app", "usesuper": False}]


@pytest.fixture(scope="module")
def tight(athena_factory: Callable[..., AthenaServer]) -> AthenaServer:
    return athena_factory(
        statement_timeout_ms="1000", max_result_rows="50", max_result_bytes="4096"
    )


def _tight_client(server: AthenaServer, admin_key: str) -> httpx.Client:
    return server.client(apikey=admin_key, **{"X-Athena-Client": "athena"})


def test_statement_timeout_is_504(tight: AthenaServer, admin_key: str) -> None:
    with _tight_client(tight, admin_key) as client:
        response = client.post("/gateway/query", json={"query": "SELECT pg_sleep(5)"})
    assert response.status_code == 504
    assert response.json()["code"] == "statement_timeout"


def test_sql_cannot_switch_the_timeout_off(tight: AthenaServer, admin_key: str) -> None:
    """SET statement_timeout = 0 inside the request: the gateway's own deadline still ends it."""
    with _tight_client(tight, admin_key) as client:
        response = client.post(
            "/gateway/query",
            json={"query": "SET statement_timeout = 0; SELECT pg_sleep(30)"},
            timeout=60,
        )
        assert response.status_code == 504, response.text
        assert response.json()["code"] == "statement_timeout"
        assert response.elapsed.total_seconds() < 15
        # the connection it used is healthy again
        again = client.post("/gateway/query", json={"query": "SELECT 1 AS one"})
    assert again.status_code == 200
    assert again.json()["data"] == [{"one": 1}]


def test_results_over_the_row_cap_are_413(tight: AthenaServer, admin_key: str) -> None:
    with _tight_client(tight, admin_key) as client:
        response = client.post(
            "/gateway/query", json={"query": "SELECT g FROM generate_series(1, 1000) g"}
        )
        assert response.status_code == 413
        assert response.json()["code"] == "result_too_large"
        fine = client.post(
            "/gateway/query", json={"query": "SELECT g FROM generate_series(1, 10) g"}
        )
    assert fine.status_code == 200
    assert len(fine.json()["data"]) == 10


def test_results_over_the_byte_cap_are_413(tight: AthenaServer, admin_key: str) -> None:
    with _tight_client(tight, admin_key) as client:
        response = client.post("/gateway/query", json={"query": "SELECT repeat('x', 10000) AS big"})
    assert response.status_code == 413
    assert response.json()["code"] == "result_too_large"
