"""Backup and restore jobs: recorded in the catalog, run in the server's root nursery.

A job outlives the request that started it: the POST only waits for it (or streams its
progress), so a client that disconnects does not stop a dump halfway. Lifecycle::

    queued ──(a slot of MAX_CONCURRENT_JOBS frees)──► running ──► succeeded | failed
       └──────────────── cancel (POST …/cancel) ──────────────┴──► cancelled

Every job writes a heartbeat to ``athena.backup_jobs`` each second; ``reap_orphans`` (a
supervised background task in every gateway) marks failed the jobs whose gateway died
(``ATHENA_BACKUP_JOB_ORPHAN_SECONDS`` without a heartbeat), so a job never stays "running"
forever. The heartbeat also reads back ``cancel_requested_at``: a cancel asked on any instance
reaches the instance running the job within a second. Catalog rows are the truth shared by all
instances; the in-memory ``Job`` adds live progress for the SSE stream of the gateway running
it. Ids are integers (the SDK's type); the UUID of jobs from before that change still resolves.
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg
import trio
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from athena import __version__
from athena.backups.dump import DumpFailed, dump_to_upload
from athena.backups.pgtools import ToolTarget, tool
from athena.backups.restore import RestoreFailed, restore_from_storage
from athena.backups.storage import BackupNotFound, BackupStorage, StorageError
from athena.db.clients import ClientEntry
from athena.db.database import DatabaseUnavailable
from athena.errors import ApiError
from athena.supervisor import BackgroundTask

if TYPE_CHECKING:
    from athena.runtime import Runtime

log = logging.getLogger("athena.backups")

# Each job runs one pg_dump/pg_restore (one backend on the client's server, one CPU core for
# gzip): two at once keeps a small gateway responsive; more wait in "queued".
MAX_CONCURRENT_JOBS = 2
HEARTBEAT_SECONDS = 1.0
# A job whose heartbeat is older than ATHENA_BACKUP_JOB_ORPHAN_SECONDS belongs to a gateway
# that died; the reaper looks four times per that period.
REAP_FRACTION = 4
# How long POST …/cancel waits for the job to stop before answering with it as it is.
CANCEL_WAIT_SECONDS = 15.0
FINAL_STATES = ("succeeded", "failed", "cancelled")
# Log lines kept per job in memory before the next heartbeat writes them.
MAX_PENDING_LOG = 200
# Finished jobs stay in memory this long so a late SSE subscriber still gets the result.
KEEP_FINISHED = 200
# SSE: at most this many progress events per second, and a comment line to keep proxies from
# closing a quiet stream.
PROGRESS_INTERVAL = 0.25
SSE_KEEPALIVE_SECONDS = 15.0
ADVISORY_NAMESPACE = 0x4154_0080  # pg_advisory_xact_lock(namespace, hashtext(client))

# Constant text only: values are always bound parameters.
_SELECT_JOBS = (
    "SELECT id, uuid, kind, client_name, state, phase, bytes, total_bytes, backup_key, label, "
    "error, error_code, result, schedule_id, cancel_requested_at, pruned_at, created_at, "
    "started_at, finished_at FROM athena.backup_jobs "
)


class JobError(Exception):
    """A job failed in a way worth telling the caller: ``code`` is an ``errors.CODES`` key."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass
