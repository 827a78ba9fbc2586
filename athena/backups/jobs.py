"""Backup and restore jobs: recorded in the catalog, run in the server's root nursery.

A job outlives the request that started it: the POST only waits for it (or streams its
progress), so a client that disconnects does not stop a dump halfway. Lifecycle::

    queued ──(a slot of MAX_CONCURRENT_JOBS frees)──► running ──► succeeded | failed

Every job writes a heartbeat to ``athena.backup_jobs`` each second; ``reap_orphans`` (a
supervised background task in every gateway) marks failed the jobs whose gateway died, so a
job never stays "running" forever. Catalog rows are the truth shared by all instances; the
in-memory ``Job`` adds live progress for the SSE stream of the gateway running it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

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
from athena.runtime import BackgroundTask, Runtime

log = logging.getLogger("athena.backups")

# Each job runs one pg_dump/pg_restore (one backend on the client's server, one CPU core for
# gzip): two at once keeps a small gateway responsive; more wait in "queued".
MAX_CONCURRENT_JOBS = 2
HEARTBEAT_SECONDS = 1.0
# A job whose heartbeat is older than this belongs to a gateway that died.
ORPHAN_AFTER_SECONDS = 60
REAP_EVERY_SECONDS = 30.0
# Finished jobs stay in memory this long so a late SSE subscriber still gets the result.
KEEP_FINISHED = 200
# SSE: at most this many progress events per second, and a comment line to keep proxies from
# closing a quiet stream.
PROGRESS_INTERVAL = 0.25
SSE_KEEPALIVE_SECONDS = 15.0
ADVISORY_NAMESPACE = 0x4154_0080  # pg_advisory_xact_lock(namespace, hashtext(client))

# Constant text only: values are always bound parameters.
_SELECT_JOBS = (
    "SELECT id, kind, client_name, state, phase, bytes, total_bytes, backup_key, label, error, "
    "error_code, result, created_at, started_at, finished_at FROM athena.backup_jobs "
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

    id: str
    kind: str  # backup | restore
    client_name: str
    label: str | None = None
    backup_key: str | None = None
    state: str = "queued"
    phase: str = "queued"
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

    # -- progress (called from the job's own task) -----------------------------------------

    def touch(self) -> None:
        """Wake every waiter: a new event object per change is a cheap broadcast."""
        self._changed.set()
        self._changed = trio.Event()

    async def wait_change(self) -> None:
        await self._changed.wait()

    def set_phase(self, name: str) -> None:
        self.phase = name
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
    out["id"] = str(row["id"])
    for name in ("created_at", "started_at", "finished_at"):
        value = row.get(name)
        out[name] = value.isoformat() if value is not None else None
    return out


class JobRegistry:
    """Starts jobs, tracks the live ones, answers job queries from the catalog."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.storage = BackupStorage(rt.settings)
        self.slots = trio.CapacityLimiter(MAX_CONCURRENT_JOBS)
        self.live: dict[str, Job] = {}
        self._finished: list[str] = []

    # -- starting --------------------------------------------------------------------------

    async def start_backup(self, entry: ClientEntry, label: str | None) -> Job:
        job = Job(id=str(uuid.uuid4()), kind="backup", client_name=entry.name, label=label)
        job.backup_key = self.storage.new_key(entry.name, job.id, job.created_at)
        await self._record_new(job)
        self._launch(job, lambda: self._backup(job, entry))
        return job

    async def start_restore(self, entry: ClientEntry, key: str) -> Job:
        job = Job(id=str(uuid.uuid4()), kind="restore", client_name=entry.name, backup_key=key)
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

        def insert(conn: psycopg.Connection) -> str | None:
            with conn.transaction():
                conn.execute(
                    "SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                    (ADVISORY_NAMESPACE, job.client_name),
                )
                busy = conn.execute(
                    """SELECT id::text FROM athena.backup_jobs
                        WHERE client_name = %s AND state IN ('queued', 'running')
                          AND (kind = 'restore' OR %s = 'restore')
                          AND coalesce(heartbeat_at, created_at)
                              > now() - make_interval(secs => %s)
                        LIMIT 1""",
                    (job.client_name, job.kind, ORPHAN_AFTER_SECONDS),
                ).fetchone()
                if busy:
                    return str(busy[0])
                conn.execute(
                    """INSERT INTO athena.backup_jobs
                           (id, kind, client_name, state, phase, backup_key, label,
                            created_at, heartbeat_at)
                       VALUES (%s, %s, %s, 'queued', 'queued', %s, %s, %s, now())""",
                    (job.id, job.kind, job.client_name, job.backup_key, job.label, job.created_at),
                )
            return None

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

    def _launch(self, job: Job, work: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        if self.rt.nursery is None:
            raise ApiError("service_unavailable", "the gateway is not ready to run jobs yet")
        self.live[job.id] = job
        self.rt.nursery.start_soon(self._run, job, work, name=f"athena:{job.kind}:{job.id}")

    # -- running ---------------------------------------------------------------------------

    async def _run(self, job: Job, work: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        """Run one job to its end and record every step; Cancelled (shutdown) is recorded
        as a failure, then re-raised."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._heartbeat, job)
                async with self.slots:
                    job.state, job.started_at = "running", datetime.now(UTC)
                    job.touch()
                    await self._persist(job)
                    job.result = await work()
                job.state = "succeeded"
                job.phase = "done"
                nursery.cancel_scope.cancel()
        except BaseException as exc:
            cancelled, failure = _classify(exc)
            job.state = "failed"
            if cancelled is not None and failure is None:
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
            if cancelled is not None or not isinstance(exc, Exception):
                await self._finish(job, persist_within=5)
                raise
        await self._finish(job, persist_within=10)

    async def _finish(self, job: Job, *, persist_within: float) -> None:
        """Record the outcome, then wake the waiters: whoever is answered can already read
        the finished job from the catalog."""
        job.finished_at = datetime.now(UTC)
        if job.state == "failed":
            job.phase = "failed"
        with trio.CancelScope(shield=True), trio.move_on_after(persist_within):
            try:
                await self._persist(job)
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

    async def _persist(self, job: Job) -> None:
        def write(conn: psycopg.Connection) -> None:
            conn.execute(
                """UPDATE athena.backup_jobs
                      SET state = %s, phase = %s, bytes = %s, total_bytes = %s,
                          backup_key = %s, error = %s, error_code = %s, result = %s,
                          started_at = %s, finished_at = %s, heartbeat_at = now()
                    WHERE id = %s""",
                (
                    job.state, job.phase, job.bytes, job.total_bytes, job.backup_key,
                    job.error, job.error_code,
                    Jsonb(job.result) if job.result is not None else None,
                    job.started_at, job.finished_at, job.id,
                ),
            )  # fmt: skip

        await self.rt.catalog.run(write)

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
        metadata = {
            "client-name": entry.name,
            "created-at": job.created_at.isoformat(),
            "athena-version": __version__,
            "server-version": server_version,
            "job-id": job.id,
        }
        if job.label:
            metadata["label"] = job.label
        try:
            upload = await self.storage.start_upload(job.backup_key, metadata)
        except StorageError as exc:
            raise JobError("storage_unavailable", exc.reason) from None
        try:
            job.set_phase("dumping")
            size = await _unwrap(
                dump_to_upload(tool(self.rt.settings, "pg_dump"), target, upload, job)
            )
            job.set_phase("finalizing")
            await upload.complete()
        except BaseException as exc:
            await upload.abort()  # shielded: no partial object may remain
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
        self, *, client_name: str | None, kind: str | None, state: str | None, limit: int
    ) -> list[dict[str, Any]]:
        def query(conn: psycopg.Connection) -> list[dict[str, Any]]:
            with conn.cursor(row_factory=dict_row) as cur:
                cur.execute(
                    _SELECT_JOBS
                    + """WHERE (%(client)s::text IS NULL OR client_name = %(client)s)
                           AND (%(kind)s::text IS NULL OR kind = %(kind)s)
                           AND (%(state)s::text IS NULL OR state = %(state)s)
                         ORDER BY created_at DESC LIMIT %(limit)s""",
                    {"client": client_name, "kind": kind, "state": state, "limit": limit},
                )
                return cur.fetchall()

        rows = await self.rt.catalog.run(query)
        return [self._overlay(job_json(r)) for r in rows]

    async def get_job(self, job_id: str) -> dict[str, Any] | None:
        def query(conn: psycopg.Connection) -> dict[str, Any] | None:
            with conn.cursor(row_factory=dict_row) as cur:
                cur.execute(
                    _SELECT_JOBS + "WHERE id = %s",
                    (job_id,),
                )
                return cur.fetchone()

        row = await self.rt.catalog.run(query)
        return self._overlay(job_json(row)) if row else None

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
        while True:
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
        """Mark failed the jobs whose gateway stopped sending heartbeats."""
        while True:
            await self.rt.catalog.run(_reap)
            await trio.sleep(REAP_EVERY_SECONDS)


def _reap(conn: psycopg.Connection) -> None:
    conn.execute(
        """UPDATE athena.backup_jobs
              SET state = 'failed', phase = 'failed', finished_at = now(),
                  error_code = 'service_unavailable',
                  error = 'the gateway running this job stopped before it finished'
            WHERE state IN ('queued', 'running')
              AND coalesce(heartbeat_at, created_at) < now() - make_interval(secs => %s)""",
        (ORPHAN_AFTER_SECONDS,),
    )


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


async def attach(rt: Runtime) -> None:
    """Install the job registry and its orphan reaper."""
    registry = JobRegistry(rt)
    rt.services["backups"] = registry
    rt.background.append(BackgroundTask("backup_job_reaper", registry.reap_orphans))
