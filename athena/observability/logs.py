"""Process logging: text or one JSON object per line, the call's ids on every record, an
optional access log, and writes that never block the event loop.

``ATHENA_LOG_FORMAT``: ``text`` (the default), ``json``, or ``auto`` (text on a terminal, JSON
otherwise — what a service manager or a container runtime collects). A JSON record carries
``time``, ``level``, ``logger``, ``message`` and, while a call is being served, its
``request_id``, ``client`` and ``key_id`` (the key's public id, never its secret).

What must never reach a log line (BRIEF: secrets, SQL text with values, bodies): the code logs
none of them, and ``scrub`` is the safety net for messages written elsewhere (libraries):
passwords in URIs and API-key secrets are masked. In both formats an exception is logged as its
type and where it was raised, not its message or traceback — a database error's message may
quote the values it refused.

``ATHENA_ACCESS_LOG``: unset/``false`` off; ``true`` or ``-`` one line per request on stderr
(logger ``athena.access``); any other value is a file the lines are appended to. An access
line has the method, the route template (``/rest/v1/<table>``, never the query string, which
holds filter values), table, status, duration and the call's ids.

Records go through a ``QueueHandler``: the thread that logs (the event loop) only enqueues, a
listener thread formats and writes, so a slow stderr pipe or disk never stalls requests.
"""

from __future__ import annotations

import atexit
import contextvars
import json
import logging
import logging.handlers
import queue
import re
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from athena.config import Settings
    from athena.context import CallContext

# The call being served by the current task (set by the call gate, cleared when it closes).
current_call: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar(
    "athena_current_call", default=None
)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ACCESS_LOGGER = "athena.access"

