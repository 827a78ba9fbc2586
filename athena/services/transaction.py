"""``POST /gateway/transaction`` (and the ``gateway.transaction`` WebSocket action): several
gateway operations in ONE database transaction, as the SDK's ``db.transaction([…])`` sends them.

``{idempotency_key?, operations: [{id, kind, payload}], options: {isolation_level?, read_only?,
deferrable?}}``; ``kind`` is ``fetch``/``select``, ``insert``, ``update``, ``delete``, ``rpc`` or
``query`` and ``payload`` the body that operation's own route takes. The order of work:

1. every operation is parsed, authorized and planned (``prepare_*`` of ``services.gateway`` and
   ``services.rest.rpc``): a missing right on any of them runs nothing;
2. the idempotency key is claimed in the catalog (a repeat within 24 h answers the stored
   answer; one still running is 409);
3. all statements run in order on one connection inside one transaction, bounded as a whole by
   the statement deadline; the first failure rolls everything back and answers its index and
   error; otherwise the transaction commits and each operation answers positionally
   ``{id, ok, status, data, count}`` as its own route would;
4. committed writes are published to event subscribers, and the answer is stored for the key.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg

from athena.auth.guard import authorize
from athena.context import CallContext
from athena.db.clients import ClientEntry, require_db
from athena.db.errors import api_error_from_db
from athena.errors import CODES, ApiError
from athena.query.postgrest.errors import PgrstError
from athena.query.raw import encode_rows, query_text, transaction_control
from athena.services import gateway
from athena.services.clients import resolve_client
from athena.services.gateway import GatewayResult, raw_sql
from athena.services.gateway.common import result_too_large
from athena.services.rest.errors import api_error_from_pgrst
from athena.services.rest.rpc import (
    CallOutcome,
    CallStatement,
    PreparedCall,
    call_statement,
    gateway_call_from_body,
    gateway_result,
    prepare_gateway_call,
)

if TYPE_CHECKING:
    from athena.runtime import Runtime

log = logging.getLogger(__name__)

KINDS = ("fetch", "select", "insert", "update", "delete", "rpc", "query")
# Fixed SQL for each accepted spelling: the level never reaches SQL from the request.
ISOLATION_LEVELS = {
    "read committed": "READ COMMITTED",
    "read uncommitted": "READ UNCOMMITTED",
    "repeatable read": "REPEATABLE READ",
    "serializable": "SERIALIZABLE",
}
IDEMPOTENCY_HOURS = 24
COMMITTED = "Transaction committed"
MAX_KEY_LENGTH = 200


@dataclass
class Operation:
    index: int
    id: Any
    kind: str
    payload: dict[str, Any]
    # filled by prepare: exactly one of these
    statement: gateway.PreparedStatement | None = None
    call: PreparedCall | None = None
    call_sql: CallStatement | None = None
    query: str | None = None
    outcome: CallOutcome | None = None  # a call's result, set when it ran


@dataclass
class Options:
    isolation: str | None = None
    read_only: bool = False
    deferrable: bool = False

    def sql(self) -> str:
        parts = []
        if self.isolation:
            parts.append(f"ISOLATION LEVEL {self.isolation}")
        parts.append("READ ONLY" if self.read_only else "READ WRITE")
        if self.deferrable:
            parts.append("DEFERRABLE")
        return "SET TRANSACTION " + " ".join(parts)


class OperationFailed(Exception):
    """Operation ``index`` failed: everything is rolled back and the error answered."""

    def __init__(self, index: int, error: ApiError) -> None:
        super().__init__(error.message)
        self.index = index
        self.error = error


# -- parsing -----------------------------------------------------------------------------------


def parse_operations(rt: Runtime, body: Any) -> tuple[list[Operation], Options, str | None]:
    if not isinstance(body, dict):
        raise ApiError("invalid_request", "the request body must be a JSON object")
    raw_ops = body.get("operations")
    if not isinstance(raw_ops, list) or not raw_ops:
        raise ApiError("invalid_request", "'operations' must be a non-empty array")
    limit = rt.settings.transaction_max_operations
    if len(raw_ops) > limit:
        raise ApiError(
            "invalid_request",
            f"a transaction holds at most {limit} operations (ATHENA_TRANSACTION_MAX_OPERATIONS)",
            data={"max_operations": limit, "operations": len(raw_ops)},
        )
    operations = []
    for i, item in enumerate(raw_ops):
        if not isinstance(item, dict):
            raise _invalid(i, None, "each operation must be an object {id, kind, payload}")
        kind = item.get("kind")
        if kind not in KINDS:
            raise _invalid(i, item.get("id"), f"'kind' must be one of {', '.join(KINDS)}")
        payload = item.get("payload", {})
        if not isinstance(payload, dict):
            raise _invalid(i, item.get("id"), "'payload' must be a JSON object")
        operations.append(Operation(i, item.get("id", i), kind, payload))
    return operations, parse_options(body.get("options")), parse_key(body.get("idempotency_key"))


def _invalid(index: int, op_id: Any, message: str) -> ApiError:
    return ApiError(
        "invalid_request",
        f"operation {index}: {message}",
        data={"committed": False, "failed_index": index, "failed_id": op_id},
    )


def parse_options(raw: Any) -> Options:
    if raw is None:
        return Options()
    if not isinstance(raw, dict):
        raise ApiError("invalid_request", "'options' must be an object")
    level = raw.get("isolation_level")
    isolation = None
    if level is not None:
        isolation = ISOLATION_LEVELS.get(str(level).replace("_", " ").replace("-", " ").lower())
        if isolation is None:
            raise ApiError(
                "invalid_request",
                f"unknown isolation_level {level!r}",
                data={"allowed": sorted(ISOLATION_LEVELS)},
            )
    for flag in ("read_only", "deferrable"):
        if raw.get(flag) not in (None, True, False):
            raise ApiError("invalid_request", f"'{flag}' must be a boolean")
    return Options(isolation, raw.get("read_only") is True, raw.get("deferrable") is True)


def parse_key(raw: Any) -> str | None:
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str) or len(raw) > MAX_KEY_LENGTH:
        raise ApiError(
            "invalid_request", f"'idempotency_key' must be a string of at most {MAX_KEY_LENGTH}"
        )
    return raw


# -- prepare: every right checked before anything runs -----------------------------------------


async def _prepare(rt: Runtime, ctx: CallContext, entry: ClientEntry, op: Operation) -> None:
    kind, payload = op.kind, op.payload
    if kind in ("fetch", "select") or (kind == "update" and payload.get("update_body") is None):
        op.statement = await gateway.prepare_fetch(rt, ctx, payload)
    elif kind == "insert":
        op.statement = await gateway.prepare_insert(rt, ctx, payload)
    elif kind == "update":
        op.statement = await gateway.prepare_update(rt, ctx, payload)
    elif kind == "delete":
        op.statement = await gateway.prepare_delete(rt, ctx, payload)
    elif kind == "rpc":
        op.call = await prepare_gateway_call(rt, ctx, gateway_call_from_body(payload))
        try:
            await op.call.call.check_embedded(op.call.plan.rel, op.call.plan.read.embeds)
        except PgrstError as err:
            raise api_error_from_pgrst(err) from None
        op.call_sql = call_statement(op.call)
    else:  # query: raw SQL for keys holding gateway.query
        await authorize(rt, ctx, entry.name, "gateway.query")
        op.query = query_text(payload)
        ending = transaction_control(op.query)
        if ending is not None:  # refused before anything runs, as on /gateway/query
            raise ApiError(
                "statement_refused",
                f"{ending} is not allowed: the operations run in one transaction that the "
                "gateway commits (or rolls back on error)",
                data={"statement": ending},
            )


# -- run ---------------------------------------------------------------------------------------


def _result(op: Operation, data: bytes, extras: dict[str, Any]) -> bytes:
    parts = [b'{"id":', _dumps(op.id), b',"ok":true,"status":200,"data":', data]
    for key, value in extras.items():
        parts += [b",", _dumps(key), b":", _dumps(value)]
    parts.append(b"}")
    return b"".join(parts)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), default=str, ensure_ascii=False).encode()


def _run_all(
    conn: psycopg.Connection,
    operations: list[Operation],
    options: Options,
    max_rows: int,
    max_bytes: int,
) -> list[tuple[bytes, int]]:
    """All statements in one transaction; the first failure raises ``OperationFailed`` (the
    transaction block rolls back as it is left). Returns (data, count) per operation."""
    outputs: list[tuple[bytes, int]] = []
    raw = any(op.query is not None for op in operations)
    try:
        with conn.transaction():
            conn.execute(options.sql())
            for op in operations:
                try:
                    outputs.append(_run_one(conn, op, max_rows, max_bytes))
                except PgrstError as err:
                    raise OperationFailed(op.index, api_error_from_pgrst(err)) from None
                except ApiError as err:
                    raise OperationFailed(op.index, err) from None
                except psycopg.Error as exc:
                    raise OperationFailed(op.index, api_error_from_db(exc)) from None
    finally:
        if raw and not conn.closed:
            # raw SQL may have left session state (SET, temp tables …): nobody inherits it
            conn.close()
    return outputs


def _run_one(
    conn: psycopg.Connection, op: Operation, max_rows: int, max_bytes: int
) -> tuple[bytes, int]:
    if op.statement is not None:
        row = conn.execute(op.statement.statement, op.statement.params).fetchone()
        data, count = (row[0], int(row[1])) if row is not None else ("[]", 0)
        out = data.encode() if isinstance(data, str) else bytes(data or b"[]")
        if op.statement.outbox is not None:  # its webhook event commits (or not) with it
            op.statement.outbox.record(conn, out, count)
        if op.statement.operation == "fetch":
            if count > max_rows:
                raise result_too_large(max_rows)
            if len(out) > max_bytes:
                raise result_too_large(bytes_limit=max_bytes)
        return out, count
    if op.call_sql is not None:
        op.outcome = op.call_sql.run(conn)
        return b"", op.outcome.count
    assert op.query is not None
    with conn.cursor() as cur:
        before = cur.execute(raw_sql.ROLE_SETTINGS, prepare=False).fetchone()
        # no parameters, never prepared: the simple protocol, several statements may run
        cur.execute(op.query, prepare=False)
        while True:  # the rows of the last statement, as /gateway/query answers
            columns = [d.name for d in cur.description] if cur.description is not None else None
            rows = cur.fetchmany(max_rows + 1) if columns is not None else []
            if not cur.nextset():
                break
        after = cur.execute(raw_sql.ROLE_SETTINGS, prepare=False).fetchone()
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.INTRANS or (
            before is not None and after is not None and before[0] != after[0]
        ):
            raise ApiError(
                "statement_refused",
                "transaction control is not allowed in a transaction's operations",
                data={"statement": "COMMIT"},
            )
        raw_sql.refused_change(before, after)
        if columns is None:
            return b"[]", 0
        if len(rows) > max_rows:
            raise result_too_large(max_rows)
        data = encode_rows(columns, rows)
        if len(data) > max_bytes:
            raise result_too_large(bytes_limit=max_bytes)
        return data, len(rows)


def _failure(operations: list[Operation], index: int, error: ApiError) -> ApiError:
    op_id = operations[index].id if index < len(operations) else None
    data = {
        "committed": False,
        "failed_index": index,
        "failed_id": op_id,
        "error": {"code": error.code, "message": error.message, "status": error.status},
    }
    if error.data:
        data["error"]["data"] = error.data  # type: ignore[index]
    code = error.code if error.code in CODES else "invalid_request"
    return ApiError(
        code,
        f"operation {index} ({operations[index].kind}) failed, nothing was committed: "
        f"{error.message}",
        detail=error.detail,
        data=data,
        status=error.status,
    )


async def transaction(rt: Runtime, ctx: CallContext, body: Any) -> GatewayResult:
    operations, options, key = parse_operations(rt, body)
    entry = resolve_client(rt, ctx)
    if ctx.client_header == gateway.CUSTOM_SUPABASE:
        raise ApiError("invalid_request", "transactions run on PostgreSQL clients only")
    for op in operations:
        try:
            await _prepare(rt, ctx, entry, op)
        except PgrstError as err:
            raise _failure(operations, op.index, api_error_from_pgrst(err)) from None
        except ApiError as err:
            raise _failure(operations, op.index, err) from None
    ctx.operation = "transaction"
    ctx.table_name = None
    owner = ctx.key_public_id or "anonymous"
    if key is not None:
        stored = await _claim(rt, owner, entry.name, key)
        if stored is not None:
            return stored
    settings = rt.settings
    for op in operations:
        if op.statement is not None and op.statement.outbox is not None:
            await op.statement.outbox.outbox.ensure(require_db(entry))
    try:
        outputs = await require_db(entry).run(
            lambda conn: _run_all(
                conn, operations, options, settings.max_result_rows, settings.max_result_bytes
            )
        )
    except OperationFailed as failed:
        await _release(rt, owner, entry.name, key)
        raise _failure(operations, failed.index, failed.error) from None
    except BaseException as exc:
        await _release(rt, owner, entry.name, key)
        if isinstance(exc, Exception) and not isinstance(exc, ApiError):
            raise api_error_from_db(exc, client=entry.name) from None
        raise
    results = []
    for op, (data, count) in zip(operations, outputs, strict=True):
        if op.statement is not None:
            extras: dict[str, Any] = {"count": count}
            if op.statement.operation == "fetch":
                extras = await gateway.fetch_extras(rt, op.statement, data, count)
            else:
                await gateway.publish(rt, ctx, op.statement, data, count)
            results.append(_result(op, data, extras))
        elif op.call is not None and op.outcome is not None:
            shaped = gateway_result(op.call, op.outcome, head=op.call.plan.read.head)
            results.append(_result(op, shaped.data_json, shaped.extras))
        else:
            results.append(_result(op, data, {"count": count}))
    answer = GatewayResult(COMMITTED, b'{"committed":true,"results":[' + b",".join(results) + b"]}")
    if key is not None:
        await _store(rt, owner, entry.name, key, answer)
    return answer


# -- idempotency (catalog) -----------------------------------------------------------------------

_CLAIM = f"""
WITH expired AS (
    DELETE FROM athena.transaction_idempotency
     WHERE created_at < now() - interval '{IDEMPOTENCY_HOURS} hours'
        OR (key_owner, client_name, idempotency_key) = (%(owner)s, %(client)s, %(key)s)
           AND state = 'running' AND created_at < now() - make_interval(secs => %(stale)s))
