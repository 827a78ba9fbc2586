"""The client catalog over real servers: merged config + database clients, hot add / replace /
freeze / soft-delete, URI validation and masking, and a second instance following along."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from clients_support import Pair
from support.pg import TestPostgres


def wait_for(check: Callable[[], bool], timeout: float = 8.0) -> float:
    """Seconds until ``check()`` holds (fails the test after ``timeout``)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def _code(response: httpx.Response) -> str:
    return response.json().get("code", "")


@pytest.fixture
def scratch_db(pg: TestPostgres) -> Any:
    name = pg.create_database()
    yield name
    pg.drop_database(name)


def test_lists_merge_config_and_database_clients_with_masked_uris(
    pair: Pair, pg: TestPostgres, scratch_db: str
) -> None:
    with pair.admin(pair.a) as admin:
        created = admin.post(
            "/admin/clients",
            json={"client_name": "listed_db", "pg_uri": pg.app_uri(scratch_db), "description": "d"},
        )
        assert created.status_code == 201, created.text
        record = created.json()["client"]
        assert record["source"] == "database" and record["is_frozen"] is False
        assert ":***@" in record["pg_uri"] and pg.app_password not in created.text
        assert record["deleted_at"] is None and record["id"]

        listing = admin.get("/admin/clients")
        assert listing.status_code == 200
        assert pg.app_password not in listing.text
        by_name = {c["client_name"]: c for c in listing.json()["clients"]}
        assert by_name["athena"]["source"] == "config"
        assert by_name["cfg_only"]["description"] == "from config"
        assert by_name["listed_db"]["source"] == "database"
        runtime = {c["client_name"]: c for c in listing.json()["runtime"]}
        assert set(runtime) >= {"athena", "cfg_only", "listed_db"}
        assert runtime["listed_db"]["pg_uri"].count("***") == 1
        assert set(runtime["athena"]) == {
            "client_name", "source", "description", "pg_uri", "pg_uri_env_var",
            "config_uri_template", "is_active", "is_frozen", "pool_connected",
        }  # fmt: skip

        for path in ("/schema/clients", "/clients"):
            names = admin.get(path).json()["clients"]
            assert {"athena", "cfg_only", "listed_db"} <= set(names)

        # the new client is served at once, without a restart
        tables = admin.get("/schema/tables", headers={"X-Athena-Client": "listed_db"})
        assert tables.status_code == 200 and tables.json() == {"tables": []}
        assert admin.delete("/admin/clients/listed_db").status_code == 200


def test_save_validates_the_uri_and_never_echoes_a_password(
    pair: Pair, pg: TestPostgres, scratch_db: str
) -> None:
    good = pg.app_uri(scratch_db)
    with pair.admin(pair.a) as admin:
        post = lambda body: admin.post("/admin/clients", json=body)  # noqa: E731
        assert _code(post({"pg_uri": good})) == "invalid_request"
        assert _code(post({"client_name": "bad name!", "pg_uri": good})) == "invalid_request"
        assert _code(post({"client_name": "nouri"})) == "invalid_request"
        assert _code(post({"client_name": "x1", "pg_uri": "mysql://u:p@h/db"})) == "invalid_pg_uri"
        assert (
            _code(post({"client_name": "x1", "pg_uri": "postgresql://h:notaport/db"}))
            == "invalid_pg_uri"
        )
        unreachable = post(
            {"client_name": "x1", "pg_uri": "postgresql://u:hunter22secret@127.0.0.1:1/db"}
        )
        assert unreachable.status_code == 400 and _code(unreachable) == "pg_uri_unreachable"
        assert "hunter22secret" not in unreachable.text
        wrong_pw = good.replace(pg.app_password, "not-the-password-xyz")
        denied = post({"client_name": "x1", "pg_uri": wrong_pw})
        assert _code(denied) == "pg_uri_unreachable" and "not-the-password-xyz" not in denied.text
        assert (
            _code(post({"client_name": "x1", "pg_uri_env_var": "ATHENA_TEST_UNSET_VAR"}))
            == "invalid_request"
        )
        # nothing was saved by the failures
        names = {c["client_name"] for c in admin.get("/admin/clients").json()["clients"]}
        assert "x1" not in names

        assert post({"client_name": "dup", "pg_uri": good}).status_code == 201
        again = post({"client_name": "dup", "pg_uri": good})
        assert again.status_code == 409 and _code(again) == "client_exists"
        assert _code(post({"client_name": "athena", "pg_uri": good})) == "client_exists"

        # 404s
        for method, path, body in [
            ("PATCH", "/admin/clients/nope", {"description": "x"}),
            ("DELETE", "/admin/clients/nope", None),
            ("PUT", "/admin/clients/nope/freeze", {"is_frozen": True}),
        ]:
            missing = admin.request(method, path, json=body)
            assert missing.status_code == 404 and _code(missing) == "client_not_found"
        bad_freeze = admin.put("/admin/clients/dup/freeze", json={"is_frozen": "yes"})
        assert bad_freeze.status_code == 400

        # configuration clients: described/frozen through the API, but not re-pointed or deleted
        assert _code(admin.delete("/admin/clients/cfg_only")) == "client_config_managed"
        assert admin.delete("/admin/clients/cfg_only").status_code == 409
        assert (
            _code(admin.patch("/admin/clients/cfg_only", json={"pg_uri": good}))
            == "client_config_managed"
        )
        described = admin.patch("/admin/clients/cfg_only", json={"description": "renamed"})
        assert (
            described.status_code == 200 and described.json()["client"]["description"] == "renamed"
        )

        # PATCH re-validates a new URI
        assert (
            _code(
                admin.patch("/admin/clients/dup", json={"pg_uri": "postgresql://u:p@127.0.0.1:1/x"})
            )
            == "pg_uri_unreachable"
        )
        deleted = admin.delete("/admin/clients/dup")
        assert deleted.status_code == 200 and deleted.json()["client"]["deleted_at"] is not None
        assert admin.delete("/admin/clients/dup").status_code == 404
        # a soft-deleted name is hidden, shown on request, and can be registered again
        assert "dup" not in {
            c["client_name"] for c in admin.get("/admin/clients").json()["clients"]
        }
        shown = admin.get("/admin/clients", params={"include_deleted": "true"}).json()["clients"]
        assert any(c["client_name"] == "dup" and c["deleted_at"] for c in shown)
        assert post({"client_name": "dup", "pg_uri": good}).status_code == 201
        assert admin.delete("/admin/clients/dup").status_code == 200


