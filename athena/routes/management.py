"""Management DDL over HTTP: ``/management/capabilities``, ``/management/tables`` (POST),
``/management/tables/{table}`` (PATCH, DELETE), ``/management/tables/{table}/columns/{column}``
(DELETE), ``/management/indexes`` (POST), ``/management/indexes/{index}`` (DELETE).

Order of checks: client header (400) → a key bound to the client holding the operation's right,
enforcement or not (401/403; the master key passes) → client not frozen/inactive for changes
(403) → body (400) → audit table (503) → live schema (404/409) → the change.
"""

from __future__ import annotations

from quart import Blueprint, Response, request

from athena.auth.guard import authorize
from athena.context import CallContext
from athena.db.clients import ClientEntry
from athena.errors import ApiError
from athena.query.ddl import REQUIRED_RIGHTS
from athena.routes._http import ctx, json_object, rt, success
from athena.runtime import Runtime
from athena.services import management
from athena.services.clients import resolve_client

blueprint = Blueprint("management", __name__)


@blueprint.before_request
async def _read_body_first() -> None:
    # Answering before the request body is read (an auth error, say) leaves the unread bytes
    # on a keep-alive connection, and the next request on it can hang (measured: ~1 in 10
    # with hypercorn's trio worker). Reading it first (bounded by MAX_CONTENT_LENGTH) avoids it.
    await request.get_data(cache=True)


async def _guard(
    operation: str, *, changes: bool = True
) -> tuple[Runtime, CallContext, ClientEntry]:
    runtime, call = rt(), ctx()
    entry = resolve_client(runtime, call, for_data=False)
    await authorize(runtime, call, entry.name, REQUIRED_RIGHTS[operation], require_bound_key=True)
    if changes:
        if entry.is_frozen:
            raise ApiError(
                "client_frozen", f"client '{entry.name}' is frozen", data={"client": entry.name}
            )
        if not entry.is_active:
            raise ApiError(
                "client_inactive", f"client '{entry.name}' is inactive", data={"client": entry.name}
            )
    call.operation = operation
    return runtime, call, entry


@blueprint.get("/management/capabilities")
async def capabilities() -> Response:
    runtime, _, entry = await _guard("capabilities", changes=False)
    data = await management.client_capabilities(runtime, entry)
    return success("Management capabilities", data)


@blueprint.post("/management/tables")
async def create_table() -> Response:
    runtime, call, entry = await _guard("create_table")
    body = await json_object()
    data = await management.create_table(runtime, call, entry, body)
    return success("Table created", data, 201)


@blueprint.patch("/management/tables/<table_name>")
async def edit_table(table_name: str) -> Response:
    runtime, call, entry = await _guard("edit_table")
    body = await json_object()
    data = await management.edit_table(runtime, call, entry, table_name, body)
    return success("Table updated", data)


@blueprint.delete("/management/tables/<table_name>")
async def drop_table(table_name: str) -> Response:
    runtime, call, entry = await _guard("drop_table")
    body = await json_object(required=False)
    data = await management.drop_table(runtime, call, entry, table_name, body)
    return success("Table dropped", data)


@blueprint.delete("/management/tables/<table_name>/columns/<column_name>")
async def drop_column(table_name: str, column_name: str) -> Response:
    runtime, call, entry = await _guard("drop_column")
    body = await json_object(required=False)
    data = await management.drop_column(runtime, call, entry, table_name, column_name, body)
    return success("Column dropped", data)


@blueprint.post("/management/indexes")
async def create_index() -> Response:
    runtime, call, entry = await _guard("create_index")
    body = await json_object()
    data = await management.create_index(runtime, call, entry, body)
    return success("Index created", data, 201)


@blueprint.delete("/management/indexes/<index_name>")
async def drop_index(index_name: str) -> Response:
    runtime, call, entry = await _guard("drop_index")
    body = await json_object(required=False)
    data = await management.drop_index(runtime, call, entry, index_name, body)
    return success("Index dropped", data)
