"""Stage 3 of ``/rest/v1``: authorize, build the SQL from the plan, run it, shape the answer.

One request → at most one data statement (``count=planned|estimated`` add an ``EXPLAIN``).
PostgreSQL builds the JSON body; the stages around this module decide everything else:

* ``request.py`` — headers and ``Prefer`` read purely (what is applied is returned);
* ``plan.py`` — paging, counts, rows to write, embeds resolved to foreign keys;
* ``athena.query.postgrest.build`` — the pure SQL builders;
* ``response.py`` — status, ``Content-Range``, ``Preference-Applied``, singular objects.

The route renders ``RestResult`` and turns ``PgrstError``/``ApiError`` into the right format.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import psycopg

from athena.auth.guard import authorize
from athena.auth.rights import table_right
from athena.context import CallContext
from athena.db.clients import require_db
from athena.db.errors import DATABASE_ERRORS, db_error
from athena.db.introspection import Relation, SchemaSnapshot, exposed_schemas
from athena.db.libpq import text_params
from athena.errors import ApiError
from athena.query.postgrest.build import (
    Statement,
    build_count_source,
    build_delete,
    build_insert,
    build_read,
    build_update,
)
from athena.query.postgrest.errors import pgrst_error
from athena.query.postgrest.grammar import parse_query
from athena.query.postgrest.read_cache import ReadStatements
from athena.query.postgrest.relationships import Embeds
from athena.services.clients import resolve_client
from athena.services.events import ChangeEvent
from athena.services.rest.plan import (
    MutatePlan,
    ReadPlan,
    plan_delete,
    plan_insert,
    plan_insert_rows,
    plan_put,
    plan_read,
    plan_update,
)
from athena.services.rest.request import (
    Accept,
    Preferences,
    check_aggregates,
    is_csv,
    parse_accept,
    parse_csv_body,
    parse_range,
    profile_schema,
    read_preferences,
    wants_native,
    write_preferences,
)
from athena.services.rest.response import (
    RestResult,
    Shape,
    plan_result,
    read_result,
    singular_mismatch,
    write_result,
)
from athena.webhooks.outbox import rows_json_text, webhook_outbox

if TYPE_CHECKING:
    from athena.runtime import Runtime

_OPERATION = {
    "GET": "fetch",
    "HEAD": "fetch",
    "POST": "insert",
    "PATCH": "update",
    "PUT": "upsert",
    "DELETE": "delete",
}
_RIGHT = {
    "GET": "read", "HEAD": "read", "POST": "write", "PATCH": "write", "PUT": "write",
    "DELETE": "delete",
}  # fmt: skip


def is_native(rt: Runtime, ctx: CallContext) -> bool:
    """PostgREST-native responses: ``X-Athena-Rest-Format: postgrest`` or the setting."""
    return wants_native(ctx.header("x-athena-rest-format"), rt.settings.rest_format)


def check_media(rt: Runtime, ctx: CallContext, accept: Accept, *, reads: bool) -> None:
    """CSV and plans are served for reads; plans only where ``ATHENA_REST_PLAN_ENABLED``
    allows (by default the admin key alone, as PostgREST's ``db-plan-enabled``): elsewhere the
    media type is not available (406 PGRST107)."""
    media = "text/csv" if accept.csv else f"application/vnd.pgrst.plan+{accept.plan}"
    allowed = reads
    if accept.plan is not None:
        setting = rt.settings.rest_plan_enabled
        allowed = allowed and (
            setting == "true" or (setting == "admin" and ctx.key_public_id == "admin")
        )
    if not allowed:
        raise pgrst_error("PGRST107", f"None of these media types are available: {media}")


class RestService:
    """The behaviour of ``/rest/v1/{table}``; one instance per runtime."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.reads = ReadStatements()  # SQL per read shape, shared by every request

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
        ctx.operation = _OPERATION[method]
        entry = resolve_client(rt, ctx)
        header = "accept-profile" if method in ("GET", "HEAD") else "content-profile"
        schema = profile_schema(ctx.header(header), exposed_schemas(rt.settings.rest_schemas))
        await authorize(rt, ctx, entry.name, table_right(table, _RIGHT[method], schema))
        ctx.table_name = table  # authorized for it: the log may name it (see CallContext)
        accept = parse_accept(ctx.header("accept"))
        if accept.plan is not None or accept.csv:
            check_media(rt, ctx, accept, reads=method in ("GET", "HEAD"))
        try:
            rel = await rt.introspection.relation(entry, table, schema)
        except ApiError as exc:
            if exc.code != "unknown_table":
                raise
            raise pgrst_error(
                "PGRST205", f"Could not find the table '{schema}.{table}' in the schema cache"
            ) from None
        snapshot = await rt.introspection.snapshot(entry)
        query = parse_query(pairs)
        check_aggregates(query, rt.settings.rest_aggregates_enabled)
        prefs = Preferences.parse(prefer if prefer is not None else ctx.header("prefer"))
        shape = Shape(
            native=native,
            singular=accept.singular,
            schema=rel.schema,
            profile_asked=bool(ctx.header("accept-profile") or ctx.header("content-profile")),
            csv=accept.csv,
        )
        call = Serving(rt, ctx, entry, snapshot, shape, self.reads)
        if method in ("GET", "HEAD"):
            plan = plan_read(
                snapshot,
                rel,
                query,
                prefs=read_preferences(prefs),
                range_header=parse_range(ctx.header("range")),
                native=native,
                max_rows=rt.settings.max_result_rows,
                head=method == "HEAD",
            )
            # strip_nulls shapes the JSON PostgreSQL builds, so it reaches the builder
            return await call.read(plan, accept=accept)
        wprefs = write_preferences(
            prefs, method=method, default_return="minimal" if native else "representation"
        )
        if method == "POST" and is_csv(ctx.header("content-type")):
            rows = parse_csv_body(body)
            if query.columns is not None:  # only the named columns are read from the rows
                rows = [{k: r[k] for k in query.columns if k in r} for r in rows]
            mplan = plan_insert_rows(
                snapshot, rel, query, rows, json.dumps(rows), prefs=wprefs, singular=shape.singular
            )
        elif method == "POST":
            mplan = plan_insert(snapshot, rel, query, body, prefs=wprefs, singular=shape.singular)
        elif method == "PUT":
            mplan = plan_put(snapshot, rel, query, body, prefs=wprefs, singular=shape.singular)
        elif method == "PATCH":
            mplan = plan_update(snapshot, rel, query, body, prefs=wprefs, singular=shape.singular)
        else:
            mplan = plan_delete(snapshot, rel, query, prefs=wprefs, singular=shape.singular)
        return await call.write(mplan)


class Serving:
    """One request being served: the client, its schema snapshot and how to shape answers."""

    def __init__(
        self,
        rt: Runtime,
        ctx: CallContext,
        entry: Any,
        snapshot: SchemaSnapshot,
        shape: Shape,
        reads: ReadStatements | None = None,
    ) -> None:
        self.rt = rt
        self.ctx = ctx
        self.entry = entry
        self.snapshot = snapshot
        self.shape = shape
        self.reads = reads

    # -- helpers ---------------------------------------------------------------------------

    async def check_embedded(self, rel: Relation, embeds: Embeds) -> None:
        """Embedding reads another table: the caller must be allowed to read it too."""
        seen = {rel.qualified}
        exposed = exposed_schemas(self.rt.settings.rest_schemas)
        for other in embeds.tables:
            if other.schema not in exposed:
                # a foreign key into a schema that is not exposed must not open a way into it
                raise pgrst_error(
                    "PGRST200",
                    f"Could not find a relationship between '{rel.name}' and "
                    f"'{other.name}' in the schema cache",
                )
            if other.qualified not in seen:
                seen.add(other.qualified)
                right = table_right(other.name, "read", other.schema)
                await authorize(self.rt, self.ctx, self.entry.name, right)

    def _db_error(self, exc: BaseException) -> Exception:
        return db_error(exc, client=self.entry.name, native=self.shape.native)

    async def run(self, fn: Any) -> Any:
        try:
            return await require_db(self.entry).run(fn)
        except DATABASE_ERRORS as exc:
            raise self._db_error(exc) from None

    async def _fetch_row(self, statement: Statement) -> tuple[Any, ...]:
        try:
            row = await require_db(self.entry).fetch_one(statement.query, statement.params)
        except DATABASE_ERRORS as exc:
            raise self._db_error(exc) from None
        assert row is not None  # aggregate statements always return a row
        return row

    # -- GET / HEAD --------------------------------------------------------------------------

    async def read(self, plan: ReadPlan, *, accept: Accept) -> RestResult:
        await self.check_embedded(plan.rel, plan.embeds)
        mode = plan.count
        strip_nulls = accept.strip_nulls
        if (
            self.reads is not None
            and accept.plan is None
            and not accept.csv
            and mode not in ("planned", "estimated")
        ):
            # The common case: a shape whose SQL was built before, run through libpq.
            cached = self.reads.read(
                self.entry.name,
                self.snapshot,
                plan.rel,
                plan.query,
                limit=plan.limit,
                offset=plan.offset,
                count_exact=mode == "exact",
                count_cap=None,
                strip_nulls=strip_nulls,
                body=not plan.head,
                embeds=plan.embeds,
            )
            if cached is not None:
                texts = text_params(cached.params)
                if texts is not None:
                    return await self._read_cached(plan, cached.sql, texts)
        built = build_read(
            self.snapshot,
            plan.rel,
            plan.query,
            limit=plan.limit,
            offset=plan.offset,
            count_exact=mode in ("exact", "estimated"),
            # estimated: exact up to the row cap, the planner's estimate beyond (PostgREST)
            count_cap=plan.count_cap if mode == "estimated" else None,
            strip_nulls=strip_nulls,
            body=not plan.head,
            embeds=plan.embeds,
            csv=accept.csv,
        )
        statement = built.statement
        if accept.plan is not None:
            return await self.explain(statement, accept)
        if mode not in ("planned", "estimated"):
            # The common case, one statement: run on the event loop, no worker thread.
            row = await self._fetch_row(statement)
            return self._read_result(plan, row[0], row[1], row[2])
        planned_stmt = build_count_source(self.snapshot, plan.rel, plan.query, plan.embeds)
        cap = plan.count_cap

        def work(conn: psycopg.Connection) -> tuple[Any, ...]:
            row = conn.execute(statement.query, statement.params).fetchone()
            assert row is not None
            total = row[0]
            if mode == "planned" or (total or 0) > cap:
                explain = conn.execute(
                    b"EXPLAIN (FORMAT JSON) " + planned_stmt.query.as_bytes(conn),
                    planned_stmt.params,
                ).fetchone()
                total = int(plan_rows(explain[0] if explain else None))
            return total, row[1], row[2]

        total, count, body = await self.run(work)
        return self._read_result(plan, total, count, body)

    async def explain(self, statement: Statement, accept: Accept) -> RestResult:
        """``EXPLAIN`` the statement the request would run (ANALYZE runs it: always rolled
        back). Options come from a fixed list, never from the request's text."""
        fmt = accept.plan or "text"
        words = [f"FORMAT {fmt.upper()}", *(o.upper() for o in accept.plan_options)]
        prefix = ("EXPLAIN (" + ", ".join(words) + ") ").encode()

        def work(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
            rows: list[tuple[Any, ...]] = []
            with conn.transaction():
                rows = conn.execute(
                    prefix + statement.query.as_bytes(conn), statement.params
                ).fetchall()
                raise psycopg.Rollback()
            return rows

        return plan_result(fmt, await self.run(work))

    async def _read_cached(
        self, plan: ReadPlan, statement: bytes, params: list[bytes | None]
    ) -> RestResult:
        try:
            row = await require_db(self.entry).fetch_row_text(statement, params)
        except DATABASE_ERRORS as exc:
            raise self._db_error(exc) from None
        assert row is not None  # aggregate statements always return a row
        total = None if row[0] is None else int(row[0])
        return self._read_result(plan, total, int(row[1] or 0), row[2])

    def _read_result(
        self, plan: ReadPlan, total: int | None, count: int, body: bytes | str | None
    ) -> RestResult:
        return read_result(
            self.shape,
            total=total,
            count=count,
            body=body,
            offset=plan.offset,
            head=plan.head,
            applied=plan.applied,
        )

    # -- writes --------------------------------------------------------------------------------

    def _wants_events(self) -> bool:
        bus = self.rt.events
        return bool(bus.relays) or len(bus) > 0

    def _build(self, plan: MutatePlan, *, for_webhooks: bool = False) -> Statement:
        common: dict[str, Any] = {
            "returning": plan.returning,
            "want_events": for_webhooks or self._wants_events(),
            "embeds": plan.embeds,
        }
        if plan.operation == "insert":
            built = build_insert(
                self.snapshot,
                plan.rel,
                plan.query,
                rows=plan.rows,
                columns=plan.columns,
                body_json=plan.body_json,
                resolution=plan.prefs.resolution,
                on_conflict=plan.on_conflict,
                missing_default=plan.prefs.missing_default,
                **common,
            )
        elif plan.operation == "update":
            built = build_update(
                self.snapshot,
                plan.rel,
                plan.query,
                columns=plan.columns,
                body_json=plan.body_json,
                **common,
            )
        else:
            built = build_delete(self.snapshot, plan.rel, plan.query, **common)
        return built.statement

    async def _execute_write(self, plan: MutatePlan) -> tuple[int, str | None]:
        await self.check_embedded(plan.rel, plan.embeds)
        rel = plan.rel
        table = rel.name if rel.schema == "public" else f"{rel.schema}.{rel.name}"
        outbox = webhook_outbox(self.rt, self.ctx, self.entry, table, f"rest.{plan.operation}")
        if outbox is not None:
            await outbox.outbox.ensure(require_db(self.entry))
        statement = self._build(plan, for_webhooks=outbox is not None)
        max_affected = plan.prefs.max_affected
        # A webhook's event is written in the write's transaction, after every check.
        needs_tx = plan.needs_transaction or outbox is not None

        def work(conn: psycopg.Connection) -> tuple[int, str | None, str | None]:
            if not needs_tx:  # autocommit: one statement is already all or nothing
                row = conn.execute(statement.query, statement.params).fetchone()
                assert row is not None
                return row[1], row[2], row[3]
            with conn.transaction():
                row = conn.execute(statement.query, statement.params).fetchone()
                assert row is not None
                count = row[1]
                if max_affected is not None and count > max_affected:
                    raise pgrst_error(
                        "PGRST124",
                        "Query result exceeds max-affected preference constraint",
                        details=f"The query affects {count} rows",
                    )
                if plan.singular and count != 1:
                    raise singular_mismatch(count)
                if plan.prefs.rollback:
                    # leaving the block by an exception rolls the transaction back
                    raise _RolledBack(count, row[2])
                if outbox is not None and row[3]:
                    outbox.record(conn, rows_json_text(row[3]), count)
                return count, row[2], row[3]

        try:
            count, body, events = await self.run(work)
        except _RolledBack as done:
            return done.count, done.body
        if outbox is not None:
            outbox.outbox.wake()
        if events and count:
            self.rt.events.publish(
                ChangeEvent(self.entry.name, plan.rel.name, plan.operation, json.loads(events))
            )
        return count, body

    async def write(self, plan: MutatePlan) -> RestResult:
        if plan.put:
            with_body, without = 200, 204
        elif plan.operation == "insert":
            with_body = without = 201 if self.shape.native else 200
            if not self.shape.native:
                without = 204
        else:
            with_body, without = 200, 204
        if plan.nothing:
            count, body = 0, "[]"
        else:
            count, body = await self._execute_write(plan)
        extra: dict[str, str] = {}
        if plan.operation == "insert" and plan.prefs.return_mode == "headers-only":
            extra = _location(plan.rel, count, body)
        return write_result(
            self.shape,
            status_with_body=with_body,
            status_without=without,
            return_mode=plan.prefs.return_mode,
            count_exact=plan.prefs.count_exact,
            count=count,
            body=body,
            applied=plan.prefs.applied,
            extra=extra,
        )


def _location(rel: Relation, count: int, body: str | None) -> dict[str, str]:
    """``return=headers-only``: the ``Location`` of the one new row, by its primary key."""
    if count != 1 or not rel.primary_key or not body:
        return {}
    row = json.loads(body)[0]
    if not all(k in row for k in rel.primary_key):
        return {}
    query = "&".join(f"{quote(k)}=eq.{quote(str(row[k]))}" for k in rel.primary_key)
    return {"Location": f"/{rel.name}?{query}"}


class _RolledBack(Exception):
    """Raised inside the transaction to undo a ``tx=rollback`` write; carries its result."""

    def __init__(self, count: int, body: str | None) -> None:
        super().__init__("rolled back on request")
        self.count = count
        self.body = body


def plan_rows(plan: Any) -> float:
    try:
        return float(plan[0]["Plan"]["Plan Rows"])
    except (TypeError, KeyError, IndexError, ValueError):
        return 0.0
