"""``/rest/v1/{table}``: PostgREST's behaviour over Athena's clients, keys and pools.

One request → at most one data statement (``count=planned|estimated`` add an ``EXPLAIN``).
PostgreSQL builds the JSON body; this module only decides status and headers:

* GET/HEAD: ``Range``/``limit``/``offset`` → ``Content-Range``, 206/416 (native), counts;
* POST: insert/upsert (``Prefer: resolution``, ``on_conflict``, ``missing=default``);
* PATCH/DELETE: filters required; ``max-affected``; ``tx=rollback``;
* ``Accept: application/vnd.pgrst.object+json`` → exactly one row or 406 (writes roll back).

The route renders ``RestResult`` and turns ``PgrstError``/``ApiError`` into the right format.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import psycopg

from athena.auth.guard import authorize
from athena.auth.rights import table_right
from athena.context import CallContext
from athena.db.introspection import Relation, SchemaSnapshot
from athena.db.pools import DatabaseUnavailable, require_db
from athena.errors import ApiError
from athena.query.postgrest.build import (
    ReadPlan,
    build_count_source,
    build_delete,
    build_insert,
    build_read,
    build_update,
)
from athena.query.postgrest.errors import PgrstError
from athena.query.postgrest.grammar import ParsedQuery, parse_query
from athena.services.clients import resolve_client
from athena.services.events import ChangeEvent
from athena.services.rest_errors import api_error_for_db, pgrst_from_db

if TYPE_CHECKING:
    from athena.runtime import Runtime

OBJECT_MEDIA = "application/vnd.pgrst.object+json"
ARRAY_MEDIA = "application/vnd.pgrst.array+json"
DEFAULT_ENVELOPE_LIMIT = 100  # the spec: "Maximum number of rows to return (default 100)"
_RANGE = re.compile(r"^\s*(?:items=)?(\d+)-(\d*)\s*$")
_OPERATION = {
    "GET": "fetch",
    "HEAD": "fetch",
    "POST": "insert",
    "PATCH": "update",
    "DELETE": "delete",
}
_RIGHT = {"GET": "read", "HEAD": "read", "POST": "write", "PATCH": "write", "DELETE": "delete"}


@dataclass
class RestResult:
    status: int
    body: bytes | None  # the JSON PostgreSQL built (array, or one object when singular)
    headers: dict[str, str] = field(default_factory=dict)
    media: str = "application/json"


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


def is_native(rt: Runtime, ctx: CallContext) -> bool:
    """PostgREST-native responses: ``X-Athena-Rest-Format: postgrest`` or the setting."""
    wanted = (ctx.header("x-athena-rest-format") or "").lower()
    if wanted in ("postgrest", "native"):
        return True
    if wanted == "envelope":
        return False
    return rt.settings.rest_format == "postgrest"


def exposed_schemas(rt: Runtime) -> list[str]:
    extra = [s.strip() for s in rt.settings.rest_schemas.split(",") if s.strip()]
    return ["public", *[s for s in extra if s != "public"]]


@dataclass
class Accept:
    singular: bool = False
    strip_nulls: bool = False


def parse_accept(raw: str | None) -> Accept:
    """``application/json``, ``*/*``, PostgREST's array/object media types (``;nulls=stripped``);
    anything else → 406 PGRST107, as PostgREST."""
    if not raw:
        return Accept()
    offered: list[str] = []
    for item in raw.split(","):
        media, *params = [p.strip() for p in item.split(";")]
        media = media.lower()
        stripped = any(p.replace(" ", "").lower() == "nulls=stripped" for p in params)
        if media == OBJECT_MEDIA:
            return Accept(singular=True, strip_nulls=stripped)
        if media in ("application/json", "*/*", "application/*", ARRAY_MEDIA, ""):
            return Accept(strip_nulls=stripped and media == ARRAY_MEDIA)
        offered.append(media)
    raise PgrstError(
        406,
        "PGRST107",
        f"None of these media types are available: {', '.join(offered)}",
        envelope_code="not_acceptable",
    )


def _range_header(raw: str | None) -> tuple[int, int | None] | None:
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
        raise PgrstError(
            416,
            "PGRST103",
            "Requested range not satisfiable",
            details=f"The range {first}-{last} ends before it starts",
            envelope_code="range_not_satisfiable",
            headers={"Content-Range": "*/*"},
        )
    return first, last


