"""A table's whole life through /management on a freshly provisioned scratch database, checking
the live catalog (information_schema / pg_catalog) and database_audit_log after every step."""

from __future__ import annotations

from typing import Any

import httpx
from management_support import Scratch


def _ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "success"
    return body["data"]  # type: ignore[no-any-return]


def _indexes(s: Scratch, table: str) -> dict[str, str]:
    with s.conn() as conn:
        rows = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = %s",
            (table,),
        ).fetchall()
    return dict(rows)


def test_provisioned_database_has_the_audit_log_and_status_says_so(
    scratch: Scratch, admin_key: str
) -> None:
    with scratch.conn() as conn:
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        }
    assert {"database_audit_log", "athena_provisioning"} <= tables
    with scratch.server.client(apikey=admin_key) as admin:
        status = admin.get("/admin/provision/status", params={"client_name": scratch.name})
        assert status.status_code == 200
        assert status.json() == {
            "client_name": scratch.name,
            "provisioned": True,
            "present_tables": ["database_audit_log", "athena_provisioning"],
            "missing_tables": [],
        }
        # provisioning again changes nothing and still succeeds (idempotent)
        again = admin.post("/admin/provision", json={"client_name": scratch.name})
        assert again.status_code == 200, again.text
        assert again.json()["statements_executed"] == 5
        assert again.json()["registered"] is None
    with scratch.conn() as conn:
        assert conn.execute("SELECT count(*) FROM athena_provisioning").fetchone()[0] == 1


def test_capabilities_list_types_methods_and_rights(scratch: Scratch) -> None:
    with scratch.client() as c:
        data = _ok(c.get("/management/capabilities"))
    assert data["backend"] == "postgresql"
    assert "btree" in data["allowed_index_methods"] and "gin" in data["allowed_index_methods"]
    assert {"text", "uuid", "jsonb", "timestamptz", "numeric"} <= set(
        data["allowed_column_data_types"]
    )
    assert "create_table" in data["supported_operations"]
    rights = {r["operation"]: r["required_right"] for r in data["required_rights"]}
    assert rights["drop_column"] == "management.columns.drop"
    assert rights["create_index"] == "management.indexes.write"
    assert data["audit_log_present"] is True


