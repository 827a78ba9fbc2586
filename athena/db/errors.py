"""PostgreSQL errors → ``ApiError``, by SQLSTATE class.

The message is PostgreSQL's primary message (it names the column or constraint, never echoes
the statement); ``data`` carries the SQLSTATE and, when there is one, the constraint, table and
column, so a client can act without parsing text.
"""

from __future__ import annotations

from typing import Any

import psycopg

from athena.db.database import DatabaseUnavailable, StatementDeadlineExceeded
from athena.errors import ApiError

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


def api_error_from_db(exc: BaseException, *, client: str | None = None) -> ApiError:
    """The ApiError a caller should see for a database failure."""
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
