"""Schema reads for one client: ``/schema/tables``, ``/schema/columns``, ``/schema/migrations``.

Auth: see ``athena.services.schema_info`` (enforcement + ``management.read`` or
``gateway.read``). Frozen clients stay readable.
"""

from __future__ import annotations

from quart import Blueprint, Response, request

from athena.query.ddl import identifier
from athena.routes._http import ctx, dumps, raw_json_response, rt
from athena.services import schema_info
from athena.services.clients import resolve_client

blueprint = Blueprint("schema", __name__)


@blueprint.before_request
async def _read_body_first() -> None:
    # Answering before the request body is read (an auth error, say) leaves the unread bytes
    # on a keep-alive connection, and the next request on it can hang (measured: ~1 in 10
    # with hypercorn's trio worker). Reading it first (bounded by MAX_CONTENT_LENGTH) avoids it.
    await request.get_data(cache=True)


@blueprint.get("/schema/tables")
async def tables() -> Response:
    runtime, call = rt(), ctx()
    entry = resolve_client(runtime, call, for_data=False)
    await schema_info.authorize_schema_read(runtime, call, entry)
    schema = call.query.get("schema_name") or call.query.get("schema") or None
    if schema is not None:
        schema = identifier(schema, "schema_name")
    data = await schema_info.tables_json(entry, schema)
    return raw_json_response(b'{"tables":' + data.encode() + b"}")


@blueprint.get("/schema/columns")
async def columns() -> Response:
    runtime, call = rt(), ctx()
    entry = resolve_client(runtime, call, for_data=False)
    await schema_info.authorize_schema_read(runtime, call, entry)
    schema, table = schema_info.split_table_param(
        call.query.get("table_name") or call.query.get("table"),
        call.query.get("schema_name") or call.query.get("schema") or None,
    )
    call.table_name = table
    data = await schema_info.columns_json(entry, table, schema)
    return raw_json_response(b'{"columns":' + data.encode() + b"}")


@blueprint.get("/schema/migrations")
async def migrations() -> Response:
    runtime, call = rt(), ctx()
    entry = resolve_client(runtime, call, for_data=False)
    await schema_info.authorize_schema_read(runtime, call, entry)
    data = await schema_info.migrations_json(entry)
    if data is None:
        message = "supabase_migrations.schema_migrations does not exist in this database"
        return raw_json_response(b'{"migrations":[],"message":' + dumps(message).encode() + b"}")
    return raw_json_response(b'{"migrations":' + data.encode() + b"}")
