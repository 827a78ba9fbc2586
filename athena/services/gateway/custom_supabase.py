"""``X-Athena-Client: custom_supabase``: the gateway body served by a Supabase project's
PostgREST API (``x-supabase-url`` + ``x-supabase-key``) over httpx.

The same body parser as the Postgres path reads the request, then it is translated to
PostgREST's wire format (``col=op.value``, ``or=(…)``, ``select``, ``order``, ``limit``,
``offset``, ``Prefer: return=representation``). PostgREST answers bare arrays, which become
``data`` unchanged; its error objects ``{code, message, details, hint}`` are mapped to our codes
(a unique violation is still 409 ``unique_violation``). Timeouts → 504 ``upstream_timeout``,
unreachable → 502 ``upstream_error``.

There is no schema cache for an upstream we do not own, so names are checked for shape only
(``[A-Za-z_][A-Za-z0-9_]*``, optionally ``schema.``-qualified) — the upstream checks existence.

The upstream URL comes from the caller, so it is an SSRF vector: it passes the outbound guard
(``athena.services.outbound``: https only, every resolved address checked, the connection pinned
to it), the request URL is built from its parsed parts (a ``?`` or ``#`` in ``x-supabase-url``
cannot take over the path), and only a PostgREST JSON answer is ever passed on — a metadata
service's text, HTML or JSON object is an ``upstream_error``, never a response body.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from athena.auth.guard import authorize
from athena.auth.rights import table_right
from athena.context import CallContext
from athena.errors import ApiError
from athena.observability import tracing
from athena.query.conditions import Group, Node, parse_conditions, to_grammar
from athena.query.fetch import parse_columns, parse_fetch, relation_name, strip_nulls_flag
from athena.query.mutations import insert_rows
from athena.query.post_processing import post_process, truthy
from athena.query.postgrest.grammar import render, value_text
from athena.services.gateway.common import GatewayResult, require_context_headers
from athena.services.outbound import OutboundPolicy, is_credential_text, send_checked

if TYPE_CHECKING:
    from athena.runtime import Runtime

CLIENT_NAME = "custom_supabase"
TIMEOUT_S = 15.0
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
_BY_PGRST: dict[str, str] = {
    "23505": "unique_violation",
    "23503": "foreign_key_violation",
    "23502": "not_null_violation",
    "23514": "check_violation",
    "42P01": "unknown_table",
    "PGRST205": "unknown_table",
    "PGRST200": "unknown_table",
    "42703": "unknown_column",
    "PGRST204": "unknown_column",
    "57014": "statement_timeout",
    "42501": "insufficient_privilege",
}


def _check_name(name: str, what: str) -> str:
    if not _NAME.match(name):
        raise ApiError(
            "invalid_identifier",
            f"{what} '{name}' is not a plain identifier",
            data={"identifier": name},
        )
    return name


def upstream(ctx: CallContext, policy: OutboundPolicy) -> tuple[httpx.URL, str]:
    """``(base_url, key)`` from the headers; 400 ``missing_header`` when either is absent,
    400 ``outbound_url_refused`` when the URL's shape fails the outbound policy (DNS and the
    address are checked when the request is sent)."""
    url, key = ctx.header("x-supabase-url"), ctx.header("x-supabase-key")
    for name, value in (("x-supabase-url", url), ("x-supabase-key", key)):
        if not value:
            raise ApiError(
                "missing_header",
                f"the {name} header is required when X-Athena-Client is custom_supabase",
                data={"details": {"missing_header": name}},
            )
    assert url is not None and key is not None
    if not is_credential_text(key):
        raise ApiError(
            "invalid_value",
            "the x-supabase-key header must be a key: visible ASCII characters only",
            data={"details": {"header": "x-supabase-key"}},
        )
    base = policy.parse(url)
    # Only scheme, host, port and a path prefix survive: the query and fragment are dropped, so
    # whatever follows a "?" or "#" can never become (part of) the path we call.
    return base.copy_with(path=base.path.rstrip("/"), query=None, fragment=None), key


def request_url(base: httpx.URL, table: str) -> httpx.URL:
    """``<base path>/rest/v1/<table>``, the table percent-encoded as one path segment."""
    return base.copy_with(path=f"{base.path}/rest/v1/{quote(table, safe='')}")


# -- request translation (pure) ----------------------------------------------------------------


def _check_columns(nodes: list[Node] | tuple[Node, ...]) -> None:
    for node in nodes:
        if isinstance(node, Group):
            _check_columns(node.items)
        else:
            _check_name(node.column, "column")


def filter_params(nodes: list[Node]) -> list[tuple[str, str]]:
    """PostgREST query parameters for ANDed condition nodes: the one grammar's ``render``."""
    _check_columns(nodes)
    return render([to_grammar(node) for node in nodes])


def _select(columns: tuple[str, ...] | None) -> str:
    if columns is None:
        return "*"
    return ",".join(_check_name(c, "column") for c in columns)