def test_table_lifecycle_with_audit_after_each_step(scratch: Scratch) -> None:
    audit_before = len(scratch.audit())
    with scratch.client() as c:
        # create
        data = _ok(
            c.post(
                "/management/tables",
                json={
                    "table_name": "orders",
                    "columns": [
                        {"name": "title", "data_type": "text", "nullable": False},
                        {"name": "amount", "data_type": "numeric(12,2)", "default_expression": "0"},
                        {"name": "tags", "data_type": "text[]"},
                        {
                            "name": "meta",
                            "data_type": "jsonb",
                            "default_expression": "'{}'::jsonb",
                        },
                    ],
                },
            ),
            201,
        )
        assert [col["column_name"] for col in data["columns"]] == [
            "id", "created_at", "updated_at", "title", "amount", "tags", "meta",
        ]  # fmt: skip
        cols = scratch.columns("orders")
        assert cols["id"][0] == "uuid" and cols["id"][1] == "gen_random_uuid()"
        assert cols["title"] == ("text", None, "NO")
        assert cols["amount"][0] == "numeric" and cols["amount"][1] == "0"
        assert cols["tags"][0] == "ARRAY"
        assert cols["meta"][1] == "'{}'::jsonb"
        audit = scratch.audit()
        assert len(audit) == audit_before + 1
        assert audit[-1]["operation"] == "create_table"
        assert audit[-1]["table_name"] == "orders"
        assert audit[-1]["client_name"] == scratch.name
        assert audit[-1]["ddl"].startswith('CREATE TABLE "public"."orders"')
        assert audit[-1]["api_key_public_id"] == scratch.key.split("_", 1)[1].split(".")[0]

        # creating it again → 409
        dup = c.post("/management/tables", json={"table_name": "orders"})
        assert dup.status_code == 409 and dup.json()["code"] == "table_exists"

        # add a column
        _ok(
            c.patch(
                "/management/tables/orders",
                json={
                    "operations": [
                        {
                            "type": "add_column",
                            "column": {"name": "note", "data_type": "varchar(40)"},
                        }
                    ]
                },
            )
        )
        assert scratch.columns("orders")["note"] == ("character varying", None, "YES")
        assert scratch.audit()[-1]["operation"] == "add_column"
        assert scratch.audit()[-1]["object_name"] == "note"

        # rename it
        _ok(
            c.patch(
                "/management/tables/orders",
                json={"operations": [{"type": "rename_column", "from": "note", "to": "remark"}]},
            )
        )
        cols = scratch.columns("orders")
        assert "remark" in cols and "note" not in cols
        assert scratch.audit()[-1]["operation"] == "rename_column"

        # set / drop default
        _ok(
            c.patch(
                "/management/tables/orders",
                json={
                    "operations": [
                        {
                            "type": "set_default",
                            "column_name": "remark",
                            "default_expression": "'n/a'",
                        }
                    ]
                },
            )
        )
        assert scratch.columns("orders")["remark"][1] == "'n/a'::character varying"
        _ok(
            c.patch(
                "/management/tables/orders",
                json={"operations": [{"type": "drop_default", "column_name": "remark"}]},
            )
        )
        assert scratch.columns("orders")["remark"][1] is None

        # set / drop NOT NULL (several operations in one request: one transaction, one audit
        # row each)
        before = len(scratch.audit())
        _ok(
            c.patch(
                "/management/tables/orders",
                json={
                    "operations": [
                        {
                            "type": "set_default",
                            "column_name": "remark",
                            "default_expression": "''",
                        },
                        {"type": "set_not_null", "column_name": "remark"},
                    ]
                },
            )
        )
        assert scratch.columns("orders")["remark"][2] == "NO"
        assert [a["operation"] for a in scratch.audit()[before:]] == ["set_default", "set_not_null"]
        _ok(
            c.patch(
                "/management/tables/orders",
                json={"operations": [{"type": "drop_not_null", "column_name": "remark"}]},
            )
        )
        assert scratch.columns("orders")["remark"][2] == "YES"

        # index it
        idx = _ok(
            c.post(
                "/management/indexes",
                json={"table_name": "orders", "columns": ["title", "remark"], "unique": True},
            ),
            201,
        )
        assert idx["index_name"] == "orders_title_remark_key"
        defs = _indexes(scratch, "orders")
        assert "CREATE UNIQUE INDEX orders_title_remark_key" in defs["orders_title_remark_key"]
        assert scratch.audit()[-1]["operation"] == "create_index"
        _ok(
            c.post(
                "/management/indexes",
                json={
                    "table_name": "orders",
                    "columns": ["meta"],
                    "method": "gin",
                    "index_name": "orders_meta_gin",
                },
            ),
            201,
        )
        assert "USING gin" in _indexes(scratch, "orders")["orders_meta_gin"]
        again = c.post(
            "/management/indexes",
            json={"table_name": "orders", "columns": ["meta"], "index_name": "orders_meta_gin"},
        )
        assert again.status_code == 409 and again.json()["code"] == "index_exists"

        # drop the indexes
        _ok(c.delete("/management/indexes/orders_title_remark_key"))
        _ok(
            c.request(
                "DELETE", "/management/indexes/orders_meta_gin", json={"schema_name": "public"}
            )
        )
        assert set(_indexes(scratch, "orders")) == {"orders_pkey"}
        assert scratch.audit()[-1]["operation"] == "drop_index"
        assert scratch.audit()[-1]["table_name"] == "orders"

        # drop a column
        _ok(c.delete("/management/tables/orders/columns/remark"))
        assert "remark" not in scratch.columns("orders")
        assert scratch.audit()[-1]["operation"] == "drop_column"

        # the schema routes see every change at once
        listed = c.get("/schema/columns", params={"table_name": "public.orders"})
        assert listed.status_code == 200
        assert [x["column_name"] for x in listed.json()["columns"]] == [
            "id", "created_at", "updated_at", "title", "amount", "tags", "meta",
        ]  # fmt: skip
        tables = c.get("/schema/tables").json()["tables"]
        assert {
            "table_schema": "public",
            "table_name": "orders",
            "table_type": "BASE TABLE",
        } in tables

        # drop the table
        _ok(c.delete("/management/tables/orders"))
        assert scratch.columns("orders") == {}
        assert scratch.audit()[-1]["operation"] == "drop_table"
        gone = c.delete("/management/tables/orders")
        assert gone.status_code == 404 and gone.json()["code"] == "table_not_found"

    ops = [a["operation"] for a in scratch.audit()[audit_before:]]
    assert ops == [
        "create_table", "add_column", "rename_column", "set_default", "drop_default",
        "set_default", "set_not_null", "drop_not_null", "create_index", "create_index",
        "drop_index", "drop_index", "drop_column", "drop_table",
    ]  # fmt: skip


def test_other_schemas_and_metrics(scratch: Scratch) -> None:
    with scratch.pg.connect(scratch.db) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS app")
    with scratch.client() as c:
        _ok(
            c.post(
                "/management/tables",
                json={
                    "schema_name": "app",
                    "table_name": "items",
                    "columns": [{"name": "sku", "data_type": "text"}],
                },
            ),
            201,
        )
        # schema.table in the path, or schema_name in the body
        _ok(
            c.patch(
                "/management/tables/app.items",
                json={"operations": [{"type": "set_not_null", "column_name": "sku"}]},
            )
        )
        _ok(
            c.post(
                "/management/indexes",
                json={"schema_name": "app", "table_name": "items", "columns": ["sku"]},
            ),
            201,
        )
        _ok(c.request("DELETE", "/management/indexes/items_sku_idx", json={"schema_name": "app"}))
        cols = c.get(
            "/schema/columns", params={"table_name": "items", "schema_name": "app"}
        ).json()["columns"]
        assert {x["column_name"]: x["is_nullable"] for x in cols}["sku"] == "NO"
        # a public table of the same name does not exist: the path without schema is a 404
        missing = c.delete("/management/tables/items")
        assert missing.status_code == 404
        _ok(c.request("DELETE", "/management/tables/items", json={"schema_name": "app"}))
    with scratch.conn() as conn:
        assert conn.execute("SELECT to_regclass('app.items')").fetchone()[0] is None
        audit = conn.execute(
            "SELECT operation FROM database_audit_log WHERE schema_name = 'app' ORDER BY id"
        ).fetchall()
    assert [a[0] for a in audit] == [
        "create_table",
        "set_not_null",
        "create_index",
        "drop_index",
        "drop_table",
    ]
    metrics = scratch.server.client().get("/metrics").text
    assert (
        f'athena_management_mutations_total{{client="{scratch.name}",operation="create_table"}}'
        in metrics
    )
