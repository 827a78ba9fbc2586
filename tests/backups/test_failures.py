"""What goes wrong, and what the caller sees: envelopes, status codes, and no leftovers."""

from __future__ import annotations

import json
import time
import uuid
from urllib.parse import quote

import httpx
import pytest
from backup_support import AWS_ENV, PREFIX, BackupEnv, parse_sse, table_fingerprints
from support.servers import AthenaServer


def _error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "error" and body["code"] == code, body
    return body


@pytest.fixture(scope="module")
def backup_key(backup_env: BackupEnv) -> str:
    with backup_env.client() as api:
        response = api.post("/admin/backups", json={"client_name": "source"})
        assert response.status_code == 200, response.text
        return response.json()["key"]


def test_unconfigured_s3_is_503_naming_the_setting(athena: AthenaServer, admin_key: str) -> None:
    with athena.client(**{"X-Athena-Admin-Key": admin_key}) as api:
        key = quote("athena-backups/athena/x.dump.gz", safe="")
        for response in (
            api.post("/admin/backups", json={"client_name": "athena"}),
            api.get("/admin/backups"),
            api.get(f"/admin/backups/{key}/download"),
            api.delete(f"/admin/backups/{key}"),
            api.post(f"/admin/backups/{key}/restore", json={"client_name": "athena"}),
        ):
            body = _error(response, 503, "s3_not_configured")
            assert "ATHENA_BACKUP_S3_BUCKET" in body["message"]
        # Jobs live in the catalog: listing them needs no S3.
        assert api.get("/admin/backups/jobs").status_code == 200


def test_admin_key_is_required(backup_env: BackupEnv) -> None:
    with httpx.Client(base_url=backup_env.server.url) as anonymous:
        _error(anonymous.get("/admin/backups"), 401, "admin_key_required")
        _error(anonymous.get("/admin/backups/jobs"), 401, "admin_key_required")
        bad = anonymous.post(
            "/admin/backups", json={"client_name": "source"}, headers={"X-Athena-Admin-Key": "no"}
        )
        _error(bad, 401, "invalid_admin_key")


def test_bad_requests_are_400(api: httpx.Client) -> None:
    _error(api.post("/admin/backups", json={}), 400, "invalid_request")
    _error(api.post("/admin/backups", json={"client_name": "nope"}), 400, "unknown_client")
    _error(
        api.post("/admin/backups", json={"client_name": "source", "label": 5}),
        400,
        "invalid_request",
    )
    _error(
        api.post("/admin/backups", content=b"{nope", headers={"Content-Type": "application/json"}),
        400,
        "invalid_json",
    )
    _error(
        api.post("/admin/backups", json={"client_name": "source", "label": "a\u0000b"}),
        400,
        "invalid_request",
    )
    _error(api.get("/admin/backups/jobs", params={"client_name": "a\x00"}), 400, "invalid_request")
    _error(api.get("/admin/backups/jobs/not-an-id"), 400, "invalid_request")
    _error(api.get("/admin/backups/jobs", params={"limit": "0"}), 400, "invalid_pagination")
    _error(api.get("/admin/backups/jobs", params={"state": "sleeping"}), 400, "invalid_request")


def test_unknown_keys_and_jobs_are_404(api: httpx.Client) -> None:
    missing = quote(f"{PREFIX}/source/20200101T000000Z-missing.dump.gz", safe="")
    outside = quote("elsewhere/secret.txt", safe="")
    for key in (missing, outside):
        _error(api.get(f"/admin/backups/{key}/download"), 404, "backup_not_found")
        _error(api.delete(f"/admin/backups/{key}"), 404, "backup_not_found")
        _error(
            api.post(f"/admin/backups/{key}/restore", json={"client_name": "target"}),
            404,
            "backup_not_found",
        )
    _error(api.get(f"/admin/backups/jobs/{uuid.uuid4()}"), 404, "backup_job_not_found")
    _error(api.get("/admin/backups/jobs/987654321"), 404, "backup_job_not_found")


def test_restore_refuses_frozen_clients_and_the_catalog(api: httpx.Client, backup_key: str) -> None:
    key = quote(backup_key, safe="")
    _error(
        api.post(f"/admin/backups/{key}/restore", json={"client_name": "frozen"}),
        403,
        "client_frozen",
    )
    _error(
        api.post(f"/admin/backups/{key}/restore", json={"client_name": "catalog"}),
        403,
        "restore_refused",
    )
    _error(api.post(f"/admin/backups/{key}/restore", json={}), 400, "invalid_request")


