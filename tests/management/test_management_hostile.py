"""Hostile identifiers and default expressions in every position: refused with a 4xx before any
SQL runs, and the schema (relations, columns, defaults, indexes) and audit log stay unchanged."""

from __future__ import annotations

from typing import Any

import pytest
from management_support import Scratch

HOSTILE_NAMES = [
    'x"; DROP TABLE victim; --',
    "victim; DROP TABLE victim",
    "a b",
    "x" * 64,
    "1starts_with_digit",
    "naïve",
    "pg_catalog.pg_class",
    "",
]
HOSTILE_DEFAULTS = [
    "pg_sleep(5)",
    "(SELECT count(*) FROM victim)",
    "now()); DROP TABLE victim; --",
    "'a' || current_user",
    "'x'; DROP TABLE victim; --",
    "current_setting('is_superuser')",
    "1/0",
    "nextval('victim_seq')",
    "$$x$$",
]
HOSTILE_TYPES = ["text; DROP TABLE victim", "text DEFAULT pg_sleep(1)", "int) ; --", "regclass"]


def _col(**over: Any) -> dict[str, Any]:
    return {"name": "c", "data_type": "text"} | over


def _cases() -> list[tuple[str, str, Any]]:
    cases: list[tuple[str, str, Any]] = []
    for n in HOSTILE_NAMES:
        cases += [
            ("POST", "/management/tables", {"table_name": n}),
            ("POST", "/management/tables", {"table_name": "t_new", "schema_name": n}),
            ("POST", "/management/tables", {"table_name": "t_new", "columns": [_col(name=n)]}),
            ("PATCH", "/management/tables/victim", {"operations": [{"type": "add_column", "column": _col(name=n)}]}),
            ("PATCH", "/management/tables/victim", {"operations": [{"type": "rename_column", "from": "a", "to": n}]}),
            ("PATCH", "/management/tables/victim", {"operations": [{"type": "drop_default", "column_name": n}]}),
            ("PATCH", "/management/tables/victim", {"schema_name": n, "operations": [{"type": "drop_default", "column_name": "a"}]}),
            ("POST", "/management/indexes", {"table_name": "victim", "columns": [n]}),
            ("POST", "/management/indexes", {"table_name": "victim", "columns": ["a"], "index_name": n}),
            ("POST", "/management/indexes", {"table_name": n, "columns": ["a"]}),
            ("DELETE", "/management/tables/victim", {"schema_name": n}),
            ("DELETE", "/management/indexes/victim_a_idx", {"schema_name": n}),
        ]  # fmt: skip
    for d in HOSTILE_DEFAULTS:
        cases += [
            ("POST", "/management/tables", {"table_name": "t_new", "columns": [_col(default_expression=d)]}),
            ("PATCH", "/management/tables/victim", {"operations": [{"type": "set_default", "column_name": "a", "default_expression": d}]}),
            ("PATCH", "/management/tables/victim", {"operations": [{"type": "add_column", "column": _col(name="z", default_expression=d)}]}),
        ]  # fmt: skip
    for t in HOSTILE_TYPES:
        cases += [
            ("POST", "/management/tables", {"table_name": "t_new", "columns": [_col(data_type=t)]}),
            ("PATCH", "/management/tables/victim", {"operations": [{"type": "add_column", "column": _col(name="z", data_type=t)}]}),
        ]  # fmt: skip
    cases += [
        ("POST", "/management/indexes", {"table_name": "victim", "columns": ["a"], "method": "btree; DROP TABLE victim"}),
        ("POST", "/management/indexes", {"table_name": "victim", "columns": ["a"], "method": "gin (a); --"}),
    ]  # fmt: skip
    return cases


def _path_cases() -> list[tuple[str, str]]:
    """Hostile names in URL path segments (percent-encoded by the client)."""
    out: list[tuple[str, str]] = []
    for n in ['x"; DROP TABLE victim; --', "a b", "x" * 64, "pg_catalog.pg_class"]:
        out += [
            ("DELETE", f"/management/tables/{n}"),
            ("DELETE", f"/management/tables/victim/columns/{n}"),
            ("DELETE", f"/management/indexes/{n}"),
        ]
    return out


@pytest.fixture(scope="module")
def victim(scratch: Scratch) -> Scratch:
    with scratch.client() as c:
        created = c.post(
            "/management/tables",
            json={"table_name": "victim", "columns": [{"name": "a", "data_type": "int", "default_expression": "1"}]},
        )  # fmt: skip
        assert created.status_code == 201, created.text
        assert (
            c.post(
                "/management/indexes", json={"table_name": "victim", "columns": ["a"]}
            ).status_code
            == 201
        )
    return scratch


def test_hostile_bodies_are_refused_and_change_nothing(victim: Scratch) -> None:
    before = victim.schema_fingerprint()
    refused = 0
    with victim.client() as c:
        for method, path, body in _cases():
            response = c.request(method, path, json=body)
            assert 400 <= response.status_code < 500, (method, path, body, response.text)
            assert response.json()["status"] == "error"
            assert "DROP" not in response.json()["message"]
            refused += 1
        for method, path in _path_cases():
            response = c.request(method, path)
            assert 400 <= response.status_code < 500, (method, path, response.text)
            refused += 1
        # still alive and answering normally afterwards
        assert c.get("/management/capabilities").status_code == 200
    assert refused > 140
    assert victim.schema_fingerprint() == before
