"""``athena keys create | list | revoke`` against the real catalog, as an operator runs them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
from support.servers import AthenaServer


def athena_cli(catalog_uri: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATHENA_")}
    env["ATHENA_CATALOG_URI"] = catalog_uri
    env["ATHENA_DATA_DIR"] = str(tmp_path / "unused")
    return subprocess.run(
        [sys.executable, "-m", "athena", "keys", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def capabilities(athena: AthenaServer, key: str) -> httpx.Response:
    with athena.client(apikey=key, **{"X-Athena-Client": "athena"}) as http:
        return http.get("/management/capabilities")


def test_create_list_revoke(athena: AthenaServer, catalog_uri: str, tmp_path: Path) -> None:
    name = f"cli-{os.getpid()}-{time.monotonic_ns()}"
    created = athena_cli(
        catalog_uri, tmp_path,
        "create", "--name", name, "--client", "athena",
        "--right", "management.read", "--right", "gateway.read",
        "--expires", "2999-01-01T00:00:00Z",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    # stdout is exactly the key, so KEY=$(athena keys create …) works
    key = created.stdout.strip()
    assert created.stdout == key + "\n"
    match = re.fullmatch(r"ath_([0-9a-f]{16})\.[0-9a-f]{64}", key)
    assert match is not None
    public_id = match.group(1)
    assert public_id in created.stderr and "not shown again" in created.stderr
    assert capabilities(athena, key).status_code == 200

    listed = athena_cli(catalog_uri, tmp_path, "list")
    assert listed.returncode == 0, listed.stderr
    line = next(row for row in listed.stdout.splitlines() if public_id in row)
    assert name in line and "gateway.read,management.read" in line and "true" in line
    assert key.split(".")[1] not in listed.stdout

    as_json = athena_cli(catalog_uri, tmp_path, "list", "--json")
    record = next(r for r in json.loads(as_json.stdout) if r["public_id"] == public_id)
    assert record["client_name"] == "athena"
    assert record["expires_at"].startswith("2999-01-01")

    revoked = athena_cli(catalog_uri, tmp_path, "revoke", record["id"])  # or the public id
    assert revoked.returncode == 0, revoked.stderr
    assert public_id in revoked.stdout
    # the running gateway hears about it (NOTIFY) on its next request; allow for delivery
    deadline = time.monotonic() + 5
    while capabilities(athena, key).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    refused = capabilities(athena, key)
    assert refused.status_code == 401
    assert refused.json()["code"] == "inactive_api_key"


def test_operator_mistakes_are_one_line_errors(catalog_uri: str, tmp_path: Path) -> None:
    cases = [
        (["create", "--name", "x", "--right", "no.such"], "unknown right"),
        (["revoke", "0123456789abcdef"], "no API key"),
    ]
    for args, expected in cases:
        result = athena_cli(catalog_uri, tmp_path, *args)
        assert result.returncode == 1, (args, result.stderr)
        assert expected in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
        assert result.stdout == ""
