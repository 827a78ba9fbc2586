"""POST /gateway/transaction (and gateway.transaction on /wss/gateway): several gateway
operations in one database transaction, in the shape @xylex-group/athena's db.transaction([…])
sends (src/gateway/transaction.ts: {idempotency_key, operations[{id, kind, payload}],
options{deferrable, isolation_level, read_only}} → data.committed + positional results)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from support.keys import seed_key
from support.pg import TestPostgres
from support.servers import AthenaServer

SCHEMA = """
DROP TABLE IF EXISTS tx_ledger, tx_accounts CASCADE;
CREATE TABLE tx_accounts (id integer PRIMARY KEY, owner text NOT NULL,
                          balance integer NOT NULL CHECK (balance >= 0));
CREATE TABLE tx_ledger (id serial PRIMARY KEY, account integer REFERENCES tx_accounts(id),
                        amount integer NOT NULL);
CREATE OR REPLACE FUNCTION tx_total() RETURNS bigint LANGUAGE sql STABLE
    AS $$ SELECT coalesce(sum(balance), 0) FROM tx_accounts $$;
"""
CONTEXT = {"X-User-Id": "u1", "X-Company-Id": "c1", "X-Organization-Id": "o1"}


@pytest.fixture(scope="module")
def tx_schema(pg: TestPostgres, data_db: str) -> None:
    with pg.connect(data_db) as conn:
        conn.execute(SCHEMA)


@pytest.fixture
def db(pg: TestPostgres, data_db: str, tx_schema: None) -> Iterator[psycopg.Connection]:
    with pg.connect(data_db) as conn:
        conn.execute("TRUNCATE tx_ledger, tx_accounts RESTART IDENTITY")
        conn.execute("INSERT INTO tx_accounts VALUES (1, 'ann', 100), (2, 'bob', 50), (3, 'cy', 0)")
        yield conn


@pytest.fixture
def client(athena: AthenaServer, admin_key: str) -> Callable[..., httpx.Client]:
    made: list[httpx.Client] = []

    def make(key: str | None = None) -> httpx.Client:
        c = athena.client(apikey=key or admin_key, **{"X-Athena-Client": "athena", **CONTEXT})
        made.append(c)
        return c

    yield make  # type: ignore[misc]
    for c in made:
        c.close()


def sdk_body(operations: list[dict[str, Any]], key: str | None = None) -> dict[str, Any]:
    """Exactly what the SDK posts."""
    return {
        "idempotency_key": key,
        "operations": operations,
        "options": {"deferrable": False, "isolation_level": None, "read_only": False},
    }


def transfer(amount: int, *, source: int = 1, target: int = 2) -> list[dict[str, Any]]:
    """Five mixed operations: two updates, an insert, an rpc and a fetch."""
    return [
        {"id": "debit", "kind": "update", "payload": {
            "table_name": "tx_accounts", "update_body": {"balance": 100 - amount},
            "conditions": [{"eq_column": "id", "eq_value": source}]}},
        {"id": "credit", "kind": "update", "payload": {
            "table_name": "tx_accounts", "update_body": {"balance": 50 + amount},
            "conditions": [{"eq_column": "id", "eq_value": target}]}},
        {"id": "ledger", "kind": "insert", "payload": {
            "table_name": "tx_ledger", "insert_body": [
                {"account": source, "amount": -amount}, {"account": target, "amount": amount}]}},
        {"id": "total", "kind": "rpc", "payload": {"function": "tx_total"}},
        {"id": "check", "kind": "select", "payload": {
            "table_name": "tx_accounts", "columns": ["id", "balance"],
            "sort_by": {"field": "id", "direction": "asc"}}},
    ]  # fmt: skip


def balances(db: psycopg.Connection) -> list[tuple[int, int]]:
    return db.execute("SELECT id, balance FROM tx_accounts ORDER BY id").fetchall()


def test_five_mixed_operations_commit_with_positional_results(
    client: Callable[..., httpx.Client], db: psycopg.Connection
) -> None:
    res = client().post("/gateway/transaction", json=sdk_body(transfer(30)))
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["status"] == "success" and body["data"]["committed"] is True
    results = body["data"]["results"]
    assert [r["id"] for r in results] == ["debit", "credit", "ledger", "total", "check"]
    assert all(r["ok"] is True and r["status"] == 200 for r in results)
    assert results[0]["data"] == [{"id": 1, "owner": "ann", "balance": 70}]
    assert results[2]["count"] == 2
    assert results[3]["data"] == 150  # the function saw the transaction's own writes
    assert results[4]["data"] == [{"id": 1, "balance": 70}, {"id": 2, "balance": 80},
                                  {"id": 3, "balance": 0}]  # fmt: skip
    assert balances(db) == [(1, 70), (2, 80), (3, 0)]
    assert db.execute("SELECT account, amount FROM tx_ledger ORDER BY id").fetchall() == [
        (1, -30), (2, 30)
    ]  # fmt: skip


def test_a_failing_fourth_operation_leaves_no_trace_of_the_first_three(
    client: Callable[..., httpx.Client], db: psycopg.Connection
) -> None:
    ops = [
        *transfer(30)[:3],
        {"id": "overdraw", "kind": "update", "payload": {
            "table_name": "tx_accounts", "update_body": {"balance": -5},
            "conditions": [{"eq_column": "id", "eq_value": 3}]}},
        transfer(30)[4],
    ]  # fmt: skip
    res = client().post("/gateway/transaction", json=sdk_body(ops))
    assert res.status_code == 400, res.text
    body = res.json()
    assert body["status"] == "error" and body["code"] == "check_violation"
    assert body["data"]["committed"] is False
    assert body["data"]["failed_index"] == 3 and body["data"]["failed_id"] == "overdraw"
    assert body["data"]["error"]["code"] == "check_violation"
    assert balances(db) == [(1, 100), (2, 50), (3, 0)]
    assert db.execute("SELECT count(*) FROM tx_ledger").fetchone() == (0,)


def test_a_right_missing_on_the_fifth_operation_runs_nothing(
    client: Callable[..., httpx.Client], db: psycopg.Connection, catalog_uri: str
) -> None:
    key = seed_key(
        catalog_uri, rights=["tx_accounts.write", "tx_ledger.write", "tx_total.execute"]
    )  # but not tx_accounts.read, which the fifth (a select) needs
    res = client(key).post("/gateway/transaction", json=sdk_body(transfer(30)))
    assert res.status_code == 403, res.text
    body = res.json()
    assert body["code"] == "insufficient_rights"
    assert body["data"]["failed_index"] == 4 and body["data"]["committed"] is False
    assert balances(db) == [(1, 100), (2, 50), (3, 0)]
    assert db.execute("SELECT count(*) FROM tx_ledger").fetchone() == (0,)
    # with the right, the same key commits
    full = seed_key(
        catalog_uri,
        rights=["tx_accounts.write", "tx_accounts.read", "tx_ledger.write", "tx_total.execute"],
    )
    assert client(full).post("/gateway/transaction", json=sdk_body(transfer(30))).status_code == 200


def test_an_idempotency_key_replays_the_stored_answer(
    client: Callable[..., httpx.Client], db: psycopg.Connection
) -> None:
    http = client()
    first = http.post("/gateway/transaction", json=sdk_body(transfer(10), key="pay-42"))
    again = http.post("/gateway/transaction", json=sdk_body(transfer(10), key="pay-42"))
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert db.execute("SELECT count(*) FROM tx_ledger").fetchone() == (2,)  # ran once
    assert balances(db) == [(1, 90), (2, 60), (3, 0)]
    other = http.post("/gateway/transaction", json=sdk_body(transfer(10), key="pay-43"))
    assert other.status_code == 200
    assert db.execute("SELECT count(*) FROM tx_ledger").fetchone() == (4,)


def test_a_rolled_back_key_may_run_again(
    client: Callable[..., httpx.Client], db: psycopg.Connection
) -> None:
    http = client()
    failing = transfer(500)  # ann cannot pay 500: the first update violates the check
    assert (
        http.post("/gateway/transaction", json=sdk_body(failing, key="retry-1")).status_code == 400
    )
    assert (
        http.post("/gateway/transaction", json=sdk_body(transfer(5), key="retry-1")).status_code
        == 200
    )
    assert balances(db) == [(1, 95), (2, 55), (3, 0)]


def test_limits_and_bad_shapes(client: Callable[..., httpx.Client], db: psycopg.Connection) -> None:
    http = client()
    one = transfer(1)[4]
    too_many = http.post("/gateway/transaction", json=sdk_body([one] * 101))
    assert too_many.status_code == 400
    assert too_many.json()["data"]["max_operations"] == 100
    assert http.post("/gateway/transaction", json=sdk_body([one] * 100)).status_code == 200
    for bad in (
        {"operations": []},
        {"operations": [{"id": 1, "kind": "drop", "payload": {}}]},
        {"operations": [one], "options": {"isolation_level": "chaos"}},
    ):
        res = http.post("/gateway/transaction", json=bad)
        assert res.status_code == 400 and res.json()["status"] == "error", bad


def test_options_isolation_and_read_only(
    client: Callable[..., httpx.Client], db: psycopg.Connection
) -> None:
    body = sdk_body(transfer(30))
    body["options"] = {"isolation_level": "serializable", "read_only": True}
    res = client().post("/gateway/transaction", json=body)
    assert res.status_code >= 400 and res.json()["data"]["failed_index"] == 0
    assert balances(db) == [(1, 100), (2, 50), (3, 0)]
    body["operations"] = [transfer(1)[4], transfer(1)[3]]
    ok = client().post("/gateway/transaction", json=body)
    assert ok.status_code == 200 and ok.json()["data"]["results"][1]["data"] == 150


def test_raw_query_operations_need_gateway_query(
    client: Callable[..., httpx.Client], db: psycopg.Connection, catalog_uri: str
) -> None:
    ops = [
        {"id": "q", "kind": "query", "payload": {"query": "UPDATE tx_accounts SET balance = 1"}},
        {"id": "f", "kind": "fetch", "payload": {"table_name": "tx_accounts"}},
    ]
    key = seed_key(catalog_uri, rights=["tx_accounts.*"])
    denied = client(key).post("/gateway/transaction", json=sdk_body(ops))
    assert denied.status_code == 403 and denied.json()["data"]["failed_index"] == 0
    assert balances(db) == [(1, 100), (2, 50), (3, 0)]
    res = client().post("/gateway/transaction", json=sdk_body(ops))
    assert res.status_code == 200, res.text
    assert {r["balance"] for r in res.json()["data"]["results"][1]["data"]} == {1}


async def test_transaction_over_the_websocket(
    athena: AthenaServer, admin_key: str, db: psycopg.Connection
) -> None:
    import json

    import trio
    from trio_websocket import open_websocket_url

    headers = [(k.encode(), v.encode()) for k, v in
               {"apikey": admin_key, "X-Athena-Client": "athena", **CONTEXT}.items()]  # fmt: skip
    url = f"ws://127.0.0.1:{athena.port}/wss/gateway"
    async with open_websocket_url(url, extra_headers=headers) as ws:

        async def request(request_id: str, action: str, body: Any) -> dict[str, Any]:
            await ws.send_message(
                json.dumps({"request_id": request_id, "action": action, "body": body})
            )
            with trio.fail_after(15):
                while True:
                    message = json.loads(await ws.get_message())
                    if message.get("request_id") == request_id:
                        return message  # type: ignore[no-any-return]

        with trio.fail_after(10):
            await ws.get_message()  # the hello
        reply = await request("t1", "gateway.transaction", sdk_body(transfer(20)))
        assert reply["status"] == "success", reply
        assert reply["data"]["committed"] is True and len(reply["data"]["results"]) == 5
        failed = await request("t2", "gateway.transaction", sdk_body(transfer(999)))
        assert failed["status"] == "error" and failed["data"]["failed_index"] == 0
        called = await request("t3", "gateway.rpc", {"function": "tx_total"})
        assert called["data"] == 150 and called["count"] == 1
    assert balances(db) == [(1, 80), (2, 70), (3, 0)]


def test_raw_sql_in_a_transaction_is_held_to_the_gateway_query_rules(
    client: Callable[..., httpx.Client], db: psycopg.Connection
) -> None:
    http = client()
    fetch = {"id": "f", "kind": "fetch", "payload": {"table_name": "tx_accounts"}}
    sneaky = [
        {"id": "w", "kind": "update", "payload": {
            "table_name": "tx_accounts", "update_body": {"balance": 1},
            "conditions": [{"eq_column": "id", "eq_value": 1}]}},
        {"id": "c", "kind": "query", "payload": {"query": "COMMIT"}},
    ]  # fmt: skip
    refused = http.post("/gateway/transaction", json=sdk_body(sneaky))
    assert refused.status_code == 403 and refused.json()["code"] == "statement_refused"
    assert refused.json()["data"]["failed_index"] == 1
    assert balances(db) == [(1, 100), (2, 50), (3, 0)]  # nothing ran
    several = [
        {"id": "q", "kind": "query", "payload": {
            "query": "UPDATE tx_accounts SET balance = balance + 1; SELECT id FROM tx_accounts ORDER BY id"}},
        fetch,
    ]  # fmt: skip
    res = http.post("/gateway/transaction", json=sdk_body(several))
    assert res.status_code == 200, res.text
    assert res.json()["data"]["results"][0]["data"] == [{"id": 1}, {"id": 2}, {"id": 3}]
    assert balances(db) == [(1, 101), (2, 51), (3, 1)]
