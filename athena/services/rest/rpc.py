"""Postgres functions: the ONE implementation behind ``/rest/v1/rpc/{fn}``, ``/gateway/rpc``
and ``/rpc/{fn}``.

``prepare`` finds the function in the schema cache, checks the ``<fn>.execute`` right (table
rights never grant a function) and plans the call (``plan.plan_call``); ``execute`` runs it
once, in a read-only transaction unless it is a volatile function called with POST (as
PostgREST), and returns what PostgreSQL built. Each route shapes that answer its own way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from athena.auth.guard import authorize
from athena.auth.rights import function_right
from athena.context import CallContext
from athena.db.introspection import SchemaSnapshot, exposed_schemas
from athena.errors import ApiError
from athena.http.bodies import strict_loads
from athena.query.postgrest.build import Statement, build_count_source, build_read
from athena.query.postgrest.call import CALL_SOURCE, call_prelude, result_column, with_prelude
from athena.query.postgrest.errors import PgrstError
from athena.query.postgrest.grammar import ALL_OPERATORS, ParsedQuery, parse_query
from athena.services.clients import resolve_client
from athena.services.gateway import GatewayResult
from athena.services.rest.errors import api_error_from_pgrst
from athena.services.rest.plan import CallPlan, plan_call
from athena.services.rest.request import (
    Preferences,
    check_aggregates,
    invalid_body,
    parse_accept,
    parse_range,
    profile_schema,
    read_preferences,
    split_call_pairs,
)
from athena.services.rest.response import RestResult, Shape, read_result, singular_mismatch
from athena.services.rest.service import Serving, plan_rows

if TYPE_CHECKING:
    from athena.runtime import Runtime


@dataclass(frozen=True)
class CallOutcome:
    """What PostgreSQL answered: the total (when counted), the rows and the JSON it built."""

    total: int | None
    count: int
    body: str | None


@dataclass
class PreparedCall:
    call: Serving
    plan: CallPlan


def decode_call_body(raw: bytes | None) -> tuple[Any, str | None]:
    """A POST body: no body is ``{}`` (a call without arguments), else JSON (PGRST102)."""
    if not raw or not raw.strip():
        return {}, "{}"
    try:
        return strict_loads(raw), raw.decode("utf-8")
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # nesting bombs too
        raise invalid_body(f"the body is not valid JSON: {exc}") from None


class RpcService:
    """Function calls; one instance per runtime."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def prepare(
        self,
        ctx: CallContext,
        *,
        name: str,
        schema: str | None,
        method: str,
        direct: dict[str, str] | None,
        body: Any,
        raw_body: str | None,
        query: ParsedQuery,
        prefs: Preferences,
        native: bool,
        singular: bool = False,
        range_header: tuple[int, int | None] | None = None,
    ) -> PreparedCall:
        rt = self.rt
        ctx.operation = "rpc"
        entry = resolve_client(rt, ctx)
        schema = profile_schema(schema, exposed_schemas(rt.settings.rest_schemas))
        await authorize(rt, ctx, entry.name, function_right(name, schema))
        ctx.table_name = name  # authorized for it: the log may name it (see CallContext)
        check_aggregates(query, rt.settings.rest_aggregates_enabled)
        overloads = await rt.introspection.routines(entry, name, schema)
        snapshot: SchemaSnapshot = await rt.introspection.snapshot(entry)
        plan = plan_call(
            snapshot,
            overloads,
            schema=schema,
            name=name,
            method=method,
            direct=direct,
            body=body,
            raw_body=raw_body,
            single_object=prefs.get("params") == "single-object",
            query=query,
            prefs=read_preferences(prefs),
            range_header=range_header,
            native=native,
            max_rows=rt.settings.max_result_rows,
        )
        shape = Shape(native=native, singular=singular, schema=schema, profile_asked=False)
        return PreparedCall(Serving(rt, ctx, entry, snapshot, shape), plan)

    async def execute(self, prepared: PreparedCall) -> CallOutcome:
        """Run the call in its own transaction (read-only unless volatile and POSTed)."""
        await prepared.call.check_embedded(prepared.plan.rel, prepared.plan.read.embeds)
        statement = call_statement(prepared)

        def work(conn: psycopg.Connection) -> CallOutcome:
            with conn.transaction():
                if statement.read_only:
                    conn.execute("SET TRANSACTION READ ONLY")
                # a singular mismatch raises inside the block: the call rolls back
                return statement.run(conn)

        return await prepared.call.run(work)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class CallStatement:
    """A planned call as SQL: the statement, and the ``EXPLAIN`` a planned count needs."""

    statement: Statement
    planned: Statement | None
    mode: str | None
    cap: int
    singular: bool
    read_only: bool

    def run(self, conn: psycopg.Connection) -> CallOutcome:
        """Run on ``conn`` inside the caller's transaction (``/gateway/transaction`` runs
        several calls in one)."""
        row = conn.execute(self.statement.query, self.statement.params).fetchone()
        assert row is not None
        total, count, body = row[0], row[1], row[2]
        if self.singular and count != 1:
            raise singular_mismatch(count)
        if self.planned is not None and (self.mode == "planned" or (total or 0) > self.cap):
            explain = conn.execute(
                b"EXPLAIN (FORMAT JSON) " + self.planned.query.as_bytes(conn), self.planned.params
            ).fetchone()
            total = int(plan_rows(explain[0] if explain else None))
        return CallOutcome(total, count, body)


