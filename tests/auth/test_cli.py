"""``athena keys create | list | revoke`` against the real catalog, as an operator runs them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from support.servers import AthenaServer

from athena.cli import main


def athena_cli(catalog_uri: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m athena keys …`` in a subprocess: the operator's real entry point."""
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


@pytest.fixture
def keys_cmd(
    catalog_uri: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """The same ``main()`` in this process: saves an interpreter start per call on a busy CI
    machine. The subprocess variant above proves the entry point once."""
    for name in list(os.environ):
        if name.startswith("ATHENA_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ATHENA_CATALOG_URI", catalog_uri)
    monkeypatch.setenv("ATHENA_DATA_DIR", str(tmp_path / "unused"))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        capsys.readouterr()
        code = main(["keys", *args])
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["athena", "keys", *args], code, out, err)

    return run


def capabilities(athena: AthenaServer, key: str) -> httpx.Response:
    with athena.client(apikey=key, **{"X-Athena-Client": "athena"}) as http:
        return http.get("/management/capabilities")


def test_create_list_revoke(
    athena: AthenaServer,
    catalog_uri: str,
    tmp_path: Path,
    keys_cmd: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
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

    listed = keys_cmd("list")
    assert listed.returncode == 0, listed.stderr
    line = next(row for row in listed.stdout.splitlines() if public_id in row)
    assert name in line and "gateway.read,management.read" in line and "true" in line
    assert key.split(".")[1] not in listed.stdout

    as_json = keys_cmd("list", "--json")
    record = next(r for r in json.loads(as_json.stdout) if r["public_id"] == public_id)
    assert record["client_name"] == "athena"
    assert record["expires_at"].startswith("2999-01-01")

    revoked = keys_cmd("revoke", record["id"])  # or the public id
    assert revoked.returncode == 0, revoked.stderr
    assert public_id in revoked.stdout
    # the running gateway hears about it (NOTIFY) on its next request; allow for delivery
    deadline = time.monotonic() + 5
    while capabilities(athena, key).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    refused = capabilities(athena, key)
    assert refused.status_code == 401
    assert refused.json()["code"] == "inactive_api_key"


def test_operator_mistakes_are_one_line_errors(
    keys_cmd: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    cases = [
        (["create", "--name", "x", "--right", "no.such"], "unknown right"),
        (["create", "--name", "x", "--client", "no_such_client"], "unknown client"),
        (["create", "--name", "x", "--expires", "soon"], "expires_at"),
        (["revoke", "0123456789abcdef"], "no API key"),
    ]
    for args, expected in cases:
        result = keys_cmd(*args)
        assert result.returncode == 1, (args, result.stderr)
        assert expected in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
        assert result.stdout == ""
