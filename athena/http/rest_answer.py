"""``/rest/v1`` answers in the caller's format, for the Quart views (``athena.routes.rest``) and
the hot lane alike: one place, so the two paths cannot render a /rest/v1 failure differently.

Success is the service's ``RestResult`` as it is; a failure becomes PostgREST's ``{code, message,
details, hint}`` in native mode and propagates as ``ApiError`` (the CONTRACT envelope, rendered
by ``athena.http.render``) otherwise.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from athena.context import CallContext
from athena.errors import ApiError
from athena.http.render import dumps
from athena.query.postgrest.errors import PgrstError
from athena.services.rest import RestResult, is_native
from athena.services.rest.errors import api_error_from_pgrst, pgrst_from_api_error
from athena.services.rest.rpc import call_rest

if TYPE_CHECKING:
    from athena.runtime import Runtime


@dataclass
class RestAnswer:
    """A /rest/v1 response, success or error, in the caller's format."""

    status: int
    body: bytes
    media: str
    headers: dict[str, str]
    empty: bool = False  # the service returned no body at all


async def answer(
    runtime: Runtime, call: CallContext, *, method: str, table: str,
    pairs: list[tuple[str, str]], body: bytes | None, prefer: list[str],
) -> RestAnswer:  # fmt: skip
    """Run the request; failures become PostgREST's ``{code, message, details, hint}`` in native
    mode and propagate as ``ApiError`` (the envelope) otherwise. Shared by the Quart view
    (``athena.routes.rest``) and ``athena.http.hot_lane``."""
    native = is_native(runtime, call)

    async def run() -> RestResult:
        return await runtime.rest.handle(
            call,
            method=method,
            table=table,
            pairs=pairs,
            body=body if method in ("POST", "PATCH", "PUT") else None,
            native=native,
            prefer=", ".join(prefer) if prefer else None,
        )

    return await _rendered(call, native, run)


async def answer_call(
    runtime: Runtime, call: CallContext, *, method: str, name: str,
    pairs: list[tuple[str, str]], body: bytes | None, prefer: list[str],
) -> RestAnswer:  # fmt: skip
    """``/rest/v1/rpc/{fn}``, rendered like ``answer``."""
    native = is_native(runtime, call)

    async def run() -> RestResult:
        return await call_rest(
            runtime, call, method=method, name=name, pairs=pairs,
            body=body if method == "POST" else None, native=native,
            prefer=", ".join(prefer) if prefer else None,
        )  # fmt: skip

    return await _rendered(call, native, run)


async def _rendered(
    call: CallContext, native: bool, run: Callable[[], Awaitable[RestResult]]
) -> RestAnswer:
    try:
        result = await run()
    except PgrstError as err:
        if native:
            return _native_error(call, err)
        raise api_error_from_pgrst(err) from None
    except ApiError as err:
        if native:
            return _native_error(call, pgrst_from_api_error(err))
        raise
    return RestAnswer(
        result.status, result.body or b"", result.media, result.headers, result.body is None
    )


def _native_error(call: CallContext, err: PgrstError) -> RestAnswer:
    call.error_code = err.code
    return RestAnswer(
        err.status, dumps(err.body()).encode(), "application/json; charset=utf-8", dict(err.headers)
    )
