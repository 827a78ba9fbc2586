"""Errors of ``/rest/v1`` in both wire formats.

Native mode answers like PostgREST: ``{code, message, details, hint}``. Envelope mode answers
with the CONTRACT.md error envelope, through ``ApiError``. Database failures, in either format,
are mapped once for every path in ``athena.db.errors`` (``db_error``).

Two conversions live here:

* ``api_error_from_pgrst`` — a PgrstError raised by the parser/builder/service → ApiError;
* ``pgrst_from_api_error`` — an ApiError from shared code (auth, client resolution) → native.
"""

from __future__ import annotations

from athena.errors import CODES, ApiError
from athena.query.postgrest.errors import PgrstError


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