def call_statement(prepared: PreparedCall) -> CallStatement:
    """The SQL of a planned call (pure): the call once in ``pgrst_call``, read like a table."""
    call, plan = prepared.call, prepared.plan
    read = plan.read
    prelude, prelude_params = call_prelude(plan.routine, plan.args)
    source = sql.Identifier(CALL_SOURCE)
    mode = read.count
    if plan.void:
        query: sql.Composable = sql.SQL(
            "SELECT NULL::bigint, count(*), NULL::text, NULL FROM {}"
        ).format(source)
        params: dict[str, Any] = {}
        mode = None
    else:
        built = build_read(
            call.snapshot,
            plan.rel,
            read.query,
            limit=read.limit,
            offset=read.offset,
            count_exact=mode in ("exact", "estimated"),
            count_cap=read.count_cap if mode == "estimated" else None,
            strip_nulls=False,
            body=not read.head,
            embeds=read.embeds,
            source=source,
            scalar_column=(
                result_column(plan.routine) if plan.routine.return_kind == "scalar" else None
            ),
        )
        query, params = built.statement.query, built.statement.params
    planned: Statement | None = None
    if mode in ("planned", "estimated"):
        count_src = build_count_source(
            call.snapshot, plan.rel, read.query, read.embeds, source=source
        )
        planned = Statement(
            *with_prelude(prelude, prelude_params, count_src.query, count_src.params)
        )
    return CallStatement(
        statement=Statement(*with_prelude(prelude, prelude_params, query, params)),
        planned=planned,
        mode=mode,
        cap=read.count_cap,
        singular=call.shape.singular and plan.returns_rows,
        read_only=plan.read_only,
    )


def single_value(body: str | None, count: int) -> bytes:
    """A function returning one value (or one row) answers it, not an array of it."""
    text = (body or "[]").strip()
    if count != 1 or len(text) < 2:
        return b"null"
    return text[1:-1].encode()  # json_agg of one value is "[<value>]"


def rest_call_result(prepared: PreparedCall, outcome: CallOutcome) -> RestResult:
    """``/rest/v1/rpc``: a table's answer for set results, the value itself otherwise, 204 for
    ``void``."""
    call, plan = prepared.call, prepared.plan
    shape = call.shape
    if plan.void:
        return RestResult(204, None, shape.headers(plan.read.applied, {}), shape.media)
    if plan.returns_rows:
        return read_result(
            shape,
            total=outcome.total,
            count=outcome.count,
            body=outcome.body,
            offset=plan.read.offset,
            head=plan.read.head,
            applied=plan.read.applied,
        )
    headers = shape.headers(plan.read.applied, {})
    if plan.read.head:
        return RestResult(200, None, headers, shape.media)
    return RestResult(
        200, shape.wrap(single_value(outcome.body, outcome.count)), headers, shape.media
    )


