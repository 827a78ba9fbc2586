"""What every gateway backend shares: the result type, the body and context-header rules, and
the answer to a result over the limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from athena.context import CallContext
from athena.errors import ApiError

if TYPE_CHECKING:
    from athena.runtime import Runtime

CONTEXT_HEADERS = ("X-User-Id", "X-Company-Id", "X-Organization-Id")


@dataclass
class GatewayResult:
    """A successful gateway call: the envelope's message, ``data`` as JSON text, and extras."""

    message: str
    data_json: bytes  # JSON text of `data` (the rows array), built by Postgres
    extras: dict[str, Any] = field(default_factory=dict)  # {"count": 3}, {"meta": {...}} …
    status: int = 200


def require_context_headers(rt: Runtime, ctx: CallContext) -> None:
    """Insert/delete carry X-User-Id, X-Company-Id and X-Organization-Id (unless disabled)."""
    if not rt.settings.require_context_headers:
        return
    for name in CONTEXT_HEADERS:
        if not ctx.header(name):
            raise ApiError(
                "missing_context_header",
                f"the {name} header is required for this operation",
                data={"details": {"missing_header": name}},
            )


def body_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError("invalid_request", "the request body must be a JSON object")
    return body


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