class Job:
    """A job this gateway runs, with its live progress."""

    kind: str  # backup | restore
    client_name: str
    id: int = 0  # assigned by the catalog when the job is recorded
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    schedule_id: int | None = None
    label: str | None = None
    backup_key: str | None = None
    upload_id: str | None = None  # the open S3 multipart upload (aborted if this gateway dies)
    state: str = "queued"
    phase: str = "queued"
    # Every phase entered, in order: a follower sees each one even when several pass between
    # two of its coalesced progress events (a small dump is over in milliseconds).
    phases: list[str] = field(default_factory=lambda: ["queued"])
    bytes: int = 0  # backup: gzip bytes produced; restore: bytes read from S3
    total_bytes: int | None = None
    dumped_bytes: int = 0
    uploaded_bytes: int = 0
    error: str | None = None
    error_code: str | None = None
    result: dict[str, Any] | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started_at: datetime | None = None
    finished_at: datetime | None = None
    done: trio.Event = field(default_factory=trio.Event)
    _changed: trio.Event = field(default_factory=trio.Event)
    scope: trio.CancelScope | None = None
    cancel_requested: bool = False
    pending_log: list[tuple[datetime, str, str]] = field(default_factory=list)

    def log(self, message: str, level: str = "info") -> None:
        """A line of the job's log; written to the catalog with the next heartbeat."""
        if len(self.pending_log) < MAX_PENDING_LOG:
            self.pending_log.append((datetime.now(UTC), level, message))

    def request_cancel(self) -> None:
        if not self.cancel_requested:
            self.cancel_requested = True
            self.log("cancel requested")
        if self.scope is not None:
            self.scope.cancel()

    # -- progress (called from the job's own task) -----------------------------------------

    def touch(self) -> None:
        """Wake every waiter: a new event object per change is a cheap broadcast."""
        self._changed.set()
        self._changed = trio.Event()

    async def wait_change(self) -> None:
        await self._changed.wait()

    def set_phase(self, name: str) -> None:
        self.phase = name
        self.phases.append(name)
        self.touch()

    # DumpProgress and RestoreProgress
    def dumped(self, raw: int, compressed: int) -> None:
        self.dumped_bytes, self.bytes = raw, compressed
        self.touch()

    def uploaded(self, nbytes: int) -> None:
        self.uploaded_bytes += nbytes
        self.touch()

    # RestoreProgress
    def total(self, nbytes: int) -> None:
        self.total_bytes = nbytes
        self.touch()

    def downloaded(self, nbytes: int) -> None:
        self.bytes += nbytes
        self.touch()

    # -- views -----------------------------------------------------------------------------

    def progress_event(self) -> dict[str, Any]:
        event: dict[str, Any] = {"job_id": self.id, "phase": self.phase, "bytes": self.bytes}
        if self.total_bytes is not None:
            event["total_bytes"] = self.total_bytes
        if self.kind == "backup":
            event["dumped_bytes"] = self.dumped_bytes
            event["uploaded_bytes"] = self.uploaded_bytes
        return event

    def api_error(self) -> ApiError:
        return ApiError(
            self.error_code or "internal_error",
            f"the {self.kind} of client '{self.client_name}' failed",
            detail=self.error or "unknown error",
            data={"job_id": self.id, "key": self.backup_key},
        )


def job_json(row: dict[str, Any]) -> dict[str, Any]:
    """A catalog row as the ``BackupJob`` schema."""
    out = dict(row)
    out["uuid"] = str(row["uuid"])
    for name in ("created_at", "started_at", "finished_at", "cancel_requested_at", "pruned_at"):
        value = row.get(name)
        out[name] = value.isoformat() if value is not None else None
    return out