_URI_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/?#@\s]*:)([^@/\s]+)(@)", re.IGNORECASE)
_KEY_SECRET = re.compile(r"\b(ath_[0-9a-f]{16})\.[0-9a-f]{16,}")
_ADMIN_KEY = re.compile(r"\bathena_admin_[0-9a-f]{16,}")
_PASSWORD_PAIR = re.compile(r"\b(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


def scrub(text: str) -> str:
    """``text`` with URI passwords, ``password=…`` pairs and API-key secrets masked."""
    if "://" in text:
        text = _URI_PASSWORD.sub(r"\1***\3", text)
    if "ath_" in text:
        text = _KEY_SECRET.sub(r"\1.***", text)
    if "athena_admin_" in text:
        text = _ADMIN_KEY.sub("athena_admin_***", text)
    if "assword" in text:
        text = _PASSWORD_PAIR.sub(r"\1***", text)
    return text


class CallFields(logging.Filter):
    """Copies the current call's ids onto the record, in the thread that logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            ctx = current_call.get()
            if ctx is not None:
                record.request_id = ctx.request_id
                record.client = ctx.client_name
                record.key_id = ctx.key_public_id
        return True


def _where(exc_info: Any) -> dict[str, Any]:
    """An exception as its type and the frame that raised it — never its message."""
    exc_type, _, tb = exc_info
    out: dict[str, Any] = {"error": getattr(exc_type, "__name__", str(exc_type))}
    last = None
    while tb is not None:
        last = tb
        tb = tb.tb_next
    if last is not None:
        code = last.tb_frame.f_code
        out["error_at"] = (
            f"{code.co_filename.rsplit('/', 1)[-1]}:{last.tb_lineno} in {code.co_name}"
        )
    return out


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    CALL_FIELDS = ("request_id", "client", "key_id")
    ACCESS_FIELDS = ("method", "route", "table", "status", "duration_ms", "remote_addr")

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        for name in self.CALL_FIELDS + self.ACCESS_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info and record.exc_info[0] is not None:
            out.update(_where(record.exc_info))
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The classic text line, scrubbed, with the request id when there is one.

    An exception is named as JSON names it — its type and the frame that raised it, on the same
    line — never its traceback: a traceback carries the exception's message (a database error
    quotes the values it refused) and, through psycopg's frames, the statement being run. Text is
    the default format, so it is what most operators' logs hold.
    """

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        exc_info, exc_text, stack_info = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            line = scrub(super().format(record))
        finally:
            record.exc_info, record.exc_text, record.stack_info = exc_info, exc_text, stack_info
        if exc_info and exc_info[0] is not None:
            where = _where(exc_info)
            at = where.get("error_at")
            line += f" ({where['error']}{f' at {at}' if at else ''})"
        request_id = getattr(record, "request_id", None)
        if request_id and record.name != ACCESS_LOGGER:
            line += f" [request {request_id}]"
        return line


def _iso(created: float) -> str:
    millis = int((created % 1) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{millis:03d}Z"


def resolve_format(setting: str, stream: TextIO) -> str:
    if setting == "auto":
        isatty = getattr(stream, "isatty", None)
        return "text" if isatty is not None and isatty() else "json"
    return setting


_listener: logging.handlers.QueueListener | None = None
_format = "text"


def active_format() -> str:
    """``text`` or ``json``: what ``configure`` chose for this process."""
    return _format


def configure(settings: Settings, stream: TextIO | None = None) -> None:
    """Set up the process's logging from the settings (once per process; again replaces it)."""
    global _listener, _format
    stream = stream or sys.stderr
    fmt = _format = resolve_format(settings.log_format, stream)
    formatter: logging.Formatter = JsonFormatter() if fmt == "json" else TextFormatter()

    handlers: list[logging.Handler] = []
    console = logging.StreamHandler(stream)
    console.setFormatter(formatter)
    handlers.append(console)

    access = logging.getLogger(ACCESS_LOGGER)
    access.propagate = True
    access.handlers.clear()
    target = (settings.access_log or "").strip()
    access.disabled = target.lower() in ("", "false", "0", "no", "off")
    if not access.disabled:
        access.setLevel(logging.INFO)
        if target.lower() not in ("true", "1", "yes", "on", "-", "stderr"):
            # A file of its own: only access lines go there, not the rest of the log.
            to_file = logging.FileHandler(target, encoding="utf-8")
            to_file.setFormatter(formatter)
            to_file.addFilter(lambda record: record.name == ACCESS_LOGGER)
            handlers.append(to_file)
            console.addFilter(lambda record: record.name != ACCESS_LOGGER)

    if _listener is not None:
        _listener.stop()
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    _listener = logging.handlers.QueueListener(records, *handlers, respect_handler_level=True)
    _listener.start()
    front = _QueueHandler(records)
    front.addFilter(CallFields())

    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(front)
    root.setLevel(settings.log_level.upper())
    # Start-up and shutdown lines of the server are always shown.
    server = logging.getLogger("athena.server")
    server.setLevel(min(logging.INFO, root.level))


class _QueueHandler(logging.handlers.QueueHandler):
    """Enqueues the record as it is: the listener's formatter does the (scrubbing) work.

    The stdlib ``prepare`` formats in the logging thread and drops ``exc_info``; here only the
    message is merged with its arguments (so mutable arguments cannot change under the
    listener), and the exception stays for the formatter (which reduces it to type and frame).
    """

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record.msg = record.getMessage()
        record.args = None
        return record


def _stop() -> None:
    if _listener is not None:
        _listener.stop()


def drain() -> None:
    """Write out every queued record now (the process is about to exit): a one-line reason
    printed after this is the last thing on stderr, not overtaken by queued warnings."""
    global _listener
    _stop()
    _listener = None


atexit.register(_stop)


def access(ctx: CallContext, status: int, duration_s: float) -> None:
    """One access-log line for a finished call (a no-op unless ATHENA_ACCESS_LOG is on)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if logger.disabled or not logger.isEnabledFor(logging.INFO):
        return
    ms = round(duration_s * 1000.0, 3)
    logger.info(
        '%s "%s %s" %s %.1fms',
        ctx.remote_addr or "-",
        ctx.method,
        ctx.route,
        status,
        ms,
        extra={
            "request_id": ctx.request_id,
            "client": ctx.client_name,
            "key_id": ctx.key_public_id,
            "method": ctx.method,
            "route": ctx.route,
            "table": ctx.table_name,
            "status": status,
            "duration_ms": ms,
            "remote_addr": ctx.remote_addr,
        },
    )
