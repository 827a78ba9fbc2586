"""OpenTelemetry traces, exported over OTLP/HTTP (protobuf) — off by default.

On when ``ATHENA_TRACING=true``, or when ``ATHENA_TRACING`` is unset and
``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set. The exporter
reads the standard ``OTEL_*`` variables (endpoint, headers, timeout; ``OTEL_SERVICE_NAME``,
default ``athena``).

Off, nothing of OpenTelemetry is imported: ``TRACER`` stays ``None`` and each call site pays one
global lookup. On, every HTTP call gets

* a SERVER span ``METHOD /route/template`` (``http.request.method``, ``http.route``,
  ``http.response.status_code``, ``athena.client``, ``athena.key_id``, ``athena.table``),
  continuing the caller's trace when the request has a W3C ``traceparent``; the request id
  (``x-request-id``, the request log, the JSON log) becomes the trace id;
* child spans ``auth`` (the key check), ``db.statement`` for each statement (the gateway's
  statement text with its ``$n`` placeholders — its shape; never the values, and never the
  text of raw SQL, which carries literals), and ``response`` (writing the response);
* outbound HTTP calls (custom Supabase upstreams, mirror probes) carry ``traceparent``.

Spans are handed to a ``BatchSpanProcessor`` (its own thread): the event loop only records.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from athena.config import Settings
    from athena.context import CallContext

TRACER: Any = None  # an opentelemetry Tracer once ``setup`` ran with tracing on
_provider: Any = None
_api: dict[str, Any] = {}  # the few OpenTelemetry callables used on the request path

T = TypeVar("T")

OTEL_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def wanted(settings: Settings) -> bool:
    if settings.tracing is not None:
        return settings.tracing
    return any(os.environ.get(name) for name in OTEL_ENDPOINT_VARS)


def check_available(settings: Settings) -> None:
    """Raise ``ConfigError`` (one line at start-up) when tracing is wanted but not installed."""
    import importlib.util

    if wanted(settings) and (
        importlib.util.find_spec("opentelemetry") is None
        or importlib.util.find_spec("opentelemetry.exporter.otlp.proto.http") is None
    ):
        from athena.config import ConfigError

        raise ConfigError(
            "tracing is on but OpenTelemetry is not installed (pip install 'athena[tracing]')"
        )


def setup(settings: Settings) -> bool:
    """Start exporting when tracing is wanted (once per process); True when on."""
    global TRACER, _provider
    if TRACER is not None or not wanted(settings):
        return TRACER is not None
    try:
        from opentelemetry import context, propagate, trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        from athena.config import ConfigError

        raise ConfigError(
            "tracing is on but OpenTelemetry is not installed (pip install 'athena[tracing]')"
        ) from None
    from athena import __version__

    if not any(os.environ.get(name) for name in OTEL_ENDPOINT_VARS):
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://127.0.0.1:4318"
    resource = Resource.create(
        {
            "service.name": os.environ.get("OTEL_SERVICE_NAME") or "athena",
            "service.version": __version__,
        }
    )
    _provider = TracerProvider(resource=resource)
    _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    TRACER = _provider.get_tracer("athena")
    _api.update(
        attach=context.attach,
        detach=context.detach,
        set_span_in_context=trace.set_span_in_context,
        extract=propagate.extract,
        inject=propagate.inject,
        server=trace.SpanKind.SERVER,
        client=trace.SpanKind.CLIENT,
        error=trace.StatusCode.ERROR,
        status=trace.Status,
        current=trace.get_current_span,
    )
    return True


def shutdown() -> None:
    """Flush what is buffered and stop the exporter (blocks up to its timeout: call it off the
    event loop or after it)."""
    global TRACER, _provider
    if _provider is not None:
        _provider.shutdown()
    TRACER = _provider = None


# -- the request span -------------------------------------------------------------------------


def start_request(ctx: CallContext) -> None:
    """Open the call's SERVER span (child of an incoming ``traceparent``) and make it current."""
    parent = _api["extract"](ctx.headers)  # W3C trace context from the request headers
    span = TRACER.start_span(
        f"{ctx.method} {ctx.route}",
        context=parent,
        kind=_api["server"],
        attributes={"http.request.method": ctx.method, "http.route": ctx.route},
    )
    token = _api["attach"](_api["set_span_in_context"](span))
    ctx.request_id = format(span.get_span_context().trace_id, "032x")
    ctx.extra["otel"] = (span, token)


