"""Stage 2 of ``/rest/v1``: what the request will do, decided before any SQL exists (pure).

A plan holds the page a read returns, the count it computes, the rows a write sends and what it
returns, and every embedded resource already resolved to its foreign key (``resolve_embeds``),
so that the service can check the rights on every table the request reads before it runs. The
names follow PostgREST's ``Plan`` module: ``ReadPlan`` for GET/HEAD, ``MutatePlan`` for
POST/PATCH/DELETE, ``CallPlan`` for a function call (``find_routine`` picks the overload).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from athena.db.introspection import Relation, Routine, SchemaSnapshot
from athena.query.postgrest.build import Returning
from athena.query.postgrest.call import CallArgs, result_relation
from athena.query.postgrest.errors import pgrst_error
from athena.query.postgrest.grammar import Filter, ParsedQuery
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
    put: bool = False  # PUT: the single-row upsert by primary key (200/204, not 201)

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


# -- calls (/rpc) ---------------------------------------------------------------------------

_SINGLE_BODY_TYPES = ("json", "jsonb")


def _matches_params(routine: Routine, keys: set[str]) -> bool:
    """PostgREST's ``findProc``: required parameters all given, the rest optional ones."""
    if not routine.params:
        return not keys
    if any(p.name == "" for p in routine.params):
        return False
    required = {p.name for p in routine.params if p.required}
    optional = {p.name for p in routine.params if not p.required}
    return required <= keys and keys - required <= optional


def _single_unnamed_json(routine: Routine) -> bool:
    return (
        len(routine.params) == 1
        and routine.params[0].name == ""
        and routine.params[0].type in _SINGLE_BODY_TYPES
    )


def find_routine(
    overloads: list[Routine],
    *,
    schema: str,
    name: str,
    keys: set[str],
    post: bool,
    single_object: bool,
    known: list[tuple[str, str]],
) -> tuple[Routine, bool]:
    """The one overload a call means, and whether it takes the whole body as one argument.

    Overloads are told apart by argument names (PostgREST's rule); a function with a single
    unnamed json/jsonb parameter takes a POST body no named overload matches. ``Prefer:
    params=single-object`` passes the body to a function's one json/jsonb parameter, named or
    not. None → 404 PGRST202 with PostgREST's hint; several → 300 PGRST203.
    """
    if single_object and post:
        singles = [
            r for r in overloads if len(r.params) == 1 and r.params[0].type in _SINGLE_BODY_TYPES
        ]
        if len(singles) == 1:
            return singles[0], True
    matched = [r for r in overloads if _matches_params(r, keys)]
    fallback = [r for r in overloads if post and _single_unnamed_json(r)]
    if len(matched) == 1:
        return matched[0], False
    if not matched and len(fallback) == 1:
        return fallback[0], True
    if len(matched) > 1 or len(fallback) > 1:
        candidates = matched or fallback
        listed = ", ".join(
            f"{r.schema}.{r.name}(" + ", ".join(f"{p.name} => {p.type}" for p in r.params) + ")"
            for r in candidates
        )
        raise pgrst_error(
            "PGRST203",
            f"Could not choose the best candidate function between: {listed}",
            hint="Try renaming the parameters or the function itself in the database so "
            "function overloading can be resolved",
        )
    raise no_function(schema, name, sorted(keys), post=post, overloads=overloads, known=known)


def no_function(
    schema: str,
    name: str,
    keys: list[str],
    *,
    post: bool,
    overloads: list[Routine],
    known: list[tuple[str, str]],
) -> Exception:
    """PGRST202 worded as PostgREST words it, with its "Perhaps you meant" hint."""
    func = f"{schema}.{name}"
    shown = f"({', '.join(keys)})" if keys else " without parameters"
    with_params = (
        f" with parameter{'s' if len(keys) > 1 else ''} {', '.join(keys)}"
        if keys
        else " without parameters"
    )
    details = f"Searched for the function {func}{with_params}"
    if post:
        details += " or with a single unnamed json/jsonb parameter"
    details += ", but no matches were found in the schema cache."
    hint = None
    if overloads:
        # the name exists: suggest the closest parameter list of its overloads
        options = {"(" + ", ".join(sorted(p.name for p in r.params)) + ")": r for r in overloads}
        close = difflib.get_close_matches(
            "(" + ", ".join(keys) + ")", list(options), n=1, cutoff=0.33
        )
        if close:
            hint = f"Perhaps you meant to call the function {func}{close[0]}"
    else:
        names = [n for s, n in known if s == schema]
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.75)
        if close:
            hint = f"Perhaps you meant to call the function {schema}.{close[0]}"
    return pgrst_error(
        "PGRST202",
        f"Could not find the function {func}{shown} in the schema cache",
        details=details,
        hint=hint,
    )