def encode_cursor(value: int | str) -> str:
    """An opaque page cursor (callers must not build their own)."""
    return base64.urlsafe_b64encode(str(value).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise ApiError("invalid_pagination", "cursor is not one this gateway issued") from None


def decode_id_cursor(cursor: str) -> int:
    """The id an integer cursor stands for (400 ``invalid_pagination`` otherwise)."""
    text = decode_cursor(cursor)
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise ApiError("invalid_pagination", "cursor is not one this gateway issued")
    return int(text)


def parse_job_ref(ref: str) -> tuple[str, int | str]:
    """``("id", 42)`` or ``("uuid", "…")`` (jobs recorded before integer ids); else 400."""
    text = ref.strip()
    if text.isascii() and text.isdigit() and len(text) <= 18:
        return "id", int(text)
    try:
        return "uuid", str(uuid.UUID(text))
    except ValueError:
        raise ApiError(
            "invalid_request", "the job id is not an integer (or a job UUID)", data={"id": ref}
        ) from None


class JobRegistry:
    """Starts jobs, tracks the live ones, answers job queries from the catalog."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.storage = BackupStorage(rt.settings)
        self.slots = trio.CapacityLimiter(MAX_CONCURRENT_JOBS)
        self.live: dict[int, Job] = {}
        self._finished: list[int] = []
        self.orphan_after = float(rt.settings.backup_job_orphan_seconds)
        # Called (inside the transaction that records a job's end) by capabilities that react
        # to finished jobs: the webhook outbox writes its backup.* events there.
        self.on_finish: list[Callable[[psycopg.Connection, Job], None]] = []

    # -- starting --------------------------------------------------------------------------

    def new_backup(
        self, entry: ClientEntry, label: str | None, schedule_id: int | None = None
    ) -> Job:
        """A backup job, not yet recorded (``record_new`` / ``insert_job``) nor launched."""
        job = Job(kind="backup", client_name=entry.name, label=label, schedule_id=schedule_id)
        job.backup_key = self.storage.new_key(entry.name, job.uuid, job.created_at)
        return job

    async def start_backup(
        self, entry: ClientEntry, label: str | None, schedule_id: int | None = None
    ) -> Job:
        job = self.new_backup(entry, label, schedule_id)
        await self._record_new(job)
        self.launch_backup(job, entry)
        return job

    def launch_backup(self, job: Job, entry: ClientEntry) -> None:
        self._launch(job, lambda: self._backup(job, entry))

    async def start_restore(self, entry: ClientEntry, key: str) -> Job:
        job = Job(kind="restore", client_name=entry.name, backup_key=key)
        await self._record_new(job)
        self._launch(job, lambda: self._restore(job, entry))
        return job

    async def _record_new(self, job: Job) -> None:
        """Insert the job, refusing it while a conflicting job runs on the same client.

        A restore conflicts with any job on its client (a dump of a database being replaced,
        or two restores, make no sense); a backup conflicts only with a restore. The check
        and the insert share one transaction under an advisory lock per client, so two
        gateways cannot both pass it.
        """

        def insert(conn: psycopg.Connection) -> int | None:
            with conn.transaction():
                return self.insert_job(conn, job)

        try:
            busy = await self.rt.catalog.run(insert)
        except DatabaseUnavailable:
            raise ApiError("catalog_unavailable", "the catalog database is unreachable") from None
        if busy:
            raise ApiError(
                "backup_job_conflict",
                f"a restore or backup job is already running for client '{job.client_name}'",
                data={"job_id": busy, "client_name": job.client_name},
            )

    def insert_job(self, conn: psycopg.Connection, job: Job) -> int | None:
        """Record ``job`` inside the caller's transaction; the id of a conflicting job instead.

        Takes the per-client advisory lock for the rest of the transaction.
        """
        conn.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (ADVISORY_NAMESPACE, job.client_name)
        )
        busy = conn.execute(
            """SELECT id FROM athena.backup_jobs
                WHERE client_name = %s AND state IN ('queued', 'running')
                  AND (kind = 'restore' OR %s = 'restore')
                  AND coalesce(heartbeat_at, created_at) > now() - make_interval(secs => %s)
                LIMIT 1""",
            (job.client_name, job.kind, self.orphan_after),
        ).fetchone()
        if busy:
            return int(busy[0])
        row = conn.execute(
            """INSERT INTO athena.backup_jobs
                   (uuid, kind, client_name, state, phase, backup_key, label, schedule_id,
                    created_at, heartbeat_at)
               VALUES (%s, %s, %s, 'queued', 'queued', %s, %s, %s, %s, now())
               RETURNING id""",
            (
                job.uuid, job.kind, job.client_name, job.backup_key, job.label, job.schedule_id,
                job.created_at,
            ),
        ).fetchone()  # fmt: skip
        assert row is not None
        job.id = int(row[0])
        origin = f" by schedule {job.schedule_id}" if job.schedule_id else ""
        job.log(f"{job.kind} of client '{job.client_name}' queued{origin}")
        return None

    def _launch(self, job: Job, work: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        if self.rt.nursery is None:
            raise ApiError("service_unavailable", "the gateway is not ready to run jobs yet")
        self.live[job.id] = job
        self.rt.nursery.start_soon(self._run, job, work, name=f"athena:{job.kind}:{job.id}")

    # -- running ---------------------------------------------------------------------------

    async def _run(self, job: Job, work: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        """Run one job to its end and record every step. A cancel of the job (its own scope)
        ends it ``cancelled``; Cancelled from outside (shutdown) is recorded as a failure,
        then re-raised."""
        with trio.CancelScope() as scope:
            job.scope = scope
            if job.cancel_requested:
                scope.cancel()
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._heartbeat, job)
                    async with self.slots:
                        job.state, job.started_at = "running", datetime.now(UTC)
                        job.log("started")
                        job.touch()
                        await self._persist(job)
                        job.result = await work()
                    job.state = "succeeded"
                    job.set_phase("done")
                    job.log(f"succeeded ({job.bytes} bytes)")
                    nursery.cancel_scope.cancel()
            except BaseException as exc:
                cancelled, failure = _classify(exc)
                job.state = "failed"
                if cancelled is not None and failure is None and job.cancel_requested:
                    job.state = "cancelled"
                    job.error_code = "backup_job_cancelled"
                    job.error = "the job was cancelled"
                elif cancelled is not None and failure is None:
                    job.error_code = "service_unavailable"
                    job.error = "the gateway shut down before the job finished"
                elif isinstance(failure, JobError):
                    job.error_code, job.error = failure.code, failure.reason
                elif isinstance(failure, DatabaseUnavailable):
                    job.error_code = "catalog_unavailable"
                    job.error = "the catalog database became unreachable while the job started"
                else:
                    log.error("%s job %s crashed", job.kind, job.id, exc_info=failure or exc)
                    job.error_code = "internal_error"
                    job.error = "an unexpected error stopped the job; see the gateway's log"
                job.log(f"{job.state}: {job.error}", "error" if job.state == "failed" else "info")
                if cancelled is not None or not isinstance(exc, Exception):
                    await self._finish(job, persist_within=5)
                    raise  # the job's own cancel ends at its scope; a shutdown goes on up
        if not job.done.is_set():
            await self._finish(job, persist_within=10)

    async def _finish(self, job: Job, *, persist_within: float) -> None:
        """Record the outcome, then wake the waiters: whoever is answered can already read
        the finished job from the catalog."""
        job.finished_at = datetime.now(UTC)
        if job.state in ("failed", "cancelled"):
            job.set_phase(job.state)
        with trio.CancelScope(shield=True), trio.move_on_after(persist_within):
            try:
                await self._persist(job, final=True)
            except Exception:  # the reaper marks it failed later; the waiters still learn now
                log.warning("recording the end of job %s failed", job.id, exc_info=True)
        job.done.set()
        job.touch()
        self._finished.append(job.id)
        while len(self._finished) > KEEP_FINISHED:
            self.live.pop(self._finished.pop(0), None)

    async def _heartbeat(self, job: Job) -> None:
        while True:
            await trio.sleep(HEARTBEAT_SECONDS)
            try:
                await self._persist(job)
            except Exception:  # the catalog may be briefly away; the job goes on
                log.warning("recording progress of job %s failed", job.id, exc_info=True)

    async def _persist(self, job: Job, *, final: bool = False) -> None:
        """Write the job's state and new log lines; a cancel asked elsewhere comes back."""
        lines, job.pending_log = job.pending_log, []

        def write(conn: psycopg.Connection) -> bool:
            with conn.transaction():
                row = conn.execute(
                    """UPDATE athena.backup_jobs
                          SET state = %s, phase = %s, bytes = %s, total_bytes = %s,
                              backup_key = %s, error = %s, error_code = %s, result = %s,
                              started_at = %s, finished_at = %s, upload_id = %s,
                              heartbeat_at = now()
                        WHERE id = %s
                    RETURNING cancel_requested_at IS NOT NULL""",
                    (
                        job.state, job.phase, job.bytes, job.total_bytes, job.backup_key,
                        job.error, job.error_code,
                        Jsonb(job.result) if job.result is not None else None,
                        job.started_at, job.finished_at,
                        None if job.done.is_set() or job.finished_at else job.upload_id, job.id,
                    ),
                ).fetchone()  # fmt: skip
                if lines:
                    with conn.cursor() as cur:
                        cur.executemany(
                            "INSERT INTO athena.backup_job_log (job_id, at, level, message)"
                            " VALUES (%s, %s, %s, %s)",
                            [(job.id, at, level, text) for at, level, text in lines],
                        )
                if final:
                    for hook in self.on_finish:
                        hook(conn, job)
                return bool(row and row[0])

        try:
            cancel = await self.rt.catalog.run(write)
        except BaseException:
            job.pending_log[:0] = lines  # written with the next heartbeat
            raise
        if cancel and not job.done.is_set():
            job.request_cancel()

    def _target(self, entry: ClientEntry) -> ToolTarget:
        if not entry.uri:
            raise JobError(
                "client_unavailable", f"client '{entry.name}' has no PostgreSQL connection URI"
            )
        return ToolTarget.from_uri(entry.uri)

    async def _backup(self, job: Job, entry: ClientEntry) -> dict[str, Any]:
        target = self._target(entry)
        assert job.backup_key is not None
        job.set_phase("connecting")
        server_version = await _server_version(target)
        job.log(f"connected to PostgreSQL {server_version}")
        metadata = {
            "client-name": entry.name,
            "created-at": job.created_at.isoformat(),
            "athena-version": __version__,
            "server-version": server_version,
            "job-id": str(job.id),
        }
        if job.schedule_id is not None:
            metadata["schedule-id"] = str(job.schedule_id)
        if job.label:
            metadata["label"] = job.label
        try:
            upload = await self.storage.start_upload(job.backup_key, metadata)
        except StorageError as exc:
            raise JobError("storage_unavailable", exc.reason) from None
        job.upload_id = upload.upload_id
        try:
            job.set_phase("dumping")
            await self._persist(job)  # the upload id, before any part: the reaper's to abort
            job.log(f"pg_dump streaming to s3://{self.storage.bucket}/{job.backup_key}")
            size = await _unwrap(
                dump_to_upload(tool(self.rt.settings, "pg_dump"), target, upload, job)
            )
            job.set_phase("finalizing")
            job.log(f"dump complete, {len(upload.parts)} part(s) uploaded; finalizing")
            await upload.complete()
        except BaseException as exc:
            await upload.abort()  # shielded: no partial object may remain
            job.log("the S3 upload was aborted")
            _reraise_as_job_error(exc, "backup_failed")
            raise
        job.bytes = size
        return {
            "key": job.backup_key,
            "client_name": entry.name,
            "label": job.label,
            "size_bytes": size,
            "job_id": job.id,
        }

    async def _restore(self, job: Job, entry: ClientEntry) -> dict[str, Any]:
        target = self._target(entry)
        assert job.backup_key is not None
        job.set_phase("restoring")
        job.log(f"pg_restore from s3://{self.storage.bucket}/{job.backup_key}")
        try:
            await _unwrap(
                restore_from_storage(
                    tool(self.rt.settings, "pg_restore"), target, self.storage, job.backup_key, job
                )
            )
        except BaseException as exc:
            _reraise_as_job_error(exc, "restore_failed")
            raise
        return {"key": job.backup_key, "client_name": entry.name, "job_id": job.id}

    # -- queries ---------------------------------------------------------------------------

    async def list_jobs(
        self,
        *,
        client_name: str | None,
        kind: str | None,
        state: str | None,
        limit: int,
        before_id: int | None = None,
        schedule_id: int | None = None,
    ) -> tuple[list[dict[str, Any]], int | None]:
        """A page of jobs, newest first, and the id to continue before (None: last page)."""

        def query(conn: psycopg.Connection) -> list[dict[str, Any]]:
            with conn.cursor(row_factory=dict_row) as cur:
                cur.execute(
                    _SELECT_JOBS
                    + """WHERE (%(client)s::text IS NULL OR client_name = %(client)s)
                           AND (%(kind)s::text IS NULL OR kind = %(kind)s)
                           AND (%(state)s::text IS NULL OR state = %(state)s)
                           AND (%(before)s::bigint IS NULL OR id < %(before)s)
                           AND (%(schedule)s::bigint IS NULL OR schedule_id = %(schedule)s)
                         ORDER BY id DESC LIMIT %(limit)s""",
                    {
                        "client": client_name, "kind": kind, "state": state,
                        "before": before_id, "schedule": schedule_id, "limit": limit + 1,
                    },
                )  # fmt: skip
                return cur.fetchall()

        rows = await self.rt.catalog.run(query)
        more = len(rows) > limit
        rows = rows[:limit]
        next_id = int(rows[-1]["id"]) if more and rows else None
        return [self._overlay(job_json(r)) for r in rows], next_id

    async def get_job(
        self, ref: tuple[str, int | str], *, with_log: bool = False
    ) -> dict[str, Any] | None:
        column = "id" if ref[0] == "id" else "uuid"

        def query(conn: psycopg.Connection) -> dict[str, Any] | None:
            with conn.cursor(row_factory=dict_row) as cur:
                cur.execute(_SELECT_JOBS + f"WHERE {column} = %s", (ref[1],))
                row = cur.fetchone()
                if row is not None and with_log:
                    cur.execute(
                        "SELECT at, level, message FROM athena.backup_job_log"
                        " WHERE job_id = %s ORDER BY id",
                        (row["id"],),
                    )
                    row["log"] = [
                        {"at": r["at"].isoformat(), "level": r["level"], "message": r["message"]}
                        for r in cur.fetchall()
                    ]
                return row

        row = await self.rt.catalog.run(query)
        return self._overlay(job_json(row)) if row else None

    async def cancel(self, job_id: int) -> dict[str, Any] | None:
        """Ask the job to stop (on whichever instance runs it) and wait a while for it."""

        def request(conn: psycopg.Connection) -> str | None:
            row = conn.execute(
                """UPDATE athena.backup_jobs SET cancel_requested_at = coalesce(cancel_requested_at, now())
                    WHERE id = %s RETURNING state""",
                (job_id,),
            ).fetchone()
            return str(row[0]) if row else None

        state = await self.rt.catalog.run(request)
        if state is None:
            return None
        if state in FINAL_STATES:
            raise ApiError(
                "backup_job_finished",
                f"the job has already {state}; only queued or running jobs can be cancelled",
                data={"id": job_id, "state": state},
            )
        live = self.live.get(job_id)
        with trio.move_on_after(CANCEL_WAIT_SECONDS):
            if live is not None:
                live.request_cancel()
                await live.done.wait()
            else:  # another instance runs it: its heartbeat sees the request within a second
                while True:
                    job = await self.get_job(("id", job_id))
                    if job is None or job["state"] in FINAL_STATES:
                        break
                    await trio.sleep(0.2)
        return await self.get_job(("id", job_id), with_log=True)

    async def delete_job(self, job_id: int) -> str | None:
        """Delete a finished job's record (never its backup); its state, or None if unknown."""

        def delete(conn: psycopg.Connection) -> str | None:
            with conn.transaction():
                row = conn.execute(
                    "SELECT state FROM athena.backup_jobs WHERE id = %s FOR UPDATE", (job_id,)
                ).fetchone()
                if row is None:
                    return None
                if row[0] in FINAL_STATES:
                    conn.execute("DELETE FROM athena.backup_jobs WHERE id = %s", (job_id,))
                return str(row[0])

        state = await self.rt.catalog.run(delete)
        if state is not None and state not in FINAL_STATES:
            raise ApiError(
                "backup_job_active",
                f"the job is {state}; cancel it before deleting it",
                data={"id": job_id, "state": state},
            )
        return state

    def _overlay(self, row: dict[str, Any]) -> dict[str, Any]:
        """The catalog row with the fresher in-memory progress of a job running here."""
        job = self.live.get(row["id"])
        if job is not None and not job.done.is_set():
            row.update(state=job.state, phase=job.phase, bytes=job.bytes)
            row["total_bytes"] = job.total_bytes
        return row

    # -- waiting and streaming -------------------------------------------------------------

    async def events(self, job: Job) -> AsyncIterator[tuple[str, dict[str, Any] | None]]:
        """("progress", data) while the job runs, then ("result", body) or ("error",
        envelope); ("keepalive", None) when nothing happened for a while."""
        last_sent: dict[str, Any] | None = None
        phases_sent = 0
        while True:
            # phases passed through since the last event, each once (bytes as they are now)
            for phase in job.phases[phases_sent:-1]:
                if last_sent is None or phase != last_sent["phase"]:
                    last_sent = {**job.progress_event(), "phase": phase}
                    yield "progress", last_sent
            phases_sent = len(job.phases)
            current = job.progress_event()
            if current != last_sent:
                yield "progress", current
                last_sent = current
            if job.done.is_set():
                break
            with trio.move_on_after(SSE_KEEPALIVE_SECONDS) as scope:
                await job.wait_change()
            if scope.cancelled_caught:
                yield "keepalive", None
            else:
                # Coalesce bursts of changes (every MiB dumped) into a few events a second.
                with trio.move_on_after(PROGRESS_INTERVAL):
                    await job.done.wait()
        if job.state == "succeeded":
            yield "result", job.result
        else:
            yield "error", job.api_error().envelope()

    # -- housekeeping ----------------------------------------------------------------------

    async def reap_orphans(self) -> None:
        """Mark failed the jobs whose gateway stopped sending heartbeats, and abort the S3
        uploads they left open (no parts of a dead backup linger in the bucket)."""
        while True:
            for key, upload_id in await self.rt.catalog.run(self._reap):
                await self._abort_orphan_upload(key, upload_id)
            await trio.sleep(max(0.5, self.orphan_after / REAP_FRACTION))

    async def _abort_orphan_upload(self, key: str, upload_id: str | None) -> None:
        """Abort the dead job's open uploads: the one it recorded, and any it opened but died
        before recording (between CreateMultipartUpload and the catalog write). A job's key
        holds its uuid, so every upload to that exact key is this job's."""
        bucket = self.storage.bucket
        ids = {upload_id} if upload_id else set()
        try:
            listed = await self.storage.call(
                lambda c: c.list_multipart_uploads(Bucket=bucket, Prefix=key)
            )
            ids |= {u["UploadId"] for u in listed.get("Uploads", []) if u.get("Key") == key}
        except (StorageError, BackupNotFound):
            log.warning("listing the open uploads of %s failed", key, exc_info=True)
        for one in sorted(ids):
            try:
                await self.storage.call(
                    lambda c, one=one: c.abort_multipart_upload(
                        Bucket=bucket, Key=key, UploadId=one
                    )
                )
            except BackupNotFound:
                pass  # already gone: completed or aborted by someone else
            except StorageError:
                log.warning("aborting the orphaned upload of %s failed", key, exc_info=True)

    def _reap(self, conn: psycopg.Connection) -> list[tuple[str, str | None]]:
        uploads: list[tuple[str, str | None]] = []
        with conn.transaction():
            rows = conn.execute(
                """UPDATE athena.backup_jobs
                      SET state = 'failed', phase = 'failed', finished_at = now(),
                          error_code = 'service_unavailable',
                          error = 'the gateway running this job stopped before it finished'
                    WHERE state IN ('queued', 'running')
                      AND coalesce(heartbeat_at, created_at) < now() - make_interval(secs => %s)
                RETURNING id, kind, client_name, schedule_id, label, backup_key, upload_id""",
                (self.orphan_after,),
            ).fetchall()
            conn.execute(
                "UPDATE athena.backup_jobs SET upload_id = NULL WHERE id = ANY(%s)",
                ([r[0] for r in rows],),
            )
            for job_id, kind, client, schedule_id, label, key, upload_id in rows:
                if key:
                    uploads.append((key, upload_id))
                conn.execute(
                    "INSERT INTO athena.backup_job_log (job_id, level, message) VALUES (%s, 'error', %s)",
                    (job_id, "failed: the gateway running this job stopped sending heartbeats"),
                )
                job = Job(kind=kind, client_name=client, id=job_id, schedule_id=schedule_id,
                          label=label, backup_key=key, state="failed",
                          error_code="service_unavailable",
                          error="the gateway running this job stopped before it finished")  # fmt: skip
                for hook in self.on_finish:
                    hook(conn, job)
        return uploads


async def _server_version(target: ToolTarget) -> str:
    """The server's version for the object metadata; also an early, clear connection check."""

    def query() -> str:
        try:
            with psycopg.connect(target.uri, connect_timeout=10, autocommit=True) as conn:
                row = conn.execute("SHOW server_version").fetchone()
                return str(row[0]) if row else "unknown"
        except psycopg.Error as exc:
            raise JobError(
                "client_unavailable",
                target.scrub(f"cannot connect to the client's database: {exc}".strip()),
            ) from None

    return await trio.to_thread.run_sync(query)


async def _unwrap(awaitable: Awaitable[Any]) -> Any:
    """Await, turning a nursery's ExceptionGroup with one real failure into that failure.

    The dump and restore pipelines run helper tasks in nurseries; their callers want to know
    *what* failed (pg_dump, S3, …), not that a group of tasks did. Groups holding Cancelled
    are re-raised unchanged.
    """
    try:
        return await awaitable
    except BaseExceptionGroup as group:
        cancelled, failure = _classify(group)
        if cancelled is None and failure is not None:
            raise failure from None
        raise


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def _classify(exc: BaseException) -> tuple[BaseException | None, BaseException | None]:
    """(the Cancelled in ``exc`` if any, its most telling real failure if any)."""
    leaves = _leaves(exc)
    cancelled = next((e for e in leaves if isinstance(e, trio.Cancelled)), None)
    real = [e for e in leaves if not isinstance(e, trio.Cancelled)]
    telling = next((e for e in real if isinstance(e, JobError)), None)
    return cancelled, telling or (real[0] if real else None)


def _reraise_as_job_error(exc: BaseException, tool_code: str) -> None:
    """Map a pipeline failure to a ``JobError``; Cancelled and unknown errors pass through."""
    if isinstance(exc, DumpFailed | RestoreFailed):
        raise JobError(tool_code, exc.reason) from None
    if isinstance(exc, StorageError):
        raise JobError("storage_unavailable", exc.reason) from None
    if isinstance(exc, BackupNotFound):
        raise JobError("backup_not_found", "no backup has this key") from None


def attach(rt: Runtime) -> JobRegistry:
    """Start-up (``Runtime._start_capabilities``): the job registry and its orphan reaper."""
    registry = JobRegistry(rt)
    rt.background.append(BackgroundTask("backup_job_reaper", registry.reap_orphans))
    return registry