# -- transport ---------------------------------------------------------------------------------


def _client(rt: Runtime) -> httpx.AsyncClient:
    client = rt.custom_supabase_http
    if client is None:
        # made on first use: most gateways never call a custom Supabase upstream
        # (traceparent goes upstream when tracing is on)
        client = rt.custom_supabase_http = httpx.AsyncClient(
            timeout=TIMEOUT_S, follow_redirects=False, event_hooks=tracing.httpx_hooks()
        )
    return client


def _is_json(response: httpx.Response) -> bool:
    # PostgREST answers application/json (or its vnd.pgrst…+json media types).
    media = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


_PGRST_ERROR_KEYS = frozenset({"code", "message", "details", "hint"})


def _pgrst_error(response: httpx.Response) -> dict[str, Any]:
    """The upstream's error object when it is PostgREST's ``{code, message, details, hint}``
    (strings or null, nothing else); otherwise empty, so no other body is ever echoed."""
    if not _is_json(response):
        return {}
    try:
        payload = response.json()
    except ValueError:
        return {}
    if (
        not isinstance(payload, dict)
        or not {"code", "message"} <= set(payload) <= _PGRST_ERROR_KEYS
    ):
        return {}
    if not all(v is None or isinstance(v, str) for v in payload.values()):
        return {}
    return payload


def _upstream_error(response: httpx.Response) -> ApiError:
    info = _pgrst_error(response)
    pg_code = str(info.get("code") or "")
    message = str(info.get("message") or f"the Supabase project answered {response.status_code}")
    data: dict[str, Any] = {"upstream_status": response.status_code}
    if pg_code:
        data["upstream_code"] = pg_code
    if info.get("details"):
        data["detail"] = info["details"]
    if info.get("hint"):
        data["hint"] = info["hint"]
    code = _BY_PGRST.get(pg_code)
    if code is None:
        if pg_code.startswith("22"):
            code = "invalid_input"
        elif response.status_code in (401, 403):
            code, message = "upstream_error", "the Supabase project rejected the x-supabase-key"
        elif response.status_code >= 500 or not info:
            code = "upstream_error"
        else:
            code = "query_failed"
    return ApiError(code, message, data=data)


def _not_postgrest() -> ApiError:
    return ApiError(
        "upstream_error", "the upstream did not answer like a Supabase (PostgREST) project"
    )


async def _call(
    rt: Runtime,
    ctx: CallContext,
    method: str,
    table: str,
    *,
    params: list[tuple[str, str]],
    body: Any = None,
    prefer: str | None = None,
) -> list[dict[str, Any]]:
    policy = rt.outbound_policy
    base, key = upstream(ctx, policy)
    schema, _, name = table.rpartition(".")
    headers = {"apikey": key, "Authorization": f"Bearer {key}", "Accept": "application/json"}
    if prefer:
        headers["Prefer"] = prefer
    if schema:
        headers["Accept-Profile" if method == "GET" else "Content-Profile"] = schema
    content = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        content = json.dumps(body, separators=(",", ":")).encode()
    try:
        response = await send_checked(
            _client(rt),
            method,
            str(request_url(base, name)),
            policy,
            params=params,
            headers=headers,
            content=content,
        )
    except httpx.TimeoutException:
        raise ApiError("upstream_timeout", "the Supabase project did not answer in time") from None
    except httpx.HTTPError as exc:
        raise ApiError(
            "upstream_error",
            "the Supabase project cannot be reached",
            detail=type(exc).__name__,
        ) from None
    if response.status_code >= 400:
        raise _upstream_error(response)
    if response.status_code not in (200, 201, 204, 206):
        raise _not_postgrest()  # a redirect or any other odd status is not a result
    if response.status_code == 204 or not response.content.strip():
        return []
    if not _is_json(response):
        raise _not_postgrest()
    try:
        payload = response.json()
    except ValueError:
        raise _not_postgrest() from None
    # With return=representation PostgREST answers an array of row objects, always.
    if not isinstance(payload, list) or not all(isinstance(row, dict) for row in payload):
        raise _not_postgrest()
    return payload


def _strip(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if v is not None} for row in rows]


def _result(message: str, rows: list[dict[str, Any]], strip: bool, **extras: Any) -> GatewayResult:

    if strip:
        rows = _strip(rows)
    data = json.dumps(rows, separators=(",", ":"), ensure_ascii=False).encode()
    return GatewayResult(message, data, {"count": len(rows), **extras})


async def _begin(
    rt: Runtime, ctx: CallContext, body: dict[str, Any], operation: str, right: str
) -> str:
    table = _check_name(relation_name(body), "table")
    ctx.client_name = CLIENT_NAME
    ctx.operation = operation
    await authorize(rt, ctx, CLIENT_NAME, table_right(table, right))
    ctx.table_name = table  # authorized for it: the log may name it (see CallContext)
    upstream(ctx, rt.outbound_policy)  # 400 before any work when the headers are missing
    return table