@dataclass(frozen=True)
class CallPlan:
    """A call: the overload, its arguments, whether it may write, and how its rows are read."""

    routine: Routine
    args: CallArgs
    read_only: bool
    rel: Relation  # the result as a relation (the table itself for SETOF <table>)
    read: ReadPlan

    @property
    def returns_rows(self) -> bool:
        """SETOF / TABLE results answer an array; single values and rows answer themselves."""
        return self.routine.returns_set

    @property
    def void(self) -> bool:
        return self.routine.return_kind == "void"


def plan_call(
    snapshot: SchemaSnapshot,
    overloads: list[Routine],
    *,
    schema: str,
    name: str,
    method: str,
    direct: dict[str, str] | None,
    body: Any,
    raw_body: str | None,
    single_object: bool,
    query: ParsedQuery,
    prefs: ReadPreferences,
    range_header: tuple[int, int | None] | None,
    native: bool,
    max_rows: int,
) -> CallPlan:
    """``direct``: GET/HEAD arguments (text); ``body``: the decoded POST object (its JSON text
    in ``raw_body``). Reads (GET/HEAD) and non-volatile functions run read-only."""
    post = method == "POST"
    if post:
        if not isinstance(body, dict) and not single_object:
            overload_single = [r for r in overloads if _single_unnamed_json(r)]
            if not overload_single:
                raise invalid_body("the body of a function call must be a JSON object")
        keys = set(body) if isinstance(body, dict) else set()
    else:
        keys = set(direct or {})
    known = [k for k in snapshot.routines]
    routine, whole_body = find_routine(
        overloads,
        schema=schema,
        name=name,
        keys=keys,
        post=post,
        single_object=single_object,
        known=known,
    )
    if whole_body:
        args = CallArgs("single", routine.params, body=raw_body or "{}")
    elif not routine.params or not keys:
        args = CallArgs("none")
    else:
        given = tuple(p for p in routine.params if p.name in keys)
        if post:
            args = CallArgs("json", given, body=raw_body)
        else:
            args = CallArgs("direct", given, direct=dict(direct or {}))
    rel = result_relation(snapshot, routine)
    read = plan_read(
        snapshot,
        rel,
        query,
        prefs=prefs,
        range_header=range_header,
        native=native,
        max_rows=max_rows,
        head=method == "HEAD",
    )
    return CallPlan(
        routine=routine,
        args=args,
        read_only=not post or routine.volatility != "volatile",
        rel=rel,
        read=read,
    )


def plan_put(
    snapshot: SchemaSnapshot,
    rel: Relation,
    query: ParsedQuery,
    raw: bytes | None,
    *,
    prefs: WritePreferences,
    singular: bool,
) -> MutatePlan:
    """``PUT /t?pk=eq.v``: PostgREST's single-row upsert. The filters must be ``eq`` on every
    primary-key column and nothing else (405 PGRST105), no ``limit``/``offset`` (400 PGRST114),
    one row whose key values match the filters (400 PGRST115)."""
    root = query.root
    if root.limit is not None or root.offset is not None:
        raise pgrst_error("PGRST114", "limit/offset querystring parameters are not allowed for PUT")
    keys: dict[str, str] = {}
    for cond in root.conditions:
        if (
            not isinstance(cond, Filter) or cond.op != "eq" or cond.negate
            or cond.quantifier is not None or cond.field.path or cond.field.name in keys
        ):  # fmt: skip
            keys = {}
            break
        keys[cond.field.name] = str(cond.value)
    if not rel.primary_key or set(keys) != set(rel.primary_key) or len(query.nodes) > 1:
        raise pgrst_error(
            "PGRST105", "Filters must include all and only primary key columns with 'eq' operators"
        )
    payload = parse_json_body(raw)
    if isinstance(payload, list) and len(payload) == 1:
        payload = payload[0]
    if not isinstance(payload, dict):
        raise invalid_body("the PUT body must be one JSON object (one row)")
    for column, value in keys.items():
        if column not in payload or _text(payload[column]) != value:
            raise pgrst_error(
                "PGRST115", "Payload values do not match URL in primary key column(s)"
            )
    prefs = dataclasses.replace(prefs, resolution="merge", max_affected=None)
    plan = plan_insert_rows(
        snapshot, rel, query, [payload], json.dumps([payload]), prefs=prefs, singular=singular
    )
    return dataclasses.replace(plan, on_conflict=tuple(rel.primary_key), put=True)


def _text(value: Any) -> str:
    """A JSON value as the text a URL filter holds (``true``, ``1``, ``abc``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)
