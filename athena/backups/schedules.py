"""Backup schedules: what runs when, kept in the catalog, fired by whichever instance claims it.

A schedule is a row of ``athena.backup_schedules``. Its timing is given the way the official SDK
types it — ``frequency`` ``hourly | daily | weekly | monthly`` with ``time_of_day``
(``HH:MM``), ``day_of_week`` (0 = Sunday … 6) and ``day_of_month`` (1-28), or a 5-field cron
expression — and is resolved once, at write time, into the ``cron`` column; croniter computes
the next run in the schedule's ``timezone`` (IANA name, default UTC), so a daily 02:00 in
Europe/Paris stays 02:00 across daylight-saving changes.

The scheduler (``run_scheduler``, supervised in every instance) claims due rows with
``SELECT … FOR UPDATE SKIP LOCKED`` and, in the same transaction, records the job and moves
``next_run_at`` to the next slot after *now*: two instances never both run one slot, and runs
missed while every instance was down collapse into one run at start-up. After a scheduled
backup succeeds, ``retention`` (keep the newest N of this schedule) deletes the older ones
from S3.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
import trio
from croniter import croniter
from psycopg.rows import dict_row

from athena.backups.storage import BackupNotFound, StorageError
from athena.backups.targets import client_for_backup
from athena.errors import ApiError
from athena.supervisor import BackgroundTask

if TYPE_CHECKING:
    from athena.backups.jobs import Job, JobRegistry
    from athena.runtime import Runtime

log = logging.getLogger("athena.backups.schedules")

FREQUENCIES = ("hourly", "daily", "weekly", "monthly")
FIELDS = (
    "client_name", "frequency", "time_of_day", "day_of_week", "day_of_month", "enabled",
    "label", "retention", "timezone",
)  # fmt: skip
# Schedules claimed per scheduler pass; the rest wait for the next pass (seconds later).
CLAIM_BATCH = 10
MAX_LABEL_CHARS = 512
_TIME_OF_DAY = re.compile(r"(\d{1,2}):(\d{2})(?::00)?")

_SELECT = (
    "SELECT id, client_name, frequency, cron, time_of_day, day_of_week, day_of_month, timezone,"
    " enabled, label, retention, next_run_at, last_run_at, last_status, last_job_id,"
    " created_at, updated_at FROM athena.backup_schedules "
)


# -- timing (pure) -------------------------------------------------------------------------


def _invalid(message: str, field: str) -> ApiError:
    return ApiError("invalid_schedule", message, data={"field": field})


def resolve_cron(
    frequency: str, time_of_day: str | None, day_of_week: int | None, day_of_month: int | None
) -> str:
    """The 5-field cron expression a schedule's timing stands for (400 when it is wrong)."""
    if frequency not in FREQUENCIES:
        if time_of_day is not None or day_of_week is not None or day_of_month is not None:
            raise _invalid(
                "time_of_day, day_of_week and day_of_month go with hourly, daily, weekly or "
                "monthly, not with a cron expression",
                "frequency",
            )
        fields = frequency.split()
        if len(fields) != 5 or not croniter.is_valid(frequency):
            raise _invalid(
                "frequency must be hourly, daily, weekly, monthly or a 5-field cron expression",
                "frequency",
            )
        return " ".join(fields)
    hour, minute = 0, 0
    if time_of_day is not None:
        match = _TIME_OF_DAY.fullmatch(time_of_day)
        if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
            raise _invalid("time_of_day must be HH:MM (24-hour clock)", "time_of_day")
        hour, minute = int(match.group(1)), int(match.group(2))
    if day_of_week is not None and frequency != "weekly":
        raise _invalid("day_of_week goes with frequency weekly", "day_of_week")
    if day_of_month is not None and frequency != "monthly":
        raise _invalid("day_of_month goes with frequency monthly", "day_of_month")
    if frequency == "hourly":
        return f"{minute} * * * *"
    if frequency == "daily":
        return f"{minute} {hour} * * *"
    if frequency == "weekly":
        return f"{minute} {hour} * * {day_of_week if day_of_week is not None else 0}"
    return f"{minute} {hour} {day_of_month if day_of_month is not None else 1} * *"


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise _invalid(
            f"unknown time zone '{name}' (use an IANA name such as UTC or Europe/Paris)", "timezone"
        ) from None


def next_run(cron: str, timezone: str, after: datetime) -> datetime:
    """The first slot of ``cron`` strictly after ``after``, in ``timezone``, as UTC."""
    local = after.astimezone(zone(timezone))
    return croniter(cron, local).get_next(datetime).astimezone(UTC)  # type: ignore[no-any-return]


