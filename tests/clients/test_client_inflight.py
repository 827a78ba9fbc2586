"""Freezing, re-pointing and soft-deleting clients while requests run: requests in flight finish,
other clients never notice, new requests see the new state."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from clients_support import Pair
from support.pg import TestPostgres


def _add(column: str) -> dict[str, Any]:
    return {"operations": [{"type": "add_column", "column": {"name": column, "data_type": "int"}}]}


def _register(pair: Pair, pg: TestPostgres, name: str, db: str) -> None:
    with pair.admin(pair.a) as admin:
        made = admin.post(
            "/admin/provision",
            json={"uri": pg.app_uri(db), "register": True, "register_name": name},
        )
        assert made.status_code == 200 and made.json()["registered"] == name, made.text
        with pair.admin(pair.a, **{"X-Athena-Client": name}) as c:
            assert c.post("/management/tables", json={"table_name": "busy"}).status_code == 201


def _blocked_patch(
    pair: Pair, pg: TestPostgres, db: str, name: str, column: str
) -> tuple[Any, Any]:
    """Start a PATCH on ``name`` that waits behind a lock we hold; returns (release, future)."""
    holder = pg.connect(db, superuser=True)
    holder.autocommit = False
    holder.execute("LOCK TABLE busy IN ACCESS EXCLUSIVE MODE")
    pool = ThreadPoolExecutor(1)

    def patch() -> httpx.Response:
        with pair.admin(pair.a, **{"X-Athena-Client": name}) as c:
            return c.patch("/management/tables/busy", json=_add(column))

    future = pool.submit(patch)
    # wait until the gateway's statement is really waiting on our lock
    with pg.connect(db, superuser=True) as probe:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            waiting = probe.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database()"
            ).fetchone()[0]
            if waiting:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the PATCH never reached the database")

    def release() -> None:
        holder.rollback()
        holder.close()
        pool.shutdown(wait=False)

    return release, future


def test_freeze_and_delete_while_requests_run(pair: Pair, pg: TestPostgres) -> None:
    dbs = [pg.create_database() for _ in range(3)]
    busy, steady, churn = "busy_cli", "steady_cli", "churn_cli"
    stop = threading.Event()
    try:
        _register(pair, pg, busy, dbs[0])
        _register(pair, pg, steady, dbs[1])

        # a steady stream of reads on another client for the whole test
        statuses: Counter[int] = Counter()

        def hammer() -> None:
            with pair.admin(pair.a, **{"X-Athena-Client": steady}) as c:
                while not stop.is_set():
                    statuses[c.get("/schema/tables").status_code] += 1

        readers = [threading.Thread(target=hammer) for _ in range(3)]
        for t in readers:
            t.start()

        # 1) freeze while a change is in flight: the accepted change completes
        release, future = _blocked_patch(pair, pg, dbs[0], busy, "added")
        with pair.admin(pair.a) as admin:
            assert (
                admin.put(f"/admin/clients/{busy}/freeze", json={"is_frozen": True}).status_code
                == 200
            )
            # churn a third client (add, re-point, delete) while both run
            for i in range(3):
                assert (
                    admin.post(
                        "/admin/clients", json={"client_name": churn, "pg_uri": pg.app_uri(dbs[2])}
                    ).status_code
                    == 201
                )
                assert (
                    admin.patch(
                        f"/admin/clients/{churn}", json={"pg_uri": pg.app_uri(dbs[1 + i % 2])}
                    ).status_code
                    == 200
                )
                assert admin.delete(f"/admin/clients/{churn}").status_code == 200
        time.sleep(0.3)
        release()
        done = future.result(timeout=20)
        assert done.status_code == 200, done.text
        with pair.admin(pair.a, **{"X-Athena-Client": busy}) as c:
            refused = c.patch("/management/tables/busy", json=_add("other"))
            assert refused.status_code == 403 and refused.json()["code"] == "client_frozen"
            assert c.get("/schema/tables").status_code == 200  # admin reads still work
        with pg.connect(dbs[0]) as conn:
            assert (
                conn.execute(
                    "SELECT count(*) FROM information_schema.columns WHERE table_name = 'busy' AND column_name = 'added'"
                ).fetchone()[0]
                == 1
            )

        # 2) soft-delete while a change is in flight: it completes, then the client is gone
        with pair.admin(pair.a) as admin:
            assert (
                admin.put(f"/admin/clients/{busy}/freeze", json={"is_frozen": False}).status_code
                == 200
            )
        release, future = _blocked_patch(pair, pg, dbs[0], busy, "added_again")
        with pair.admin(pair.a) as admin:
            assert admin.delete(f"/admin/clients/{busy}").status_code == 200
        time.sleep(0.3)
        release()
        done = future.result(timeout=20)
        assert done.status_code == 200, done.text
        with pair.admin(pair.a, **{"X-Athena-Client": busy}) as c:
            gone = c.get("/schema/tables")
            assert gone.status_code == 400 and gone.json()["code"] == "unknown_client"

        stop.set()
        for t in readers:
            t.join(10)
        # the other client never saw an error while all of that happened
        assert set(statuses) == {200}, statuses
        assert sum(statuses.values()) > 20
    finally:
        stop.set()
        with pair.admin(pair.a) as admin:
            for name in (busy, steady, churn):
                admin.delete(f"/admin/clients/{name}")
        for db in dbs:
            pg.drop_database(db)


def _wait_until_sleeping(pg: TestPostgres, db: str) -> None:
    """Block until the slow query is running in ``db`` (a fixed sleep is flaky under load)."""
    deadline = time.monotonic() + 15
    with pg.connect("postgres", superuser=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = %s AND state = 'active' AND query LIKE '%%pg_sleep%%'",
                (db,),
            ).fetchone()
            if row and row[0]:
                return
            time.sleep(0.05)
    raise AssertionError("the slow query never started")


def test_data_requests_in_flight_survive_freeze_and_delete(pair: Pair, pg: TestPostgres) -> None:
    db = pg.create_database()
    name = "hot_cli"
    sleepy = {"query": "SELECT 1 AS one FROM pg_sleep(1.5)"}
    try:
        with pair.admin(pair.a) as admin:
            made = admin.post(
                "/admin/clients", json={"client_name": name, "pg_uri": pg.app_uri(db)}
            )
            assert made.status_code == 201, made.text
        with ThreadPoolExecutor(2) as pool, pair.admin(pair.a) as admin:

            def slow() -> httpx.Response:
                with pair.admin(pair.a, **{"X-Athena-Client": name}) as c:
                    return c.post("/gateway/query", json=sleepy)

            running = pool.submit(slow)
            _wait_until_sleeping(pg, db)
            assert (
                admin.put(f"/admin/clients/{name}/freeze", json={"is_frozen": True}).status_code
                == 200
            )
            finished = running.result(timeout=20)
            assert finished.status_code == 200, finished.text
            assert finished.json()["data"] == [{"one": 1}]

            with pair.admin(pair.a, **{"X-Athena-Client": name}) as c:
                for method, path, body in [
                    ("POST", "/gateway/query", {"query": "SELECT 1"}),
                    ("POST", "/gateway/fetch", {"table_name": "x"}),
                ]:
                    refused = c.request(method, path, json=body)
                    assert refused.status_code == 403, refused.text
                    assert refused.json()["code"] == "client_frozen"
                assert c.get("/schema/tables").status_code == 200

            assert (
                admin.put(f"/admin/clients/{name}/freeze", json={"is_frozen": False}).status_code
                == 200
            )
            running = pool.submit(slow)
            _wait_until_sleeping(pg, db)
            assert admin.delete(f"/admin/clients/{name}").status_code == 200
            finished = running.result(timeout=20)
            assert finished.status_code == 200, finished.text
            with pair.admin(pair.a, **{"X-Athena-Client": name}) as c:
                gone = c.post("/gateway/query", json={"query": "SELECT 1"})
                assert gone.status_code == 400 and gone.json()["code"] == "unknown_client"
    finally:
        with pair.admin(pair.a) as admin:
            admin.delete(f"/admin/clients/{name}")
        pg.drop_database(db)
