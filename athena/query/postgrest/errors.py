"""The one error type of the PostgREST layer: a PostgREST error object plus its HTTP status.

Raised by the pure parser and builder (and by the service); rendered by the route either as
PostgREST's ``{code, message, details, hint}`` (native mode) or as the CONTRACT envelope, whose
snake_case ``envelope_code`` is chosen where the error is raised.
"""

from __future__ import annotations

from typing import Any


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
