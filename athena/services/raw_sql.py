"""Raw SQL on a client's PostgreSQL pool: ``/gateway/query`` and ``/query/sql``.

The caller's text runs in ONE transaction (several ``;``-separated statements are allowed and
counted) under the pool's statement timeout; the result set of the last statement is returned.
Afterwards the connection is reset (``DISCARD ALL``) so that a ``SET``, a temporary table or a
``LISTEN`` in one caller's SQL never leaks into the next request that borrows the connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import psycopg

from athena.db.errors import api_error_from_db
from athena.db.pools import ClientEntry, require_db
from athena.errors import ApiError
from athena.query.raw import encode_rows, is_ddl, written_rows

if TYPE_CHECKING:
    from athena.runtime import Runtime


@dataclass
class RawOutcome:
    """What running the caller's SQL produced."""

    columns: list[str] | None  # None: the last statement returned no rows
    rows: list[tuple[Any, ...]]
    statement_count: int
    rows_affected: int
    ddl: bool
    too_many: bool


def _run_raw(conn: psycopg.Connection, text: str, max_rows: int) -> RawOutcome:
    statements = affected = 0
    ddl = too_many = False
    columns: list[str] | None = None
    rows: list[tuple[Any, ...]] = []
    try:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(text)  # no parameters → simple protocol: several statements allowed
            while True:
                statements += 1
                tag = cur.statusmessage
                affected += written_rows(tag)
                ddl = ddl or is_ddl(tag)
                if cur.description is not None:
                    columns = [d.name for d in cur.description]
                    rows = cur.fetchmany(max_rows + 1)
                    too_many = len(rows) > max_rows
                else:
                    columns, rows, too_many = None, [], False
                if not cur.nextset():
                    break
    finally:
        if not conn.closed:
            try:
                conn.execute("DISCARD ALL")
            except psycopg.Error:
                conn.close()  # a connection we cannot reset is not returned for reuse
    return RawOutcome(columns, rows, statements, affected, ddl, too_many)


async def execute(rt: Runtime, entry: ClientEntry, text: str) -> dict[str, Any]:
    """Run ``text`` on ``entry``'s pool; returns ``{data_json, meta}`` or raises ApiError."""
    settings = rt.settings
    db = require_db(entry)
    try:
        outcome = await db.run(partial(_run_raw, text=text, max_rows=settings.max_result_rows))
    except ApiError:
        raise
    except Exception as exc:
        raise api_error_from_db(exc, client=entry.name) from None
    if outcome.ddl:
        rt.introspection.invalidate(entry.name)
    if outcome.too_many:
        raise result_too_large(settings.max_result_rows)
    data = encode_rows(outcome.columns, outcome.rows) if outcome.columns is not None else b"[]"
    if len(data) > settings.max_result_bytes:
        raise result_too_large(bytes_limit=settings.max_result_bytes)
    meta = {
        "backend": "postgresql",
        "returned_row_count": len(outcome.rows),
        "rows_affected": outcome.rows_affected,
        "statement_count": outcome.statement_count,
    }
    return {"data_json": data, "meta": meta, "count": len(outcome.rows)}


def result_too_large(rows_limit: int | None = None, *, bytes_limit: int | None = None) -> ApiError:
    """413 ``result_too_large`` naming the limit that was exceeded."""
    if rows_limit is not None:
        return ApiError(
            "result_too_large",
            f"the result has more than {rows_limit} rows (ATHENA_MAX_RESULT_ROWS); "
            "narrow the query or page through it",
            data={"max_rows": rows_limit},
        )
    return ApiError(
        "result_too_large",
        f"the result is larger than {bytes_limit} bytes (ATHENA_MAX_RESULT_BYTES); "
        "select fewer columns or rows",
        data={"max_bytes": bytes_limit},
    )