# -- operations --------------------------------------------------------------------------------


async def fetch(rt: Runtime, ctx: CallContext, body: dict[str, Any]) -> GatewayResult:
    table = await _begin(rt, ctx, body, "fetch", "read")
    request = parse_fetch(body, strip_nulls_header=ctx.header("x-strip-nulls"))
    params = [("select", _select(request.columns))]
    params += filter_params(list(request.conditions))
    if request.sort:
        params.append(
            (
                "order",
                ",".join(
                    f"{_check_name(c, 'column')}.{'desc' if d else 'asc'}" for c, d in request.sort
                ),
            )
        )
    params += [("limit", str(request.limit)), ("offset", str(request.offset))]
    rows = await _call(rt, ctx, "GET", table, params=params)
    extras: dict[str, Any] = {}
    if request.post is not None:
        extras["post_processing"] = post_process(rows, request.post)
    return _result("Data fetched successfully", rows, request.strip_nulls, **extras)


async def insert(rt: Runtime, ctx: CallContext, body: dict[str, Any]) -> GatewayResult:
    table = await _begin(rt, ctx, body, "insert", "write")
    require_context_headers(rt, ctx)
    rows = insert_rows(body.get("insert_body"))
    for row in rows:
        for name in row:
            _check_name(name, "column")
    params = [("select", _select(parse_columns(body.get("columns"))))]
    prefer = ["return=representation"]
    on_conflict = body.get("on_conflict", body.get("onConflict"))
    if body.get("update_body") is not None:
        raise ApiError(
            "invalid_request",
            "update_body upserts are not available for custom_supabase; send on_conflict "
            "to update conflicting rows with the inserted values",
        )
    if on_conflict not in (None, "", []):
        names = on_conflict if isinstance(on_conflict, list) else str(on_conflict).split(",")
        params.append(("on_conflict", ",".join(_check_name(n.strip(), "column") for n in names)))
        dupes = "ignore" if truthy(body.get("ignore_duplicates")) else "merge"
        prefer.append(f"resolution={dupes}-duplicates")
    if len(rows) > 1 and body.get("default_to_null") is not True:
        prefer.append("missing=default")
    payload = rows[0] if len(rows) == 1 and isinstance(body.get("insert_body"), dict) else rows
    result = await _call(
        rt, ctx, "POST", table, params=params, body=payload, prefer=",".join(prefer)
    )
    strip = strip_nulls_flag(body, ctx.header("x-strip-nulls"))
    return _result("Data inserted successfully", result, strip)


async def update(rt: Runtime, ctx: CallContext, body: dict[str, Any]) -> GatewayResult:
    table = await _begin(rt, ctx, body, "update", "write")
    update_body = body.get("update_body")
    if not isinstance(update_body, dict) or not update_body:
        raise ApiError("invalid_request", "update_body must be a non-empty object")
    for name in update_body:
        _check_name(name, "column")
    conditions = parse_conditions(body.get("conditions"))
    if not conditions:
        raise ApiError(
            "update_requires_conditions",
            "an update needs at least one condition; refusing to update every row",
        )
    params = [("select", _select(parse_columns(body.get("columns"))))]
    params += filter_params(conditions)
    result = await _call(
        rt, ctx, "PATCH", table, params=params, body=update_body, prefer="return=representation"
    )
    strip = strip_nulls_flag(body, ctx.header("x-strip-nulls"))
    return _result("Data updated successfully", result, strip)


async def delete(rt: Runtime, ctx: CallContext, body: dict[str, Any]) -> GatewayResult:
    table = await _begin(rt, ctx, body, "delete", "delete")
    require_context_headers(rt, ctx)
    conditions = parse_conditions(body.get("conditions"))
    resource_id = body.get("resource_id")
    params = [("select", _select(parse_columns(body.get("columns"))))]
    if resource_id not in (None, ""):
        if isinstance(resource_id, (dict, list)):
            raise ApiError("invalid_value", "resource_id must be a string or a number")
        column = await _resource_column(rt, ctx, table)
        params.append((column, f"eq.{value_text(resource_id)}"))
    elif not conditions:
        raise ApiError(
            "delete_requires_conditions", "a delete needs a resource_id or at least one condition"
        )
    params += filter_params(conditions)
    result = await _call(rt, ctx, "DELETE", table, params=params, prefer="return=representation")
    strip = strip_nulls_flag(body, ctx.header("x-strip-nulls"))
    return _result("Data deleted successfully", result, strip)


async def _resource_column(rt: Runtime, ctx: CallContext, table: str) -> str:
    """``resource_id`` when the upstream table has it, else ``id`` (one probe request)."""
    try:
        await _call(rt, ctx, "GET", table, params=[("select", "resource_id"), ("limit", "0")])
    except ApiError as exc:
        if exc.code == "unknown_column" or (exc.data or {}).get("upstream_status") == 400:
            return "id"
        raise
    return "resource_id"