def test_a_second_instance_follows_every_change(
    pair: Pair, pg: TestPostgres, scratch_db: str
) -> None:
    other_db = pg.create_database()
    try:
        with pg.connect(other_db) as conn:
            conn.execute("CREATE TABLE only_in_other (id int)")
        name = "shared_cli"
        on_b = pair.admin(pair.b, **{"X-Athena-Client": name})
        with pair.admin(pair.a) as a, on_b as b:
            assert _code(b.get("/schema/tables")) == "unknown_client"
            assert (
                a.post(
                    "/admin/clients", json={"client_name": name, "pg_uri": pg.app_uri(scratch_db)}
                ).status_code
                == 201
            )
            added = wait_for(lambda: b.get("/schema/tables").status_code == 200)

            # freeze on A → B refuses changes with 403 client_frozen, schema reads still work
            assert (
                a.put(f"/admin/clients/{name}/freeze", json={"is_frozen": True}).status_code == 200
            )
            frozen = wait_for(
                lambda: (
                    _code(b.post("/management/tables", json={"table_name": "t"})) == "client_frozen"
                )
            )
            assert b.get("/schema/tables").status_code == 200
            assert b.post("/management/tables", json={"table_name": "t"}).status_code == 403
            assert (
                a.put(f"/admin/clients/{name}/freeze", json={"is_frozen": False}).status_code == 200
            )
            wait_for(
                lambda: (
                    _code(b.post("/management/tables", json={"table_name": "t"}))
                    == "audit_log_missing"
                )
            )

            # re-point on A → B serves the other database
            patched = a.patch(f"/admin/clients/{name}", json={"pg_uri": pg.app_uri(other_db)})
            assert patched.status_code == 200, patched.text
            wait_for(
                lambda: any(
                    t["table_name"] == "only_in_other"
                    for t in b.get("/schema/tables").json().get("tables", [])
                )
            )

            # deactivate → 403 client_inactive for changes; reactivate
            assert a.patch(f"/admin/clients/{name}", json={"is_active": False}).status_code == 200
            wait_for(
                lambda: (
                    _code(b.post("/management/tables", json={"table_name": "t"}))
                    == "client_inactive"
                )
            )
            runtime = {c["client_name"]: c for c in b.get("/admin/clients").json()["runtime"]}
            assert runtime[name]["is_active"] is False and runtime[name]["pool_connected"] is False
            assert a.patch(f"/admin/clients/{name}", json={"is_active": True}).status_code == 200

            # soft-delete on A → gone on B
            assert a.delete(f"/admin/clients/{name}").status_code == 200
            removed = wait_for(lambda: _code(b.get("/schema/tables")) == "unknown_client")
        # "within a few seconds": the poll interval here is 0.5 s
        print(
            f"propagation to instance B: add {added:.2f}s freeze {frozen:.2f}s delete {removed:.2f}s"
        )
        assert max(added, frozen, removed) < 3.0, (added, frozen, removed)
    finally:
        pg.drop_database(other_db)


def test_frozen_client_keeps_admin_reads(pair: Pair, pg: TestPostgres, scratch_db: str) -> None:
    with pair.admin(pair.a, **{"X-Athena-Client": "cold"}) as a:
        assert (
            a.post(
                "/admin/clients", json={"client_name": "cold", "pg_uri": pg.app_uri(scratch_db)}
            ).status_code
            == 201
        )
        assert (
            a.put("/admin/clients/cold/freeze", json={"is_frozen": True}).json()["client"][
                "is_frozen"
            ]
            is True
        )
        assert a.get("/schema/tables").status_code == 200
        assert a.get("/management/capabilities").status_code == 200
        assert (
            a.get("/admin/provision/status", params={"client_name": "cold"}).json()["provisioned"]
            is False
        )
        refused = a.post("/management/tables", json={"table_name": "t"})
        assert refused.status_code == 403 and _code(refused) == "client_frozen"
        listed = {c["client_name"]: c for c in a.get("/admin/clients").json()["runtime"]}
        assert listed["cold"]["is_frozen"] is True
        assert a.delete("/admin/clients/cold").status_code == 200


