"""Raw SQL on a client's own raw pool: the PostgreSQL half of ``/gateway/query``, ``/query/sql``,
the WS action and ``/gateway/transaction``'s ``query`` operations.

The caller's text runs in ONE transaction (several ``;``-separated statements are allowed and
counted) under the pool's statement timeout; the result set of the last statement is returned.
It never runs on the connections other callers share: the client's raw pool hands out each
connection once (``db/clients.py``), so a ``SET``, a prepared statement, a temporary table or a
``LISTEN`` in one caller's SQL never reaches any other request. State that outlives a session
(``ALTER ROLE/DATABASE … SET``, a role's password or a database's connection limit) is checked
for inside the transaction and rolled back (``ROLE_SETTINGS``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import psycopg

from athena.db.clients import ClientEntry, require_raw_db
from athena.db.errors import DATABASE_ERRORS, api_error_from_db
from athena.errors import ApiError
from athena.query.raw import (
    encode_rows,
    is_ddl,
    transaction_control,
    written_rows,
)
from athena.services.gateway.common import result_too_large

if TYPE_CHECKING:
    from athena.runtime import Runtime


@dataclass
class RawOutcome:
    """What running the caller's SQL produced."""

    data: bytes  # the last statement's rows as a JSON array (encoded in the worker thread)
    row_count: int
    statement_count: int
    rows_affected: int
    ddl: bool
    too_many: bool
    too_big: bool


# What a caller's SQL must not change, because it outlives the caller's session and every
# later session of the gateway's own role starts from it. Read before and after the caller's
# SQL inside its transaction, so that a DO block's EXECUTE or a function the SQL calls is seen
# as well as a plain statement:
# - pg_db_role_setting: ALTER ROLE … SET / ALTER DATABASE … SET (what new sessions start with);
# - pg_database: ALTER DATABASE … CONNECTION LIMIT / OWNER / RENAME / IS_TEMPLATE (CONNECTION
#   LIMIT 0 on a database the gateway role owns locks every new pooled connection out);
# - pg_authid: ALTER ROLE/USER … PASSWORD, RENAME, NOLOGIN, VALID UNTIL … A role's password is
#   not readable by a non-superuser, so a change is recognised by the lock it takes: writing a
#   role's row takes ROW EXCLUSIVE on pg_authid until the transaction ends (and drops it with a
#   subtransaction that rolled the change back). An ordinary role (NOCREATEROLE, as the gateway's
#   should be) can write no row there but its own password; a CREATEROLE role's raw SQL is held
#   to the same rule, as the gateway cannot tell which role's row it wrote.
# Every name is schema-qualified and every operator spelt OPERATOR(pg_catalog.…), so that a
# search_path the caller set cannot substitute a relation, function or operator of its own.
ROLE_SETTINGS = (
    "SELECT pg_catalog.transaction_timestamp(),"
    " ARRAY(SELECT s.setconfig FROM pg_catalog.pg_db_role_setting s"
    " ORDER BY s.setdatabase, s.setrole),"
    " ARRAY(SELECT CAST(ROW(d.datname, d.datdba, d.datconnlimit, d.datallowconn,"
    " d.datistemplate) AS pg_catalog.text) FROM pg_catalog.pg_database d ORDER BY d.oid),"
    " EXISTS(SELECT FROM pg_catalog.pg_locks l"
    " WHERE l.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid()"
    " AND l.locktype OPERATOR(pg_catalog.=) 'relation'"
    " AND l.relation OPERATOR(pg_catalog.=) CAST('pg_catalog.pg_authid' AS pg_catalog.regclass)"
    " AND l.mode OPERATOR(pg_catalog.=) 'RowExclusiveLock')"
)


