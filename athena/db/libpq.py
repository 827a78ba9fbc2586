"""One statement through libpq directly, waited for by trio: the gateway's hot path.

Every gateway statement returns one row of two text columns (the rows as JSON text built by
PostgreSQL, and their count) and takes text or integer parameters. For that shape psycopg's
cursor machinery — parameter adaptation, its prepared-statement bookkeeping, row loading —
cost more CPU than everything else the data path does (measured: ~130 µs per call against
~50 µs this way). So the statement goes to libpq as a named prepared statement with text
parameters, and the two values come back as bytes.

Prepared statements are per connection (``PreparedNames``); psycopg's own use the ``_pg3_``
prefix, ours ``athena_<random>_<n>`` with a random part drawn per connection: nothing outside
the gateway can name, and so replace, a statement the fast path will run (raw SQL does not even
share these connections: ``db/clients.py``). A connection that lost them answers 26000 and gets
them prepared again. Statements beyond ``MAX_PREPARED`` per connection
run unnamed (parsed each time) so that the server-side memory stays bounded.
"""

from __future__ import annotations

import functools
import re
import secrets
from typing import Any

import psycopg
import trio
from psycopg import pq
from psycopg.errors import error_from_result

MAX_PREPARED = 256
# SQLSTATE invalid_sql_statement_name: "prepared statement ... does not exist"
_NO_SUCH_STATEMENT = b"26000"
_PLACEHOLDER = re.compile(rb"%(%|s)")


class PreparedNames:
    """The statements prepared on one connection: query text → statement name."""

    __slots__ = ("names", "prefix")

    def __init__(self) -> None:
        self.names: dict[bytes, bytes] = {}
        # Unguessable and never reused: a name a caller could plant is never one we run.
        self.prefix = _fresh_prefix()

    def next_name(self) -> bytes:
        return self.prefix + b"%d" % len(self.names)


def _fresh_prefix() -> bytes:
    return b"athena_" + secrets.token_hex(8).encode() + b"_"


@functools.lru_cache(maxsize=2048)
def numbered(statement: bytes) -> bytes:
    """psycopg's ``%s`` placeholders as PostgreSQL's ``$1, $2 …`` (``%%`` → ``%``)."""
    counter = 0

    def replace(match: re.Match[bytes]) -> bytes:
        nonlocal counter
        if match.group(1) == b"%":
            return b"%"
        counter += 1
        return b"$%d" % counter

    return _PLACEHOLDER.sub(replace, statement)


def text_params(params: list[Any] | None) -> list[bytes | None] | None:
    """Parameters as text, or ``None`` when one of them needs psycopg's adaptation."""
    out: list[bytes | None] = []
    for value in params or ():
        kind = type(value)
        if kind is str:
            out.append(value.encode())
        elif kind is int:
            out.append(b"%d" % value)
        elif value is None:
            out.append(None)
        else:
            return None
    return out


async def first_row_text(
    conn: psycopg.Connection, prepared: PreparedNames, statement: bytes,
    params: list[bytes | None], *, retry: bool = True,
) -> tuple[bytes | None, ...] | None:  # fmt: skip
    """Run ``statement`` (``$n`` placeholders) and return its first row's values as bytes."""
    pgconn = conn.pgconn
    name = prepared.names.get(statement)
    if name is None and len(prepared.names) < MAX_PREPARED:
        name = prepared.next_name()
        await _prepare(conn, name, statement)
        prepared.names[statement] = name
    if name is None:
        pgconn.send_query_params(statement, params)
        return _first_row(conn, await _results(pgconn))
    pgconn.send_query_prepared(name, params)
    results = await _results(pgconn)
    if (
        retry
        and results[-1].status == pq.ExecStatus.FATAL_ERROR
        and results[-1].error_field(pq.DiagnosticField.SQLSTATE) == _NO_SUCH_STATEMENT
    ):
        prepared.names.clear()  # all of them are gone, not just this one
        prepared.prefix = _fresh_prefix()
        return await first_row_text(conn, prepared, statement, params, retry=False)
    return _first_row(conn, results)


async def _prepare(conn: psycopg.Connection, name: bytes, statement: bytes) -> None:
    conn.pgconn.send_prepare(name, statement)
    results = await _results(conn.pgconn)
    _raise_on_error(conn, results)


def _first_row(conn: psycopg.Connection, results: list[pq.abc.PGresult]) -> Any:
    _raise_on_error(conn, results)
    result = results[-1]
    if result.ntuples == 0:
        return None
    return tuple(result.get_value(0, i) for i in range(result.nfields))


def _raise_on_error(conn: psycopg.Connection, results: list[pq.abc.PGresult]) -> None:
    for result in results:
        if result.status == pq.ExecStatus.FATAL_ERROR:
            raise error_from_result(result, encoding=conn.info.encoding)


async def _results(pgconn: pq.abc.PGconn) -> list[pq.abc.PGresult]:
    """Flush what was sent, wait for the answer on trio, collect every result."""
    fileno = pgconn.socket
    try:
        while pgconn.flush():  # 1: more to send
            await trio.lowlevel.wait_writable(fileno)
        while True:
            await trio.lowlevel.wait_readable(fileno)
            pgconn.consume_input()
            if not pgconn.is_busy():
                break
    except OSError as exc:
        raise psycopg.OperationalError("connection socket closed") from exc
    results = []
    while (result := pgconn.get_result()) is not None:
        results.append(result)
    if not results:
        raise psycopg.OperationalError("the server sent no result")
    return results
