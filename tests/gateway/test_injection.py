"""Injection attempts in every identifier and value position: each fails cleanly (4xx, or is
treated as plain data) and the database is unchanged."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest

EVIL = [
    "gw_victim; DROP TABLE gw_victim; --",
    'gw_victim" ; DELETE FROM gw_victim; --',
    "v) ; DELETE FROM gw_victim; --",
    "'; DELETE FROM gw_victim; --",
    "1 OR 1=1",
    "v = v OR true",
    "pg_sleep(5)",
    'v"||(SELECT 1)||"',
]


def victim_state(db: psycopg.Connection) -> list[tuple[Any, ...]]:
    return db.execute("SELECT id, v FROM gw_victim ORDER BY id").fetchall()


def requests_for(evil: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, body) with ``evil`` in each identifier and value position."""
    where = [{"eq_column": "v", "eq_value": "one"}]
    return [
        ("POST", "/gateway/fetch", {"table_name": evil}),
        ("POST", "/gateway/fetch", {"view_name": evil}),
        ("POST", "/gateway/fetch", {"table_name": "gw_victim", "columns": [evil]}),
        ("POST", "/gateway/fetch", {"table_name": "gw_victim", "columns": evil}),
        ("POST", "/gateway/fetch", {"table_name": "gw_victim", "conditions": [{"eq_column": evil, "eq_value": 1}]}),
        ("POST", "/gateway/fetch", {"table_name": "gw_victim", "conditions": [{"column": evil, "operator": "eq", "value": 1}]}),
        ("POST", "/gateway/fetch", {"table_name": "gw_victim", "conditions": [{"column": "v", "operator": evil, "value": 1}]}),
        ("POST", "/gateway/fetch", {"table_name": "gw_victim", "conditions": [{"column": "v", "operator": "is", "value": evil}]}),
        ("POST", "/gateway/fetch", {"table_name": "gw_victim", "conditions": [{"operator": "or", "value": f"{evil}.eq.1,v.eq.2"}]}),
        ("POST", "/gateway/fetch", {"table_name": "gw_victim", "conditions": [{"operator": "or", "value": f"v.{evil}.1"}]}),
        ("POST", "/gateway/fetch", {"table_name": "gw_victim", "sort_by": {"field": evil, "direction": "asc"}}),
        ("POST", "/gateway/fetch", {"table_name": "gw_victim", "sort_by": {"field": "v", "direction": evil}}),
        ("POST", "/gateway/fetch", {"table_name": "gw_victim", "group_by": evil}),
        ("POST", "/gateway/fetch", {"table_name": "gw_victim", "limit": evil}),
        ("PUT", "/gateway/insert", {"table_name": evil, "insert_body": {"v": "x"}}),
        ("PUT", "/gateway/insert", {"table_name": "gw_victim", "insert_body": {evil: "x"}}),
        ("PUT", "/gateway/insert", {"table_name": "gw_victim", "insert_body": {"v": "x"}, "columns": [evil]}),
        ("PUT", "/gateway/insert", {"table_name": "gw_victim", "insert_body": {"id": 1, "v": "x"}, "on_conflict": evil}),
        ("PUT", "/gateway/insert", {"table_name": "gw_victim", "insert_body": {"id": 1, "v": "x"}, "update_body": {evil: 1}}),
        ("POST", "/gateway/update", {"table_name": "gw_victim", "update_body": {evil: "x"}, "conditions": where}),
        ("POST", "/gateway/update", {"table_name": "gw_victim", "update_body": {"v": "one"}, "conditions": [{"eq_column": evil, "eq_value": "one"}]}),
        ("DELETE", "/gateway/delete", {"table_name": evil, "resource_id": 1}),
        ("DELETE", "/gateway/delete", {"table_name": "gw_victim", "resource_id": evil}),
        ("DELETE", "/gateway/delete", {"table_name": "gw_victim", "conditions": [{"eq_column": evil, "eq_value": 1}]}),
        ("DELETE", "/gateway/delete", {"table_name": "gw_victim", "conditions": [{"column": "v", "operator": "eq", "value": evil}]}),
        ("DELETE", "/gateway/delete", {"table_name": "gw_victim", "conditions": [{"column": "v", "operator": "in", "value": [evil, "z"]}]}),
        ("DELETE", "/gateway/delete", {"table_name": "gw_victim", "conditions": [{"column": "v", "operator": "like", "value": evil}]}),
        ("DELETE", "/gateway/delete", {"table_name": "gw_victim", "conditions": [{"operator": "or", "value": f'v.eq."{evil}",v.in.({evil})'}]}),
        ("DELETE", "/gateway/delete", {"table_name": "gw_victim", "conditions": [{"operator": "not", "value": f"v.eq.{evil}"}, {"eq_column": "v", "eq_value": "nothing"}]}),
    ]  # fmt: skip


@pytest.mark.parametrize("evil", EVIL)
def test_injection_never_changes_the_database(
    gw: httpx.Client, db: psycopg.Connection, evil: str
) -> None:
    before = victim_state(db)
    assert len(before) == 2
    for method, path, body in requests_for(evil):
        response = gw.request(method, path, json=body)
        assert response.status_code < 500, (path, body, response.text)
        if response.status_code >= 400:
            payload = response.json()
            assert payload["status"] == "error" and payload["code"], payload
            assert "DELETE FROM" not in payload["message"].upper() or evil in payload["message"]
        else:  # accepted only as data: a value that matches nothing, or an inserted string
            data = response.json()["data"]
            assert all(row.get("v") in ("one", "two", "x", evil) for row in data)
    cleanup = gw.post(  # values that were inserted as plain text are removed again
        "/gateway/query", json={"query": "DELETE FROM gw_victim WHERE id > 2"}
    )
    assert cleanup.status_code == 200, cleanup.text
    assert victim_state(db) == before
