"""Backups to S3 and restores from it: ``/admin/backups*``.

Creating a backup and restoring one are jobs (``athena.backups.jobs``) that run in the server's
root nursery. The POST waits for the job and answers the spec's body; with
``Accept: text/event-stream`` or ``?stream=true`` it streams Server-Sent Events instead
(CONTRACT.md, "Streamed jobs"). A client that goes away stops only its wait, never the job.

Keys contain ``/`` (``<prefix>/<client>/<stamp>-<id>.dump.gz``): they are matched with the
``path`` converter, URL-encoded (``%2F``) or not. The job routes are registered as their own
rules, and werkzeug ranks static segments above converters, so ``/admin/backups/jobs`` is never
taken for a key.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

from quart import Blueprint, Response, request

from athena.auth.guard import require_admin
from athena.backups.jobs import Job, JobRegistry
from athena.backups.storage import (
    BackupNotFound,
    StorageError,
    require_configured,
    storage_api_error,
)
from athena.backups.targets import client_for_backup, client_for_restore
from athena.db.database import DatabaseUnavailable
from athena.errors import ApiError
from athena.routes._http import ctx, dumps, json_object, json_response, rt

blueprint = Blueprint("backups", __name__)

_JOB_KINDS = {"backup", "restore"}
_JOB_STATES = {"queued", "running", "succeeded", "failed"}
MAX_LABEL_CHARS = 512
MAX_JOBS_LISTED = 500


def _registry() -> JobRegistry:
    require_admin(rt(), ctx())
    return rt().services["backups"]  # type: ignore[no-any-return]


def _storage_registry() -> JobRegistry:
    """The registry, after the admin check and the S3 configuration check (503)."""
    registry = _registry()
    require_configured(rt().settings)
    return registry


def _text_arg(value: str | None, name: str) -> str | None:
    """A text filter or field, refused (400) when PostgreSQL could not store it."""
    if value is not None and "\x00" in value:
        raise ApiError("invalid_request", f"{name} must not contain NUL characters")
    return value or None


def _wants_stream() -> bool:
    flag = request.args.get("stream", "").strip().lower()
    if flag in ("1", "true", "yes"):
        return True
    return "text/event-stream" in request.headers.get("accept", "").lower()


def _sse_response(registry: JobRegistry, job: Job) -> Response:
    async def stream() -> AsyncIterator[bytes]:
        async for event, data in registry.events(job):
            if event == "keepalive":
                yield b": keepalive\n\n"
            else:
                yield f"event: {event}\ndata: {dumps(data)}\n\n".encode()

    response = Response(
        stream(),
        content_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
    response.timeout = None  # a job may stream for hours: no response timeout
    return response


async def _answer(registry: JobRegistry, job: Job) -> Response:
    """Stream the job, or wait for it and answer its result (or its error envelope)."""
    if _wants_stream():
        return _sse_response(registry, job)
    await job.done.wait()
    if job.state == "succeeded":
        return json_response(job.result)
    raise job.api_error()


@blueprint.post("/admin/backups")
async def create_backup() -> Response:
    registry = _storage_registry()
    body = await json_object()
    entry = client_for_backup(rt(), body.get("client_name"))
    label = body.get("label")
    if label is not None and not isinstance(label, str):
        raise ApiError("invalid_request", "label must be a string or null")
    if label is not None and len(label) > MAX_LABEL_CHARS:
        raise ApiError("invalid_request", f"label is longer than {MAX_LABEL_CHARS} characters")
    label = _text_arg(label, "label")
    ctx().client_name = entry.name
    job = await registry.start_backup(entry, label)
    return await _answer(registry, job)


@blueprint.get("/admin/backups")
async def list_backups() -> Response:
    registry = _storage_registry()
    client_name = _text_arg(request.args.get("client_name", "").strip(), "client_name")
    if client_name is not None and "/" in client_name:
        raise ApiError("invalid_request", "client_name must not contain '/'")
    try:
        objects = await registry.storage.list(client_name)
    except StorageError as exc:
        raise storage_api_error(exc) from None
    return json_response({"backups": [o.as_dict() for o in objects]})


@blueprint.get("/admin/backups/jobs")
async def list_jobs() -> Response:
    registry = _registry()
    args = request.args
    kind = args.get("kind") or None
    state = args.get("state") or None
    if kind is not None and kind not in _JOB_KINDS:
        raise ApiError("invalid_request", "kind must be 'backup' or 'restore'")
    if state is not None and state not in _JOB_STATES:
        raise ApiError("invalid_request", f"state must be one of {', '.join(sorted(_JOB_STATES))}")
    try:
        limit = int(args.get("limit", "50"))
    except ValueError:
        raise ApiError("invalid_pagination", "limit must be an integer") from None
    if not 1 <= limit <= MAX_JOBS_LISTED:
        raise ApiError("invalid_pagination", f"limit must be between 1 and {MAX_JOBS_LISTED}")
    try:
        jobs = await registry.list_jobs(
            client_name=_text_arg(args.get("client_name"), "client_name"),
            kind=kind,
            state=state,
            limit=limit,
        )
    except DatabaseUnavailable:
        raise ApiError("catalog_unavailable", "the catalog database is unreachable") from None
    return json_response({"jobs": jobs})


@blueprint.get("/admin/backups/jobs/<id>")
async def get_job(id: str) -> Response:  # the spec names the path parameter {id}
    registry = _registry()
    try:
        job_id = str(uuid.UUID(id))
    except ValueError:
        raise ApiError("invalid_uuid", "the job id is not a UUID", data={"id": id}) from None
    live = registry.live.get(job_id)
    if live is not None and _wants_stream():
        return _sse_response(registry, live)  # re-attach to a job's progress
    try:
        job = await registry.get_job(job_id)
    except DatabaseUnavailable:
        raise ApiError("catalog_unavailable", "the catalog database is unreachable") from None
    if job is None:
        raise ApiError("backup_job_not_found", "no backup job has this id", data={"id": job_id})
    return json_response({"job": job})


@blueprint.post("/admin/backups/<path:key>/restore")
async def restore_backup(key: str) -> Response:
    registry = _storage_registry()
    key = registry.storage.check_key(key)
    body = await json_object()
    entry = await client_for_restore(rt(), body.get("client_name"))
    ctx().client_name = entry.name
    await _head(registry, key)  # 404 now rather than a failed job
    job = await registry.start_restore(entry, key)
    return await _answer(registry, job)


@blueprint.get("/admin/backups/<path:key>/download")
async def download_backup(key: str) -> Response:
    registry = _storage_registry()
    storage = registry.storage
    key = storage.check_key(key)
    try:
        obj, chunks, body = await storage.open_download(key)
    except BackupNotFound:
        raise _not_found(key) from None
    except StorageError as exc:
        raise storage_api_error(exc) from None

    async def relay() -> AsyncIterator[bytes]:
        try:
            while (chunk := await storage.next_chunk(chunks)) is not None:
                yield chunk
        finally:
            body.close()  # releases the S3 connection; a non-blocking socket close

    response = Response(
        relay(),
        content_type="application/gzip",
        headers={
            "Content-Disposition": f'attachment; filename="{obj.filename}"',
            "Content-Length": str(obj.size_bytes),
        },
    )
    response.timeout = None  # large archives take longer than the default 60 s
    return response


@blueprint.delete("/admin/backups/<path:key>")
async def delete_backup(key: str) -> Response:
    registry = _storage_registry()
    key = registry.storage.check_key(key)
    try:
        await registry.storage.delete(key)
    except BackupNotFound:
        raise _not_found(key) from None
    except StorageError as exc:
        raise storage_api_error(exc) from None
    return json_response({"key": key})


async def _head(registry: JobRegistry, key: str) -> Any:
    try:
        return await registry.storage.head(key)
    except BackupNotFound:
        raise _not_found(key) from None
    except StorageError as exc:
        raise storage_api_error(exc) from None


def _not_found(key: str) -> ApiError:
    return ApiError("backup_not_found", "no backup has this key", data={"key": key})
