"""Job control and schedules across instances: two gateways (plus one that gets killed) share
one catalog, one S3 server and the client databases, with short heartbeat and scheduler
intervals so that crashes and due schedules show up within seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
from backup_support import AWS_ENV, BUCKET
from support.pg import TestPostgres
from support.receiver import Receiver, valid_signature, wait_for
from support.servers import AthenaServer, server_env

from athena.db.catalog import migrate

PREFIX = "backups-sched"
ORPHAN_SECONDS = "3"

SMALL_SQL = """
CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL);
INSERT INTO items (name) SELECT 'item ' || g FROM generate_series(1, 200) g;
"""


@dataclass
class Cluster:
    a: AthenaServer
    b: AthenaServer
    env: dict[str, str]
    pg: TestPostgres
    s3: Any
    catalog_db: str
    databases: dict[str, str]
    admin_key: str
    root: Path

    def client(self, server: AthenaServer) -> httpx.Client:
        return httpx.Client(
            base_url=server.url, headers={"X-Athena-Admin-Key": self.admin_key}, timeout=60
        )

    def catalog(self) -> psycopg.Connection:
        return self.pg.connect(self.catalog_db, superuser=True)

    def keys(self, client_name: str) -> list[str]:
        listed = self.s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/{client_name}/")
        return sorted(o["Key"] for o in listed.get("Contents", []))

    def uploads(self, client_name: str) -> list[str]:
        found = self.s3.list_multipart_uploads(Bucket=BUCKET, Prefix=f"{PREFIX}/{client_name}/")
        return [u["Key"] for u in found.get("Uploads", [])]


@pytest.fixture(scope="module")
def cluster(
    pg: TestPostgres,
    admin_key: str,
    s3_endpoint: str,
    s3_client: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    databases = {name: pg.create_database() for name in ("small", "slow", "sched", "kept")}
    for db in databases.values():
        with pg.connect(db) as conn:
            conn.execute(SMALL_SQL)
    catalog_db = pg.create_database(owner="postgres")
    with psycopg.connect(pg.superuser_uri(catalog_db), autocommit=True) as conn:
        migrate(conn)
    env = server_env(
        catalog_uri=pg.superuser_uri(catalog_db),
        admin_key=admin_key,
        clients={name: {"pg_uri": pg.app_uri(db)} for name, db in databases.items()},
        backup_s3_bucket=BUCKET,
        backup_s3_prefix=PREFIX,
        backup_s3_endpoint=s3_endpoint,
        backup_job_orphan_seconds=ORPHAN_SECONDS,
        backup_scheduler_interval_s="0.3",
        # backup.failed webhooks of cancelled and orphaned jobs go to a receiver on loopback
        outbound_allow_http="true",
        outbound_allow_cidrs="127.0.0.0/8",
        webhook_poll_seconds="0.2",
    )
    env.update(AWS_ENV)
    root = tmp_path_factory.mktemp("athena-schedules")
    a = AthenaServer(root / "a", env).start()
    b = AthenaServer(root / "b", env).start()
    yield Cluster(a, b, env, pg, s3_client, catalog_db, databases, admin_key, root)
    a.stop()
    b.stop()


@pytest.fixture
def failed_hook(cluster: Cluster) -> Iterator[tuple[Receiver, dict[str, Any]]]:
    """A receiver and a webhook on backup.failed, for the duration of one test."""
    receiver = Receiver().start()
    with cluster.client(cluster.a) as api:
        created = api.post(
            "/admin/webhooks",
            json={"name": "failures", "url": receiver.url, "events": ["backup.failed"]},
        )
        assert created.status_code == 201, created.text
        yield receiver, created.json()
        api.delete(f"/admin/webhooks/{created.json()['id']}")
    receiver.stop()


def failure_event(
    hook: tuple[Receiver, dict[str, Any]], job_id: int, timeout: float = 30
) -> dict[str, Any]:
    receiver, webhook = hook

    def arrived() -> Any:
        return next(
            (r for r in receiver.events("backup.failed") if r.json["job"]["id"] == job_id), None
        )

    received = wait_for(arrived, timeout, f"backup.failed of job {job_id}")
    assert valid_signature(received, webhook["secret"])
    return received.json  # type: ignore[no-any-return]


def error_code(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    return str(response.json()["code"])


class TableLock:
    """Holds ACCESS EXCLUSIVE on ``items`` so that pg_dump waits (a long dump, on demand)."""

    def __init__(self, pg: TestPostgres, db: str) -> None:
        self.conn = pg.connect(db, superuser=True)
        self.conn.autocommit = False
        self.conn.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")

    def release(self) -> None:
        self.conn.rollback()
        self.conn.close()


def dump_backends(pg: TestPostgres, db: str) -> int:
    with pg.connect(db, superuser=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = %s AND application_name = 'athena-backups'",
            (db,),
        ).fetchone()
        assert row is not None
        return int(row[0])


def running_job(api: httpx.Client, client_name: str) -> dict[str, Any] | None:
    jobs = api.get("/admin/backups/jobs", params={"client_name": client_name}).json()["jobs"]
    return next((j for j in jobs if j["state"] == "running" and j["phase"] == "dumping"), None)


def reaped(cluster: Cluster, job_id: int) -> dict[str, Any]:
    """The job once it is no longer running: a dead gateway's job ends only by the reaper."""
    with cluster.client(cluster.a) as api:
        return wait_for(
            lambda: (lambda j: j if j["state"] != "running" else None)(
                api.get(f"/admin/backups/jobs/{job_id}").json()["job"]
            ),
            timeout=float(ORPHAN_SECONDS) * 5,
            what="the reaper",
        )


