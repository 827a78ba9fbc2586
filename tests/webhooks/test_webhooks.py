"""Outbound webhooks over real servers: two gateways share a catalog and a client database, and a
real HTTP receiver listens on loopback (the outbound allow-list names 127.0.0.0/8 for it).
Retry backoffs are tens of milliseconds so that retry windows pass within a test."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from support.pg import TestPostgres
from support.receiver import Receiver, valid_signature, wait_for
from support.servers import AthenaServer, server_env

from athena.db.catalog import migrate

MAX_ATTEMPTS = 4
TABLE_SQL = """
CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL UNIQUE, n int);
"""


@dataclass
class Env:
    a: AthenaServer
    b: AthenaServer
    receiver: Receiver
    pg: TestPostgres
    data_db: str
    catalog_db: str
    admin_key: str

    def api(self, server: AthenaServer | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=(server or self.a).url,
            headers={
                "X-Athena-Admin-Key": self.admin_key,
                "apikey": self.admin_key,
                "X-Athena-Client": "data",
            },
            timeout=60,
        )


@pytest.fixture(scope="module")
def env(
    pg: TestPostgres, admin_key: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Env]:
    data_db = pg.create_database()
    with pg.connect(data_db) as conn:
        conn.execute(TABLE_SQL)
    catalog_db = pg.create_database(owner="postgres")
    with psycopg.connect(pg.superuser_uri(catalog_db), autocommit=True) as conn:
        migrate(conn)
    settings = server_env(
        catalog_uri=pg.superuser_uri(catalog_db),
        admin_key=admin_key,
        clients={"data": {"pg_uri": pg.app_uri(data_db)}},
        outbound_allow_http="true",
        outbound_allow_cidrs="127.0.0.0/8",
        webhook_retry_base_s="0.05",
        webhook_retry_max_s="0.2",
        webhook_max_attempts=str(MAX_ATTEMPTS),
        webhook_refresh_seconds="0.2",
        webhook_poll_seconds="0.2",
        webhook_lease_seconds="5",
        webhook_timeout_s="2",
    )
    root: Path = tmp_path_factory.mktemp("athena-webhooks")
    receiver = Receiver().start()
    a = AthenaServer(root / "a", settings).start()
    b = AthenaServer(root / "b", settings).start()
    yield Env(a, b, receiver, pg, data_db, catalog_db, admin_key)
    a.stop()
    b.stop()
    receiver.stop()


@pytest.fixture
def hook(env: Env) -> Iterator[dict[str, Any]]:
    """A webhook on every write event of ``notes``, known to both instances."""
    env.receiver.clear()
    with env.api() as api:
        created = api.post(
            "/admin/webhooks",
            json={
                "name": "notes", "url": env.receiver.url, "client_name": "data",
                "table_name": "notes",
                "events": ["gateway.insert", "gateway.update", "gateway.delete",
                           "rest.insert", "rest.update", "rest.delete"],
            },
        )  # fmt: skip
        assert created.status_code == 201, created.text
        webhook = created.json()
        time.sleep(0.6)  # every instance reloads its webhooks (refresh 0.2 s)
        yield webhook
        api.delete(f"/admin/webhooks/{webhook['id']}")
    with env.pg.connect(env.data_db, superuser=True) as conn:
        conn.execute("TRUNCATE notes")


def insert(api: httpx.Client, body: str, n: int = 0) -> httpx.Response:
    response = api.put(
        "/gateway/insert", json={"table_name": "notes", "insert_body": {"body": body, "n": n}}
    )
    assert response.status_code in (200, 201), response.text
    return response


def deliveries(api: httpx.Client, webhook_id: int, **params: Any) -> list[dict[str, Any]]:
    return api.get(f"/admin/webhooks/{webhook_id}/deliveries", params=params).json()["deliveries"]


# -- the API -------------------------------------------------------------------------------------


def test_webhook_crud_events_and_refused_targets(env: Env) -> None:
    with env.api() as api:
        events = {e["name"] for e in api.get("/admin/webhooks/events").json()["events"]}
        assert {"gateway.insert", "rest.delete", "backup.succeeded", "backup.failed"} <= events
        created = api.post(
            "/admin/webhooks",
            json={"name": "x", "url": env.receiver.url, "events": ["backup.failed"],
                  "secret": "s" * 20},
        )  # fmt: skip
        assert created.status_code == 201, created.text
        webhook = created.json()
        assert webhook["secret"] == "s" * 20 and webhook["enabled"] is True
        fetched = api.get(f"/admin/webhooks/{webhook['id']}").json()
        assert "secret" not in fetched and fetched["events"] == ["backup.failed"]
        assert webhook["id"] in [w["id"] for w in api.get("/admin/webhooks").json()["webhooks"]]
        patched = api.patch(f"/admin/webhooks/{webhook['id']}", json={"enabled": False}).json()
        assert patched["enabled"] is False and "secret" not in patched

        def refused(body: dict[str, Any], code: str) -> None:
            response = api.post(
                "/admin/webhooks", json={"name": "y", "events": ["gateway.insert"], **body}
            )
            assert response.status_code == 400 and response.json()["code"] == code, response.text

        refused({"url": "http://10.1.2.3/hook"}, "outbound_url_refused")  # private, not allowed
        refused({"url": "http://169.254.169.254/latest"}, "outbound_url_refused")
        refused({"url": "ftp://127.0.0.1/x"}, "outbound_url_refused")
        refused({"url": env.receiver.url, "events": ["gateway.explode"]}, "invalid_webhook")
        refused({"url": env.receiver.url, "secret": "short"}, "invalid_webhook")
        assert api.delete(f"/admin/webhooks/{webhook['id']}").json()["deleted"] is True
        assert api.get(f"/admin/webhooks/{webhook['id']}").status_code == 404


def test_test_delivery_is_sent_signed_and_logged(env: Env, hook: dict[str, Any]) -> None:
    with env.api() as api:
        answer = api.post(f"/admin/webhooks/{hook['id']}/test")
    assert answer.status_code == 200, answer.text
    delivery = answer.json()["delivery"]
    assert delivery["state"] == "delivered" and delivery["attempt_log"][0]["status"] == 200
    (received,) = env.receiver.events("webhook.test")
    assert valid_signature(received, hook["secret"])
    assert received.headers["X-Athena-Delivery"] == str(delivery["id"])


# -- delivery ------------------------------------------------------------------------------------


def test_insert_update_delete_arrive_in_order_with_valid_signatures(
    env: Env, hook: dict[str, Any]
) -> None:
    with env.api() as api:
        inserted = insert(api, "first", 1)
        request_id = inserted.headers.get("x-request-id")
        api.post(
            "/gateway/update",
            json={"table_name": "notes", "update_body": {"n": 2},
                  "conditions": [{"eq_column": "body", "eq_value": "first"}]},
        ).raise_for_status()  # fmt: skip
        api.request(
            "DELETE",
            "/gateway/delete",
            json={"table_name": "notes", "conditions": [{"eq_column": "body", "eq_value": "first"}]},
        ).raise_for_status()  # fmt: skip
        rest = api.post("/rest/v1/notes", json={"body": "via rest", "n": 9})
        assert rest.status_code in (200, 201), rest.text
    got = wait_for(
        lambda: len(env.receiver.events()) >= 4 and env.receiver.events(), what="4 events"
    )
    assert [r.headers["X-Athena-Event"] for r in got] == [
        "gateway.insert", "gateway.update", "gateway.delete", "rest.insert",
    ]  # fmt: skip
    for r in got:
        assert valid_signature(r, hook["secret"]), r.headers
        assert not valid_signature(r, hook["secret"] + "x")
        body = r.json
        assert body["client"] == "data" and body["table"] == "notes" and body["row_count"] == 1
        assert body["event"] == r.headers["X-Athena-Event"]
        datetime.fromisoformat(body["occurred_at"])
    assert got[0].json["rows"][0]["body"] == "first" and got[0].json["rows"][0]["n"] == 1
    assert got[1].json["rows"][0]["n"] == 2
    assert got[3].json["rows"][0]["body"] == "via rest"
    assert request_id and got[0].json["request_id"] == request_id
    ids = [int(r.headers["X-Athena-Delivery"]) for r in got]
    assert ids == sorted(ids)


def test_rest_insert_update_delete_carry_rows_client_table_request_id_and_time(
    env: Env, hook: dict[str, Any]
) -> None:
    """Each /rest/v1 write fires its own event type, and every event carries what the write
    wrote (the full row, as the WebSocket events do — even under ``return=minimal``), the client,
    the table, the request id the gateway answered with, and when it happened."""
    sent: list[tuple[str, float, float, httpx.Response]] = []
    with env.api(env.b) as api:  # written on b, delivered by whichever instance leases it
        for event, method, path, body, prefer in (
            ("rest.insert", "POST", "/rest/v1/notes", {"body": "r1", "n": 1}, "return=minimal"),
            ("rest.update", "PATCH", "/rest/v1/notes?body=eq.r1", {"n": 2}, "return=minimal"),
            ("rest.delete", "DELETE", "/rest/v1/notes?body=eq.r1", None, "return=minimal"),
        ):
            before = time.time()
            response = api.request(method, path, json=body, headers={"Prefer": prefer})
            assert response.status_code in (200, 201, 204), response.text
            sent.append((event, before, time.time(), response))
    got = wait_for(lambda: len(env.receiver.events()) >= 3 and env.receiver.events(), what="3")
    assert [r.headers["X-Athena-Event"] for r in got] == [e for e, *_ in sent]
    (row_id,) = {r.json["rows"][0]["id"] for r in got}
    expected_rows = [
        {"id": row_id, "body": "r1", "n": 1},
        {"id": row_id, "body": "r1", "n": 2},
        {"id": row_id, "body": "r1", "n": 2},  # a delete carries the row as it was
    ]
    for r, (event, before, after, response), rows in zip(got, sent, expected_rows, strict=True):
        assert valid_signature(r, hook["secret"])
        body = r.json
        assert body["event"] == event and body["client"] == "data" and body["table"] == "notes"
        assert body["rows"] == [rows] and body["row_count"] == 1
        assert body["request_id"] == response.headers["x-request-id"]
        at = datetime.fromisoformat(body["occurred_at"]).timestamp()
        assert before - 1 <= at <= after + 1, (before, body["occurred_at"], after)
    with env.pg.connect(env.data_db, superuser=True) as conn:
        assert conn.execute("SELECT count(*) FROM notes").fetchone() == (0,)


def test_a_committed_transaction_fires_each_write_with_its_request_id(
    env: Env, hook: dict[str, Any]
) -> None:
    """/gateway/transaction's writes have their events committed with them: one per write, in
    the transaction's order, all under the transaction's request id."""
    with env.api() as api:
        tx = api.post(
            "/gateway/transaction",
            json={"operations": [
                {"id": "a", "kind": "insert",
                 "payload": {"table_name": "notes", "insert_body": [{"body": "t1"}, {"body": "t2"}]}},
                {"id": "b", "kind": "update",
                 "payload": {"table_name": "notes", "update_body": {"n": 7},
                             "conditions": [{"eq_column": "body", "eq_value": "t2"}]}},
                {"id": "c", "kind": "delete",
                 "payload": {"table_name": "notes",
                             "conditions": [{"eq_column": "body", "eq_value": "t1"}]}},
            ]},
        )  # fmt: skip
        assert tx.status_code == 200, tx.text
    got = wait_for(lambda: len(env.receiver.events()) >= 3 and env.receiver.events(), what="3")
    time.sleep(0.5)  # nothing more may arrive
    assert len(env.receiver.events()) == 3
    bodies = [r.json for r in got]
    assert [b["event"] for b in bodies] == ["gateway.insert", "gateway.update", "gateway.delete"]
    assert [b["row_count"] for b in bodies] == [2, 1, 1]
    assert sorted(r["body"] for r in bodies[0]["rows"]) == ["t1", "t2"]
    assert bodies[1]["rows"][0]["body"] == "t2" and bodies[1]["rows"][0]["n"] == 7
    assert bodies[2]["rows"][0]["body"] == "t1"
    assert {b["request_id"] for b in bodies} == {tx.headers["x-request-id"]}
    assert all(valid_signature(r, hook["secret"]) for r in got)


def test_500_three_times_then_200_is_delivered_with_every_attempt_logged(
    env: Env, hook: dict[str, Any]
) -> None:
    env.receiver.answers_for = b'"flaky"'
    env.receiver.answers.extend([500, 500, 500])
    with env.api() as api:
        insert(api, "flaky")
        delivered = wait_for(
            lambda: [d for d in deliveries(api, hook["id"]) if d["state"] == "delivered"],
            what="the delivery",
        )
    (delivery,) = delivered
    assert [a["status"] for a in delivery["attempt_log"]] == [500, 500, 500, 200]
    assert all(
        a["latency_ms"] is not None and a["latency_ms"] >= 0 for a in delivery["attempt_log"]
    )
    assert delivery["attempt_log"][0]["response_excerpt"] == "receiver says no"
    assert delivery["attempts"] == 4 and delivery["last_status"] == 200
    got = [r for r in env.receiver.events("gateway.insert") if b'"flaky"' in r.body]
    assert len(got) == 4 and len({r.body for r in got}) == 1  # the same event, resent
    assert {r.headers["X-Athena-Delivery"] for r in got} == {str(delivery["id"])}


def test_a_receiver_down_for_the_retry_window_gives_a_dead_delivery_redeliver_delivers(
    env: Env, hook: dict[str, Any]
) -> None:
    env.receiver.stop()
    try:
        with env.api() as api:
            insert(api, "into the void")
            (dead,) = wait_for(
                lambda: [d for d in deliveries(api, hook["id"], state="dead")], what="dead"
            )
            assert dead["tries"] == MAX_ATTEMPTS
            assert all(a["status"] is None and a["error"] for a in dead["attempt_log"])
    finally:
        env.receiver.start()
    with env.api(env.b) as api:  # any instance may redeliver
        again = api.post(f"/admin/webhooks/deliveries/{dead['id']}/redeliver")
        assert again.status_code == 202, again.text
        wait_for(lambda: env.receiver.events("gateway.insert"), what="the redelivery")
        # The receiver has the event a moment before the dispatcher records the 2xx.
        (final,) = wait_for(
            lambda: [
                d
                for d in deliveries(api, hook["id"])
                if d["id"] == dead["id"] and d["state"] == "delivered"
            ],
            what="the delivery marked delivered",
        )
    assert final["id"] == dead["id"] and final["state"] == "delivered"
    assert len(final["attempt_log"]) == MAX_ATTEMPTS + 1
    (received,) = env.receiver.events("gateway.insert")
    assert received.json["rows"][0]["body"] == "into the void"


def test_a_write_that_rolls_back_produces_no_event(env: Env, hook: dict[str, Any]) -> None:
    with env.api() as api:
        insert(api, "taken")
        wait_for(lambda: env.receiver.events(), what="the first event")
        env.receiver.clear()
        # a unique violation: the statement fails, nothing commits
        failed = api.put(
            "/gateway/insert", json={"table_name": "notes", "insert_body": {"body": "taken"}}
        )
        assert failed.status_code >= 400
        # PostgREST's tx=rollback: the insert runs, then is rolled back on purpose
        rolled = api.post(
            "/rest/v1/notes", json={"body": "rolled back"},
            headers={"Prefer": "tx=rollback,return=representation"},
        )  # fmt: skip
        assert rolled.status_code in (200, 201), rolled.text
        # a transaction whose second operation fails takes the first one's insert with it
        tx = api.post(
            "/gateway/transaction",
            json={"operations": [
                {"id": "a", "kind": "insert",
                 "payload": {"table_name": "notes", "insert_body": {"body": "in tx"}}},
                {"id": "b", "kind": "insert",
                 "payload": {"table_name": "notes", "insert_body": {"body": "taken"}}},
            ]},
        )  # fmt: skip
        assert tx.status_code >= 400, tx.text
        insert(api, "after")
        wait_for(lambda: env.receiver.events(), what="the event after")
        time.sleep(1.0)  # the movers and dispatchers of both instances made several passes
    assert [r.json["rows"][0]["body"] for r in env.receiver.events()] == ["after"]
    with env.pg.connect(env.data_db, superuser=True) as conn:
        bodies = [r[0] for r in conn.execute("SELECT body FROM notes ORDER BY id")]
    assert bodies == ["taken", "after"]


def test_1000_inserts_on_two_instances_give_1000_deliveries_none_twice(
    env: Env, hook: dict[str, Any]
) -> None:
    total = 1000
    written: dict[str, float] = {}

    def write(server: AthenaServer, start: int) -> None:
        with env.api(server) as api:
            for i in range(start, total, 2):
                insert(api, f"bulk {i}", i)
                written[f"bulk {i}"] = time.time()

    started = time.time()
    threads = [threading.Thread(target=write, args=(s, i)) for i, s in enumerate((env.a, env.b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_for(lambda: len(env.receiver.events()) >= total, timeout=120, what="1000 deliveries")
    time.sleep(1.0)  # nothing more may arrive
    got = env.receiver.events()
    assert len(got) == total
    bodies = [r.json["rows"][0]["body"] for r in got]
    assert sorted(bodies) == sorted(f"bulk {i}" for i in range(total))
    assert len({r.headers["X-Athena-Delivery"] for r in got}) == total
    # in order per webhook: delivery ids arrive ascending
    ids = [int(r.headers["X-Athena-Delivery"]) for r in got]
    assert ids == sorted(ids)
    latencies = sorted((r.at - written[r.json["rows"][0]["body"]]) * 1000 for r in got)
    print(
        f"\nwebhooks: {total} deliveries in {got[-1].at - started:.2f}s; latency write→receiver "
        f"p50 {statistics.median(latencies):.1f} ms, p99 {latencies[int(total * 0.99) - 1]:.1f} ms"
    )