def close_request(ctx: CallContext, status: int) -> None:
    """Record the outcome on the call's span and open its ``response`` span; ``finish``
    ends both once the response is written."""
    opened = ctx.extra.get("otel")
    if opened is None:
        return
    span = opened[0]
    span.set_attribute("http.response.status_code", status)
    for name, value in (
        ("athena.client", ctx.client_name),
        ("athena.key_id", ctx.key_public_id),
        ("athena.table", ctx.table_name),
        ("athena.operation", ctx.operation),
        ("error.type", ctx.error_code),
    ):
        if value is not None:
            span.set_attribute(name, value)
    if status >= 500:
        span.set_status(_api["status"](_api["error"]))
    response = TRACER.start_span("response", context=_api["set_span_in_context"](span))
    _writing.set((span, opened[1], response))
    ctx.extra.pop("otel", None)


# The call whose response this task is writing: (request span, context token, response span).
# Whoever writes the response (the hot lane, the plain-HTTP lane, the middleware in front of
# Quart) runs in the task that served the call, and calls ``finish`` once it is written.
_writing: contextvars.ContextVar[tuple[Any, Any, Any] | None] = contextvars.ContextVar(
    "athena_otel_writing", default=None
)


def finish() -> None:
    """End the response and request spans of the call this task just answered."""
    opened = _writing.get()
    if opened is None:
        return
    _writing.set(None)
    span, token, response = opened
    response.end()
    span.end()
    try:
        _api["detach"](token)
    except Exception:  # attached in another context: nothing to restore here
        pass


class Middleware:
    """ASGI wrapper of the Quart application (only with tracing on): ``finish`` when the last
    body message has been sent."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: dict[str, Any]) -> None:
            try:
                await send(message)
            finally:
                if message["type"] == "http.response.body" and not message.get("more_body"):
                    finish()

        await self.app(scope, receive, sending)


# -- child spans ------------------------------------------------------------------------------


def traced(
    name: str, **attributes: Any
) -> Callable[[Callable[..., Awaitable[T]]], Callable[..., Awaitable[T]]]:
    """Decorate an async function with a child span ``name`` when tracing is on."""

    def wrap(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        @functools.wraps(fn)
        async def call(*args: Any, **kwargs: Any) -> T:
            if TRACER is None:
                return await fn(*args, **kwargs)
            with TRACER.start_as_current_span(name, attributes=attributes):
                return await fn(*args, **kwargs)

        return call

    return wrap


def statement_span(database: str, text: bytes | str | None) -> Any:
    """A ``db.statement`` span; ``text`` only when it is a parameterised statement's shape.

    Only inside a request's trace: background work (the request log writer, probes) would
    otherwise start a trace of its own every few seconds.
    """
    if not _api["current"]().get_span_context().is_valid:
        return contextlib.nullcontext()
    attributes: dict[str, Any] = {"db.system.name": "postgresql", "db.namespace": database}
    if text is not None:
        shape = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        attributes["db.query.text"] = shape
        attributes["db.operation.name"] = shape.lstrip("( ").split(None, 1)[0].upper()
    return TRACER.start_as_current_span("db.statement", attributes=attributes)


# -- outbound HTTP ----------------------------------------------------------------------------


def httpx_hooks() -> dict[str, list[Any]]:
    """``event_hooks`` for an ``httpx.AsyncClient``: adds ``traceparent`` when tracing is on."""
    if TRACER is None:
        return {}

    async def inject(request: Any) -> None:
        carrier: dict[str, str] = {}
        _api["inject"](carrier)
        for name, value in carrier.items():
            request.headers[name] = value

    return {"request": [inject]}