INSERT INTO athena.transaction_idempotency (key_owner, client_name, idempotency_key, state)
VALUES (%(owner)s, %(client)s, %(key)s, 'running')
ON CONFLICT DO NOTHING
RETURNING 1
"""
_STORED = """
SELECT state, status, response FROM athena.transaction_idempotency
 WHERE key_owner = %(owner)s AND client_name = %(client)s AND idempotency_key = %(key)s
   AND created_at >= now() - interval '24 hours'
"""


async def _claim(rt: Runtime, owner: str, client: str, key: str) -> GatewayResult | None:
    """Claim ``key`` for this run; an answer stored for it is returned instead."""
    # a claim still 'running' well past the deadline belongs to a gateway that died mid-way
    stale = rt.settings.statement_timeout_ms / 1000 * 2 + 60
    params = {"owner": owner, "client": client, "key": key, "stale": stale}

    def claim(conn: psycopg.Connection) -> tuple[Any, ...] | None:
        with conn.transaction():
            if conn.execute(_CLAIM, params).fetchone() is not None:
                return None
            return conn.execute(_STORED, params).fetchone() or ("running", None, None)

    existing = await rt.catalog.run(claim)
    if existing is None:
        return None
    state, status, response = existing
    if state != "done":
        raise ApiError(
            "conflict",
            "a transaction with this idempotency_key is still running",
            data={"idempotency_key": key},
        )
    return GatewayResult(COMMITTED, bytes(response), status=int(status))


async def _release(rt: Runtime, owner: str, client: str, key: str | None) -> None:
    """A rolled-back transaction keeps nothing: the same key may run again."""
    if key is None:
        return
    params = {"owner": owner, "client": client, "key": key}
    try:
        await rt.catalog.run(
            lambda conn: conn.execute(
                "DELETE FROM athena.transaction_idempotency WHERE key_owner = %(owner)s"
                " AND client_name = %(client)s AND idempotency_key = %(key)s"
                " AND state = 'running'",
                params,
            )
        )
    except Exception:  # the claim expires on its own; the caller gets the real error
        log.warning("could not release an idempotency claim", exc_info=True)


async def _store(rt: Runtime, owner: str, client: str, key: str, answer: GatewayResult) -> None:
    params = {
        "owner": owner, "client": client, "key": key, "status": answer.status,
        "response": answer.data_json,
    }  # fmt: skip
    try:
        await rt.catalog.run(
            lambda conn: conn.execute(
                "UPDATE athena.transaction_idempotency SET state = 'done', status = %(status)s,"
                " response = %(response)s WHERE key_owner = %(owner)s"
                " AND client_name = %(client)s AND idempotency_key = %(key)s",
                params,
            )
        )
    except Exception:  # committed already: answer it; a retry would find the claim running
        log.warning("could not store a transaction's answer for its idempotency key")
