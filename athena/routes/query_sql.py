"""``POST /query/sql``: raw SQL through a chosen driver (``postgresql``/``supabase`` → the pool of
client ``db_name``; ``athena`` → ScyllaDB). Same envelope and ``meta`` as ``/gateway/query``."""

from __future__ import annotations

from quart import Blueprint, Response

from athena.http.render import success_bytes
from athena.routes._http import ctx, json_object, raw_json_response, rt
from athena.services.gateway import query_sql

blueprint = Blueprint("query_sql", __name__)


@blueprint.post("/query/sql")
async def post_query_sql() -> Response:
    outcome = await query_sql(rt(), ctx(), await json_object())
    body = success_bytes(
        "Query executed successfully",
        outcome["data_json"],
        count=outcome["count"],
        meta=outcome["meta"],
    )
    return raw_json_response(body)
