"""The database error boundary: what a database call may raise, and what a caller sees of it.

Every path that runs a statement (the data gateway, ``/rest/v1``, raw SQL, the WebSocket
gateway, management and schema calls) catches exactly ``DATABASE_ERRORS`` around the call and
raises ``db_error(exc, client=…, native=…)``; anything else that escapes is a bug (500
``internal_error`` with a request id). The closed set::

    DATABASE_ERRORS
    ├── psycopg.Error               PostgreSQL (or libpq) refused or failed: by SQLSTATE
    ├── DatabaseUnavailable         no connection within the pool timeout      → 503
    └── StatementDeadlineExceeded   the hard deadline (statement timeout + grace) → 504

One mapping, two wire formats:

* envelope (``native=False``, the CONTRACT): ``ApiError`` with the gateway's code by SQLSTATE
  (``_BY_STATE``, then ``_BY_CLASS``). The message is PostgreSQL's primary message (it names the
  column or constraint, never echoes the statement); ``data`` carries the SQLSTATE and, when
  there is one, the constraint, table and column, so a client can act without parsing text.
* PostgREST-native (``native=True``, ``/rest/v1`` with ``X-Athena-Rest-Format: postgrest``):
  ``PgrstError`` with the SQLSTATE as code, PostgreSQL's message/detail/hint, and PostgREST's
  HTTP status for that SQLSTATE (``http_status_for``).

Either way the hard deadline and PostgreSQL's own ``statement_timeout`` (57014) are 504, and
an unreachable database is 503.
"""

from __future__ import annotations

from typing import Any

import psycopg

from athena.db.database import DatabaseUnavailable, StatementDeadlineExceeded
from athena.errors import ApiError
from athena.query.postgrest.errors import PgrstError, pgrst_error

# Everything a database call may raise for a reason that is not a bug in the gateway.
DATABASE_ERRORS: tuple[type[Exception], ...] = (
    psycopg.Error,
    DatabaseUnavailable,
    StatementDeadlineExceeded,
)

# Exact SQLSTATEs first, then whole classes (first two characters).
_BY_STATE: dict[str, str] = {
    "23505": "unique_violation",
    "23503": "foreign_key_violation",
    "23001": "foreign_key_violation",  # restrict_violation: still referenced (ON DELETE RESTRICT)
    "23514": "check_violation",
    "23502": "not_null_violation",
    "23P01": "exclusion_violation",
    "42P01": "unknown_table",
    "42703": "unknown_column",
    "42883": "undefined_object",
    "42704": "undefined_object",
    "42P07": "duplicate_object",
    "42701": "duplicate_object",
    "42710": "duplicate_object",
    "42501": "insufficient_privilege",
    "57014": "statement_timeout",
    "40001": "conflict",
    "40P01": "conflict",
    "53300": "client_unavailable",
}
_BY_CLASS: dict[str, str] = {
    "22": "invalid_input",  # data exception: bad literal, out of range, too long …
    "23": "check_violation",
    "08": "client_unavailable",
    "57": "client_unavailable",  # admin shutdown, crash shutdown, cannot connect now
    "53": "service_unavailable",
    "42": "query_failed",  # syntax error or access rule violation
    "54": "invalid_request",  # program limit exceeded
    "58": "service_unavailable",  # system error (I/O) on the database server: not the caller's
    "XX": "service_unavailable",  # internal error of PostgreSQL (e.g. corruption): not the caller's
}


def db_error(
    exc: BaseException, *, client: str | None = None, native: bool = False
) -> ApiError | PgrstError:
    """What the caller sees of a database failure, in the envelope or PostgREST's format."""
    if native:
        return pgrst_from_db(exc, client=client)
    return api_error_from_db(exc, client=client)


