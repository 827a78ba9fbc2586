"""Client database URIs encrypted at rest (Fernet, with rotation) and a non-superuser catalog.

Each test has a catalog of its own: start-up re-encrypts every row, which must not touch the
rows of the session's shared catalog.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from cryptography.fernet import Fernet, InvalidToken
from psycopg import sql
from support.pg import TestPostgres
from support.servers import AthenaServer

from athena.db.catalog import ensure_login_role


@pytest.fixture
def catalog(pg: TestPostgres) -> Iterator[str]:
    name = pg.create_database(owner="postgres")
    yield name
    pg.drop_database(name)


@pytest.fixture(scope="module", autouse=True)
def _table(pg: TestPostgres, data_db: str) -> None:
    with pg.connect(data_db) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS sealed_items (id int PRIMARY KEY)")
        conn.execute("INSERT INTO sealed_items VALUES (7) ON CONFLICT DO NOTHING")


def _admin(server: AthenaServer, admin_key: str) -> httpx.Client:
    return server.client(apikey=admin_key)


def _add_client(server: AthenaServer, admin_key: str, name: str, uri: str) -> None:
    with _admin(server, admin_key) as admin:
        response = admin.post("/admin/clients", json={"client_name": name, "pg_uri": uri})
        assert response.status_code == 201, response.text
        assert "***" in response.json()["client"]["pg_uri"], "the record masks the password"


def _serves(server: AthenaServer, admin_key: str, name: str) -> bool:
    with server.client(apikey=admin_key, **{"X-Athena-Client": name}) as client:
        response = client.post("/gateway/fetch", json={"table_name": "sealed_items"})
    return response.status_code == 200 and response.json()["data"] == [{"id": 7}]


def _stored(pg: TestPostgres, catalog: str) -> dict[str, str]:
    """client name → the catalog row as text (every column), read as the superuser."""
    with pg.connect(catalog, superuser=True) as conn:
        rows = conn.execute(
            "SELECT client_name, to_jsonb(c)::text, pg_uri FROM athena.athena_clients c"
            " WHERE pg_uri IS NOT NULL"
        ).fetchall()
    return {name: (text, uri) for name, text, uri in rows}  # type: ignore[misc]


def _opens_with(key: str, stored: str) -> bool:
    assert stored.startswith("fernet:")
    try:
        Fernet(key.encode()).decrypt(stored[len("fernet:") :].encode())
    except InvalidToken:
        return False
    return True


def test_catalog_rows_hold_no_plaintext_password(
    pg: TestPostgres,
    data_db: str,
    catalog: str,
    admin_key: str,
    athena_factory: Callable[..., AthenaServer],
) -> None:
    key = Fernet.generate_key().decode()
    server = athena_factory(catalog=catalog, encryption_keys=key)
    _add_client(server, admin_key, "sealed_a", pg.app_uri(data_db))
    text, stored = _stored(pg, catalog)["sealed_a"]
    assert pg.app_password not in text, "the password is not in the row, in any column"
    assert "postgresql://" not in text and "athena_app" not in text, "nor the rest of the URI"
    assert _opens_with(key, stored)
    assert _serves(server, admin_key, "sealed_a")
    with _admin(server, admin_key) as admin:
        listed = admin.get("/admin/clients").text
    assert pg.app_password not in listed and "fernet:" not in listed


def test_rotation_plain_rows_and_old_keys_keep_working(
    pg: TestPostgres,
    data_db: str,
    catalog: str,
    admin_key: str,
    athena_factory: Callable[..., AthenaServer],
) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    first = athena_factory(catalog=catalog, encryption_keys=old)
    _add_client(first, admin_key, "sealed_old", pg.app_uri(data_db))
    first.stop()
    # a row written in clear (before encryption was configured)
    with pg.connect(catalog, superuser=True) as conn:
        conn.execute(
            "INSERT INTO athena.athena_clients (client_name, pg_uri, source)"
            " VALUES ('legacy_plain', %s, 'database')",
            (pg.app_uri(data_db),),
        )

    rotated = athena_factory(catalog=catalog, encryption_keys=f"{new},{old}")
    stored = _stored(pg, catalog)
    for name in ("sealed_old", "legacy_plain"):
        text, uri = stored[name]
        assert pg.app_password not in text, f"{name} is sealed at start-up"
        assert _opens_with(new, uri) and not _opens_with(old, uri), f"{name} under the new key"
        assert _serves(rotated, admin_key, name)
    rotated.stop()

    only_new = athena_factory(catalog=catalog, encryption_keys=new)
    assert _serves(only_new, admin_key, "sealed_old")
    assert _serves(only_new, admin_key, "legacy_plain")


def test_reencrypt_command(pg: TestPostgres, data_db: str, catalog: str, tmp_path: Any) -> None:
    key = Fernet.generate_key().decode()
    with pg.connect(catalog, superuser=True) as conn:
        from athena.db.catalog import migrate

        migrate(conn)
        conn.execute(
            "INSERT INTO athena.athena_clients (client_name, pg_uri, source)"
            " VALUES ('cli_plain', %s, 'database')",
            (pg.app_uri(data_db),),
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATHENA_")}
    env.update(ATHENA_CATALOG_URI=pg.superuser_uri(catalog), ATHENA_ENCRYPTION_KEYS=key)
    command = [sys.executable, "-m", "athena", "secrets", "reencrypt", "--data-dir", str(tmp_path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"rewritten": 1, "unreadable_clients": []}
    text, uri = _stored(pg, catalog)["cli_plain"]
    assert pg.app_password not in text and _opens_with(key, uri)
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert json.loads(again.stdout)["rewritten"] == 0, "rows under the first key stay as they are"


def test_gateway_runs_on_a_non_superuser_catalog_role(
    pg: TestPostgres,
    data_db: str,
    admin_key: str,
    athena_factory: Callable[..., AthenaServer],
) -> None:
    role, password = f"catalog_{secrets.token_hex(3)}", secrets.token_hex(16)
    with psycopg.connect(pg.superuser_uri(), autocommit=True) as conn:
        ensure_login_role(conn, role, password)
        assert conn.execute(
            "SELECT rolsuper FROM pg_roles WHERE rolname = %s", (role,)
        ).fetchone() == (False,)
    catalog = pg.create_database(owner=role)
    try:
        uri = pg.server.uri(catalog, user=role, password=password)
        server = athena_factory(
            encryption_keys=Fernet.generate_key().decode(),
            rate_limit_per_key="50",
            **{"ATHENA_CATALOG_URI": uri},  # overrides the factory's superuser catalog
        )
        with _admin(server, admin_key) as admin:
            created = admin.post("/admin/api-keys", json={"name": "k", "rights": ["*"]})
            assert created.status_code == 201, created.text
            key = created.json()["api_key"]
        _add_client(server, admin_key, "on_small_catalog", pg.app_uri(data_db))
        with server.client(apikey=key, **{"X-Athena-Client": "on_small_catalog"}) as client:
            response = client.post("/gateway/fetch", json={"table_name": "sealed_items"})
        assert response.status_code == 200, response.text
        with pg.connect(catalog, superuser=True) as conn:
            owners = conn.execute(
                sql.SQL("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'athena'")
            ).fetchall()
            buckets = conn.execute("SELECT count(*) FROM athena.rate_limit_buckets").fetchone()
        assert owners == [(role,)], "the catalog's tables belong to the non-superuser role"
        assert buckets and buckets[0] >= 1, "shared rate limits work on that role too"
        server.stop()
    finally:
        pg.drop_database(catalog)


def test_without_keys_a_password_is_not_stored_in_clear(
    pg: TestPostgres,
    data_db: str,
    catalog: str,
    admin_key: str,
    athena_factory: Callable[..., AthenaServer],
) -> None:
    """An external catalog and no ATHENA_ENCRYPTION_KEYS (ATHENA_ALLOW_PLAINTEXT_SECRETS at its
    default, false): a URI carrying a password is refused, in the API and in the CLI; one named
    by pg_uri_env_var (the secret stays in the gateway's environment) is stored as ever."""
    uri = pg.app_uri(data_db)
    server = athena_factory(
        catalog=catalog, allow_plaintext_secrets="false", ATHENA_TEST_SEALED_URI=uri
    )
    with _admin(server, admin_key) as admin:
        for body in (
            {"client_name": "clear_a", "pg_uri": uri},
            {"client_name": "clear_b", "pg_uri": uri.replace("postgresql://", "postgres://")},
        ):
            refused = admin.post("/admin/clients", json=body)
            assert refused.status_code == 403, refused.text
            assert refused.json()["code"] == "plaintext_secret_refused"
            assert pg.app_password not in refused.text
        named = admin.post(
            "/admin/clients",
            json={"client_name": "by_env", "pg_uri_env_var": "ATHENA_TEST_SEALED_URI"},
        )
        assert named.status_code == 201, named.text
        # … and a client stored so cannot be given a clear URI later
        patched = admin.patch("/admin/clients/by_env", json={"pg_uri": uri})
        assert patched.status_code == 403 and patched.json()["code"] == "plaintext_secret_refused"
    stored = _stored(pg, catalog)
    assert "clear_a" not in stored and "clear_b" not in stored
    assert all(pg.app_password not in text for text, _ in stored.values())
    assert _serves(server, admin_key, "by_env")

    env = {k: v for k, v in os.environ.items() if not k.startswith("ATHENA_")}
    env["ATHENA_CATALOG_URI"] = pg.superuser_uri(catalog)
    fresh = pg.create_database()  # provisioning runs before the client is registered
    try:
        cli = subprocess.run(
            [sys.executable, "-m", "athena", "provision", "--uri", pg.app_uri(fresh),
             "--register", "clear_c"],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        pg.drop_database(fresh)
    assert cli.returncode != 0 and "ATHENA_ENCRYPTION_KEYS" in cli.stderr + cli.stdout
    assert pg.app_password not in cli.stderr + cli.stdout
    assert "clear_c" not in _stored(pg, catalog)
