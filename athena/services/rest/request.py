"""Stage 1 of ``/rest/v1``: the request as PostgREST reads it (pure: headers in, values out).

Nothing here does I/O or records anything: ``Accept``, ``Range``, the profile headers and
``Prefer`` become plain values, and the preferences a request will honour are returned together
with the ``Preference-Applied`` list they produce (PostgREST's ``ApiRequest.Preferences``).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from athena.http.bodies import strict_loads
from athena.query.postgrest.errors import PgrstError, pgrst_error
from athena.query.postgrest.grammar import AggregateItem, EmbedItem, ParsedQuery, SelectItem

OBJECT_MEDIA = "application/vnd.pgrst.object+json"
ARRAY_MEDIA = "application/vnd.pgrst.array+json"
_RANGE = re.compile(r"^\s*(?:items=)?(\d+)-(\d*)\s*$")

ReturnMode = Literal["minimal", "representation", "headers-only"]
CountMode = Literal["exact", "planned", "estimated"]


@dataclass
class Preferences:
    """The ``Prefer`` header(s), as PostgREST reads them; unknown preferences are ignored."""

    values: dict[str, str]

    @classmethod
    def parse(cls, raw: str | None) -> Preferences:
        values: dict[str, str] = {}
        for part in (raw or "").split(","):
            name, _, value = part.strip().partition("=")
            if name:
                values[name.strip().lower()] = value.strip()
        return cls(values)

    def get(self, name: str) -> str | None:
        return self.values.get(name)


@dataclass(frozen=True)
class ReadPreferences:
    count: CountMode | None
    applied: tuple[str, ...]


@dataclass(frozen=True)
class WritePreferences:
    """What a POST/PATCH/DELETE honours, and the ``Preference-Applied`` entries that says."""

    return_mode: ReturnMode
    count_exact: bool
    rollback: bool
    resolution: Literal["merge", "ignore"] | None = None  # POST only
    missing_default: bool = False  # POST only
    max_affected: int | None = None  # PATCH/DELETE only
    applied: tuple[str, ...] = field(default=())


def read_preferences(prefs: Preferences) -> ReadPreferences:
    mode = prefs.get("count")
    if mode in ("exact", "planned", "estimated"):
        return ReadPreferences(mode, (f"count={mode}",))  # type: ignore[arg-type]
    return ReadPreferences(None, ())


def write_preferences(
    prefs: Preferences, *, method: str, default_return: ReturnMode
) -> WritePreferences:
    """The preferences of a write, in PostgREST's order of ``Preference-Applied``."""
    applied: list[str] = []
    wanted = prefs.get("return")
    return_mode: ReturnMode = (
        wanted if wanted in ("minimal", "representation", "headers-only") else default_return  # type: ignore[assignment]
    )
    if wanted == return_mode:
        applied.append(f"return={return_mode}")
    resolution: Literal["merge", "ignore"] | None = None
    missing_default = False
    max_affected: int | None = None
    if method == "POST":
        pref = prefs.get("resolution")
        if pref in ("merge-duplicates", "ignore-duplicates"):
            resolution = "merge" if pref == "merge-duplicates" else "ignore"
            applied.append(f"resolution={pref}")
        missing_default = prefs.get("missing") == "default"
        if missing_default:
            applied.append("missing=default")
    else:
        max_affected = _max_affected(prefs.get("max-affected"))
        if max_affected is not None:
            applied.append(f"max-affected={max_affected}")
            if prefs.get("handling") == "strict":
                applied.append("handling=strict")
    tx = prefs.get("tx")
    if tx in ("rollback", "commit"):
        applied.append(f"tx={tx}")
    count_exact = prefs.get("count") == "exact"
    if count_exact:
        applied.append("count=exact")
    return WritePreferences(
        return_mode=return_mode,
        count_exact=count_exact,
        rollback=tx == "rollback",
        resolution=resolution,
        missing_default=missing_default,
        max_affected=max_affected,
        applied=tuple(applied),
    )


