"""backup.succeeded and backup.failed webhooks over real servers: a gateway with S3 on loopback
(moto's standalone server), real pg_dump runs against real databases, and a real receiver on
loopback. A backup's end is recorded in the catalog in the same transaction as its deliveries,
so every finished job has its event."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from support.pg import TestPostgres
from support.receiver import Receiver, valid_signature, wait_for
from support.s3 import aws_env, loopback_s3
from support.servers import AthenaServer, server_env

from athena.db.catalog import migrate

BUCKET = "athena-webhook-backups"
AWS = aws_env("webhook-backups")
# pg_dump cannot read a table under forced row-level security: the dump fails at once.
UNREADABLE_SQL = """
CREATE TABLE guarded (id int);
INSERT INTO guarded VALUES (1);
ALTER TABLE guarded ENABLE ROW LEVEL SECURITY;
ALTER TABLE guarded FORCE ROW LEVEL SECURITY;
CREATE POLICY nobody ON guarded USING (false);
"""


@dataclass
class Env:
    server: AthenaServer
    receiver: Receiver
    admin_key: str

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.server.url, headers={"X-Athena-Admin-Key": self.admin_key}, timeout=60
        )


@pytest.fixture(scope="module")
def env(
    pg: TestPostgres, admin_key: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Env]:
    good = pg.create_database()
    with pg.connect(good) as conn:
        conn.execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2)")
    bad = pg.create_database()
    with pg.connect(bad) as conn:
        conn.execute(UNREADABLE_SQL)  # type: ignore[arg-type]  # constant DDL
    catalog = pg.create_database(owner="postgres")
    with psycopg.connect(pg.superuser_uri(catalog), autocommit=True) as conn:
        migrate(conn)
    with loopback_s3(BUCKET, AWS) as endpoint:
        settings = server_env(
            catalog_uri=pg.superuser_uri(catalog),
            admin_key=admin_key,
            clients={"good": {"pg_uri": pg.app_uri(good)}, "bad": {"pg_uri": pg.app_uri(bad)}},
            backup_s3_bucket=BUCKET,
            backup_s3_prefix="hooks",
            backup_s3_endpoint=endpoint,
            outbound_allow_http="true",
            outbound_allow_cidrs="127.0.0.0/8",
            webhook_retry_base_s="0.05",
            webhook_retry_max_s="0.2",
            webhook_refresh_seconds="0.2",
            webhook_poll_seconds="0.2",
            webhook_timeout_s="2",
        )
        settings.update(AWS)
        receiver = Receiver().start()
        server = AthenaServer(tmp_path_factory.mktemp("athena-backup-hooks"), settings).start()
        try:
            yield Env(server, receiver, admin_key)
        finally:
            server.stop()
            receiver.stop()


def job_of(api: httpx.Client, client: str) -> dict[str, Any]:
    (job,) = api.get("/admin/backups/jobs", params={"client_name": client}).json()["jobs"]
    return api.get(f"/admin/backups/jobs/{job['id']}").json()["job"]  # type: ignore[no-any-return]


def test_backup_success_and_failure_each_arrive_signed_with_job_id_client_and_key(
    env: Env,
) -> None:
    with env.api() as api:
        names = {e["name"] for e in api.get("/admin/webhooks/events").json()["events"]}
        assert {"backup.succeeded", "backup.failed"} <= names
        created = api.post(
            "/admin/webhooks",
            json={"name": "backups", "url": env.receiver.url,
                  "events": ["backup.succeeded", "backup.failed"]},
        )  # fmt: skip
        assert created.status_code == 201, created.text
        hook = created.json()
        # only backups of "good": a failure of "bad" must not reach this one
        only_good = api.post(
            "/admin/webhooks",
            json={"name": "good only", "url": env.receiver.url + "?good",
                  "events": ["backup.failed"], "client_name": "good"},
        ).json()  # fmt: skip

        ok = api.post("/admin/backups", json={"client_name": "good", "label": "nightly"})
        assert ok.status_code == 200, ok.text
        failed = api.post("/admin/backups", json={"client_name": "bad"})
        assert failed.status_code == 502 and failed.json()["code"] == "backup_failed", failed.text
        good_job, bad_job = job_of(api, "good"), job_of(api, "bad")
        assert good_job["state"] == "succeeded" and bad_job["state"] == "failed"
        assert good_job["backup_key"] == ok.json()["key"]

        got = wait_for(lambda: len(env.receiver.events()) >= 2 and env.receiver.events(), what="2")
        by_event = {r.headers["X-Athena-Event"]: r for r in got}
        assert set(by_event) == {"backup.succeeded", "backup.failed"}
        for event, job in (("backup.succeeded", good_job), ("backup.failed", bad_job)):
            received = by_event[event]
            assert valid_signature(received, hook["secret"]), received.headers
            body = received.json
            assert body["event"] == event and body["client"] == job["client_name"]
            assert body["job"]["id"] == job["id"] and body["job"]["state"] == job["state"]
            assert body["job"]["backup_key"] == job["backup_key"]
            assert body["occurred_at"].endswith("Z")
        assert by_event["backup.succeeded"].json["job"]["label"] == "nightly"
        assert by_event["backup.succeeded"].json["job"]["size_bytes"] > 0
        assert by_event["backup.failed"].json["job"]["error_code"] == bad_job["error_code"]

        # the delivery log agrees, and the client-filtered webhook got nothing for "bad"
        def delivered() -> list[dict[str, Any]]:
            rows = api.get(f"/admin/webhooks/{hook['id']}/deliveries").json()["deliveries"]
            return rows if len(rows) >= 2 and all(d["state"] == "delivered" for d in rows) else []

        # The receiver has an event a moment before the dispatcher records its 2xx.
        logged = wait_for(delivered, what="both deliveries marked delivered")
        assert sorted(d["event"] for d in logged) == ["backup.failed", "backup.succeeded"]
        assert all(d["attempts"] == 1 for d in logged)
        time.sleep(0.5)  # several dispatcher passes: a wrong delivery would have gone out
        assert api.get(f"/admin/webhooks/{only_good['id']}/deliveries").json()["deliveries"] == []
        assert len(env.receiver.events()) == 2
