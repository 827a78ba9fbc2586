"""Stage 4 of ``/rest/v1``: status, headers and body of the answer (pure).

PostgreSQL has already built the JSON; shaping only chooses the status (200/201/204/206/416),
``Content-Range``, ``Preference-Applied``, ``Content-Profile`` and the media type, unwraps the
one row of a singular response, and wraps the body in ``{"data": …}`` in the envelope format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from athena.query.postgrest.errors import PgrstError, pgrst_error
from athena.services.rest.request import OBJECT_MEDIA, PLAN_MEDIA


@dataclass
class RestResult:
    status: int
    body: bytes | None  # the JSON PostgreSQL built (array, or one object when singular)
    headers: dict[str, str] = field(default_factory=dict)
    media: str = "application/json"


@dataclass(frozen=True)
class Shape:
    """How this caller wants answers: format, singular object, and the profile in use."""

    native: bool
    singular: bool
    schema: str
    profile_asked: bool  # the request sent Accept-Profile or Content-Profile
    csv: bool = False  # Accept: text/csv — PostgreSQL built CSV text, sent as it is

    @property
    def media(self) -> str:
        if self.csv:
            return "text/csv; charset=utf-8"
        if self.native and self.singular:
            return OBJECT_MEDIA + "; charset=utf-8"
        return "application/json; charset=utf-8"

    def headers(self, applied: tuple[str, ...], extra: dict[str, str]) -> dict[str, str]:
        headers = dict(extra)
        if applied:
            headers["Preference-Applied"] = ", ".join(applied)
        if self.schema != "public" or self.profile_asked:
            headers["Content-Profile"] = self.schema
        return headers

    def wrap(self, body: bytes) -> bytes:
        return body if self.native or self.csv else b'{"data":' + body + b"}"

    def payload(self, body: bytes | str | None, count: int) -> bytes:
        """The JSON array PostgreSQL built, or its one row when a singular object was asked
        (bytes from libpq, text from psycopg)."""
        if isinstance(body, str):
            body = body.encode()
        if self.singular:
            return singular_row(body, count)
        if self.csv:
            return body or b""
        return body or b"[]"


def singular_mismatch(count: int) -> PgrstError:
    return pgrst_error(
        "PGRST116",
        "JSON object requested, multiple (or no) rows returned",
        details=f"The result contains {count} rows",
    )


def singular_row(body: bytes | None, count: int) -> bytes:
    if count != 1:
        raise singular_mismatch(count)
    text = (body or b"[]").strip()
    return text[1:-1]  # json_agg of one row is "[<row>]"


def read_result(
    shape: Shape,
    *,
    total: int | None,
    count: int,
    body: bytes | str | None,
    offset: int,
    head: bool,
    applied: tuple[str, ...],
) -> RestResult:
    shown_total = "*" if total is None else str(total)
    if count == 0:
        content_range = f"*/{shown_total}"
    else:
        content_range = f"{offset}-{offset + count - 1}/{shown_total}"
    status = 200
    if total is not None and shape.native:
        if offset > total:  # PostgREST's rangeStatus: past the end is 416, short is 206
            raise pgrst_error(
                "PGRST103",
                "Requested range not satisfiable",
                details=f"An offset of {offset} was requested, but there are only {total} rows.",
                headers={"Content-Range": f"*/{total}"},
            )
        if count < total:
            status = 206
    headers = shape.headers(applied, {"Content-Range": content_range})
    if head:
        return RestResult(status, None, headers, shape.media)
    return RestResult(status, shape.wrap(shape.payload(body, count)), headers, shape.media)


def write_result(
    shape: Shape,
    *,
    status_with_body: int,
    status_without: int,
    return_mode: str,
    count_exact: bool,
    count: int,
    body: bytes | str | None,
    applied: tuple[str, ...],
    extra: dict[str, str] | None = None,
) -> RestResult:
    headers = dict(extra or {})
    total = str(count) if count_exact else "*"
    if count and status_with_body != 201:  # PATCH/DELETE: the affected range
        headers["Content-Range"] = f"0-{count - 1}/{total}"
    else:
        headers["Content-Range"] = f"*/{total}"
    if return_mode == "representation":
        return RestResult(
            status_with_body,
            shape.wrap(shape.payload(body, count)),
            shape.headers(applied, headers),
            shape.media,
        )
    return RestResult(status_without, None, shape.headers(applied, headers), shape.media)


def plan_result(fmt: str, rows: list[tuple[object, ...]]) -> RestResult:
    """``EXPLAIN``'s answer as PostgREST sends it: the JSON plan, or the text plan's lines."""
    if fmt == "json":
        body = json.dumps(rows[0][0] if rows else [], separators=(",", ":")).encode()
    else:
        body = "\n".join(str(r[0]) for r in rows).encode()
    media = f'{PLAN_MEDIA}+{fmt}; for="application/json"; charset=utf-8'
    return RestResult(200, body, {}, media)