def _max_affected(raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if value >= 0 else None


PLAN_MEDIA = "application/vnd.pgrst.plan"
CSV_MEDIA = "text/csv"
# EXPLAIN options PostgREST accepts in ``options=analyze|verbose|…``; each maps to fixed SQL
PLAN_OPTIONS = ("analyze", "verbose", "settings", "buffers", "wal")


@dataclass
class Accept:
    singular: bool = False
    strip_nulls: bool = False
    csv: bool = False
    plan: Literal["json", "text"] | None = None  # EXPLAIN instead of the rows
    plan_options: tuple[str, ...] = ()


def _plan_accept(media: str, params: list[str]) -> Accept:
    fmt: Literal["json", "text"] = "json" if media.endswith("+json") else "text"
    options: tuple[str, ...] = ()
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "options":
            wanted = [o.strip().lower() for o in value.strip().strip('"').split("|") if o.strip()]
            unknown = [o for o in wanted if o not in PLAN_OPTIONS]
            if unknown:
                raise pgrst_error(
                    "PGRST107", f"None of these media types are available: {media}",
                    details=f"unknown EXPLAIN option(s): {', '.join(unknown)}",
                )  # fmt: skip
            options = tuple(o for o in PLAN_OPTIONS if o in wanted)
    return Accept(plan=fmt, plan_options=options)


def parse_accept(raw: str | None) -> Accept:
    """``application/json``, ``*/*``, PostgREST's array/object media types (``;nulls=stripped``),
    ``text/csv`` and the plan media types (``application/vnd.pgrst.plan[+json|+text]``);
    anything else → 406 PGRST107, as PostgREST."""
    if not raw:
        return Accept()
    offered: list[str] = []
    for item in raw.split(","):
        media, *params = [p.strip() for p in item.split(";")]
        media = media.lower()
        stripped = any(p.replace(" ", "").lower() == "nulls=stripped" for p in params)
        if media in (PLAN_MEDIA, PLAN_MEDIA + "+json", PLAN_MEDIA + "+text"):
            return _plan_accept(media, params)
        if media == CSV_MEDIA:
            return Accept(csv=True)
        if media == OBJECT_MEDIA:
            return Accept(singular=True, strip_nulls=stripped)
        if media in ("application/json", "*/*", "application/*", ARRAY_MEDIA, ""):
            return Accept(strip_nulls=stripped and media == ARRAY_MEDIA)
        offered.append(media)
    raise pgrst_error("PGRST107", f"None of these media types are available: {', '.join(offered)}")


def parse_range(raw: str | None) -> tuple[int, int | None] | None:
    """``items=0-24`` / ``0-24`` / ``10-`` → (first, last|None); unparsable → ignored (as
    PostgREST), first > last → 416."""
    if not raw:
        return None
    m = _RANGE.match(raw)
    if m is None:
        return None
    first = int(m.group(1))
    last = int(m.group(2)) if m.group(2) else None
    if last is not None and last < first:
        raise pgrst_error(
            "PGRST103",
            "Requested range not satisfiable",
            details=f"The range {first}-{last} ends before it starts",
            headers={"Content-Range": "*/*"},
        )
    return first, last


def wants_native(header: str | None, setting: str) -> bool:
    """PostgREST-native responses: ``X-Athena-Rest-Format: postgrest`` or the setting."""
    wanted = (header or "").lower()
    if wanted in ("postgrest", "native"):
        return True
    if wanted == "envelope":
        return False
    return setting == "postgrest"


def profile_schema(header: str | None, exposed: list[str]) -> str:
    """``Accept-Profile`` (reads) / ``Content-Profile`` (writes): one of the exposed schemas."""
    schema = header or "public"
    if schema not in exposed:
        raise pgrst_error(
            "PGRST106", f"The schema must be one of the following: {', '.join(exposed)}"
        )
    return schema


def invalid_body(details: str) -> PgrstError:
    return pgrst_error("PGRST102", "Empty or invalid json", details=details)


def parse_json_body(raw: bytes | None) -> Any:
    """The JSON body of a write (PGRST102 when missing or not JSON)."""
    if not raw or not raw.strip():
        raise invalid_body("a JSON request body is required")
    try:
        return strict_loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # nesting bombs too
        raise invalid_body(f"the body is not valid JSON: {exc}") from None


_OPERATOR_HEAD = re.compile(r"^(?:not\.)?([a-z]+)(?:\([^)]*\))?\.")
_RESERVED_TAILS = ("order", "limit", "offset", "and", "or")


def split_call_pairs(
    pairs: list[tuple[str, str]], operators: frozenset[str]
) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """GET ``/rpc/fn``: a query key whose value has no operator (``name=Alger``) is an
    argument, everything else (``select``, ``order``, ``col=eq.1`` …) shapes the result, as
    PostgREST reads a call's query string."""
    args: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for key, value in pairs:
        if key in ("select", "columns", "on_conflict") or key.split(".")[-1] in _RESERVED_TAILS:
            rest.append((key, value))
            continue
        head = _OPERATOR_HEAD.match(value)
        if head is not None and head.group(1) in operators:
            rest.append((key, value))
        else:
            args[key] = value
    return args, rest


def is_csv(content_type: str | None) -> bool:
    return (content_type or "").split(";")[0].strip().lower() == CSV_MEDIA


def parse_csv_body(raw: bytes | None) -> list[dict[str, Any]]:
    """A ``text/csv`` POST body as PostgREST reads it: a header line naming the columns, then one
    row per line; a field that is exactly ``NULL`` is NULL, every other one a string (PostgreSQL
    casts it to the column's type)."""
    if not raw or not raw.strip():
        raise invalid_body("a CSV request body is required")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise invalid_body(f"the CSV body is not UTF-8: {exc}") from None
    try:
        lines = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as exc:
        raise invalid_body(f"the CSV body is not valid CSV: {exc}") from None
    lines = [line for line in lines if line]
    header, records = lines[0], lines[1:]
    if len(set(header)) != len(header) or any(not name for name in header):
        raise invalid_body("the CSV header must name each column once")
    rows = []
    for n, record in enumerate(records, start=2):
        if len(record) != len(header):
            raise invalid_body(f"CSV line {n} has {len(record)} fields, the header {len(header)}")
        rows.append({k: (None if v == "NULL" else v) for k, v in zip(header, record, strict=True)})
    return rows


def check_aggregates(query: ParsedQuery, enabled: bool) -> None:
    """``ATHENA_REST_AGGREGATES_ENABLED=false``: an aggregate anywhere in select is 400
    PGRST123, as PostgREST with ``db-aggregates-enabled`` off."""
    if enabled:
        return

    def walk(items: tuple[SelectItem, ...]) -> bool:
        return any(
            isinstance(i, AggregateItem) or (isinstance(i, EmbedItem) and walk(i.children))
            for i in items
        )

    if walk(query.select):
        raise pgrst_error("PGRST123", "Use of aggregate functions is not allowed")
