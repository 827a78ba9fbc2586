"""Stage 2 of ``/rest/v1``: what the request will do, decided before any SQL exists (pure).

A plan holds the page a read returns, the count it computes, the rows a write sends and what it
returns, and every embedded resource already resolved to its foreign key (``resolve_embeds``),
so that the service can check the rights on every table the request reads before it runs. The
names follow PostgREST's ``Plan`` module: ``ReadPlan`` for GET/HEAD, ``MutatePlan`` for
POST/PATCH/DELETE.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from athena.db.introspection import Relation, SchemaSnapshot
from athena.query.postgrest.build import Returning
from athena.query.postgrest.errors import pgrst_error
from athena.query.postgrest.grammar import ParsedQuery
from athena.query.postgrest.relationships import Embeds, resolve_embeds
from athena.services.rest.request import (
    CountMode,
    ReadPreferences,
    WritePreferences,
    invalid_body,
    parse_json_body,
)

DEFAULT_ENVELOPE_LIMIT = 100  # the spec: "Maximum number of rows to return (default 100)"


@dataclass(frozen=True)
class ReadPlan:
    """A GET/HEAD: the page ``[offset, offset + limit)``, the count and the resolved embeds."""

    rel: Relation
    query: ParsedQuery
    limit: int
    offset: int
    count: CountMode | None
    count_cap: int  # estimated counts are exact up to here, the planner's estimate beyond
    embeds: Embeds
    head: bool
    applied: tuple[str, ...]


def plan_read(
    snapshot: SchemaSnapshot,
    rel: Relation,
    query: ParsedQuery,
    *,
    prefs: ReadPreferences,
    range_header: tuple[int, int | None] | None,
    native: bool,
    max_rows: int,
    head: bool,
) -> ReadPlan:
    root = query.root
    lower = root.offset or 0
    upper = lower + root.limit - 1 if root.limit is not None else None
    if range_header is not None:
        lower = max(lower, range_header[0])  # PostgREST intersects both ranges
        if range_header[1] is not None:
            upper = range_header[1] if upper is None else min(upper, range_header[1])
    limit = None if upper is None else max(0, upper - lower + 1)
    if limit is None and not native:
        limit = DEFAULT_ENVELOPE_LIMIT
    limit = max_rows if limit is None else min(limit, max_rows)
    return ReadPlan(
        rel=rel,
        query=query,
        limit=limit,
        offset=lower,
        count=prefs.count,
        count_cap=max_rows,
        embeds=resolve_embeds(snapshot, rel, query.select),
        head=head,
        applied=prefs.applied,
    )


Operation = Literal["insert", "update", "delete"]


@dataclass(frozen=True)
class MutatePlan:
    """A POST/PATCH/DELETE: the rows and columns it writes and what comes back."""

    operation: Operation
    rel: Relation
    query: ParsedQuery
    prefs: WritePreferences
    singular: bool
    returning: Returning
    embeds: Embeds
    columns: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    body_json: str = ""
    on_conflict: tuple[str, ...] = ()
    # nothing to write (an empty array, a PATCH naming no column): answered without SQL
    nothing: bool = False

    @property
    def needs_transaction(self) -> bool:
        """Autocommit is all or nothing for one statement; these checks need a transaction."""
        return self.prefs.rollback or self.prefs.max_affected is not None or self.singular


def _returning(prefs: WritePreferences, singular: bool) -> Returning:
    return "rows" if prefs.return_mode != "minimal" or singular else "none"


def _embeds(snapshot: SchemaSnapshot, rel: Relation, query: ParsedQuery, r: Returning) -> Embeds:
    # only a returned body reads embedded resources: return=minimal resolves (and checks) none
    return resolve_embeds(snapshot, rel, query.select) if r == "rows" else Embeds()


def plan_insert(
    snapshot: SchemaSnapshot,
    rel: Relation,
    query: ParsedQuery,
    raw: bytes | None,
    *,
    prefs: WritePreferences,
    singular: bool,
) -> MutatePlan:
    payload = parse_json_body(raw)
    assert raw is not None  # parse_json_body refused an empty body
    if isinstance(payload, dict):
        rows = [payload]
        body_json = "[" + raw.decode("utf-8") + "]"
    elif isinstance(payload, list) and all(isinstance(r, dict) for r in payload):
        rows = payload
        body_json = raw.decode("utf-8")
    else:
        raise invalid_body("the body must be a JSON object or an array of objects")
    return plan_insert_rows(snapshot, rel, query, rows, body_json, prefs=prefs, singular=singular)


def plan_insert_rows(
    snapshot: SchemaSnapshot,
    rel: Relation,
    query: ParsedQuery,
    rows: list[dict[str, Any]],
    body_json: str,
    *,
    prefs: WritePreferences,
    singular: bool,
) -> MutatePlan:
    if query.columns is not None:
        columns = list(dict.fromkeys(query.columns))
    else:
        columns = list(dict.fromkeys(k for r in rows for k in r))
    if not columns and len(rows) > 1:
        # DEFAULT VALUES inserts one row; n empty objects cannot be said in one statement
        raise invalid_body("an array of empty objects names no column to insert")
    on_conflict = tuple(query.on_conflict or rel.primary_key)
    if prefs.resolution is not None and not on_conflict:
        raise pgrst_error(
            "PGRST100",
            f"'{rel.name}' has no primary key: name the conflict columns with on_conflict",
        )
    returning = _returning(prefs, singular)
    return MutatePlan(
        operation="insert",
        rel=rel,
        query=query,
        prefs=prefs,
        singular=singular,
        returning=returning,
        embeds=_embeds(snapshot, rel, query, returning) if rows else Embeds(),
        columns=columns,
        rows=rows,
        body_json=body_json,
        on_conflict=on_conflict,
        nothing=not rows,
    )


def _require_filters(query: ParsedQuery, verb: str) -> None:
    if not query.has_root_filters:
        raise pgrst_error(
            "21000",
            f"{verb} requires a WHERE clause",
            hint="Add a filter such as ?id=eq.1 (a filter that matches every row, e.g. "
            "?id=not.is.null, is required to touch the whole table).",
            envelope_code=f"{verb.lower()}_requires_conditions",
        )


def plan_update(
    snapshot: SchemaSnapshot,
    rel: Relation,
    query: ParsedQuery,
    raw: bytes | None,
    *,
    prefs: WritePreferences,
    singular: bool,
) -> MutatePlan:
    _require_filters(query, "UPDATE")
    payload = parse_json_body(raw)
    if not isinstance(payload, dict):
        raise invalid_body("the PATCH body must be a JSON object")
    assert raw is not None
    columns = list(query.columns or payload.keys())
    returning = _returning(prefs, singular)
    return MutatePlan(
        operation="update",
        rel=rel,
        query=query,
        prefs=prefs,
        singular=singular,
        returning=returning,
        embeds=_embeds(snapshot, rel, query, returning) if columns else Embeds(),
        columns=columns,
        body_json=raw.decode("utf-8"),
        nothing=not columns,
    )


def plan_delete(
    snapshot: SchemaSnapshot,
    rel: Relation,
    query: ParsedQuery,
    *,
    prefs: WritePreferences,
    singular: bool,
) -> MutatePlan:
    _require_filters(query, "DELETE")
    returning = _returning(prefs, singular)
    return MutatePlan(
        operation="delete",
        rel=rel,
        query=query,
        prefs=prefs,
        singular=singular,
        returning=returning,
        embeds=_embeds(snapshot, rel, query, returning),
    )
