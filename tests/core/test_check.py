"""``athena check`` and the same checks at ``athena serve`` start, against real databases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from support.pg import TestPostgres
from support.servers import AthenaServer

from athena.services.provisioning import apply_provisioning


def _env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATHENA_", "OTEL_"))}
    env.update({f"ATHENA_{k.upper()}": v for k, v in settings.items()})
    return env


def _check(tmp_path: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    settings.setdefault("data_dir", str(tmp_path / "data"))
    return subprocess.run(
        [sys.executable, "-m", "athena", "check", *args],
        env=_env(**settings),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _findings(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return json.loads(done.stdout)


def _of(findings: list[dict[str, Any]], check: str, target: str) -> list[dict[str, Any]]:
    return [f for f in findings if f["check"] == check and f["target"] == target]


@pytest.fixture(scope="module")
def fresh_db(pg: TestPostgres) -> str:
    """A client database nobody provisioned."""
    return pg.create_database()


@pytest.fixture(scope="module")
def provisioned_db(pg: TestPostgres) -> str:
    name = pg.create_database()
    with pg.connect(name) as conn:
        apply_provisioning(conn)
    return name


def test_wrong_password_unprovisioned_and_superuser(
    athena: AthenaServer,  # the catalog is migrated
    catalog_uri: str,
    pg: TestPostgres,
    fresh_db: str,
    provisioned_db: str,
    tmp_path: Path,
) -> None:
    wrong = pg.app_uri(provisioned_db).replace(pg.app_password, "not-the-password")
    clients = {
        "good": {"pg_uri": pg.app_uri(provisioned_db)},
        "wrongpw": {"pg_uri": wrong},
        "fresh": {"pg_uri": pg.app_uri(fresh_db)},
        "root": {"pg_uri": pg.superuser_uri(provisioned_db)},
    }
    done = _check(tmp_path, "--json", catalog_uri=catalog_uri, clients=json.dumps(clients))
    assert done.returncode == 1, done.stdout + done.stderr  # the wrong password is an error
    findings = _findings(done)

    (good,) = _of(findings, "client", "good")
    assert good["level"] == "ok" and "provisioned" in good["detail"]
    (bad,) = _of(findings, "client", "wrongpw")
    assert bad["level"] == "error" and "password authentication failed" in bad["detail"]
    (fresh,) = _of(findings, "client", "fresh")
    assert fresh["level"] == "warn" and "not provisioned" in fresh["detail"]
    root = _of(findings, "client", "root")
    assert any(f["level"] == "warn" and "superuser" in f["detail"] for f in root)
    catalog = [f for f in findings if f["check"] == "catalog"]
    assert any(
        "superuser" in f["detail"] for f in catalog
    )  # the test catalog is reached as postgres
    assert any(f["level"] == "ok" and "migrations applied" in f["detail"] for f in catalog)
    # No password in what is printed, not even the wrong one.
    assert pg.app_password not in done.stdout and "not-the-password" not in done.stdout


def test_a_catalog_client_is_checked_with_its_sealed_uri_opened(
    athena: AthenaServer, catalog_uri: str, pg: TestPostgres, provisioned_db: str, tmp_path: Path
) -> None:
    """The check asks the gateway's own loader which clients exist, so a database client whose
    URI is sealed in the catalog is connected to with the opened URI, not the ``fernet:`` text."""
    from athena.db.sealed import UriSealer, generate_key

    key, name = generate_key(), "sealed_check_client"
    sealed = UriSealer([key]).seal(pg.app_uri(provisioned_db))
    with psycopg.connect(catalog_uri, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO athena.athena_clients (client_name, pg_uri, source)"
            " VALUES (%s, %s, 'database')",
            (name, sealed),
        )
    try:
        done = _check(tmp_path, "--json", catalog_uri=catalog_uri, encryption_keys=key)
        (found,) = _of(_findings(done), "client", name)
        assert found["level"] == "ok" and "provisioned" in found["detail"], found
        other_key = generate_key()
        done = _check(tmp_path, "--json", catalog_uri=catalog_uri, encryption_keys=other_key)
        (unread,) = _of(_findings(done), "client", name)
        assert unread["level"] == "error" and "ATHENA_ENCRYPTION_KEYS" in unread["detail"], unread
        assert "fernet:" not in done.stdout
    finally:
        with psycopg.connect(catalog_uri, autocommit=True) as conn:
            conn.execute("DELETE FROM athena.athena_clients WHERE client_name = %s", (name,))


def test_table_output_and_strict(
    athena: AthenaServer, catalog_uri: str, pg: TestPostgres, provisioned_db: str, tmp_path: Path
) -> None:
    clients = {"good": {"pg_uri": pg.app_uri(provisioned_db)}}
    done = _check(tmp_path, catalog_uri=catalog_uri, clients=json.dumps(clients))
    assert done.returncode == 0, done.stdout + done.stderr  # warnings only (superuser catalog)
    assert "athena check" in done.stdout and "good" in done.stdout and "warn" in done.stdout
    strict = _check(tmp_path, "--strict", catalog_uri=catalog_uri, clients=json.dumps(clients))
    assert strict.returncode == 1


def test_unreachable_catalog_and_invalid_settings(tmp_path: Path, pg: TestPostgres) -> None:
    uri = pg.superuser_uri("athena_catalog").replace("@", "x@", 1)  # a wrong user name
    done = _check(tmp_path, "--json", catalog_uri=uri)
    assert done.returncode == 1
    (catalog,) = [f for f in _findings(done) if f["check"] == "catalog"]
    assert catalog["level"] == "fatal" and "cannot connect" in catalog["detail"]

    pools = _check(tmp_path, "--json", pool_min_size="20", pool_max_size="5")
    assert pools.returncode == 1
    assert any(
        f["level"] == "fatal" and f["target"] == "ATHENA_POOL_MIN_SIZE" for f in _findings(pools)
    )

    unreadable = _check(tmp_path, port="not-a-number")
    assert unreadable.returncode == 2 and "Traceback" not in unreadable.stderr
    assert unreadable.stderr.startswith("athena: invalid setting port")


def test_serve_refuses_a_fatal_finding_with_one_line(
    tmp_path: Path, catalog_uri: str, athena: AthenaServer
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "athena", "serve", "--port", "0", "--data-dir", str(tmp_path)],
        env=_env(catalog_uri=catalog_uri, pool_min_size="20", pool_max_size="5"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "athena: settings ATHENA_POOL_MIN_SIZE: 20 > ATHENA_POOL_MAX_SIZE 5"
    ]


def test_serve_starts_and_logs_a_client_error(
    athena_factory: Any, pg: TestPostgres, provisioned_db: str
) -> None:
    wrong = pg.app_uri(provisioned_db).replace(pg.app_password, "nope-nope")
    server = athena_factory(
        clients={"good": {"pg_uri": pg.app_uri(provisioned_db)}, "wrongpw": {"pg_uri": wrong}}
    )
    log = server.log()
    line = next(li for li in log.splitlines() if "check client wrongpw" in li)
    assert "error" in line and "password authentication failed" in line
    assert "nope-nope" not in log
    with psycopg.connect(pg.app_uri(provisioned_db)):
        pass  # the good client's database is untouched and reachable
