"""A gateway killed while it delivers webhooks loses nothing: another instance takes over the
webhook once the dead one's lease lapses and delivers every event, in order; only the delivery
that was in flight at the kill may arrive twice. Own catalog and client database, so that the
gateway to be killed is the only one that can hold the lease."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from support.pg import TestPostgres
from support.receiver import Receiver, valid_signature, wait_for
from support.servers import AthenaServer, server_env

from athena.db.catalog import migrate

EVENTS = 20


@pytest.fixture
def setup(
    pg: TestPostgres, admin_key: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[dict[str, str], Receiver, Path, TestPostgres, str]]:
    data_db = pg.create_database()
    with pg.connect(data_db) as conn:
        conn.execute("CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)")
    catalog_db = pg.create_database(owner="postgres")
    with psycopg.connect(pg.superuser_uri(catalog_db), autocommit=True) as conn:
        migrate(conn)
    settings = server_env(
        catalog_uri=pg.superuser_uri(catalog_db),
        admin_key=admin_key,
        clients={"data": {"pg_uri": pg.app_uri(data_db)}},
        outbound_allow_http="true",
        outbound_allow_cidrs="127.0.0.0/8",
        webhook_refresh_seconds="0.2",
        webhook_poll_seconds="0.2",
        webhook_lease_seconds="1",  # the survivor takes over a second after the kill
        webhook_timeout_s="30",  # the held delivery is in flight, not timed out, at the kill
    )
    receiver = Receiver().start()
    yield settings, receiver, tmp_path_factory.mktemp("athena-webhook-crash"), pg, data_db
    if receiver.hold is not None:
        receiver.hold.set()
    receiver.stop()


def test_a_gateway_killed_mid_delivery_loses_no_event(
    setup: tuple[dict[str, str], Receiver, Path, TestPostgres, str], admin_key: str
) -> None:
    settings, receiver, root, pg, data_db = setup
    headers = {"apikey": admin_key, "X-Athena-Admin-Key": admin_key, "X-Athena-Client": "data"}
    doomed = AthenaServer(root / "doomed", settings).start()
    survivor = AthenaServer(root / "survivor", settings)
    try:
        with httpx.Client(base_url=doomed.url, headers=headers, timeout=30) as api:
            created = api.post(
                "/admin/webhooks",
                json={"name": "notes", "url": receiver.url, "client_name": "data",
                      "events": ["gateway.insert"]},
            )  # fmt: skip
            assert created.status_code == 201, created.text
            hook: dict[str, Any] = created.json()
            time.sleep(0.6)  # the instance reloads its webhooks (refresh 0.2 s)
            receiver.hold = threading.Event()  # the first delivery will hang in flight
            for i in range(EVENTS):
                response = api.put(
                    "/gateway/insert",
                    json={"table_name": "notes", "insert_body": {"body": f"n{i}"}},
                )
                assert response.status_code in (200, 201), response.text
        wait_for(lambda: receiver.events(), what="the first delivery to be in flight")
        doomed.stop(signal.SIGKILL)  # no chance to record the attempt or hand the lease back
        held, receiver.hold = receiver.hold, None
        held.set()  # the hung handler answers a dead connection

        survivor.start()
        wait_for(
            lambda: (
                {r.json["rows"][0]["body"] for r in receiver.events()}
                >= {f"n{i}" for i in range(EVENTS)}
            ),
            timeout=60,
            what="every event after the takeover",
        )
        got = receiver.events()
        for r in got:
            assert valid_signature(r, hook["secret"])
        times = Counter(r.headers["X-Athena-Delivery"] for r in got)
        first = got[0].headers["X-Athena-Delivery"]
        # the delivery in flight at the kill was never recorded as sent: the survivor sends it
        # again (at least once); every other one went out exactly once
        assert {d: n for d, n in times.items() if n > 1} == {first: 2}, times
        assert len(times) == EVENTS
        firsts = list(dict.fromkeys(int(r.headers["X-Athena-Delivery"]) for r in got))
        assert firsts == sorted(firsts)  # still in order per webhook
        with httpx.Client(base_url=survivor.url, headers=headers, timeout=30) as api:

            def states() -> Counter[str]:
                return Counter(
                    d["state"]
                    for d in api.get(
                        f"/admin/webhooks/{hook['id']}/deliveries", params={"limit": 100}
                    ).json()["deliveries"]
                )

            # The receiver has the last event a moment before the dispatcher records its 2xx.
            try:
                wait_for(lambda: states() == {"delivered": EVENTS}, what="every delivery marked")
            except AssertionError:
                pass  # the assertion below shows what the states are
            final = states()
        assert final == {"delivered": EVENTS}, final
        with pg.connect(data_db, superuser=True) as conn:  # nothing left behind in the outbox
            assert conn.execute("SELECT count(*) FROM athena_outbox.events").fetchone() == (0,)
    finally:
        doomed.stop()
        survivor.stop()