# -- jobs --------------------------------------------------------------------------------------


def test_a_job_has_an_integer_id_a_log_and_can_be_deleted_once_finished(cluster: Cluster) -> None:
    with cluster.client(cluster.a) as api:
        created = api.post("/admin/backups", json={"client_name": "small", "label": "one"})
        assert created.status_code == 200, created.text
        job_id = created.json()["job_id"]
        assert isinstance(job_id, int)

        job = api.get(f"/admin/backups/jobs/{job_id}").json()["job"]
        assert job["id"] == job_id and job["state"] == "succeeded"
        messages = [line["message"] for line in job["log"]]
        assert messages[0].startswith("backup of client 'small' queued")
        assert "started" in messages
        assert any(m.startswith("connected to PostgreSQL") for m in messages)
        assert messages[-1].startswith("succeeded")
        # The job's UUID (the id before integer ids) still resolves, on the other instance too.
        with cluster.client(cluster.b) as other:
            by_uuid = other.get(f"/admin/backups/jobs/{job['uuid']}").json()["job"]
        assert by_uuid["id"] == job_id

        assert error_code(api.post(f"/admin/backups/jobs/{job_id}/cancel"), 409) == (
            "backup_job_finished"
        )
        deleted = api.delete(f"/admin/backups/jobs/{job_id}")
        assert deleted.json() == {"id": job_id, "deleted": True}
        assert error_code(api.get(f"/admin/backups/jobs/{job_id}"), 404) == "backup_job_not_found"
        assert error_code(api.delete(f"/admin/backups/jobs/{job_id}"), 404) == (
            "backup_job_not_found"
        )
        # Deleting the job forgets it; its backup stays in S3.
        assert created.json()["key"] in cluster.keys("small")


