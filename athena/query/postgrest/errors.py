"""The one error type of the PostgREST layer and the ONE catalogue of the codes it carries.

Exception tree::

    Exception
    └── PgrstError          a request failed the way PostgREST reports it
        └── ParseError      (grammar.py) the query string is not PostgREST's grammar

Raised by the pure parser, planner and builders (and by the service); rendered by the route
either as PostgREST's ``{code, message, details, hint}`` (native mode) or as the CONTRACT
envelope. Every code the gateway raises itself is listed in ``CATALOGUE`` with its HTTP status
and the envelope code it becomes, as PostgREST's own ``Error`` module does; raise one with
``pgrst_error(code, message, …)``, never by spelling a status next to a code. Errors that come
from PostgreSQL keep their SQLSTATE and get their status from PostgREST's SQLSTATE table
(``athena/db/errors.py``, the one database error boundary).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PgrstCode:
    status: int
    envelope: str  # the key of ``athena.errors.CODES`` used in the envelope format
    meaning: str


CATALOGUE: dict[str, PgrstCode] = {
    # -- PGRST0xx: the database connection -------------------------------------------------
    "PGRST000": PgrstCode(500, "internal_error", "unexpected database failure"),
    "PGRST001": PgrstCode(503, "client_unavailable", "could not connect to the database"),
    # -- PGRST1xx: the request cannot be served as sent --------------------------------------
    "PGRST100": PgrstCode(400, "invalid_request", "the query string could not be parsed"),
    "PGRST102": PgrstCode(400, "invalid_json", "the request body is empty or not valid"),
    "PGRST103": PgrstCode(416, "range_not_satisfiable", "the requested range is not satisfiable"),
    "PGRST105": PgrstCode(405, "method_not_allowed", "PUT is not a valid single-row upsert"),
    "PGRST106": PgrstCode(406, "not_acceptable", "the schema is not exposed"),
    "PGRST107": PgrstCode(406, "not_acceptable", "no offered media type is available"),
    "PGRST108": PgrstCode(400, "invalid_request", "options for a resource not in 'select'"),
    "PGRST114": PgrstCode(400, "invalid_request", "PUT with limit or offset"),
    "PGRST115": PgrstCode(400, "invalid_request", "PUT body and filter disagree"),
    "PGRST116": PgrstCode(406, "not_acceptable", "a singular response is not one row"),
    "PGRST117": PgrstCode(405, "method_not_allowed", "the HTTP method is not supported"),
    "PGRST118": PgrstCode(400, "invalid_request", "a related order is not possible"),
    "PGRST119": PgrstCode(400, "invalid_request", "a spread is not possible"),
    "PGRST123": PgrstCode(400, "invalid_request", "aggregates are turned off"),
    "PGRST124": PgrstCode(400, "max_affected_exceeded", "more rows than max-affected allows"),
    "PGRST127": PgrstCode(400, "invalid_request", "a feature that is turned off"),
    # -- PGRST2xx: the schema cache has no such thing -----------------------------------------
    "PGRST200": PgrstCode(400, "invalid_request", "no relationship between the resources"),
    # 300 as PostgREST: the caller must choose (the envelope format answers 400)
    "PGRST201": PgrstCode(300, "invalid_request", "more than one relationship"),
    "PGRST202": PgrstCode(404, "unknown_function", "no such function in the schema cache"),
    "PGRST203": PgrstCode(300, "invalid_request", "more than one function overload matches"),
    "PGRST204": PgrstCode(400, "unknown_column", "no such column in the schema cache"),
    "PGRST205": PgrstCode(404, "unknown_table", "no such table in the schema cache"),
    # -- PostgreSQL's own SQLSTATEs, raised by the gateway before the database would ----------
    "21000": PgrstCode(400, "invalid_request", "an UPDATE or DELETE without a filter"),
    "42703": PgrstCode(400, "unknown_column", "no such column"),
}


class PgrstError(Exception):
    """A request failed the way PostgREST would report it.

    ``code`` is a ``PGRSTxxx`` code or a SQLSTATE; ``envelope_code`` is the key of
    ``athena.errors.CODES`` used when the caller asked for the envelope format.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: str | None = None,
        hint: str | None = None,
        envelope_code: str = "invalid_request",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.hint = hint
        self.envelope_code = envelope_code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """PostgREST's error object: always all four keys."""
        return {
            "code": self.code,
            "details": self.details,
            "hint": self.hint,
            "message": self.message,
        }


def pgrst_error(
    code: str,
    message: str,
    *,
    details: str | None = None,
    hint: str | None = None,
    headers: dict[str, str] | None = None,
    envelope_code: str | None = None,
) -> PgrstError:
    """The catalogued error ``code`` (status and envelope code from ``CATALOGUE``);
    ``envelope_code`` overrides the envelope code where one PostgREST code covers several of
    ours (``21000`` is ``update_requires_conditions`` or ``delete_requires_conditions``)."""
    entry = CATALOGUE[code]
    return PgrstError(
        entry.status,
        code,
        message,
        details=details,
        hint=hint,
        envelope_code=envelope_code or entry.envelope,
        headers=headers,
    )