class RestService:
    """The behaviour of ``/rest/v1/{table}``; one instance per runtime."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    # -- entry -------------------------------------------------------------------------------

    async def handle(
        self,
        ctx: CallContext,
        *,
        method: str,
        table: str,
        pairs: list[tuple[str, str]],
        body: bytes | None,
        native: bool,
        prefer: str | None = None,
    ) -> RestResult:
        rt = self.rt
        ctx.table_name = table
        ctx.operation = _OPERATION[method]
        entry = resolve_client(rt, ctx)
        schema = self._schema(ctx, method)
        await authorize(rt, ctx, entry.name, table_right(table, _RIGHT[method]))
        try:
            rel = await rt.introspection.relation(entry, table, schema)
        except ApiError as exc:
            if exc.code != "unknown_table":
                raise
            raise PgrstError(
                404,
                "PGRST205",
                f"Could not find the table '{schema}.{table}' in the schema cache",
                envelope_code="unknown_table",
            ) from None
        snapshot = await rt.introspection.snapshot(entry)
        query = parse_query(pairs)
        prefs = Preferences.parse(prefer if prefer is not None else ctx.header("prefer"))
        accept = parse_accept(ctx.header("accept"))
        call = _Call(self, ctx, entry, snapshot, rel, query, prefs, accept, native)
        if method in ("GET", "HEAD"):
            return await call.read(head=method == "HEAD")
        if method == "POST":
            return await call.insert(body)
        if method == "PATCH":
            return await call.update(body)
        return await call.delete()

    def _schema(self, ctx: CallContext, method: str) -> str:
        header = "accept-profile" if method in ("GET", "HEAD") else "content-profile"
        schema = ctx.header(header) or "public"
        allowed = exposed_schemas(self.rt)
        if schema not in allowed:
            raise PgrstError(
                406,
                "PGRST106",
                f"The schema must be one of the following: {', '.join(allowed)}",
                envelope_code="not_acceptable",
            )
        return schema


@dataclass
class _Call:
    """One request being served (keeps the many small decisions readable)."""

    service: RestService
    ctx: CallContext
    entry: Any
    snapshot: SchemaSnapshot
    rel: Relation
    query: ParsedQuery
    prefs: Preferences
    accept: Accept
    native: bool
    applied: list[str] = field(default_factory=list)

    @property
    def rt(self) -> Runtime:
        return self.service.rt

    # -- helpers ---------------------------------------------------------------------------

    async def _check_embedded(self, plan: ReadPlan) -> None:
        """Embedding reads another table: the caller must be allowed to read it too."""
        seen = {self.rel.name}
        exposed = exposed_schemas(self.rt)
        for rel in plan.embedded_tables:
            if rel.schema not in exposed:
                # a foreign key into a schema that is not exposed must not open a way into it
                raise PgrstError(
                    400,
                    "PGRST200",
                    f"Could not find a relationship between '{self.rel.name}' and "
                    f"'{rel.name}' in the schema cache",
                    envelope_code="invalid_request",
                )
            if rel.name not in seen:
                seen.add(rel.name)
                await authorize(self.rt, self.ctx, self.entry.name, table_right(rel.name, "read"))

    def _db_error(self, exc: BaseException) -> Exception:
        if self.native:
            return pgrst_from_db(exc, client=self.entry.name)
        return api_error_for_db(exc, client=self.entry.name)

    async def _run(self, fn: Any) -> Any:
        try:
            return await require_db(self.entry).run(fn)
        except (psycopg.Error, DatabaseUnavailable) as exc:
            raise self._db_error(exc) from None

    async def _fetch_row(self, statement: Any, params: Any) -> tuple[Any, ...]:
        try:
            row = await require_db(self.entry).fetch_one(statement, params)
        except (psycopg.Error, DatabaseUnavailable) as exc:
            raise self._db_error(exc) from None
        assert row is not None  # aggregate statements always return a row
        return row

    def _count_mode(self) -> str | None:
        mode = self.prefs.get("count")
        if mode in ("exact", "planned", "estimated"):
            self.applied.append(f"count={mode}")
            return mode
        return None

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        if self.applied:
            headers["Preference-Applied"] = ", ".join(self.applied)
        if (
            self.rel.schema != "public"
            or self.ctx.header("accept-profile")
            or self.ctx.header("content-profile")
        ):
            headers["Content-Profile"] = self.rel.schema
        return headers

    def _singular(self, body: str | None, count: int) -> bytes:
        if count != 1:
            raise PgrstError(
                406,
                "PGRST116",
                "JSON object requested, multiple (or no) rows returned",
                details=f"The result contains {count} rows",
                envelope_code="not_acceptable",
            )
        text = (body or "[]").strip()
        return text[1:-1].encode()  # json_agg of one row is "[<row>]"

    def _wrap(self, body: bytes) -> bytes:
        return body if self.native else b'{"data":' + body + b"}"

    @property
    def _media(self) -> str:
        if self.native and self.accept.singular:
            return OBJECT_MEDIA + "; charset=utf-8"
        return "application/json; charset=utf-8"

    # -- GET / HEAD --------------------------------------------------------------------------

    async def read(self, *, head: bool) -> RestResult:
        root = self.query.root
        lower = root.offset or 0
        upper = lower + root.limit - 1 if root.limit is not None else None
        header_range = _range_header(self.ctx.header("range"))
        if header_range is not None:
            lower = max(lower, header_range[0])  # PostgREST intersects both ranges
            if header_range[1] is not None:
                upper = header_range[1] if upper is None else min(upper, header_range[1])
        limit = None if upper is None else max(0, upper - lower + 1)
        cap = self.rt.settings.max_result_rows
        if limit is None and not self.native:
            limit = DEFAULT_ENVELOPE_LIMIT
        limit = cap if limit is None else min(limit, cap)
        mode = self._count_mode()
        plan = build_read(
            self.snapshot,
            self.rel,
            self.query,
            limit=limit,
            offset=lower,
            count_exact=mode in ("exact", "estimated"),
            # estimated: exact up to the row cap, the planner's estimate beyond (PostgREST)
            count_cap=cap if mode == "estimated" else None,
            strip_nulls=self.accept.strip_nulls,
            body=not head,
        )
        await self._check_embedded(plan)
        planned_stmt = (
            build_count_source(self.snapshot, self.rel, self.query)
            if mode in ("planned", "estimated")
            else None
        )

        if planned_stmt is None:
            # The common case, one statement: run on the event loop, no worker thread.
            row = await self._fetch_row(plan.statement.query, plan.statement.params)
            return self._read_result(row[0], row[1], row[2], lower, head)

        def work(conn: psycopg.Connection) -> tuple[Any, ...]:
            row = conn.execute(plan.statement.query, plan.statement.params).fetchone()
            assert row is not None
            total = row[0]
            if mode == "planned" or (total or 0) > cap:
                explain = conn.execute(
                    b"EXPLAIN (FORMAT JSON) " + planned_stmt.query.as_bytes(conn),
                    planned_stmt.params,
                ).fetchone()
                total = int(_plan_rows(explain[0] if explain else None))
            return total, row[1], row[2]

        total, count, body = await self._run(work)
        return self._read_result(total, count, body, lower, head)

    def _read_result(
        self, total: int | None, count: int, body: str | None, lower: int, head: bool
    ) -> RestResult:
        shown_total = "*" if total is None else str(total)
        if count == 0:
            content_range = f"*/{shown_total}"
        else:
            content_range = f"{lower}-{lower + count - 1}/{shown_total}"
        status = 200
        if total is not None and self.native:
            if lower > total:  # PostgREST's rangeStatus: past the end is 416, short is 206
                raise PgrstError(
                    416,
                    "PGRST103",
                    "Requested range not satisfiable",
                    details=f"An offset of {lower} was requested, but there are only {total} rows.",
                    envelope_code="range_not_satisfiable",
                    headers={"Content-Range": f"*/{total}"},
                )
            if count < total:
                status = 206
        if head:
            return RestResult(
                status, None, self._headers({"Content-Range": content_range}), self._media
            )
        if self.accept.singular:
            payload = self._singular(body, count)
        else:
            payload = (body or "[]").encode()
        return RestResult(
            status,
            self._wrap(payload),
            self._headers({"Content-Range": content_range}),
            self._media,
        )

    # -- writes --------------------------------------------------------------------------------

    def _return_mode(self, default: str) -> str:
        wanted = self.prefs.get("return")
        mode = wanted if wanted in ("minimal", "representation", "headers-only") else default
        if wanted == mode:
            self.applied.append(f"return={mode}")
        return mode

    def _max_affected(self) -> int | None:
        raw = self.prefs.get("max-affected")
        if raw is None:
            return None
        try:
            value = int(raw)
        except ValueError:
            return None
        if value < 0:
            return None
        self.applied.append(f"max-affected={value}")
        if self.prefs.get("handling") == "strict":
            self.applied.append("handling=strict")
        return value

    def _rollback(self) -> bool:
        if self.prefs.get("tx") == "rollback":
            self.applied.append("tx=rollback")
            return True
        if self.prefs.get("tx") == "commit":
            self.applied.append("tx=commit")
        return False

    def _wants_events(self) -> bool:
        bus = self.rt.events
        return bool(bus.relays) or len(bus) > 0

    async def _execute_write(
        self,
        plan: ReadPlan,
        *,
        operation: Literal["insert", "update", "delete"],
        max_affected: int | None,
        rollback: bool,
    ) -> tuple[int, str | None]:
        await self._check_embedded(plan)
        singular = self.accept.singular
        needs_tx = rollback or max_affected is not None or singular

        def work(conn: psycopg.Connection) -> tuple[int, str | None, str | None]:
            if not needs_tx:  # autocommit: one statement is already all or nothing
                row = conn.execute(plan.statement.query, plan.statement.params).fetchone()
                assert row is not None
                return row[1], row[2], row[3]
            with conn.transaction():
                row = conn.execute(plan.statement.query, plan.statement.params).fetchone()
                assert row is not None
                count = row[1]
                if max_affected is not None and count > max_affected:
                    raise PgrstError(
                        400,
                        "PGRST124",
                        "Query result exceeds max-affected preference constraint",
                        details=f"The query affects {count} rows",
                        envelope_code="max_affected_exceeded",
                    )
                if singular and count != 1:
                    raise PgrstError(
                        406,
                        "PGRST116",
                        "JSON object requested, multiple (or no) rows returned",
                        details=f"The result contains {count} rows",
                        envelope_code="not_acceptable",
                    )
                if rollback:
                    # leaving the block by an exception rolls the transaction back
                    raise _RolledBack(count, row[2])
                return count, row[2], row[3]

        try:
            count, body, events = await self._run(work)
        except _RolledBack as done:
            return done.count, done.body
        if events and count:
            self.rt.events.publish(
                ChangeEvent(self.entry.name, self.rel.name, operation, json.loads(events))
            )
        return count, body

    def _write_result(
        self,
        *,
        status_with_body: int,
        status_without: int,
        mode: str,
        count: int,
        body: str | None,
        extra: dict[str, str] | None = None,
    ) -> RestResult:
        headers = dict(extra or {})
        total = str(count) if self.prefs.get("count") == "exact" else "*"
        if self.prefs.get("count") == "exact":
            self.applied.append("count=exact")
        if count and status_with_body != 201:  # PATCH/DELETE: the affected range
            headers["Content-Range"] = f"0-{count - 1}/{total}"
        else:
            headers["Content-Range"] = f"*/{total}"
        if mode == "representation":
            payload = (
                self._singular(body, count) if self.accept.singular else (body or "[]").encode()
            )
            return RestResult(
                status_with_body, self._wrap(payload), self._headers(headers), self._media
            )
        return RestResult(status_without, None, self._headers(headers), self._media)

    async def insert(self, raw: bytes | None) -> RestResult:
        payload = _json_payload(raw)
        if isinstance(payload, dict):
            rows = [payload]
            body_json = "[" + raw.decode("utf-8") + "]"  # type: ignore[union-attr]
        elif isinstance(payload, list) and all(isinstance(r, dict) for r in payload):
            rows = payload
            body_json = raw.decode("utf-8")  # type: ignore[union-attr]
        else:
            raise _invalid_body("the body must be a JSON object or an array of objects")
        if self.query.columns is not None:
            columns = list(dict.fromkeys(self.query.columns))
        else:
            columns = list(dict.fromkeys(k for r in rows for k in r))
        if not columns and len(rows) > 1:
            # DEFAULT VALUES inserts one row; n empty objects cannot be said in one statement
            raise _invalid_body("an array of empty objects names no column to insert")
        mode = self._return_mode("minimal" if self.native else "representation")
        resolution_pref = self.prefs.get("resolution")
        resolution: Literal["merge", "ignore"] | None = None
        if resolution_pref in ("merge-duplicates", "ignore-duplicates"):
            resolution = "merge" if resolution_pref == "merge-duplicates" else "ignore"
            self.applied.append(f"resolution={resolution_pref}")
        on_conflict = self.query.on_conflict or self.rel.primary_key
        if resolution is not None and not on_conflict:
            raise PgrstError(
                400,
                "PGRST100",
                f"'{self.rel.name}' has no primary key: name the conflict columns with on_conflict",
                envelope_code="invalid_request",
            )
        missing_default = self.prefs.get("missing") == "default"
        if missing_default:
            self.applied.append("missing=default")
        rollback = self._rollback()
        if not rows:
            return self._write_result(
                status_with_body=201 if self.native else 200,
                status_without=201 if self.native else 204,
                mode=mode,
                count=0,
                body="[]",
            )
        plan = build_insert(
            self.snapshot,
            self.rel,
            self.query,
            rows=rows,
            columns=columns,
            body_json=body_json,
            resolution=resolution,
            on_conflict=tuple(on_conflict),
            missing_default=missing_default,
            returning="rows" if mode != "minimal" or self.accept.singular else "none",
            want_events=self._wants_events(),
        )
        # headers-only needs the primary key of the new row for Location
        count, body = await self._execute_write(
            plan, operation="insert", max_affected=None, rollback=rollback
        )
        extra: dict[str, str] = {}
        if mode == "headers-only" and count == 1 and self.rel.primary_key and body:
            row = json.loads(body)[0]
            if all(k in row for k in self.rel.primary_key):
                extra["Location"] = f"/{self.rel.name}?" + "&".join(
                    f"{quote(k)}=eq.{quote(str(row[k]))}" for k in self.rel.primary_key
                )
        return self._write_result(
            status_with_body=201 if self.native else 200,
            status_without=201 if self.native else 204,
            mode=mode,
            count=count,
            body=body,
            extra=extra,
        )

    def _require_filters(self, verb: str) -> None:
        if not self.query.has_root_filters:
            raise PgrstError(
                400,
                "21000",
                f"{verb} requires a WHERE clause",
                hint="Add a filter such as ?id=eq.1 (a filter that matches every row, e.g. "
                "?id=not.is.null, is required to touch the whole table).",
                envelope_code=f"{verb.lower()}_requires_conditions",
            )

    async def update(self, raw: bytes | None) -> RestResult:
        self._require_filters("UPDATE")
        payload = _json_payload(raw)
        if not isinstance(payload, dict):
            raise _invalid_body("the PATCH body must be a JSON object")
        columns = list(self.query.columns or payload.keys())
        mode = self._return_mode("minimal" if self.native else "representation")
        max_affected = self._max_affected()
        rollback = self._rollback()
        if not columns:
            return self._write_result(
                status_with_body=200, status_without=204, mode=mode, count=0, body="[]"
            )
        plan = build_update(
            self.snapshot,
            self.rel,
            self.query,
            columns=columns,
            body_json=raw.decode("utf-8"),  # type: ignore[union-attr]
            returning="rows" if mode != "minimal" or self.accept.singular else "none",
            want_events=self._wants_events(),
        )
        count, body = await self._execute_write(
            plan, operation="update", max_affected=max_affected, rollback=rollback
        )
        return self._write_result(
            status_with_body=200, status_without=204, mode=mode, count=count, body=body
        )

    async def delete(self) -> RestResult:
        self._require_filters("DELETE")
        mode = self._return_mode("minimal" if self.native else "representation")
        max_affected = self._max_affected()
        rollback = self._rollback()
        plan = build_delete(
            self.snapshot,
            self.rel,
            self.query,
            returning="rows" if mode != "minimal" or self.accept.singular else "none",
            want_events=self._wants_events(),
        )
        count, body = await self._execute_write(
            plan, operation="delete", max_affected=max_affected, rollback=rollback
        )
        return self._write_result(
            status_with_body=200, status_without=204, mode=mode, count=count, body=body
        )


class _RolledBack(Exception):
    """Raised inside the transaction to undo a ``tx=rollback`` write; carries its result."""

    def __init__(self, count: int, body: str | None) -> None:
        super().__init__("rolled back on request")
        self.count = count
        self.body = body


def _plan_rows(plan: Any) -> float:
    try:
        return float(plan[0]["Plan"]["Plan Rows"])
    except (TypeError, KeyError, IndexError, ValueError):
        return 0.0


def _invalid_body(details: str) -> PgrstError:
    return PgrstError(
        400, "PGRST102", "Empty or invalid json", details=details, envelope_code="invalid_json"
    )


def _json_payload(raw: bytes | None) -> Any:
    if not raw or not raw.strip():
        raise _invalid_body("a JSON request body is required")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _invalid_body(f"the body is not valid JSON: {exc}") from None


def rest_service(rt: Runtime) -> RestService:
    service = rt.services.get("rest")
    if service is None:
        service = rt.services["rest"] = RestService(rt)
    return service  # type: ignore[no-any-return]


async def attach(rt: Runtime) -> None:
    rt.services["rest"] = RestService(rt)
