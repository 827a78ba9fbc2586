"""Every 400/401/403/404/409/503 the spec lists for the management and schema paths, over the
real server, in the error envelope with a stable code."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest
from management_support import Scratch
from support.keys import seed_key


def _err(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "error" and body["code"] == code, body
    assert "SELECT" not in response.text and "Traceback" not in response.text
    return body  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def bare(scratch_factory: Callable[..., Scratch]) -> Scratch:
    """A registered client whose database was NOT provisioned (no database_audit_log)."""
    return scratch_factory(provision=False)


ROUTES = [
    ("GET", "/management/capabilities", None, "management.read"),
    ("POST", "/management/tables", {"table_name": "t_auth"}, "management.tables.write"),
    ("PATCH", "/management/tables/t_auth", {"operations": []}, "management.tables.write"),
    ("DELETE", "/management/tables/t_auth", None, "management.tables.drop"),
    ("DELETE", "/management/tables/t_auth/columns/c", None, "management.columns.drop"),
    (
        "POST",
        "/management/indexes",
        {"table_name": "t", "columns": ["a"]},
        "management.indexes.write",
    ),
    ("DELETE", "/management/indexes/i_auth", None, "management.indexes.drop"),
]


@pytest.mark.parametrize(("method", "path", "body", "right"), ROUTES)
def test_client_header_key_binding_and_rights(
    scratch: Scratch, catalog_uri: str, method: str, path: str, body: object, right: str
) -> None:
    server = scratch.server
    with server.client() as c:
        _err(c.request(method, path, json=body), 400, "missing_client_header")
        _err(
            c.request(method, path, json=body, headers={"X-Athena-Client": "no_such_client"}),
            400,
            "unknown_client",
        )
    with server.client(**{"X-Athena-Client": scratch.name}) as c:
        _err(c.request(method, path, json=body), 401, "api_key_required")
        _err(
            c.request(method, path, json=body, headers={"apikey": "ath_nope.nope"}),
            401,
            "invalid_api_key",
        )
    unbound = seed_key(catalog_uri, rights=["*"])
    other = seed_key(catalog_uri, rights=["*"], client="athena")
    lacking = seed_key(
        catalog_uri,
        rights=["management.read", "gateway.read"]
        if right != "management.read"
        else ["gateway.read"],
        client=scratch.name,
    )
    with scratch.client(key=unbound) as c:
        _err(c.request(method, path, json=body), 403, "api_key_not_client_bound")
    with scratch.client(key=other) as c:
        _err(c.request(method, path, json=body), 403, "api_key_client_mismatch")
    with scratch.client(key=lacking) as c:
        denied = _err(c.request(method, path, json=body), 403, "insufficient_rights")
        assert denied["data"] == {"required_right": right}
    # the exact right (alone) is enough to get past auth
    exact = seed_key(catalog_uri, rights=[right], client=scratch.name)
    with scratch.client(key=exact) as c:
        assert c.request(method, path, json=body).status_code not in (401, 403)


def test_invalid_payloads_are_400(scratch: Scratch) -> None:
    with scratch.client() as c:
        _err(c.post("/management/tables", content=b"{not json"), 400, "invalid_json")
        _err(c.post("/management/tables", json=[1]), 400, "invalid_request")
        _err(c.post("/management/tables", json={}), 400, "invalid_identifier")
        _err(
            c.post("/management/tables", json={"table_name": "t", "columns": [{"name": "a"}]}),
            400,
            "unsupported_data_type",
        )
        _err(
            c.post("/management/tables", json={"table_name": "t", "columns": "a"}),
            400,
            "invalid_request",
        )
        _err(
            c.post("/management/tables", json={"table_name": "t", "schema_name": "no_such_schema"}),
            400,
            "unknown_schema",
        )
        _err(c.patch("/management/tables/t", json={"operations": []}), 400, "invalid_request")
        _err(
            c.patch("/management/tables/t", json={"operations": [{"type": "drop_table"}]}),
            400,
            "unsupported_operation",
        )
        _err(c.delete("/management/tables/t/columns/id"), 400, "reserved_column")
        _err(c.delete("/management/tables/database_audit_log"), 400, "protected_table")
        _err(c.post("/management/indexes", json={"table_name": "t"}), 400, "invalid_request")


def test_missing_objects_are_404_and_duplicates_409(scratch: Scratch) -> None:
    with scratch.client() as c:
        add = {"operations": [{"type": "add_column", "column": {"name": "x", "data_type": "int"}}]}
        _err(c.patch("/management/tables/nope", json=add), 404, "table_not_found")
        _err(c.delete("/management/tables/nope"), 404, "table_not_found")
        _err(c.delete("/management/tables/nope/columns/x"), 404, "table_not_found")
        _err(c.delete("/management/indexes/nope_idx"), 404, "index_not_found")
        _err(
            c.post("/management/indexes", json={"table_name": "nope", "columns": ["a"]}),
            404,
            "table_not_found",
        )

        assert (
            c.post(
                "/management/tables",
                json={"table_name": "err_t", "columns": [{"name": "a", "data_type": "int"}]},
            ).status_code
            == 201
        )
        _err(c.post("/management/tables", json={"table_name": "err_t"}), 409, "table_exists")
        _err(c.delete("/management/tables/err_t/columns/zz"), 404, "column_not_found")
        _err(
            c.patch(
                "/management/tables/err_t",
                json={"operations": [{"type": "set_not_null", "column_name": "zz"}]},
            ),
            404,
            "column_not_found",
        )
        _err(
            c.patch(
                "/management/tables/err_t",
                json={"operations": [{"type": "rename_column", "from": "a", "to": "a"}]},
            ),
            400,
            "column_exists",
        )
        _err(
            c.patch("/management/tables/err_t", json=add | {"operations": add["operations"] * 2}),
            400,
            "column_exists",
        )
        _err(
            c.post("/management/indexes", json={"table_name": "err_t", "columns": ["zz"]}),
            400,
            "unknown_column",
        )
        assert (
            c.post(
                "/management/indexes", json={"table_name": "err_t", "columns": ["a"]}
            ).status_code
            == 201
        )
        _err(
            c.post("/management/indexes", json={"table_name": "err_t", "columns": ["a"]}),
            409,
            "index_exists",
        )
        # an index name that collides with a table is a 409 too
        _err(
            c.post(
                "/management/indexes",
                json={"table_name": "err_t", "columns": ["a"], "index_name": "err_t"},
            ),
            409,
            "index_exists",
        )
        # the primary key's index backs a constraint: refused, still there
        _err(c.delete("/management/indexes/err_t_pkey"), 400, "invalid_request")
        # a bad default for the column's type is PostgreSQL's 400, and nothing changes
        before = scratch.schema_fingerprint()
        bad = c.patch(
            "/management/tables/err_t",
            json={
                "operations": [
                    {"type": "set_default", "column_name": "a", "default_expression": "'abc'"}
                ]
            },
        )
        assert bad.status_code == 400 and bad.json()["code"] == "invalid_input"
        assert scratch.schema_fingerprint() == before
        assert c.delete("/management/tables/err_t").status_code == 200


def test_without_audit_log_every_change_is_503_and_nothing_changes(bare: Scratch) -> None:
    with bare.conn() as conn:
        conn.execute("CREATE TABLE pre (id uuid PRIMARY KEY, a int)")
        conn.execute("CREATE INDEX pre_a_idx ON pre (a)")
    calls = [
        ("POST", "/management/tables", {"table_name": "t"}),
        (
            "PATCH",
            "/management/tables/pre",
            {"operations": [{"type": "add_column", "column": {"name": "b", "data_type": "int"}}]},
        ),
        ("DELETE", "/management/tables/pre", None),
        ("DELETE", "/management/tables/pre/columns/a", None),
        (
            "POST",
            "/management/indexes",
            {"table_name": "pre", "columns": ["a"], "index_name": "x_idx"},
        ),
        ("DELETE", "/management/indexes/pre_a_idx", None),
    ]
    with bare.conn() as conn:
        before = conn.execute(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public'"
        ).fetchone()
    with bare.client() as c:
        caps = c.get("/management/capabilities")
        assert caps.status_code == 200 and caps.json()["data"]["audit_log_present"] is False
        for method, path, body in calls:
            _err(c.request(method, path, json=body), 503, "audit_log_missing")
    with bare.conn() as conn:
        after = conn.execute(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public'"
        ).fetchone()
        assert conn.execute("SELECT to_regclass('public.pre_a_idx') IS NOT NULL").fetchone()[0]
    assert before == after


def test_schema_routes_errors_and_auth(scratch: Scratch, catalog_uri: str) -> None:
    server = scratch.server
    with server.client() as c:
        _err(c.get("/schema/tables"), 400, "missing_client_header")
        _err(
            c.get("/schema/tables", headers={"X-Athena-Client": "nope_client"}),
            400,
            "unknown_client",
        )
        # enforcement is on for the shared gateway: a key is needed
        _err(
            c.get("/schema/tables", headers={"X-Athena-Client": scratch.name}),
            401,
            "api_key_required",
        )
    weak = seed_key(catalog_uri, rights=["users.read"], client=scratch.name)
    with scratch.client(key=weak) as c:
        _err(c.get("/schema/tables"), 403, "insufficient_rights")
    reader = seed_key(catalog_uri, rights=["gateway.read"])
    with scratch.client(key=reader) as c:
        assert c.get("/schema/tables").status_code == 200
        _err(c.get("/schema/columns"), 400, "invalid_request")
        _err(c.get("/schema/columns", params={"table_name": 'x"; drop'}), 400, "invalid_identifier")
        _err(c.get("/schema/columns", params={"table_name": "nope"}), 400, "unknown_table")
        empty = c.get("/schema/migrations")
        assert empty.status_code == 200
        assert empty.json()["migrations"] == [] and "does not exist" in empty.json()["message"]
    with scratch.pg.connect(scratch.db) as conn:  # as the client's own (non-superuser) role
        conn.execute("CREATE SCHEMA IF NOT EXISTS supabase_migrations")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS supabase_migrations.schema_migrations"
            " (version text PRIMARY KEY, statements text[], name text)"
        )
        conn.execute(
            "INSERT INTO supabase_migrations.schema_migrations VALUES"
            " ('20240102000000', '{}', 'add_orders'), ('20240101000000', '{}', 'init')"
            " ON CONFLICT DO NOTHING"
        )
    with scratch.client(key=reader) as c:
        listed = c.get("/schema/migrations").json()
        assert listed == {
            "migrations": [
                {"version": "20240101000000", "name": "init"},
                {"version": "20240102000000", "name": "add_orders"},
            ]
        }
        tables = c.get("/schema/tables", params={"schema_name": "supabase_migrations"}).json()
        assert tables == {
            "tables": [
                {
                    "table_schema": "supabase_migrations",
                    "table_name": "schema_migrations",
                    "table_type": "BASE TABLE",
                }
            ]
        }
        cols = c.get(
            "/schema/columns", params={"table_name": "supabase_migrations.schema_migrations"}
        )
        assert [x["column_name"] for x in cols.json()["columns"]] == [
            "version",
            "statements",
            "name",
        ]
        assert cols.json()["columns"][0]["is_nullable"] == "NO"


def test_admin_paths_need_the_admin_key(scratch: Scratch) -> None:
    with scratch.server.client() as c:
        for method, path in [
            ("GET", "/admin/clients"),
            ("POST", "/admin/clients"),
            ("PATCH", "/admin/clients/x"),
            ("DELETE", "/admin/clients/x"),
            ("PUT", "/admin/clients/x/freeze"),
            ("GET", "/schema/clients"),
            ("GET", "/clients"),
            ("POST", "/admin/provision"),
            ("GET", "/admin/provision/status"),
        ]:
            _err(c.request(method, path, json={}), 401, "admin_key_required")
            _err(
                c.request(method, path, json={}, headers={"apikey": "wrong"}),
                401,
                "invalid_admin_key",
            )
    with scratch.client() as c:  # a client-bound management key is not the admin key
        _err(c.get("/admin/clients"), 401, "invalid_admin_key")


def test_provision_errors(scratch: Scratch, admin_key: str) -> None:
    with scratch.server.client(apikey=admin_key) as c:
        _err(c.post("/admin/provision", json={}), 400, "invalid_request")
        _err(
            c.post("/admin/provision", json={"uri": "postgresql://h/db", "client_name": "x"}),
            400,
            "invalid_request",
        )
        _err(c.post("/admin/provision", json={"uri": "mysql://h/db"}), 400, "invalid_pg_uri")
        _err(c.post("/admin/provision", json={"client_name": "no_such"}), 400, "unknown_client")
        down = _err(
            c.post("/admin/provision", json={"uri": "postgresql://u:s3cret@127.0.0.1:1/db"}),
            503,
            "client_unavailable",
        )
        assert "s3cret" not in str(down)
        _err(
            c.post(
                "/admin/provision",
                json={
                    "uri": scratch.pg.app_uri(scratch.db),
                    "register": True,
                    "register_name": "bad name",
                },
            ),
            400,
            "invalid_request",
        )
        _err(
            c.post("/admin/provision", json={"client_name": scratch.name, "register": "yes"}),
            400,
            "invalid_request",
        )
        _err(c.get("/admin/provision/status"), 400, "invalid_request")
        _err(
            c.get("/admin/provision/status", params={"client_name": "no_such"}),
            400,
            "unknown_client",
        )


def test_a_locked_table_is_409_conflict_and_dependents_need_cascade(scratch: Scratch) -> None:
    with scratch.client() as c:
        assert c.post("/management/tables", json={"table_name": "locked_t"}).status_code == 201
        with scratch.conn() as holder:
            holder.autocommit = False
            holder.execute("LOCK TABLE locked_t IN ACCESS EXCLUSIVE MODE")
            add = {
                "operations": [{"type": "add_column", "column": {"name": "x", "data_type": "int"}}]
            }
            started = time.monotonic()
            busy = _err(c.patch("/management/tables/locked_t", json=add), 409, "conflict")
            assert 4 < time.monotonic() - started < 12  # lock_timeout, not the statement timeout
            assert "locked" in str(busy["message"])
            holder.rollback()
        assert "x" not in scratch.columns("locked_t")

        with scratch.pg.connect(scratch.db) as conn:
            conn.execute("CREATE VIEW locked_v AS SELECT id FROM locked_t")
        refused = c.delete("/management/tables/locked_t")
        assert refused.status_code == 400 and refused.json()["data"]["sqlstate"] == "2BP01"
        assert scratch.columns("locked_t")
        dropped = c.request("DELETE", "/management/tables/locked_t", json={"cascade": True})
        assert dropped.status_code == 200 and dropped.json()["data"]["cascade"] is True
        assert scratch.columns("locked_t") == {}
        assert scratch.audit()[-1]["ddl"].endswith("CASCADE")
