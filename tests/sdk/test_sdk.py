"""The published ``@xylex-group/athena`` SDK (npm), unchanged, against the real server:
insert → select with filters → update → upsert → delete (driven by ``drive.mjs`` in node).

What the SDK sends (read from its dist): ``PUT /gateway/insert`` ``{table_name, insert_body}``,
``POST /gateway/fetch`` ``{table_name, columns, conditions: [{operator, column, value}], limit,
offset, strip_nulls}``, ``POST /gateway/update`` ``{table_name, update_body, conditions,
columns, strip_nulls}``, ``DELETE /gateway/delete`` ``{table_name, resource_id, conditions}``;
headers ``apikey``, ``x-api-key``, ``X-Athena-Client``, ``X-Strip-Nulls`` (default true),
``X-User-Id``/``X-Company-Id``/``X-Organization-Id``. It returns the whole envelope as ``data``.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest
from support.servers import AthenaServer

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def sdk_dir() -> Path:
    """``npm install`` the pinned SDK into tests/sdk/node_modules (once; kept between runs)."""
    npm = shutil.which("npm")
    assert npm and shutil.which("node"), "node and npm are required for the SDK test"
    marker = HERE / "node_modules" / "@xylex-group" / "athena" / "package.json"
    if not marker.exists():
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--no-package-lock", "--silent"],
            cwd=HERE,
            check=True,
            timeout=300,
        )
    assert json.loads(marker.read_text())["version"] == "0.2.1"
    return HERE


def rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The SDK returns the parsed envelope as ``data``; the rows are its ``data``."""
    assert result["status"] == 200, result
    envelope = result["data"]
    assert envelope["status"] == "success"
    return envelope["data"]  # type: ignore[no-any-return]


def test_sdk_insert_select_update_delete(
    sdk_dir: Path,
    athena: AthenaServer,
    sdk_schema: None,
    admin_key: str,
    data_conn: psycopg.Connection,
) -> None:
    owner = "sdk-" + secrets.token_hex(4)
    done = subprocess.run(
        ["node", "drive.mjs", athena.url, admin_key, owner],
        cwd=sdk_dir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)

    inserted = rows(out["insert"])
    assert out["insert"]["data"]["count"] == 3
    assert [r["name"] for r in inserted] == ["alpha", "beta", "gamma"]
    assert inserted[0]["labels"] == ["x", "y"]
    assert "note" not in inserted[1]  # the SDK asks for stripped nulls by default

    assert rows(out["filtered"]) == [{"name": "beta", "qty": 5}, {"name": "gamma", "qty": 9}]
    assert sorted(r["name"] for r in rows(out["inList"])) == ["alpha", "gamma"]
    assert sorted(r["name"] for r in rows(out["orExpr"])) == ["alpha", "gamma"]
    assert rows(out["notNull"]) == [{"name": "alpha", "note": "first"}]
    assert rows(out["contains"]) == [{"name": "alpha"}]
    assert len(rows(out["likeRange"])) == 1
    # single() unwraps arrays only; the envelope is an object, so it comes back whole
    assert out["single"]["data"]["data"] == [{"name": "beta", "attrs": {"size": "L"}}]

    assert rows(out["update"]) == [{"name": "alpha", "qty": 42}]
    assert out["update"]["data"]["message"] == "Data updated successfully"
    assert rows(out["upsert"]) == [{"name": "beta", "qty": 77}]
    assert rows(out["deleteById"]) == [{"name": "gamma"}]
    assert sorted((r["name"], r["qty"]) for r in rows(out["afterDelete"])) == [
        ("alpha", 42),
        ("beta", 77),
    ]
    assert out["denied"]["status"] == 401
    assert out["denied"]["data"]["code"] == "invalid_api_key"

    stored = data_conn.execute(
        "SELECT name, qty, note FROM gw_sdk_items WHERE owner = %s ORDER BY name", (owner,)
    ).fetchall()
    assert stored == [("alpha", 42, None), ("beta", 77, None)]