def test_a_hand_edit_of_the_catalog_is_picked_up_and_stamped(
    pair: Pair, pg: TestPostgres, scratch_db: str
) -> None:
    with pair.admin(pair.a, **{"X-Athena-Client": "by_hand"}) as a:
        assert (
            a.post(
                "/admin/clients", json={"client_name": "by_hand", "pg_uri": pg.app_uri(scratch_db)}
            ).status_code
            == 201
        )
        with pg.connect(pair.catalog, superuser=True) as conn:
            before = conn.execute(
                "SELECT updated_at FROM athena.athena_clients WHERE client_name = 'by_hand'"
            ).fetchone()[0]
            conn.execute(
                "UPDATE athena.athena_clients SET is_frozen = true WHERE client_name = 'by_hand'"
            )
            after = conn.execute(
                "SELECT updated_at FROM athena.athena_clients WHERE client_name = 'by_hand'"
            ).fetchone()[0]
        assert after > before  # the 0060 trigger keeps updated_at truthful
        wait_for(
            lambda: (
                a.post("/management/tables", json={"table_name": "t"}).json().get("code")
                == "client_frozen"
            )
        )
        assert a.delete("/admin/clients/by_hand").status_code == 200


def test_ddl_on_one_instance_refreshes_the_others_schema_cache(
    pair: Pair, pg: TestPostgres, scratch_db: str
) -> None:
    name = "ddl_shared"
    with pair.admin(pair.a) as admin:
        made = admin.post(
            "/admin/provision",
            json={"uri": pg.app_uri(scratch_db), "register": True, "register_name": name},
        )
        assert made.status_code == 200, made.text
    on_a = pair.admin(pair.a, **{"X-Athena-Client": name})
    on_b = pair.admin(pair.b, **{"X-Athena-Client": name})
    with on_a as a, on_b as b:
        assert a.post("/management/tables", json={"table_name": "shared_t"}).status_code == 201
        wait_for(
            lambda: (
                b.post(
                    "/gateway/fetch", json={"table_name": "shared_t", "columns": ["id"]}
                ).status_code
                == 200
            )
        )
        add = {
            "operations": [{"type": "add_column", "column": {"name": "late", "data_type": "int"}}]
        }
        assert a.patch("/management/tables/shared_t", json=add).status_code == 200
        # B cached shared_t without "late"; the catalog's schema_version tells it to reload
        waited = wait_for(
            lambda: (
                b.post(
                    "/gateway/fetch", json={"table_name": "shared_t", "columns": ["late"]}
                ).status_code
                == 200
            )
        )
        assert waited < 3.0
        assert a.delete(f"/admin/clients/{name}").status_code == 200


def test_a_client_can_take_its_uri_from_an_environment_variable(
    pair: Pair, pg: TestPostgres
) -> None:
    with pair.admin(pair.a) as admin:
        made = admin.post(
            "/admin/clients",
            json={"client_name": "from_env", "pg_uri_env_var": "ATHENA_TEST_CLIENT_URI"},
        )
        assert made.status_code == 201, made.text
        assert made.json()["client"]["pg_uri"] is None
        assert made.json()["client"]["pg_uri_env_var"] == "ATHENA_TEST_CLIENT_URI"
        runtime = {c["client_name"]: c for c in admin.get("/admin/clients").json()["runtime"]}
        assert runtime["from_env"]["pg_uri"].endswith(f":***@127.0.0.1:{pg.port}/athena_data")
    for server in (pair.a, pair.b):  # B resolves the variable in its own environment
        with pair.admin(server, **{"X-Athena-Client": "from_env"}) as c:
            wait_for(lambda: c.get("/schema/tables").status_code == 200)
    with pair.admin(pair.a) as admin:
        assert admin.delete("/admin/clients/from_env").status_code == 200


def test_a_config_client_dropped_from_config_is_not_served(
    pair: Pair, pg: TestPostgres, data_db: str, athena_factory: Callable[..., Any]
) -> None:
    # same catalog (which has a 'cfg_only' row from the pair's configuration), but this
    # gateway's configuration no longer lists cfg_only
    c = athena_factory(clients={"athena": {"pg_uri": pg.app_uri(data_db)}}, catalog=pair.catalog)
    try:
        with pair.admin(c) as admin:
            listing = admin.get("/admin/clients").json()
            assert "cfg_only" in {r["client_name"] for r in listing["clients"]}  # the row stays
            assert "cfg_only" not in {r["client_name"] for r in listing["runtime"]}
            gone = admin.get("/schema/tables", headers={"X-Athena-Client": "cfg_only"})
            assert gone.status_code == 400 and _code(gone) == "unknown_client"
    finally:
        c.stop()