async def call_rest(
    rt: Runtime,
    ctx: CallContext,
    *,
    method: str,
    name: str,
    pairs: list[tuple[str, str]],
    body: bytes | None,
    native: bool,
    prefer: str | None,
) -> RestResult:
    """``/rest/v1/rpc/{fn}``: GET/HEAD arguments in the query string, POST in the body."""
    if method in ("GET", "HEAD"):
        direct, rest = split_call_pairs(pairs, ALL_OPERATORS)
        decoded: Any = None
        raw: str | None = None
        schema = ctx.header("accept-profile")
    else:
        direct, rest = None, pairs
        decoded, raw = decode_call_body(body)
        schema = ctx.header("content-profile")
    accept = parse_accept(ctx.header("accept"))
    service = rt.rpc
    prepared = await service.prepare(
        ctx,
        name=name,
        schema=schema,
        method=method,
        direct=direct,
        body=decoded,
        raw_body=raw,
        query=parse_query(rest),
        prefs=Preferences.parse(prefer if prefer is not None else ctx.header("prefer")),
        native=native,
        singular=accept.singular,
        range_header=parse_range(ctx.header("range")),
    )
    prepared.call.shape = Shape(
        native=native,
        singular=accept.singular,
        schema=prepared.call.shape.schema,
        profile_asked=bool(schema),
    )
    return rest_call_result(prepared, await service.execute(prepared))


# -- Athena RS 3.x routes: POST /gateway/rpc, GET/POST /rpc/{fn} ----------------------------

_GATEWAY_FILTER_OPERATORS = frozenset(
    {"eq", "neq", "gt", "gte", "lt", "lte", "like", "ilike", "is", "in"}
)
# /rpc/{fn} query keys that shape the call rather than name an argument
_RPC_QUERY_KEYS = ("schema", "count", "head")


