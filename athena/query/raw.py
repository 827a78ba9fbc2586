"""Raw SQL helpers (pure): read the request, classify command tags, encode result rows.

Raw SQL is the one place where the caller's text *is* the statement (it needs the fixed right
``gateway.query``); nothing here composes SQL. Rows of an arbitrary statement cannot be wrapped
in ``json_agg`` without re-parsing the caller's SQL, so they are encoded here, with the same
JSON forms PostgreSQL's ``to_json`` uses (ISO timestamps, numbers for numeric, ``\\x`` bytea).
"""

from __future__ import annotations

import json
import math
import uuid
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from typing import Any

from pglast import parser as pg_parser

from athena.errors import ApiError

# Command tags whose trailing number is a count of written rows.
_WRITE_TAGS = ("INSERT", "UPDATE", "DELETE", "MERGE", "COPY")
# Command tags after which the schema cache of the client must be reloaded.
_DDL_TAGS = ("CREATE", "ALTER", "DROP", "COMMENT", "GRANT", "REVOKE", "TRUNCATE", "REFRESH")


def query_text(body: dict[str, Any], field: str = "query") -> str:
    """The SQL text of the body; 400 when missing or blank."""
    text = body.get(field)
    if not isinstance(text, str) or not text.strip():
        raise ApiError(
            "invalid_request", f"'{field}' must be a non-empty SQL string", data={"field": field}
        )
    return text


# PostgreSQL's own limit on bind parameters in one statement.
MAX_PARAMS = 65_535


def query_params(body: dict[str, Any]) -> list[str | None] | None:
    """``params`` for ``$1…`` placeholders, each as text of unknown type (PostgreSQL casts it
    to what the statement needs, as the gateway's condition values are); absent → ``None``.

    With params the text runs through the extended protocol: one statement only.
    """
    raw = body.get("params")
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise ApiError("invalid_request", "'params' must be an array", data={"field": "params"})
    if len(raw) > MAX_PARAMS:
        raise ApiError("invalid_request", f"at most {MAX_PARAMS} params", data={"field": "params"})
    from athena.query.conditions import scalar_text  # the one JSON value → SQL text rule

    return [scalar_text(value) if not isinstance(value, list) else _list_param(value)
            for value in raw]  # fmt: skip


def _list_param(values: list[Any]) -> str:
    """A JSON array is a PostgreSQL array literal when it holds scalars, else JSON text."""
    from athena.query.conditions import array_literal, scalar_text

    if any(isinstance(v, dict) for v in values):
        return scalar_text(values) or "[]"
    return array_literal(values)


# Transaction control that would end the gateway's transaction around the caller's SQL (and
# with it every check made before COMMIT). BEGIN/START inside it is a no-op with a warning;
# SAVEPOINT, RELEASE and ROLLBACK TO stay within it.
_ENDS_TRANSACTION = {
    "TRANS_STMT_COMMIT": "COMMIT",
    "TRANS_STMT_ROLLBACK": "ROLLBACK",
    "TRANS_STMT_PREPARE": "PREPARE TRANSACTION",
    "TRANS_STMT_COMMIT_PREPARED": "COMMIT PREPARED",
    "TRANS_STMT_ROLLBACK_PREPARED": "ROLLBACK PREPARED",
}
# The same, as the first token of a statement, for text the parser cannot read (SQL of a newer
# server than the parser's grammar): PostgreSQL's own scanner still splits it faithfully.
_ENDING_TOKENS = {"COMMIT", "END_P", "ROLLBACK", "ABORT_P"}