def api_error_from_db(exc: BaseException, *, client: str | None = None) -> ApiError:
    """The envelope format: the ApiError a caller should see for a database failure."""
    if isinstance(exc, DatabaseUnavailable):
        return ApiError(
            "client_unavailable",
            f"the database of client '{client or exc}' is unavailable",
            data={"client": client} if client else None,
        )
    if isinstance(exc, StatementDeadlineExceeded):
        return ApiError(
            "statement_timeout", "the statement exceeded the configured statement timeout"
        )
    if not isinstance(exc, psycopg.Error):
        return ApiError("internal_error", "unexpected database failure")
    state = getattr(exc, "sqlstate", None) or ""
    code = _BY_STATE.get(state) or _BY_CLASS.get(state[:2]) or "query_failed"
    diag = exc.diag
    message = (diag.message_primary or "the database rejected the request").strip()
    if code == "statement_timeout":
        message = "the statement exceeded the configured statement timeout"
    elif code == "client_unavailable":
        message = f"the database of client '{client}' is unavailable" if client else message
    data: dict[str, Any] = {"sqlstate": state} if state else {}
    for field in ("constraint_name", "table_name", "column_name"):
        value = getattr(diag, field, None)
        if value:
            data[field.removesuffix("_name") if field != "table_name" else "table"] = value
    if diag.message_detail and code in {"unique_violation", "foreign_key_violation"}:
        data["detail"] = diag.message_detail
    if client and code == "client_unavailable":
        data["client"] = client
    return ApiError(code, message, detail=message, data=data or None)


# -- PostgREST-native ------------------------------------------------------------------------

# PostgREST's SQLSTATE → HTTP table (docs: "Errors → SQLSTATE to HTTP status"); exact codes
# first, then whole classes; anything else is 400.
_STATUS_BY_STATE: dict[str, int] = {
    "23503": 409,
    "23505": 409,
    "25006": 405,
    "42883": 404,
    "42P01": 404,
    "42P17": 500,
    "42501": 403,  # PostgREST says 401 for the anonymous role; a gateway key is never anonymous
    # PostgREST answers 500 for class 57; a statement timeout is the gateway's configured limit,
    # not a bug, so it is 504 here as in the envelope format
    "57014": 504,
    "P0001": 400,
}
_STATUS_BY_CLASS: dict[str, int] = {
    "08": 503, "09": 500, "0L": 403, "0P": 403, "25": 500, "28": 403, "2D": 500, "38": 500,
    "39": 500, "3B": 500, "40": 500, "53": 503, "54": 500, "55": 500, "57": 500, "58": 500,
    "F0": 500, "HV": 500, "P0": 500, "XX": 500,
}  # fmt: skip


def http_status_for(sqlstate: str) -> int:
    """PostgREST's HTTP status for a SQLSTATE."""
    return _STATUS_BY_STATE.get(sqlstate) or _STATUS_BY_CLASS.get(sqlstate[:2]) or 400


def pgrst_from_db(exc: BaseException, *, client: str | None = None) -> PgrstError:
    """The PostgREST-native format: SQLSTATE as code, PostgreSQL's own message/detail/hint
    (never the statement text)."""
    if isinstance(exc, DatabaseUnavailable):
        return pgrst_error(
            "PGRST001",
            "Could not connect with the database due to an internal error",
            details=f"the database of client '{client}' is unavailable" if client else None,
        )
    if isinstance(exc, StatementDeadlineExceeded):
        # the same outcome as PostgreSQL's own statement_timeout, so the same code
        return PgrstError(
            504, "57014", "canceling statement due to statement timeout",
            envelope_code="statement_timeout",
        )  # fmt: skip
    if not isinstance(exc, psycopg.Error):
        return pgrst_error("PGRST000", "unexpected database failure")
    state = getattr(exc, "sqlstate", None) or ""
    if not state:
        return pgrst_error("PGRST001", "Could not connect with the database")
    diag = exc.diag
    message = (diag.message_primary or "the database rejected the request").strip()
    if state == "57014":
        message = "canceling statement due to statement timeout"
    return PgrstError(
        http_status_for(state),
        state,
        message,
        details=diag.message_detail,
        hint=diag.message_hint,
        envelope_code="query_failed",
    )
