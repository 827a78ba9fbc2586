"""The table a request names reaches the request log, and so the per-table statistics, only once
the caller was authorized for it.

Before, the name was recorded as soon as the request was parsed: a caller without a key could
spray ``/gateway/fetch`` or ``/rest/v1/<anything>`` with made-up names (401 each) and every name
became a row of ``client_table_statistics``, which is never pruned. An authorized caller's miss
is still counted against the name it asked for (as an error, under its key id), as
``test_obs_statistics`` asserts for REST.
"""

from __future__ import annotations

import secrets

import psycopg
from obs_helpers import wait_for
from support.servers import AthenaServer


def _tables_of(conn: psycopg.Connection, tag: str) -> list[tuple]:
    return conn.execute(
        "SELECT route, status_code, error_code, table_name FROM athena.gateway_request_log"
        " WHERE user_id = %s ORDER BY id",
        (tag,),
    ).fetchall()


def test_names_from_callers_without_a_key_reach_neither_the_log_nor_the_statistics(
    obs: AthenaServer,
    obs_catalog: psycopg.Connection,
    admin_key: str,
    data_conn: psycopg.Connection,
) -> None:
    real = f"obs_named_{secrets.token_hex(3)}"
    data_conn.execute(f"CREATE TABLE {real} (id int PRIMARY KEY)")
    made_up = [f"spray_{secrets.token_hex(4)}" for _ in range(4)]
    tag = f"names-{secrets.token_hex(4)}"
    context = {
        "X-Athena-Client": "athena",
        "X-User-Id": tag,
        "X-Company-Id": "c",
        "X-Organization-Id": "o",
    }
    with obs.client(**context) as anonymous:
        assert anonymous.post("/gateway/fetch", json={"table_name": made_up[0]}).status_code == 401
        assert anonymous.get(f"/rest/v1/{made_up[1]}").status_code == 401
    with obs.client(apikey=admin_key, **context) as admin:
        unknown = admin.post("/gateway/fetch", json={"table_name": made_up[2]})
        assert unknown.status_code in (400, 404) and unknown.json()["code"] == "unknown_table"
        missing = admin.get(f"/rest/v1/{made_up[3]}")
        # the envelope format, as X-Athena-Client asks: 400 unknown_table (PGRST205 in data)
        assert missing.status_code == 400 and missing.json()["code"] == "unknown_table", (
            missing.text
        )
        assert admin.post("/gateway/fetch", json={"table_name": real}).status_code == 200
        assert admin.get(f"/rest/v1/{real}").status_code == 200

    rows = wait_for(lambda: len(_tables_of(obs_catalog, tag)) == 6 and _tables_of(obs_catalog, tag),
                    what="6 log rows")  # fmt: skip
    assert [(r[1], r[3]) for r in rows] == [
        (401, None), (401, None),
        (unknown.status_code, made_up[2]), (400, made_up[3]),
        (200, real), (200, real),
    ], rows  # fmt: skip

    with obs.client(apikey=admin_key) as admin:
        assert admin.post("/admin/clients/statistics/refresh").status_code == 200
        tables = {
            t["table_name"] for t in admin.get("/admin/clients/athena/statistics").json()["tables"]
        }
    assert {real, made_up[2], made_up[3]} <= tables, "what authorized callers asked for"
    assert not tables & set(made_up[:2]), "no name from a caller without a key became a row"