# -- request bodies ------------------------------------------------------------------------


def _opt_int(body: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        hint = " (use a cron expression for days 29-31)" if name == "day_of_month" else ""
        raise _invalid(f"{name} must be an integer from {low} to {high}{hint}", name)
    return value


def parse_schedule(
    rt: Runtime, body: dict[str, Any], current: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The columns of a schedule from a POST body, or from a PATCH body over ``current``."""
    unknown = sorted(set(body) - set(FIELDS) - {"execution_daemon_id"})
    if unknown:
        raise _invalid(f"unknown field(s): {', '.join(unknown)}", unknown[0])
    merged = {**(current or {}), **body}
    if current is None:
        for name in ("client_name", "frequency"):
            if body.get(name) in (None, ""):
                raise _invalid(f"{name} is required", name)
    if not isinstance(merged.get("frequency"), str):
        raise _invalid("frequency must be a string", "frequency")
    if "client_name" in body or current is None:
        merged["client_name"] = client_for_backup(rt, body.get("client_name")).name
    time_of_day = merged.get("time_of_day")
    if time_of_day is not None and not isinstance(time_of_day, str):
        raise _invalid("time_of_day must be a string HH:MM", "time_of_day")
    frequency = merged["frequency"].strip()
    if frequency.lower() in FREQUENCIES:
        frequency = frequency.lower()
    day_of_week = _opt_int(merged, "day_of_week", 0, 6)
    day_of_month = _opt_int(merged, "day_of_month", 1, 28)
    cron = resolve_cron(frequency, time_of_day, day_of_week, day_of_month)
    timezone = merged.get("timezone") or "UTC"
    if not isinstance(timezone, str):
        raise _invalid("timezone must be a string", "timezone")
    zone(timezone)
    enabled = merged.get("enabled", True)
    if not isinstance(enabled, bool):
        raise _invalid("enabled must be true or false", "enabled")
    label = merged.get("label")
    if label is not None and (
        not isinstance(label, str) or len(label) > MAX_LABEL_CHARS or "\x00" in label
    ):
        raise _invalid(f"label must be a string of at most {MAX_LABEL_CHARS} characters", "label")
    retention = merged.get("retention")
    if retention is not None and (
        isinstance(retention, bool) or not isinstance(retention, int) or retention < 1
    ):
        raise _invalid(
            "retention must be a positive integer (backups kept) or null (keep all)", "retention"
        )
    return {
        "client_name": merged["client_name"],
        "frequency": frequency,
        "cron": cron,
        "time_of_day": time_of_day,
        "day_of_week": day_of_week,
        "day_of_month": day_of_month,
        "timezone": timezone,
        "enabled": enabled,
        "label": label or None,
        "retention": retention,
    }


def schedule_json(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for name in ("next_run_at", "last_run_at", "created_at", "updated_at"):
        value = row.get(name)
        out[name] = value.isoformat() if value is not None else None
    return out


# -- the catalog ---------------------------------------------------------------------------


class ScheduleBook:
    """Schedules in the catalog: CRUD for the routes, claims for the scheduler."""

    def __init__(self, rt: Runtime, jobs: JobRegistry) -> None:
        self.rt = rt
        self.jobs = jobs
        self.interval = float(rt.settings.backup_scheduler_interval_s)
        jobs.on_finish.append(_record_outcome)

    async def list(self) -> list[dict[str, Any]]:
        def query(conn: psycopg.Connection) -> list[dict[str, Any]]:
            with conn.cursor(row_factory=dict_row) as cur:
                return cur.execute(_SELECT + "ORDER BY id").fetchall()

        return [schedule_json(r) for r in await self.rt.catalog.run(query)]

    async def get(self, schedule_id: int) -> dict[str, Any] | None:
        def query(conn: psycopg.Connection) -> dict[str, Any] | None:
            with conn.cursor(row_factory=dict_row) as cur:
                return cur.execute(_SELECT + "WHERE id = %s", (schedule_id,)).fetchone()

        row = await self.rt.catalog.run(query)
        return schedule_json(row) if row else None

    async def create(self, values: dict[str, Any]) -> dict[str, Any]:
        first = next_run(values["cron"], values["timezone"], datetime.now(UTC))

        def insert(conn: psycopg.Connection) -> dict[str, Any]:
            with conn.cursor(row_factory=dict_row) as cur:
                cur.execute(
                    """INSERT INTO athena.backup_schedules
                           (client_name, frequency, cron, time_of_day, day_of_week, day_of_month,
                            timezone, enabled, label, retention, next_run_at)
                       VALUES (%(client_name)s, %(frequency)s, %(cron)s, %(time_of_day)s,
                               %(day_of_week)s, %(day_of_month)s, %(timezone)s, %(enabled)s,
                               %(label)s, %(retention)s, %(next_run_at)s)
                       RETURNING id""",
                    {**values, "next_run_at": first if values["enabled"] else None},
                )
                row = cur.fetchone()
                assert row is not None
                return cur.execute(_SELECT + "WHERE id = %s", (row["id"],)).fetchone()  # type: ignore[return-value]

        return schedule_json(await self.rt.catalog.run(insert))

    async def update(self, schedule_id: int, values: dict[str, Any]) -> dict[str, Any] | None:
        upcoming = next_run(values["cron"], values["timezone"], datetime.now(UTC))

        def write(conn: psycopg.Connection) -> dict[str, Any] | None:
            with conn.cursor(row_factory=dict_row) as cur:
                cur.execute(
                    """UPDATE athena.backup_schedules
                          SET client_name = %(client_name)s, frequency = %(frequency)s,
                              cron = %(cron)s, time_of_day = %(time_of_day)s,
                              day_of_week = %(day_of_week)s, day_of_month = %(day_of_month)s,
                              timezone = %(timezone)s, enabled = %(enabled)s, label = %(label)s,
                              retention = %(retention)s, updated_at = now(),
                              -- a changed timing (or re-enabling) starts from the next slot
                              next_run_at = CASE
                                  WHEN NOT %(enabled)s THEN NULL
                                  WHEN cron IS DISTINCT FROM %(cron)s
                                    OR timezone IS DISTINCT FROM %(timezone)s
                                    OR next_run_at IS NULL THEN %(next_run_at)s
                                  ELSE next_run_at END
                        WHERE id = %(id)s RETURNING id""",
                    {**values, "next_run_at": upcoming, "id": schedule_id},
                )
                if cur.fetchone() is None:
                    return None
                return cur.execute(_SELECT + "WHERE id = %s", (schedule_id,)).fetchone()

        row = await self.rt.catalog.run(write)
        return schedule_json(row) if row else None

    async def delete(self, schedule_id: int) -> bool:
        def delete(conn: psycopg.Connection) -> bool:
            cur = conn.execute("DELETE FROM athena.backup_schedules WHERE id = %s", (schedule_id,))
            return cur.rowcount > 0

        return await self.rt.catalog.run(delete)  # type: ignore[no-any-return]

    # -- running -------------------------------------------------------------------------

    async def run_now(self, schedule_id: int) -> Job | None:
        """Start the schedule's backup now (``POST …/run``); its next slot stays as it is."""
        found = await self._claim(lambda conn: _lock_one(conn, schedule_id), move_next=False)
        if not found:
            return None
        job, error = found[0]
        if error is not None:
            raise error
        assert job is not None
        return job

    async def run_due(self) -> int:
        """One pass of the scheduler: start every due schedule this instance could claim."""
        started = await self._claim(_lock_due, move_next=True)
        return sum(1 for job, _ in started if job is not None)

    async def _claim(
        self, lock: Callable[[psycopg.Connection], list[dict[str, Any]]], *, move_next: bool
    ) -> list[tuple[Job | None, ApiError | None]]:
        jobs = self.jobs
        launched: list[tuple[Job | None, ApiError | None]] = []
        entries: dict[int, Any] = {}

        def claim(conn: psycopg.Connection) -> None:
            launched.clear()
            with conn.transaction():
                for row in lock(conn):
                    now = datetime.now(UTC)
                    following = (
                        next_run(row["cron"], row["timezone"], now)
                        if move_next
                        else row["next_run_at"]
                    )
                    entry = self.rt.clients.get(row["client_name"])
                    if entry is None or not entry.uri:
                        _after_claim(conn, row["id"], following, "failed", None, move_next)
                        reason = f"client '{row['client_name']}' is unknown or has no URI"
                        launched.append((None, ApiError("unknown_client", reason)))
                        continue
                    job = jobs.new_backup(entry, row["label"], schedule_id=row["id"])
                    busy = jobs.insert_job(conn, job)
                    if busy is not None:
                        _after_claim(conn, row["id"], following, "skipped", busy, move_next)
                        reason = f"a restore job runs for client '{entry.name}'"
                        conflict = ApiError("backup_job_conflict", reason, data={"job_id": busy})
                        launched.append((None, conflict))
                        continue
                    _after_claim(conn, row["id"], following, "queued", job.id, move_next)
                    entries[job.id] = entry
                    launched.append((job, None))

        await self.rt.catalog.run(claim)
        for job, _ in launched:
            if job is not None:
                jobs.launch_backup(job, entries[job.id])
                assert self.rt.nursery is not None
                self.rt.nursery.start_soon(
                    self._retain_after, job, name=f"athena:retention:{job.id}"
                )
        return launched

    async def _retain_after(self, job: Job) -> None:
        await job.done.wait()
        if job.state == "succeeded" and job.schedule_id is not None:
            try:
                await self.apply_retention(job.schedule_id)
            except Exception:
                log.warning("retention of schedule %s failed", job.schedule_id, exc_info=True)

    async def apply_retention(self, schedule_id: int) -> list[str]:
        """Delete from S3 the schedule's succeeded backups beyond its newest ``retention``."""

        def older(conn: psycopg.Connection) -> list[tuple[int, str]]:
            rows = conn.execute(
                """SELECT j.id, j.backup_key FROM athena.backup_jobs j
                     JOIN athena.backup_schedules s ON s.id = j.schedule_id
                    WHERE j.schedule_id = %s AND j.state = 'succeeded' AND j.pruned_at IS NULL
                      AND s.retention IS NOT NULL AND j.backup_key IS NOT NULL
                    ORDER BY j.finished_at DESC, j.id DESC
                   OFFSET (SELECT retention FROM athena.backup_schedules WHERE id = %s)""",
                (schedule_id, schedule_id),
            ).fetchall()
            return [(int(r[0]), str(r[1])) for r in rows]

        deleted: list[str] = []
        for job_id, key in await self.rt.catalog.run(older):
            try:
                await self.jobs.storage.delete(key)
            except BackupNotFound:
                pass  # already gone (deleted by hand, or by another instance's pass)
            except StorageError:
                log.warning("retention could not delete %s", key, exc_info=True)
                continue
            deleted.append(key)

            def mark(conn: psycopg.Connection, job_id: int = job_id, key: str = key) -> None:
                with conn.transaction():
                    conn.execute(
                        "UPDATE athena.backup_jobs SET pruned_at = now() WHERE id = %s", (job_id,)
                    )
                    conn.execute(
                        "INSERT INTO athena.backup_job_log (job_id, message) VALUES (%s, %s)",
                        (job_id, f"deleted from S3 by the retention of schedule {schedule_id}"),
                    )

            await self.rt.catalog.run(mark)
        if deleted:
            log.info("retention of schedule %s deleted %d backup(s)", schedule_id, len(deleted))
        return deleted

    async def run_scheduler(self) -> None:
        """Supervised in every instance: claim due schedules every interval (first pass at
        once, which is what runs a slot missed while every instance was down)."""
        while True:
            try:
                await self.run_due()
            except Exception:  # the catalog may be away for a moment; try again next pass
                log.warning("scheduler pass failed", exc_info=True)
            await trio.sleep(self.interval)


def _lock_due(conn: psycopg.Connection) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT id, client_name, cron, timezone, label, next_run_at
                 FROM athena.backup_schedules
                WHERE enabled AND next_run_at <= now()
                ORDER BY next_run_at LIMIT %s
                  FOR UPDATE SKIP LOCKED""",
            (CLAIM_BATCH,),
        ).fetchall()


def _lock_one(conn: psycopg.Connection, schedule_id: int) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT id, client_name, cron, timezone, label, next_run_at"
            " FROM athena.backup_schedules WHERE id = %s FOR UPDATE",
            (schedule_id,),
        ).fetchall()


def _after_claim(
    conn: psycopg.Connection, schedule_id: int, following: datetime | None, status: str,
    job_id: int | None, move_next: bool,
) -> None:  # fmt: skip
    conn.execute(
        """UPDATE athena.backup_schedules
              SET next_run_at = CASE WHEN %s THEN %s ELSE next_run_at END,
                  last_run_at = now(), last_status = %s,
                  last_job_id = coalesce(%s, last_job_id)
            WHERE id = %s""",
        (move_next, following, status, job_id, schedule_id),
    )


def _record_outcome(conn: psycopg.Connection, job: Job) -> None:
    """In the transaction recording a job's end: the schedule's ``last_status``."""
    if job.schedule_id is None:
        return
    conn.execute(
        "UPDATE athena.backup_schedules SET last_status = %s WHERE id = %s AND last_job_id = %s",
        (job.state, job.schedule_id, job.id),
    )


def attach(rt: Runtime, jobs: JobRegistry) -> ScheduleBook:
    """Start-up (``Runtime._start_capabilities``): the schedule book and its scheduler, which
    starts its jobs on ``jobs``."""
    book = ScheduleBook(rt, jobs)
    rt.background.append(BackgroundTask("backup_scheduler", book.run_scheduler))
    return book