def test_pg_restore_errors_reach_the_job_and_the_response(
    backup_env: BackupEnv, api: httpx.Client, backup_key: str
) -> None:
    before = table_fingerprints(backup_env.pg, backup_env.databases["locked"])
    response = api.post(
        f"/admin/backups/{quote(backup_key, safe='')}/restore", json={"client_name": "locked"}
    )
    body = _error(response, 502, "restore_failed")
    assert "permission denied" in body["error"]
    assert backup_env.pg.app_password not in response.text
    job = api.get(f"/admin/backups/jobs/{body['data']['job_id']}").json()["job"]
    assert job["state"] == "failed" and job["error_code"] == "restore_failed"
    assert "permission denied" in job["error"]
    # One transaction: nothing of the backup was left behind.
    assert table_fingerprints(backup_env.pg, backup_env.databases["locked"]) == before


def test_a_dump_failing_midway_leaves_no_object(backup_env: BackupEnv, api: httpx.Client) -> None:
    response = api.post("/admin/backups", json={"client_name": "broken"}, params={"stream": "1"})
    assert response.status_code == 200
    events = parse_sse(response.text)
    assert events[-1][0] == "error"
    error = json.loads(events[-1][1])
    assert error["code"] == "backup_failed"
    assert "row-level security" in error["error"]
    progress = [json.loads(data) for name, data in events if name == "progress"]
    # The failure came midway: parts had already gone up to S3.
    assert max(p["uploaded_bytes"] for p in progress) >= 8 * 1024 * 1024
    assert backup_env.keys(f"{PREFIX}/broken/") == []
    assert backup_env.uploads() == []
    job = api.get(f"/admin/backups/jobs/{error['data']['job_id']}").json()["job"]
    assert job["state"] == "failed" and job["error_code"] == "backup_failed"
    assert AWS_ENV["AWS_SECRET_ACCESS_KEY"] not in response.text


def test_a_client_disconnect_does_not_stop_the_job(
    backup_env: BackupEnv, api: httpx.Client
) -> None:
    with api.stream(
        "POST", "/admin/backups", json={"client_name": "source", "label": "left alone"},
        headers={"Accept": "text/event-stream"},
    ) as response:  # fmt: skip
        lines = response.iter_lines()
        assert next(lines) == "event: progress"
        job_id = json.loads(next(lines)[5:])["job_id"]
    # The stream is closed; the job goes on to the end.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = api.get(f"/admin/backups/jobs/{job_id}").json()["job"]
        if job["state"] in ("succeeded", "failed"):
            break
        time.sleep(0.2)
    assert job["state"] == "succeeded", job
    assert job["backup_key"] in backup_env.keys()
    # Re-attaching to the job's stream (as the CLI does after a cut) ends with its result.
    again = api.get(f"/admin/backups/jobs/{job_id}", params={"stream": "true"})
    assert again.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(again.text)
    assert events[-1][0] == "result"
    assert json.loads(events[-1][1]) == job["result"]


def test_a_restore_waits_for_no_one_but_refuses_to_overlap(
    backup_env: BackupEnv, api: httpx.Client, backup_key: str
) -> None:
    """A job still running on the client (here: recorded by another gateway) → 409."""
    with backup_env.pg.connect(backup_env.catalog_db, superuser=True) as conn:
        row = conn.execute(
            """INSERT INTO athena.backup_jobs (kind, client_name, state, heartbeat_at)
               VALUES ('restore', 'target2', 'running', now()) RETURNING id"""
        ).fetchone()
        assert row is not None
        job_id = row[0]
    try:
        key = quote(backup_key, safe="")
        busy = api.post(f"/admin/backups/{key}/restore", json={"client_name": "target2"})
        assert _error(busy, 409, "backup_job_conflict")["data"]["job_id"] == job_id
        busy = api.post("/admin/backups", json={"client_name": "target2"})
        _error(busy, 409, "backup_job_conflict")
    finally:
        with backup_env.pg.connect(backup_env.catalog_db, superuser=True) as conn:
            conn.execute("DELETE FROM athena.backup_jobs WHERE id = %s", (job_id,))


def test_a_job_of_a_dead_gateway_does_not_block_the_client(
    backup_env: BackupEnv, api: httpx.Client
) -> None:
    """A "running" job without a heartbeat for minutes belongs to a gateway that died."""
    with backup_env.pg.connect(backup_env.catalog_db, superuser=True) as conn:
        row = conn.execute(
            """INSERT INTO athena.backup_jobs (kind, client_name, state, heartbeat_at, created_at)
               VALUES ('restore', 'target2', 'running', now() - interval '10 minutes',
                       now() - interval '10 minutes') RETURNING id"""
        ).fetchone()
        assert row is not None
        job_id = row[0]
    try:
        response = api.post("/admin/backups", json={"client_name": "target2"})
        assert response.status_code == 200, response.text
    finally:
        with backup_env.pg.connect(backup_env.catalog_db, superuser=True) as conn:
            conn.execute("DELETE FROM athena.backup_jobs WHERE id = %s", (job_id,))
