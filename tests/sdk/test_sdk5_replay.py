"""SDK 5 (``@xylex-group/athena`` 5.2.0) unchanged, replayed: every request it made through the
documented ``createClient({ url, key, client })``, sent again to a fresh gateway with default
settings, must get the answer the SDK accepted when it was recorded.

The npm registry here has only 0.2.1 and CI cannot fetch the SDK's source, so
``scripts/sdk5_record.py`` drove a real build of 5.x against this gateway and wrote
``sdk5_wire.json``: per step, the request exactly as the SDK sent it (paths under its ``/db`` and
``/storage`` service prefixes, the key only as ``X-Athena-Key``, ``X-Strip-Nulls: true``, no
context headers), the answer, and what the SDK handed the application (``seen``). The steps
cover select with filters, in/or, range, aliases, exact counts and head, findMany (classic and
AST bodies), single/maybeSingle, update, upsert, delete, raw SQL with params, rpc (scalar and
set), a transaction that commits and one that rolls back, the compatibility check, backup jobs,
a backup without S3, an unsupported storage call, and the error shapes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sdk5_scenario import RIGHTS, SCHEMA_SQL
from support.keys import seed_key
from support.pg import TestPostgres
from support.servers import AthenaServer

WIRE = json.loads((Path(__file__).parent / "sdk5_wire.json").read_text())
EXCHANGES: list[dict[str, Any]] = WIRE["exchanges"]
SEEN: dict[str, Any] = WIRE["seen"]


@pytest.fixture(scope="module")
def replay(
    athena_factory: Callable[..., AthenaServer], pg: TestPostgres, admin_key: str
) -> dict[str, Any]:
    """A gateway with default settings, its own catalog (no backup jobs yet) and the scenario."""
    catalog = pg.create_database(owner="postgres")
    data = pg.create_database()
    with pg.connect(data) as conn:
        conn.execute(SCHEMA_SQL)
    server = athena_factory(catalog=catalog, clients={"athena": {"pg_uri": pg.app_uri(data)}})
    key = seed_key(pg.superuser_uri(catalog), rights=RIGHTS, client="athena")
    answers: list[httpx.Response] = []
    with httpx.Client(base_url=server.url, timeout=30) as http:
        # In recorded order: later steps see what earlier ones wrote, as the SDK's did.
        for exchange in EXCHANGES:
            headers = {
                name: {"<data key>": key, "<admin key>": admin_key}.get(value, value)
                for name, value in exchange["headers"].items()
                if name not in ("content-length", "host")
            }
            answers.append(
                http.request(
                    exchange["method"], exchange["path"], headers=headers,
                    content=exchange["body"].encode() if exchange["body"] is not None else None,
                )
            )  # fmt: skip
    return {"answers": answers}


def _steps() -> list[str]:
    return [e["step"] for e in EXCHANGES]


@pytest.mark.parametrize("index", range(len(EXCHANGES)), ids=_steps())
def test_each_recorded_request_gets_the_answer_the_sdk_accepted(
    replay: dict[str, Any], index: int
) -> None:
    exchange = EXCHANGES[index]
    answer = replay["answers"][index]
    assert answer.status_code == exchange["status"], answer.text
    recorded, got = json.loads(exchange["response"]), answer.json()
    if exchange["path"].endswith("/health"):
        # Versions move with releases; the SDK reads the release's major and the status.
        assert got["status"] == recorded["status"] == "ok"
        assert got["release"]["version"].split(".")[0] == recorded["release"]["version"][0] == "5"
        return
    assert got == recorded


def test_the_recording_covers_what_the_sdk_users_call() -> None:
    paths = {(e["method"], e["path"].split("?")[0]) for e in EXCHANGES}
    assert {
        ("PUT", "/db/gateway/insert"),
        ("POST", "/db/gateway/fetch"),
        ("POST", "/db/gateway/update"),
        ("DELETE", "/db/gateway/delete"),
        ("POST", "/db/gateway/query"),
        ("POST", "/db/gateway/rpc"),
        ("POST", "/db/gateway/transaction"),
        ("GET", "/db/health"),
        ("GET", "/storage/admin/backups/jobs"),
    } <= paths
    for exchange in EXCHANGES:
        if not exchange["path"].startswith("/db/gateway/"):
            continue  # the storage module sends its key as x-api-key, and no client
        assert set(exchange["headers"]) >= {"x-athena-key", "x-athena-client", "x-strip-nulls"}
        assert not {"x-user-id", "x-company-id", "apikey"} & set(exchange["headers"])


def test_what_the_sdk_handed_the_application() -> None:
    """The recorded SDK results themselves: the features the issue lists, as a user sees them."""
    assert SEEN["count_exact"]["count"] == 4 and len(SEEN["count_exact"]["data"]) == 1
    assert SEEN["count_head"] == {"data": [], "count": 4, "error": None}
    assert SEEN["alias"]["data"][0] == {"label": "alpha", "qty": 1}
    assert [r["name"] for r in SEEN["find_many_ast"]["data"]] == ["alpha", "delta", "gamma"]
    assert SEEN["raw_sql_params"]["data"] == [
        {"name": "beta"},
        {"name": "gamma"},
        {"name": "delta"},
    ]
    assert SEEN["rpc_scalar"]["data"] == 42
    assert SEEN["transaction"]["data"][0]["data"][0]["name"] == "t1"
    assert SEEN["transaction_rollback"]["code"] == "ATHENA_TRANSACTION_FAILED"
    compat = SEEN["compatibility"]["data"]
    assert compat["compatible"] is True and compat["discovered"] is True
    assert SEEN["backup_jobs"]["data"] == []
    assert SEEN["error_unknown_table"]["error"] == {"code": "unknown_table", "status": 400}
    assert SEEN["error_rights"]["data"]["error"]["code"] == "insufficient_rights"
