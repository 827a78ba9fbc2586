"""``POST /pipelines``: run a prebuilt and/or inline pipeline (source → transform → sink).

``X-Athena-Client`` picks the database the source is read from and the sink written to; the
caller needs ``<source>.read`` and ``<sink>.write``. ``?dry_run=true`` (or ``"dry_run": true``
in the body) computes the rows without writing them.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response

from athena.auth.guard import authorize
from athena.auth.rights import table_right
from athena.http.render import success_bytes
from athena.pipelines.config import merge_request
from athena.pipelines.runner import run_pipeline
from athena.query.post_processing import truthy
from athena.routes._http import ctx, json_object, raw_json_response, rt
from athena.services.clients import resolve_client

blueprint = Blueprint("pipelines", __name__)


@blueprint.post("/pipelines")
async def run() -> Response:
    runtime, call = rt(), ctx()
    entry = resolve_client(runtime, call)
    await authorize(runtime, call, entry.name, None)  # who is asking, before what they ask
    body = await json_object()
    plan = merge_request(body, runtime.pipelines)
    call.operation = "pipeline"
    await authorize(runtime, call, entry.name, table_right(plan.source.relation, "read"))
    await authorize(runtime, call, entry.name, table_right(plan.sink, "write"))
    call.table_name = plan.sink  # authorized for it: the log may name it (see CallContext)
    dry_run = truthy(call.query.get("dry_run", body.get("dry_run", False)))
    result = await run_pipeline(runtime, entry, plan, dry_run=dry_run)

    extras: dict[str, Any] = {
        "rows_fetched": result.rows_fetched,
        "rows_inserted": result.rows_inserted,
        "errors": result.errors,
        "pipeline": plan.name,
        "dry_run": dry_run,
    }
    if dry_run:
        extras["would_insert"] = result.would_insert
    if result.error_count > len(result.errors):
        extras["error_count"] = result.error_count
    if result.data_truncated:
        # `data` is capped (ATHENA_MAX_RESULT_ROWS / _BYTES); the counts above are exact.
        extras["data_truncated"] = True
    if dry_run:
        message = f"Dry run: {result.would_insert} rows would be inserted"
    elif result.error_count:
        message = f"Pipeline completed with {result.error_count} rejected rows"
    else:
        message = "Pipeline completed"
    return raw_json_response(success_bytes(message, result.data_json, **extras))