def transaction_control(text: str) -> str | None:
    """The first statement of ``text`` that would end the enclosing transaction, or ``None``.

    Read with PostgreSQL's own parser (pglast), so quoting, dollar quotes, nested comments and
    ``BEGIN ATOMIC … END`` bodies are seen exactly as the server sees them. A ``COMMIT`` inside
    a ``DO`` block or function cannot end a transaction block (the server refuses it), so only
    top-level statements count.
    """
    try:
        tree = json.loads(pg_parser.parse_sql_json(text))
    except pg_parser.ParseError:
        return _ending_token(text)
    for raw in tree.get("stmts", ()):
        stmt = raw.get("stmt", {}).get("TransactionStmt")
        if stmt is not None and stmt.get("kind") in _ENDS_TRANSACTION:
            return _ENDS_TRANSACTION[stmt["kind"]]
    return None


def _ending_token(text: str) -> str | None:
    try:
        tokens = pg_parser.scan(text)
    except pg_parser.ParseError:
        return None  # not even scannable: the server will reject it as well
    depth, first = 0, True
    for i, token in enumerate(tokens):
        name = token.name
        if first and depth == 0:
            if name in _ENDING_TOKENS and not _rollback_to(tokens, i):
                return text[token.start : token.end + 1].upper()
            if name == "PREPARE" and i + 1 < len(tokens) and tokens[i + 1].name == "TRANSACTION":
                return "PREPARE TRANSACTION"
        first = False
        if name == "ASCII_40":  # (
            depth += 1
        elif name == "ASCII_41":  # )
            depth = max(0, depth - 1)
        elif name == "ASCII_59" and depth == 0:  # ;
            first = True
    return None


def _rollback_to(tokens: list[Any], i: int) -> bool:
    return tokens[i].name == "ROLLBACK" and i + 1 < len(tokens) and tokens[i + 1].name == "TO"


def written_rows(tag: str | None) -> int:
    """Rows written according to a command tag (``INSERT 0 3`` → 3; ``SELECT 5`` → 0)."""
    if not tag:
        return 0
    head, _, rest = tag.partition(" ")
    if head not in _WRITE_TAGS:
        return 0
    last = rest.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


def is_ddl(tag: str | None) -> bool:
    return bool(tag) and tag.split(" ", 1)[0] in _DDL_TAGS  # type: ignore[union-attr]


# Python prints no int of over 4,300 digits (sys.get_int_max_str_digits); keep clear of it.
_MAX_INT_DIGITS = 4000


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        if not value.is_finite():
            return str(value)
        if value == value.to_integral_value() and "E" not in str(value):
            # Python will not print an int of over 4,300 digits (a numeric may have 131,072):
            # such a value keeps its exact text rather than failing the whole answer.
            return int(value) if value.adjusted() < _MAX_INT_DIGITS else str(value)
        as_float = float(value)
        return as_float if math.isfinite(as_float) else str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return _interval(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    if isinstance(
        value, IPv4Address | IPv6Address | IPv4Network | IPv6Network | IPv4Interface | IPv6Interface
    ):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)  # ranges, custom types: their text form


def _interval(value: timedelta) -> str:
    seconds = value.total_seconds()
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    days, rem = divmod(seconds, 86400)
    hours, rem = divmod(rem, 3600)
    minutes, secs = divmod(rem, 60)
    clock = f"{int(hours):02d}:{int(minutes):02d}:{secs:09.6f}".rstrip("0").rstrip(".")
    return f"{sign}{int(days)} days {clock}" if days else f"{sign}{clock}"


def encode_rows(columns: list[str], rows: list[tuple[Any, ...]]) -> bytes:
    """Rows as a JSON array of objects (later duplicate column names win, as in a dict).

    A float NaN or ±Infinity (float4/float8 may hold them) is written as PostgreSQL's
    ``to_json`` writes it, a string: JSON has no such numbers, and ``json.dumps`` would emit
    a bare ``NaN`` that no JSON parser of a client accepts.
    """
    objects = [dict(zip(columns, row, strict=False)) for row in rows]
    try:
        text = _dumps(objects)
    except ValueError:  # allow_nan=False: a non-finite float somewhere (rare; walk only then)
        text = _dumps(_finite(objects))
    return text.encode()


def _dumps(value: Any) -> str:
    return json.dumps(
        value, default=_default, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
