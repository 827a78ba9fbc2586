"""Errors of ``/rest/v1`` in both wire formats.

Native mode answers like PostgREST: ``{code, message, details, hint}`` with PostgREST's HTTP
status for each SQLSTATE (its documented table, reproduced in ``http_status_for``). Envelope
mode answers with the CONTRACT.md error envelope, through ``ApiError``.

Three conversions live here:

* ``pgrst_from_db`` — a psycopg error → PgrstError (native);
* ``api_error_from_pgrst`` — a PgrstError raised by the parser/builder/service → ApiError;
* ``pgrst_from_api_error`` — an ApiError from shared code (auth, client resolution) → native.
"""

from __future__ import annotations

import psycopg

from athena.db.database import DatabaseUnavailable
from athena.db.errors import api_error_from_db
from athena.errors import CODES, ApiError
from athena.query.postgrest.errors import PgrstError, pgrst_error

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
    """A database failure as PostgREST reports it: SQLSTATE as code, PostgreSQL's own
    message/detail/hint (never the statement text)."""
    if isinstance(exc, DatabaseUnavailable):
        return pgrst_error(
            "PGRST001",
            "Could not connect with the database due to an internal error",
            details=f"the database of client '{client}' is unavailable" if client else None,
        )
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


def api_error_for_db(exc: BaseException, *, client: str | None) -> ApiError:
    """Envelope mode: the gateway's own SQLSTATE mapping (CONTRACT codes)."""
    return api_error_from_db(exc, client=client)


def api_error_from_pgrst(err: PgrstError) -> ApiError:
    """A PostgREST-style failure in the CONTRACT envelope; PostgREST's code stays in ``data``."""
    code = err.envelope_code if err.envelope_code in CODES else "invalid_request"
    data: dict[str, object] = {"postgrest_code": err.code}
    if err.details:
        data["details"] = err.details
    if err.hint:
        data["hint"] = err.hint
    status = err.status if code in ("invalid_request", "query_failed") else None
    if status is not None and status < 400:
        status = 400  # a 300 (ambiguous embed) is not an error status in the envelope world
    return ApiError(
        code, err.message, detail=err.details or err.message, data=data, status=status,
        headers=err.headers,
    )  # fmt: skip


# Shared-code ApiErrors in native mode: PostgREST codes where one means the same thing.
_NATIVE_CODES: dict[str, str] = {
    "api_key_required": "PGRST301",
    "invalid_api_key": "PGRST301",
    "inactive_api_key": "PGRST301",
    "expired_api_key": "PGRST303",
    "insufficient_rights": "42501",
    "api_key_client_mismatch": "42501",
    "client_unavailable": "PGRST001",
    "auth_unavailable": "PGRST001",
    "invalid_json": "PGRST102",
    "payload_too_large": "PGRST102",
}


def pgrst_from_api_error(err: ApiError) -> PgrstError:
    """An ApiError (auth, client routing, limits) as a PostgREST error object."""
    code = _NATIVE_CODES.get(err.code, err.code)
    hint = None
    if err.code in ("missing_client_header", "unknown_client"):
        hint = "Send X-Athena-Client with the name of a configured client."
    return PgrstError(
        err.status, code, err.message,
        details=err.detail if err.detail != err.message else None, hint=hint,
        headers=err.headers,
    )  # fmt: skip