def test_jobs_and_backups_page_with_limit_and_cursor(cluster: Cluster) -> None:
    with cluster.client(cluster.a) as api:
        for _ in range(3):
            assert api.post("/admin/backups", json={"client_name": "small"}).status_code == 200
        seen: list[int] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"client_name": "small", "limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = api.get("/admin/backups/jobs", params=params).json()
            assert len(page["jobs"]) <= 2
            seen += [j["id"] for j in page["jobs"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen)) >= 3
        everything = api.get("/admin/backups/jobs", params={"client_name": "small"}).json()
        assert [j["id"] for j in everything["jobs"]] == seen

        keys: list[str] = []
        cursor = None
        while True:
            params = {"client_name": "small", "limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = api.get("/admin/backups", params=params).json()
            keys += [b["key"] for b in page["backups"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(keys) == cluster.keys("small") and len(keys) >= 3
        plain = api.get("/admin/backups", params={"client_name": "small"}).json()
        assert "next_cursor" not in plain
        assert sorted(b["key"] for b in plain["backups"]) == sorted(keys)
        stamps = [k.rsplit("/", 1)[1][:16] for k in keys]  # newest first, by the key's stamp
        assert stamps == sorted(stamps, reverse=True)

        assert error_code(api.get("/admin/backups/jobs", params={"cursor": "%%%"}), 400) == (
            "invalid_pagination"
        )


def test_backup_config_names_the_storage_and_no_secret(cluster: Cluster) -> None:
    with cluster.client(cluster.a) as api:
        response = api.get("/admin/backups/config")
    config = response.json()
    assert config["configured"] is True
    assert config["bucket"] == BUCKET and config["prefix"] == PREFIX
    assert config["endpoint"].startswith("http://127.0.0.1:")
    assert config["region"] == "us-east-1"
    assert AWS_ENV["AWS_SECRET_ACCESS_KEY"] not in response.text
    assert AWS_ENV["AWS_ACCESS_KEY_ID"] not in response.text


def test_cancel_stops_a_long_pg_dump_from_another_instance(
    cluster: Cluster, failed_hook: tuple[Receiver, dict[str, Any]]
) -> None:
    lock = TableLock(cluster.pg, cluster.databases["slow"])
    answers: list[httpx.Response] = []
    try:
        with cluster.client(cluster.a) as api:
            waiter = threading.Thread(
                target=lambda: answers.append(
                    api.post("/admin/backups", json={"client_name": "slow"})
                )
            )
            waiter.start()
            job = wait_for(lambda: running_job(api, "slow"), what="the dump to start")
            # pg_dump is connected, waiting for its lock: a dump that would take a minute.
            wait_for(lambda: dump_backends(cluster.pg, cluster.databases["slow"]) > 0)
            assert cluster.uploads("slow"), "the multipart upload is open"

            started = time.monotonic()
            with cluster.client(cluster.b) as other:  # B asks; A runs the job
                cancelled = other.post(f"/admin/backups/jobs/{job['id']}/cancel")
            assert cancelled.status_code == 200, cancelled.text
            assert time.monotonic() - started < 10
            record = cancelled.json()["job"]
            assert record["state"] == "cancelled" and record["cancel_requested_at"]
            messages = [line["message"] for line in record["log"]]
            assert "cancel requested" in messages
            assert "the S3 upload was aborted" in messages
            waiter.join(30)
    finally:
        lock.release()
    assert answers and error_code(answers[0], 409) == "backup_job_cancelled"
    # pg_dump is gone, no upload is left open and no object was written.
    wait_for(lambda: dump_backends(cluster.pg, cluster.databases["slow"]) == 0, 10)
    assert cluster.uploads("slow") == []
    assert cluster.keys("slow") == []
    # a cancelled job is a failed backup to its webhooks, with the state that says why
    event = failure_event(failed_hook, job["id"])
    assert event["client"] == "slow" and event["job"]["state"] == "cancelled"
    assert event["job"]["error_code"] == "backup_job_cancelled"


def test_an_instance_killed_mid_backup_leaves_the_job_failed(
    cluster: Cluster, failed_hook: tuple[Receiver, dict[str, Any]]
) -> None:
    doomed = AthenaServer(cluster.root / "doomed", cluster.env).start()
    lock = TableLock(cluster.pg, cluster.databases["slow"])
    try:
        with cluster.client(doomed) as api:
            threading.Thread(
                target=lambda: _quietly(
                    lambda: api.post("/admin/backups", json={"client_name": "slow"})
                ),
                daemon=True,
            ).start()
        # Dumping as the catalog records it (asked of the other instance): the phase and the open
        # upload's id are written together, so the reaper knows the upload to abort. Asked of
        # the doomed gateway itself, its memory says "dumping" a moment before that write
        # commits, and a kill in between left the upload unknown to everyone.
        with cluster.client(cluster.a) as other:
            job = wait_for(lambda: running_job(other, "slow"), what="the dump to start")
        assert doomed.proc is not None
        doomed.proc.kill()  # SIGKILL: no chance to record anything
        doomed.proc.wait()
        final = reaped(cluster, job["id"])
        assert final["state"] == "failed"
        assert final["error_code"] == "service_unavailable"
        assert final["finished_at"]
        # The reaper also aborted the multipart upload the dead gateway left open.
        wait_for(lambda: cluster.uploads("slow") == [], 10, "the orphaned upload to go")
        # and the job's backup.failed went out, though its own gateway died: the reaper
        # records the end and its deliveries in one transaction
        event = failure_event(failed_hook, job["id"])
        assert event["job"]["state"] == "failed"
        assert event["job"]["error_code"] == "service_unavailable"
        assert event["job"]["backup_key"] == final["backup_key"]
    finally:
        lock.release()
        doomed.stop()


def test_an_upload_opened_but_never_recorded_is_aborted_by_the_reaper(cluster: Cluster) -> None:
    """A gateway that dies between CreateMultipartUpload and the catalog write of the upload's
    id leaves an upload no row names. The dead job's row (as that gateway left it: running,
    no upload id, heartbeats stopped) is made here, and the upload opened on real S3 under the
    job's key; the reaper must fail the job and abort every upload to that key."""
    import uuid

    job_uuid = uuid.uuid4()
    stamp = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y%m%dT%H%M%SZ")
    key = f"{PREFIX}/kept/{stamp}-{job_uuid}.dump.gz"
    cluster.s3.create_multipart_upload(Bucket=BUCKET, Key=key)
    other_key = f"{PREFIX}/kept/{stamp}-{uuid.uuid4()}.dump.gz"  # someone else's, left alone
    other = cluster.s3.create_multipart_upload(Bucket=BUCKET, Key=other_key)["UploadId"]
    try:
        with cluster.catalog() as conn:
            job_id = conn.execute(
                """INSERT INTO athena.backup_jobs
                       (uuid, kind, client_name, state, phase, backup_key, started_at,
                        heartbeat_at, created_at)
                   VALUES (%s, 'backup', 'kept', 'running', 'connecting', %s,
                           now() - interval '1 minute', now() - interval '1 minute',
                           now() - interval '1 minute')
                   RETURNING id""",
                (job_uuid, key),
            ).fetchone()[0]

        def open_uploads(k: str) -> list[str]:
            found = cluster.s3.list_multipart_uploads(Bucket=BUCKET, Prefix=k)
            return [u["UploadId"] for u in found.get("Uploads", []) if u["Key"] == k]

        final = reaped(cluster, job_id)
        assert final["state"] == "failed" and final["error_code"] == "service_unavailable"
        wait_for(lambda: open_uploads(key) == [], 10, "the unrecorded upload to be aborted")
        assert open_uploads(other_key) == [other]
    finally:
        cluster.s3.abort_multipart_upload(Bucket=BUCKET, Key=other_key, UploadId=other)


def _quietly(call: Callable[[], Any]) -> None:
    try:
        call()
    except httpx.HTTPError:
        pass  # the server was killed under the request


# -- schedules ---------------------------------------------------------------------------------


def test_schedules_validate_and_compute_their_next_run(cluster: Cluster) -> None:
    with cluster.client(cluster.a) as api:
        created = api.post(
            "/admin/backups/schedules",
            json={
                "client_name": "small", "frequency": "daily", "time_of_day": "02:30",
                "timezone": "Europe/Paris", "label": "nightly", "retention": 7,
            },
        )  # fmt: skip
        assert created.status_code == 201, created.text
        schedule = created.json()
        assert isinstance(schedule["id"], int)
        assert schedule["cron"] == "30 2 * * *" and schedule["enabled"] is True
        next_run = datetime.fromisoformat(schedule["next_run_at"])
        now = datetime.now(UTC)
        assert now < next_run <= now + timedelta(days=1, hours=1)
        local = next_run.astimezone(ZoneInfo("Europe/Paris"))
        assert (local.hour, local.minute) == (2, 30)
        assert schedule["last_run_at"] is None and schedule["last_job_id"] is None

        sid = schedule["id"]
        switched = api.patch(f"/admin/backups/schedules/{sid}", json={"enabled": False}).json()
        assert switched["enabled"] is False and switched["next_run_at"] is None
        cron = api.patch(
            f"/admin/backups/schedules/{sid}",
            json={"frequency": "*/5 * * * *", "time_of_day": None, "enabled": True},
        ).json()
        assert cron["cron"] == "*/5 * * * *"
        assert datetime.fromisoformat(cron["next_run_at"]).minute % 5 == 0
        listed = api.get("/admin/backups/schedules").json()["schedules"]
        assert sid in [s["id"] for s in listed]

        for bad in (
            {"client_name": "small", "frequency": "sometimes"},
            {"client_name": "small", "frequency": "* * *"},
            {"client_name": "small", "frequency": "daily", "time_of_day": "25:00"},
            {"client_name": "small", "frequency": "weekly", "day_of_week": 9},
            {"client_name": "small", "frequency": "monthly", "day_of_month": 31},
            {"client_name": "small", "frequency": "daily", "day_of_week": 1},
            {"client_name": "small", "frequency": "daily", "timezone": "Mars/Olympus"},
            {"client_name": "small", "frequency": "daily", "retention": 0},
            {"client_name": "small", "frequency": "daily", "colour": "red"},
            {"frequency": "daily"},
        ):
            assert error_code(api.post("/admin/backups/schedules", json=bad), 400) == (
                "invalid_schedule"
            ), bad
        unknown = api.post(
            "/admin/backups/schedules", json={"client_name": "nope", "frequency": "daily"}
        )
        assert error_code(unknown, 400) == "unknown_client"

        assert api.delete(f"/admin/backups/schedules/{sid}").json() == {"id": sid, "deleted": True}
        assert error_code(api.get(f"/admin/backups/schedules/{sid}"), 404) == (
            "backup_schedule_not_found"
        )
        assert error_code(api.post(f"/admin/backups/schedules/{sid}/run"), 404) == (
            "backup_schedule_not_found"
        )


def test_a_due_schedule_runs_exactly_once_across_two_instances(cluster: Cluster) -> None:
    with cluster.client(cluster.a) as api:
        schedule = api.post(
            "/admin/backups/schedules", json={"client_name": "sched", "frequency": "hourly"}
        ).json()
        sid = schedule["id"]
        # Due since three hours: three slots missed while "every instance was down".
        with cluster.catalog() as conn:
            conn.execute(
                "UPDATE athena.backup_schedules SET next_run_at = now() - interval '3 hours'"
                " WHERE id = %s",
                (sid,),
            )
        done = wait_for(
            lambda: (lambda s: s if s["last_status"] == "succeeded" else None)(
                api.get(f"/admin/backups/schedules/{sid}").json()
            ),
            what="the scheduled backup",
        )
        time.sleep(2)  # several more passes of both schedulers
        with cluster.catalog() as conn:
            rows = conn.execute(
                "SELECT id FROM athena.backup_jobs WHERE schedule_id = %s", (sid,)
            ).fetchall()
        assert [r[0] for r in rows] == [done["last_job_id"]]
        assert datetime.fromisoformat(done["next_run_at"]) > datetime.now(UTC)
        assert datetime.fromisoformat(done["last_run_at"]) <= datetime.now(UTC)
        assert len(cluster.keys("sched")) == 1
        api.delete(f"/admin/backups/schedules/{sid}")


def test_a_run_missed_while_every_instance_was_down_runs_once_at_start_up(
    pg: TestPostgres, admin_key: str, s3_endpoint: str, s3_client: Any, tmp_path: Path
) -> None:
    """Its own catalog, so no other instance is up: the schedule is made, the only gateway
    stops, three hourly slots pass (the catalog is moved back), and the gateway that starts
    next runs the schedule once — then computes the next slot from now."""
    db = pg.create_database()
    with pg.connect(db) as conn:
        conn.execute(SMALL_SQL)
    catalog_db = pg.create_database(owner="postgres")
    with psycopg.connect(pg.superuser_uri(catalog_db), autocommit=True) as conn:
        migrate(conn)
    env = server_env(
        catalog_uri=pg.superuser_uri(catalog_db), admin_key=admin_key,
        clients={"late": {"pg_uri": pg.app_uri(db)}},
        backup_s3_bucket=BUCKET, backup_s3_prefix=PREFIX, backup_s3_endpoint=s3_endpoint,
        backup_scheduler_interval_s="0.3",
    )  # fmt: skip
    env.update(AWS_ENV)
    headers = {"X-Athena-Admin-Key": admin_key}
    server = AthenaServer(tmp_path / "gw", env).start()
    try:
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as api:
            created = api.post(
                "/admin/backups/schedules", json={"client_name": "late", "frequency": "hourly"}
            )
            assert created.status_code == 201, created.text
            sid = created.json()["id"]
        server.stop()  # every instance is down
        with pg.connect(catalog_db, superuser=True) as conn:
            conn.execute(
                "UPDATE athena.backup_schedules SET next_run_at = now() - interval '3 hours'"
                " WHERE id = %s",
                (sid,),
            )
        server = AthenaServer(tmp_path / "next", env).start()  # another gateway comes up
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as api:
            done = wait_for(
                lambda: (lambda s: s if s["last_status"] == "succeeded" else None)(
                    api.get(f"/admin/backups/schedules/{sid}").json()
                ),
                what="the missed run",
            )
            time.sleep(1.5)  # several more scheduler passes
            jobs = api.get("/admin/backups/jobs", params={"client_name": "late"}).json()["jobs"]
        assert [j["id"] for j in jobs] == [done["last_job_id"]]  # once, not once per slot
        assert datetime.fromisoformat(done["next_run_at"]) > datetime.now(UTC)
    finally:
        server.stop()


def test_retention_deletes_the_oldest_backups_of_the_schedule(cluster: Cluster) -> None:
    with cluster.client(cluster.a) as api:
        sid = api.post(
            "/admin/backups/schedules",
            json={"client_name": "kept", "frequency": "monthly", "retention": 2},
        ).json()["id"]
        keys = []
        for _ in range(3):
            started = api.post(f"/admin/backups/schedules/{sid}/run")
            assert started.status_code == 202, started.text
            job_id = started.json()["job_id"]
            job = wait_for(
                lambda job_id=job_id: (lambda j: j if j["state"] == "succeeded" else None)(
                    api.get(f"/admin/backups/jobs/{job_id}").json()["job"]
                ),
                what="the backup",
            )
            keys.append(job["backup_key"])
            time.sleep(1.1)  # distinct key stamps (one per second)
        wait_for(lambda: cluster.keys("kept") == sorted(keys[1:]), 15, "retention")
        oldest = api.get(f"/admin/backups/jobs/{started.json()['job_id'] - 2}").json()["job"]
        assert oldest["backup_key"] == keys[0] and oldest["pruned_at"]
        assert any("retention" in line["message"] for line in oldest["log"])
        schedule = api.get(f"/admin/backups/schedules/{sid}").json()
        assert schedule["last_status"] == "succeeded"
        assert schedule["last_job_id"] == started.json()["job_id"]
        api.delete(f"/admin/backups/schedules/{sid}")


def test_cli_schedules_list_create_run_delete(cluster: Cluster) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATHENA_")}
    env["ATHENA_KEY_12"] = cluster.admin_key

    def athena(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "athena", "backup", "schedules", *args, "--url", cluster.a.url],
            env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    created = athena("create", "small", "--frequency", "weekly", "--time", "03:15",
                     "--day-of-week", "1", "--retention", "3")  # fmt: skip
    assert created.returncode == 0, created.stderr
    schedule = json.loads(created.stdout)
    assert schedule["cron"] == "15 3 * * 1" and schedule["retention"] == 3
    listed = athena("list", "--json")
    assert schedule["id"] in [s["id"] for s in json.loads(listed.stdout)]
    assert "15 3 * * 1" in athena("list").stdout
    ran = athena("run", str(schedule["id"]))
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["schedule_id"] == schedule["id"]
    assert athena("delete", str(schedule["id"])).returncode == 0
    missing = athena("delete", str(schedule["id"]))
    assert missing.returncode == 1 and "no backup schedule" in missing.stderr
    bad = athena("create", "small", "--frequency", "fortnightly")
    assert bad.returncode == 1 and "frequency" in bad.stderr