def refused_change(before: tuple[Any, ...] | None, after: tuple[Any, ...] | None) -> None:
    """403 ``statement_refused`` when the caller's SQL changed what ``ROLE_SETTINGS`` reads
    (after transaction control, which the caller checks first). The transaction is then rolled
    back as the error leaves it."""
    if before is None or after is None:
        return
    if after[1] != before[1]:
        raise ApiError(
            "statement_refused",
            "changing role or database settings (ALTER ROLE/DATABASE … SET) is not "
            "allowed through the gateway; the transaction was rolled back",
            data={"statement": "ALTER … SET"},
        )
    if after[3] and not before[3]:
        raise ApiError(
            "statement_refused",
            "changing a role (ALTER ROLE/USER … PASSWORD, RENAME, LOGIN, CONNECTION LIMIT, "
            "VALID UNTIL) is not allowed through the gateway: new connections of its own role "
            "would fail; the transaction was rolled back",
            data={"statement": "ALTER ROLE"},
        )
    if after[2] != before[2]:
        raise ApiError(
            "statement_refused",
            "changing a database (ALTER DATABASE … CONNECTION LIMIT, OWNER, RENAME, "
            "IS_TEMPLATE) is not allowed through the gateway: new connections of its own role "
            "could fail; the transaction was rolled back",
            data={"statement": "ALTER DATABASE"},
        )


def _run_raw(
    conn: psycopg.Connection,
    text: str,
    max_rows: int,
    max_bytes: int,
    params: list[str | None] | None = None,
) -> RawOutcome:
    """Run the caller's SQL in one transaction on a connection used only for this call.

    The connection comes from the client's raw pool and is closed afterwards
    (``Database.single_use``), so session state it leaves dies with it. What outlives a
    session is refused: transaction control that would commit before the checks below, and a
    change to role or database settings, a role or a database (``refused_change``: rolled
    back, 403 ``statement_refused``).
    """
    ending = transaction_control(text)
    if ending is not None:
        raise ApiError(
            "statement_refused",
            f"{ending} is not allowed: the SQL runs in one transaction that the gateway "
            "commits (or rolls back on error)",
            data={"statement": ending},
        )
    statements = affected = 0
    ddl = too_many = too_big = False
    data = b"[]"
    columns: list[str] | None = None
    rows: list[tuple[Any, ...]] = []
    # No parameters and never prepared → the simple protocol: several statements run.
    # With params: PostgreSQL's own $1… placeholders (RawCursor), one statement.
    cursor = conn.cursor() if params is None else psycopg.RawCursor(conn)
    with conn.transaction(), cursor as cur:
        before = cur.execute(ROLE_SETTINGS, prepare=False).fetchone()
        cur.execute(text, params, prepare=False)
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
        after = cur.execute(ROLE_SETTINGS, prepare=False).fetchone()
        if before is None or after is None or after[0] != before[0]:
            # Transaction control the parser did not see: whatever ran after it may be
            # committed already; the connection is discarded, never reused.
            raise ApiError(
                "statement_refused",
                "transaction control is not allowed in raw SQL",
                data={"statement": "COMMIT"},
            )
        refused_change(before, after)
        # Encoded here, in the worker thread (a large result never stalls the event loop),
        # and before COMMIT: an oversized result is told 413 AND rolled back, so that a
        # 413 never hides a write that happened.
        if not too_many and columns is not None:
            data = encode_rows(columns, rows)
            too_big = len(data) > max_bytes
        if too_many or too_big:
            raise psycopg.Rollback()
    return RawOutcome(data, len(rows), statements, affected, ddl, too_many, too_big)


async def execute(
    rt: Runtime, entry: ClientEntry, text: str, params: list[str | None] | None = None
) -> dict[str, Any]:
    """Run ``text`` (with ``params`` for ``$1…``) on ``entry``'s raw pool; returns
    ``{data_json, meta}`` or raises ApiError."""
    settings = rt.settings
    db = require_raw_db(entry)
    try:
        outcome = await db.run(
            partial(
                _run_raw,
                text=text,
                params=params,
                max_rows=settings.max_result_rows,
                max_bytes=settings.max_result_bytes,
            )
        )
    except DATABASE_ERRORS as exc:
        raise api_error_from_db(exc, client=entry.name) from None
    if outcome.ddl:
        rt.introspection.invalidate(entry.name)
    if outcome.too_many:
        raise result_too_large(settings.max_result_rows)
    data = outcome.data
    if outcome.too_big:
        raise result_too_large(bytes_limit=settings.max_result_bytes)
    meta = {
        "backend": "postgresql",
        "returned_row_count": outcome.row_count,
        "rows_affected": outcome.rows_affected,
        "statement_count": outcome.statement_count,
    }
    return {"data_json": data, "meta": meta, "count": outcome.row_count}
