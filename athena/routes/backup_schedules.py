"""Backup schedules: ``/admin/backups/schedules*`` (admin key).

Bodies and answers follow the official SDK's types: a created, updated or fetched schedule is
the schedule object itself; the listing is ``{"schedules": [...]}``. Timing rules and the
scheduler are in ``athena.backups.schedules``.
"""

from __future__ import annotations

from quart import Blueprint, Response

from athena.auth.guard import require_admin
from athena.backups.schedules import ScheduleBook, parse_schedule
from athena.backups.storage import require_configured
from athena.db.database import DatabaseUnavailable
from athena.errors import ApiError
from athena.routes._http import ctx, json_object, json_response, rt

blueprint = Blueprint("backup_schedules", __name__)


def _book() -> ScheduleBook:
    require_admin(rt(), ctx())
    return rt().backup_schedules


def _id(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise ApiError("invalid_request", "the schedule id is not an integer", data={"id": raw})
    return int(raw)


def _not_found(schedule_id: int) -> ApiError:
    return ApiError(
        "backup_schedule_not_found", "no backup schedule has this id", data={"id": schedule_id}
    )


def _catalog_down() -> ApiError:
    return ApiError("catalog_unavailable", "the catalog database is unreachable")


@blueprint.get("/admin/backups/schedules")
async def list_schedules() -> Response:
    book = _book()
    try:
        return json_response({"schedules": await book.list()})
    except DatabaseUnavailable:
        raise _catalog_down() from None


@blueprint.post("/admin/backups/schedules")
async def create_schedule() -> Response:
    book = _book()
    values = parse_schedule(rt(), await json_object())
    try:
        return json_response(await book.create(values), 201)
    except DatabaseUnavailable:
        raise _catalog_down() from None


@blueprint.get("/admin/backups/schedules/<id>")
async def get_schedule(id: str) -> Response:
    book = _book()
    schedule_id = _id(id)
    try:
        found = await book.get(schedule_id)
    except DatabaseUnavailable:
        raise _catalog_down() from None
    if found is None:
        raise _not_found(schedule_id)
    return json_response(found)


@blueprint.patch("/admin/backups/schedules/<id>")
async def update_schedule(id: str) -> Response:
    book = _book()
    schedule_id = _id(id)
    body = await json_object()
    try:
        current = await book.get(schedule_id)
        if current is None:
            raise _not_found(schedule_id)
        updated = await book.update(schedule_id, parse_schedule(rt(), body, current))
    except DatabaseUnavailable:
        raise _catalog_down() from None
    if updated is None:
        raise _not_found(schedule_id)
    return json_response(updated)


@blueprint.delete("/admin/backups/schedules/<id>")
async def delete_schedule(id: str) -> Response:
    book = _book()
    schedule_id = _id(id)
    try:
        deleted = await book.delete(schedule_id)
    except DatabaseUnavailable:
        raise _catalog_down() from None
    if not deleted:
        raise _not_found(schedule_id)
    return json_response({"id": schedule_id, "deleted": True})


@blueprint.post("/admin/backups/schedules/<id>/run")
async def run_schedule(id: str) -> Response:
    """Start the schedule's backup now; 202 with the queued job (follow it by id)."""
    book = _book()
    require_configured(rt().settings)
    schedule_id = _id(id)
    try:
        job = await book.run_now(schedule_id)
    except DatabaseUnavailable:
        raise _catalog_down() from None
    if job is None:
        raise _not_found(schedule_id)
    record = await book.jobs.get_job(("id", job.id))
    body = {"job_id": job.id, "schedule_id": schedule_id, "status": job.state, "job": record}
    return json_response(body, 202)
