"""How pg_dump/pg_restore are pointed at a database without the password leaking anywhere."""

from __future__ import annotations

from athena.backups.pgtools import ToolTarget, failure_reason
from athena.backups.storage import BackupObject


def test_the_password_travels_only_in_the_environment() -> None:
    uri = "postgresql://app:s3cr%40t-pw@db.internal:6543/sales?sslmode=require"
    target = ToolTarget.from_uri(uri)
    assert "s3cr@t-pw" not in target.conninfo
    assert "host=db.internal" in target.conninfo and "port=6543" in target.conninfo
    assert "sslmode=require" in target.conninfo and "dbname=sales" in target.conninfo
    env = target.env()
    assert env["PGPASSWORD"] == "s3cr@t-pw"
    assert not any(
        k.startswith("PG") and k not in {"PGPASSWORD", "PGAPPNAME", "PGCONNECT_TIMEOUT"}
        for k in env
    )


def test_tool_messages_are_scrubbed() -> None:
    uri = "postgresql://app:hunter2hunter2@127.0.0.1:5432/sales"
    target = ToolTarget.from_uri(uri)
    stderr = (
        "pg_restore: connecting to database\n"
        f'pg_restore: error: connection to "{uri}" failed: password hunter2hunter2 rejected\n'
    )
    reason = failure_reason("pg_restore", 1, stderr, target)
    assert "hunter2hunter2" not in reason
    assert "pg_restore: error" in reason
    assert failure_reason("pg_dump", 3, "", target) == "pg_dump exited with status 3"


def test_backup_ids_and_filenames_come_from_the_key() -> None:
    obj = BackupObject("p/sales/20260101T000000Z-abc.dump.gz", "sales", None, 10, "2026")
    assert obj.id == "20260101T000000Z-abc"
    assert obj.filename == "sales-20260101T000000Z-abc.dump.gz"
