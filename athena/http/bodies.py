"""Request bodies read as JSON: one parser and one set of 400s for the Quart views
(``athena.routes._http``) and the hot lane, so both answer a bad body alike."""

from __future__ import annotations

import json
from typing import Any

from athena.errors import ApiError


def strict_loads(raw: str | bytes) -> Any:
    """``json.loads`` of RFC 8259 JSON: Python also takes ``NaN`` and ``Infinity``, which no
    client's encoder writes and which turn into floats no column or limit should get
    (``{"limit": Infinity}``). Raises ``ValueError`` (and ``RecursionError``) as json does."""
    return json.loads(raw, parse_constant=_no_constant)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(raw: bytes, *, required: bool = True, default: Any = None) -> Any:
    """``raw`` parsed as JSON; 400 ``invalid_json`` when it is not JSON (or is empty and
    ``required``)."""
    if not raw or not raw.strip():
        if required:
            raise ApiError("invalid_json", "a JSON request body is required")
        return default
    try:
        return strict_loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # nesting bombs too
        raise ApiError(
            "invalid_json", "the request body is not valid JSON", detail=str(exc)
        ) from None


def parse_json_object(raw: bytes, *, required: bool = True) -> dict[str, Any]:
    """``raw`` as a JSON object (400 ``invalid_request`` for arrays/scalars)."""
    body = parse_json(raw, required=required, default={})
    if not isinstance(body, dict):
        raise ApiError("invalid_request", "the request body must be a JSON object")
    return body