def _scalar_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _list_item(value: Any) -> str:
    text = _scalar_text(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def gateway_filter_pair(item: Any) -> tuple[str, str]:
    """``{column, operator, value}`` (the SDK's RPC filter) as a PostgREST query pair, so the
    one grammar reads it: ``eq null`` is ``IS NULL`` as on the rest of ``/gateway``."""
    if not isinstance(item, dict) or not isinstance(item.get("column"), str):
        raise ApiError("invalid_request", "each filter needs a 'column' and an 'operator'")
    column, operator, value = item["column"], item.get("operator"), item.get("value")
    if operator not in _GATEWAY_FILTER_OPERATORS:
        raise ApiError(
            "invalid_operator",
            f"unsupported filter operator {operator!r}",
            data={"allowed": sorted(_GATEWAY_FILTER_OPERATORS)},
        )
    if operator == "in":
        if not isinstance(value, list):
            raise ApiError("invalid_value", f"filter '{column}' with 'in' needs an array value")
        return column, "in.(" + ",".join(_list_item(v) for v in value) + ")"
    if operator == "is" or (operator == "eq" and value is None):
        word = _scalar_text(value).lower()
        return column, f"is.{word}"
    return column, f"{operator}.{_scalar_text(value)}"


def _order_text(order: Any) -> str | None:
    if order is None:
        return None
    if isinstance(order, str):
        return order
    if isinstance(order, dict) and isinstance(order.get("column"), str):
        ascending = order.get("ascending", True) is not False
        return f"{order['column']}.{'asc' if ascending else 'desc'}"
    if isinstance(order, list):
        parts = [_order_text(o) for o in order]
        return ",".join(p for p in parts if p)
    raise ApiError("invalid_request", "'order' must be {column, ascending} or 'col.desc'")


def _non_negative(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ApiError("invalid_pagination", f"'{name}' must be a non-negative integer")
    return str(value)


@dataclass(frozen=True)
class GatewayCall:
    """One call in the terms of Athena RS's routes, whatever route it came from."""

    name: str
    method: str  # GET (read-only) or POST
    schema: str | None
    direct: dict[str, str] | None  # GET arguments
    args: dict[str, Any] | None  # POST arguments
    pairs: list[tuple[str, str]]  # select / filters / order / limit / offset
    count: str | None
    head: bool


def gateway_call_from_body(body: dict[str, Any], *, name: str | None = None) -> GatewayCall:
    """``POST /gateway/rpc`` ``{function, schema?, args{}, select?, filters[], count?, limit?,
    offset?, order?, head?}`` (the SDK also sends ``function_name``)."""
    fn = name or body.get("function_name") or body.get("function")
    if not isinstance(fn, str) or not fn.strip():
        raise ApiError("invalid_request", "'function' (the function's name) is required")
    args = body.get("args", {})
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ApiError("invalid_request", "'args' must be a JSON object of named arguments")
    pairs: list[tuple[str, str]] = []
    select = body.get("select")
    if select is not None:
        if not isinstance(select, str):
            raise ApiError("invalid_request", "'select' must be a string such as 'id,name'")
        pairs.append(("select", select))
    filters = body.get("filters") or []
    if not isinstance(filters, list):
        raise ApiError("invalid_request", "'filters' must be an array")
    pairs.extend(gateway_filter_pair(f) for f in filters)
    order = _order_text(body.get("order"))
    if order:
        pairs.append(("order", order))
    for key in ("limit", "offset"):
        value = _non_negative(key, body.get(key))
        if value is not None:
            pairs.append((key, value))
    schema = body.get("schema")
    count = body.get("count")
    return GatewayCall(
        name=fn.strip(),
        method="POST",
        schema=schema if isinstance(schema, str) and schema else None,
        direct=None,
        args=args,
        pairs=pairs,
        count=count if isinstance(count, str) else None,
        head=body.get("head") is True,
    )


def gateway_call_from_query(
    name: str, pairs: list[tuple[str, str]], *, method: str, body: Any = None
) -> GatewayCall:
    """``GET/POST /rpc/{fn}``: ``schema``, ``select``, ``count``, ``limit``, ``offset``,
    ``order`` (and ``head``) shape the call; any other key is an argument, or a
    ``col=op.value`` filter on the result. A POST body is the JSON object of arguments (or the
    whole ``/gateway/rpc`` body)."""
    options = {k: v for k, v in pairs if k in _RPC_QUERY_KEYS}
    rest = [(k, v) for k, v in pairs if k not in _RPC_QUERY_KEYS]
    direct, shaping = split_call_pairs(rest, ALL_OPERATORS)
    args: dict[str, Any] | None = None
    if method == "POST":
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise ApiError("invalid_request", "the body must be a JSON object of arguments")
        if isinstance(body.get("args"), dict) and set(body) <= {
            "args", "function", "function_name", "schema", "select", "filters", "count",
            "limit", "offset", "order", "head",
        }:  # fmt: skip
            call = gateway_call_from_body(body, name=name)
            return GatewayCall(
                name=name, method="POST", schema=options.get("schema") or call.schema,
                direct=None, args=call.args, pairs=[*shaping, *call.pairs],
                count=options.get("count") or call.count,
                head=options.get("head") == "true" or call.head,
            )  # fmt: skip
        args = {**direct, **body}
        direct = None
    return GatewayCall(
        name=name,
        method="GET" if method in ("GET", "HEAD") else "POST",
        schema=options.get("schema"),
        direct=direct,
        args=args,
        pairs=shaping,
        count=options.get("count"),
        head=method == "HEAD" or options.get("head") == "true",
    )


async def prepare_gateway_call(rt: Runtime, ctx: CallContext, request: GatewayCall) -> PreparedCall:
    """Rights, lookup and plan of a gateway call (PostgREST errors in the envelope's terms)."""
    prefer = f"count={request.count}" if request.count else ""
    raw = json.dumps(request.args) if request.args is not None else None
    try:
        return await rt.rpc.prepare(
            ctx,
            name=request.name,
            schema=request.schema,
            method="HEAD" if request.head and request.method == "GET" else request.method,
            direct=request.direct,
            body=request.args,
            raw_body=raw,
            query=parse_query(request.pairs),
            prefs=Preferences.parse(prefer),
            native=True,  # no default page of 100: the caller's limit, capped by the row cap
        )
    except PgrstError as err:
        raise api_error_from_pgrst(err) from None


def gateway_result(prepared: PreparedCall, outcome: CallOutcome, *, head: bool) -> GatewayResult:
    """``data`` is the rows of a set result, the value of a single one, ``null`` for
    ``void``; ``count`` the counted total, else the rows returned."""
    plan = prepared.plan
    if plan.void:
        data = b"null"
    elif plan.returns_rows:
        data = b"[]" if head else (outcome.body or "[]").encode()
    else:
        data = b"null" if head else single_value(outcome.body, outcome.count)
    count = outcome.total if outcome.total is not None else outcome.count
    return GatewayResult("RPC executed successfully", data, {"count": count})


async def call_gateway(rt: Runtime, ctx: CallContext, request: GatewayCall) -> GatewayResult:
    """The envelope answer ``{status, message, data, count}``."""
    prepared = await prepare_gateway_call(rt, ctx, request)
    try:
        outcome = await rt.rpc.execute(prepared)
    except PgrstError as err:
        raise api_error_from_pgrst(err) from None
    return gateway_result(prepared, outcome, head=request.head)


async def gateway_rpc(rt: Runtime, ctx: CallContext, body: dict[str, Any]) -> GatewayResult:
    """``POST /gateway/rpc`` (and the ``gateway.rpc`` WebSocket action)."""
    return await call_gateway(rt, ctx, gateway_call_from_body(body))
