"""Faults under load (short version of scripts/faults): a database stops and comes back.

While the client's PostgreSQL is down, requests fail fast with 503 ``client_unavailable`` (never a
500, never a hang); once it is back the gateway serves again within 1 s without a restart (issue
17: waiting callers retry the connect with a short capped backoff); every insert answered 2xx is
in the database. The same for the catalog: keyed requests fail closed with
503 ``auth_unavailable`` and recover.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from support.faultload import LoadRun, verdict
from support.keys import seed_key
from support.pg import TestPostgres
from support.servers import AthenaServer

POOL_TIMEOUT_S = 5.0  # the default, as issue 17 measured
# From the moment the database accepts connections again to the first request that succeeds.
RECOVERY_S = 1.0
TABLE = "fault_items"

# Timings under load: run by scripts/test after the parallel part, with the machine to itself.
pytestmark = pytest.mark.serial


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    client_pg = TestPostgres.start(tmp_path_factory.mktemp("client-pg"))
    catalog_pg = TestPostgres.start(tmp_path_factory.mktemp("catalog-pg"))
    data_db = client_pg.create_database("faults")
    with client_pg.connect(data_db) as conn:
        conn.execute(f"CREATE TABLE {TABLE} (id text PRIMARY KEY, note text)")
    env = {
        "ATHENA_CATALOG_URI": catalog_pg.superuser_uri("postgres"),
        "ATHENA_KEY_12": "fault-admin-key",
        "ATHENA_CLIENTS": json.dumps({"faulty": {"pg_uri": client_pg.app_uri(data_db)}}),
        "ATHENA_POOL_TIMEOUT_S": str(POOL_TIMEOUT_S),
        "ATHENA_CONNECT_TIMEOUT_S": "1",
        "ATHENA_REQUEST_LOG_FLUSH_SECONDS": "0.2",
    }
    server = AthenaServer(tmp_path_factory.mktemp("faults-athena"), env).start()
    key = seed_key(catalog_pg.superuser_uri("postgres"), rights=["*"], client="faulty")
    yield {
        "server": server,
        "client_pg": client_pg,
        "catalog_pg": catalog_pg,
        "db": data_db,
        "key": key,
    }
    server.stop()
    client_pg.stop()
    catalog_pg.stop()


def _load(rig: dict[str, object]) -> LoadRun:
    server = rig["server"]
    assert isinstance(server, AthenaServer)
    headers = {
        "apikey": str(rig["key"]),
        "X-Athena-Client": "faulty",
        "X-User-Id": "u1",
        "X-Company-Id": "c1",
        "X-Organization-Id": "o1",
    }
    return LoadRun(server.url, headers, TABLE, threads=6, request_timeout=20)


def _restart(pg: TestPostgres) -> tuple[object, object]:
    return pg.server.stop, pg.server.start


def test_client_database_outage(rig: dict[str, object]) -> None:
    client_pg = rig["client_pg"]
    assert isinstance(client_pg, TestPostgres)
    run = _load(rig)
    stop, start = _restart(client_pg)
    # 10 s down, as issue 17 measured it (4.7 s to the first insert after the restart then).
    marks = run.run_with_fault(warmup=1.5, outage=10.0, after=4.0, stop_db=stop, start_db=start)  # type: ignore[arg-type]
    with client_pg.connect(str(rig["db"])) as conn:
        result = verdict(run, marks, conn, "client_unavailable")
    print(json.dumps(result, indent=2))
    assert result["server_errors_500"] == 0, result
    assert result["during_outage"] > 0
    assert result["unavailable_code_seen"], result
    # answered while it was down: only the clean 503; still waiting when it came back: may pass
    assert set(result["ended_during_outage_statuses"]) <= {"503 client_unavailable"}, result
    assert set(result["during_outage_statuses"]) <= {"503 client_unavailable", "200"}, result
    assert result["during_outage_max_latency_s"] <= POOL_TIMEOUT_S + 2.0, result
    assert result["recovery_seconds"] is not None and result["recovery_seconds"] < RECOVERY_S, (
        result
    )
    assert result["acked_inserts"] > 0
    assert result["lost_writes"] == 0, result


def test_catalog_outage_fails_closed_then_recovers(rig: dict[str, object]) -> None:
    catalog_pg = rig["catalog_pg"]
    client_pg = rig["client_pg"]
    assert isinstance(catalog_pg, TestPostgres) and isinstance(client_pg, TestPostgres)
    run = _load(rig)
    stop, start = _restart(catalog_pg)
    marks = run.run_with_fault(warmup=1.0, outage=10.0, after=4.0, stop_db=stop, start_db=start)  # type: ignore[arg-type]
    with client_pg.connect(str(rig["db"])) as conn:
        result = verdict(run, marks, conn, "auth_unavailable")
    print(json.dumps(result, indent=2))
    assert result["server_errors_500"] == 0, result
    statuses = set(result["during_outage_statuses"])
    # Cached key decisions may serve for up to 2 s; after that every keyed request fails closed.
    assert statuses <= {"200", "201", "503 auth_unavailable"}, result
    assert result["unavailable_code_seen"], result
    assert result["recovery_seconds"] is not None and result["recovery_seconds"] < RECOVERY_S, (
        result
    )
    assert result["lost_writes"] == 0, result


def test_no_unhandled_errors_during_the_faults(rig: dict[str, object]) -> None:
    server = rig["server"]
    assert isinstance(server, AthenaServer)
    assert "unhandled error" not in server.log()
