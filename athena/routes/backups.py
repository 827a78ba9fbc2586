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

from collections.abc import AsyncIterator
from typing import Any

from quart import Blueprint, Response, request

from athena.auth.guard import require_admin
from athena.backups.jobs import (
    Job,
    JobRegistry,
    decode_cursor,
    decode_id_cursor,
    encode_cursor,
    parse_job_ref,
)
from athena.backups.storage import (
    BackupNotFound,
    StorageError,
    require_configured,
    storage_api_error,
)
from athena.backups.targets import client_for_backup, client_for_restore
from athena.db.database import DatabaseUnavailable
from athena.db.uris import mask_uri
from athena.errors import ApiError
from athena.routes._http import ctx, dumps, json_object, json_response, rt

blueprint = Blueprint("backups", __name__)

_JOB_KINDS = {"backup", "restore"}
_JOB_STATES = {"queued", "running", "succeeded", "failed", "cancelled"}
MAX_LABEL_CHARS = 512
MAX_JOBS_LISTED = 500
MAX_BACKUPS_LISTED = 1000


def _registry() -> JobRegistry:
    require_admin(rt(), ctx())
    return rt().backup_jobs


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


def _limit(default: int | None, maximum: int) -> int | None:
    raw = request.args.get("limit")
    if raw is None or raw == "":
        return default
    try:
        limit = int(raw)
    except ValueError:
        raise ApiError("invalid_pagination", "limit must be an integer") from None
    if not 1 <= limit <= maximum:
        raise ApiError("invalid_pagination", f"limit must be between 1 and {maximum}")
    return limit


@blueprint.get("/admin/backups")
async def list_backups() -> Response:
    """Newest first; without ``limit`` every backup (the seed's behaviour), with it a page
    and ``next_cursor``."""
    registry = _storage_registry()
    client_name = _text_arg(request.args.get("client_name", "").strip(), "client_name")
    if client_name is not None and "/" in client_name:
        raise ApiError("invalid_request", "client_name must not contain '/'")
    limit = _limit(None, MAX_BACKUPS_LISTED)
    cursor = request.args.get("cursor") or None
    after = decode_cursor(cursor) if cursor else None
    try:
        objects, next_key = await registry.storage.list_page(client_name, limit, after)
    except StorageError as exc:
        raise storage_api_error(exc) from None
    body: dict[str, Any] = {"backups": [o.as_dict() for o in objects]}
    if limit is not None or cursor is not None:  # paged: the seed's plain listing is unchanged
        body["next_cursor"] = encode_cursor(next_key) if next_key else None
    return json_response(body)


@blueprint.get("/admin/backups/config")
async def backup_config() -> Response:
    """Where backups go, for operators and consoles: never a credential."""
    require_admin(rt(), ctx())
    settings = rt().settings
    endpoint = settings.backup_s3_endpoint
    return json_response(
        {
            "configured": not settings.s3_missing(),
            "missing_settings": settings.s3_missing(),
            "bucket": settings.backup_s3_bucket,
            "region": settings.backup_s3_region,
            "prefix": settings.backup_s3_prefix.strip("/"),
            "endpoint": mask_uri(endpoint) if endpoint else None,
            "job_orphan_seconds": settings.backup_job_orphan_seconds,
            "scheduler_interval_s": settings.backup_scheduler_interval_s,
        }
    )


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
    limit = _limit(50, MAX_JOBS_LISTED)
    assert limit is not None
    cursor = args.get("cursor") or None
    before = decode_id_cursor(cursor) if cursor else None
    try:
        jobs, next_id = await registry.list_jobs(
            client_name=_text_arg(args.get("client_name"), "client_name"),
            kind=kind,
            state=state,
            limit=limit,
            before_id=before,
        )
    except DatabaseUnavailable:
        raise ApiError("catalog_unavailable", "the catalog database is unreachable") from None
    return json_response(
        {"jobs": jobs, "next_cursor": encode_cursor(next_id) if next_id is not None else None}
    )


async def _job_or_404(registry: JobRegistry, ref: tuple[str, int | str]) -> dict[str, object]:
    try:
        job = await registry.get_job(ref, with_log=True)
    except DatabaseUnavailable:
        raise ApiError("catalog_unavailable", "the catalog database is unreachable") from None
    if job is None:
        raise ApiError("backup_job_not_found", "no backup job has this id", data={"id": ref[1]})
    return job


@blueprint.get("/admin/backups/jobs/<id>")
async def get_job(id: str) -> Response:  # the spec names the path parameter {id}
    registry = _registry()
    ref = parse_job_ref(id)
    live = registry.live.get(ref[1]) if ref[0] == "id" else None  # type: ignore[call-overload]
    if live is not None and _wants_stream():
        return _sse_response(registry, live)  # re-attach to a job's progress
    return json_response({"job": await _job_or_404(registry, ref)})


@blueprint.post("/admin/backups/jobs/<id>/cancel")
async def cancel_job(id: str) -> Response:
    """Stop a queued or running job wherever it runs; answers the job once it stopped (or,
    after 15 s, as it is, with ``cancel_requested_at`` set and status 202)."""
    registry = _registry()
    job_id = int((await _job_or_404(registry, parse_job_ref(id)))["id"])  # type: ignore[call-overload]
    try:
        job = await registry.cancel(job_id)
    except DatabaseUnavailable:
        raise ApiError("catalog_unavailable", "the catalog database is unreachable") from None
    if job is None:
        raise ApiError("backup_job_not_found", "no backup job has this id", data={"id": job_id})
    return json_response({"job": job}, 200 if job["state"] == "cancelled" else 202)


@blueprint.delete("/admin/backups/jobs/<id>")
async def delete_job(id: str) -> Response:
    """Forget a finished job (its backup in S3 stays; delete that by key)."""
    registry = _registry()
    job_id = int((await _job_or_404(registry, parse_job_ref(id)))["id"])  # type: ignore[call-overload]
    try:
        state = await registry.delete_job(job_id)
    except DatabaseUnavailable:
        raise ApiError("catalog_unavailable", "the catalog database is unreachable") from None
    if state is None:
        raise ApiError("backup_job_not_found", "no backup job has this id", data={"id": job_id})
    return json_response({"id": job_id, "deleted": True})


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
