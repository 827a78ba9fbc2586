"""``athena provision --uri URI [--register NAME]``: the same SQL as the API, from a shell, and
running gateways pick the registered client up from the shared catalog."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from clients_support import Pair
from support.pg import TestPostgres


def _cli(pair: Pair, pg: TestPostgres, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATHENA_")}
    env["ATHENA_CATALOG_URI"] = pg.superuser_uri(pair.catalog)
    env["ATHENA_ALLOW_PLAINTEXT_SECRETS"] = "true"  # this catalog has no encryption keys
    return subprocess.run(
        [sys.executable, "-m", "athena", "provision", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_provisions_idempotently_and_registers(pair: Pair, pg: TestPostgres) -> None:
    db = pg.create_database()
    try:
        uri = pg.app_uri(db)
        first = _cli(pair, pg, "--uri", uri)
        assert first.returncode == 0, first.stderr
        out = json.loads(first.stdout)
        assert out["statements_executed"] == 5 and out["registered"] is None
        assert pg.app_password not in first.stdout
        second = _cli(pair, pg, "--uri", uri, "--register", "from_cli")
        assert second.returncode == 0, second.stderr
        assert json.loads(second.stdout)["registered"] == "from_cli"
        with pg.connect(db) as conn:
            assert conn.execute("SELECT count(*) FROM athena_provisioning").fetchone()[0] == 1
            assert conn.execute(
                "SELECT to_regclass('public.database_audit_log') IS NOT NULL"
            ).fetchone()[0]

        # both running gateways serve it within a few seconds, with no API call
        for server in (pair.a, pair.b):
            with pair.admin(server, **{"X-Athena-Client": "from_cli"}) as c:
                deadline = time.monotonic() + 8
                while c.get("/schema/tables").status_code != 200:
                    assert time.monotonic() < deadline, "gateway never picked up the CLI client"
                    time.sleep(0.1)
                status = c.get("/admin/provision/status", params={"client_name": "from_cli"})
                assert status.json()["provisioned"] is True

        # the same name for another database is refused; a bad URI is one line, exit 1
        db2 = pg.create_database()
        other = _cli(pair, pg, "--uri", pg.app_uri(db2), "--register", "from_cli")
        pg.drop_database(db2)
        assert other.returncode == 1 and "already exists" in other.stderr
        bad = _cli(pair, pg, "--uri", "postgresql://u:topsecret1@127.0.0.1:1/x")
        assert bad.returncode == 1 and "Traceback" not in bad.stderr
        assert "topsecret1" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    finally:
        with pair.admin(pair.a) as admin:
            admin.delete("/admin/clients/from_cli")
        pg.drop_database(db)
