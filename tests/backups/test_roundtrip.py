"""Backup → list → download → restore into a fresh database: the data must come back intact."""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path
from urllib.parse import quote

import httpx
from backup_support import (
    AWS_ENV,
    BUCKET,
    PREFIX,
    BackupEnv,
    parse_sse,
    sequence_values,
    table_fingerprints,
)

from athena.db.embedded import pg_bin_dir


def test_backup_list_download_restore_round_trip(
    backup_env: BackupEnv, api: httpx.Client, work_dir: Path
) -> None:
    label = "nightly — grüße"
    created = api.post("/admin/backups", json={"client_name": "source", "label": label})
    assert created.status_code == 200, created.text
    body = created.json()
    key = body["key"]
    assert body["client_name"] == "source"
    assert body["label"] == label
    assert key.startswith(f"{PREFIX}/source/") and key.endswith(".dump.gz")
    assert key in backup_env.keys()
    assert backup_env.uploads() == []

    # The object carries its metadata, the final size included.
    head = backup_env.s3.head_object(Bucket=BUCKET, Key=key)
    assert head["ContentType"] == "application/gzip"
    assert head["Metadata"]["client-name"] == "source"
    assert int(head["Metadata"]["size"]) == head["ContentLength"] == body["size_bytes"]
    assert head["Metadata"]["server-version"].startswith("18")

    # Listed newest first, filtered by client.
    second = api.post("/admin/backups", json={"client_name": "source"})
    assert second.status_code == 200, second.text
    listed = api.get("/admin/backups", params={"client_name": "source"}).json()["backups"]
    assert [b["key"] for b in listed[:2]] == [second.json()["key"], key]
    first = listed[1]
    assert first["label"] == label
    assert first["client_name"] == "source"
    assert first["size_bytes"] == body["size_bytes"]
    assert first["id"] == key.rsplit("/", 1)[1].removesuffix(".dump.gz")
    assert first["created_at"]
    assert api.get("/admin/backups", params={"client_name": "target"}).json() == {"backups": []}

    # Download (URL-encoded key): a gzip file whose content pg_restore reads.
    download = api.get(f"/admin/backups/{quote(key, safe='')}/download")
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/gzip"
    assert "attachment" in download.headers["content-disposition"]
    assert key.rsplit("/", 1)[1] in download.headers["content-disposition"]
    archive = work_dir / "backup.dump"
    archive.write_bytes(gzip.decompress(download.content))
    toc = subprocess.run(
        [str(pg_bin_dir() / "pg_restore"), "--list", str(archive)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "TABLE public customers" in toc and "TABLE DATA public orders" in toc

    # Restore into a fresh database, then every table must equal the source.
    restored = api.post(
        f"/admin/backups/{quote(key, safe='')}/restore", json={"client_name": "target"}
    )
    assert restored.status_code == 200, restored.text
    assert restored.json()["key"] == key
    assert restored.json()["client_name"] == "target"
    pg = backup_env.pg
    source = table_fingerprints(pg, backup_env.databases["source"])
    target = table_fingerprints(pg, backup_env.databases["target"])
    assert set(source) == {"customers", "orders", "Odd Name", "empty_table"}
    assert target == source
    assert sequence_values(pg, backup_env.databases["target"]) == sequence_values(
        pg, backup_env.databases["source"]
    )
    with pg.connect(backup_env.databases["target"]) as conn:
        assert conn.execute("SELECT count(*) FROM big_orders").fetchone()[0] > 0

    # Restoring again over the restored database works (--clean --if-exists), key unencoded.
    again = api.post(f"/admin/backups/{key}/restore", json={"client_name": "target"})
    assert again.status_code == 200, again.text
    assert table_fingerprints(pg, backup_env.databases["target"]) == source

    # Both jobs are recorded.
    jobs = api.get("/admin/backups/jobs", params={"client_name": "target"}).json()["jobs"]
    assert jobs[0]["kind"] == "restore" and jobs[0]["state"] == "succeeded"
    assert jobs[0]["backup_key"] == key
    assert jobs[0]["bytes"] == body["size_bytes"]

    # Delete: gone from the listing, a second delete is 404.
    deleted = api.delete(f"/admin/backups/{quote(key, safe='')}")
    assert deleted.status_code == 200 and deleted.json() == {"key": key}
    assert key not in backup_env.keys()
    assert api.delete(f"/admin/backups/{quote(key, safe='')}").status_code == 404


def test_streamed_backup_reports_progress_then_result(
    backup_env: BackupEnv, api: httpx.Client
) -> None:
    with api.stream(
        "POST",
        "/admin/backups",
        json={"client_name": "source", "label": "streamed"},
        headers={"Accept": "text/event-stream"},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = parse_sse(response.read().decode())
    names = [name for name, _ in events]
    assert names[-1] == "result"
    assert set(names[:-1]) == {"progress"} and len(names) >= 2
    progress = [json.loads(data) for name, data in events if name == "progress"]
    job_id = progress[0]["job_id"]
    assert all(p["job_id"] == job_id for p in progress)
    byte_counts = [p["bytes"] for p in progress]
    assert byte_counts == sorted(byte_counts)
    phases = [p["phase"] for p in progress]
    order = ["queued", "connecting", "dumping", "finalizing", "done"]
    assert [order.index(p) for p in phases] == sorted(order.index(p) for p in phases)
    result = json.loads(events[-1][1])
    assert result["client_name"] == "source" and result["label"] == "streamed"
    assert result["job_id"] == job_id
    assert result["key"] in backup_env.keys()

    job = api.get(f"/admin/backups/jobs/{job_id}").json()["job"]
    assert job["state"] == "succeeded" and job["kind"] == "backup"
    assert job["bytes"] == result["size_bytes"]
    assert job["result"] == result
    assert job["started_at"] and job["finished_at"]


def test_secrets_never_leave_the_gateway(backup_env: BackupEnv, api: httpx.Client) -> None:
    created = api.post("/admin/backups", json={"client_name": "source"}, params={"stream": "true"})
    text = created.text + api.get("/admin/backups/jobs").text
    assert backup_env.pg.app_password not in text
    assert AWS_ENV["AWS_SECRET_ACCESS_KEY"] not in text
