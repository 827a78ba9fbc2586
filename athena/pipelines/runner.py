"""Run a pipeline: read the source in batches, transform, insert into the sink.

Everything happens on ONE connection of the request's client, in ONE transaction:

1. the source query runs as a server-side cursor and is read ``batch_size`` rows at a time, each
   row as JSON text built by PostgreSQL (``row_to_json``), so memory stays bounded by a batch;
2. without a transform each batch goes straight to the sink: the JSON texts are joined into the
   array the gateway's insert statement (``athena.query.mutations``) takes as its one parameter —
   rows are never decoded in Python;
3. with a transform each batch is grouped by the fetch's own ``post_process`` and reduced to one
   summary row per group; the summaries are grouped again by ``post_process`` at the end, which
   orders the groups and computes the running totals exactly as a fetch over all rows would.
   Only the groups are held in memory, never the rows;
4. the sink insert is all-or-nothing: the first row PostgreSQL rejects rolls the whole run back
   and is reported with its index. With ``sink.on_error: skip`` rejected rows are reported and
   skipped (each batch is retried row by row under savepoints only when it fails);
5. a dry run computes everything, inserts nothing, and returns the rows it would insert.

``aggregation_dedup`` ("identical rows count once") is done by PostgreSQL (``SELECT DISTINCT``
over the selected rows, after the source limit, like a fetch): deduplicating in Python across
batches would need every row seen so far in memory.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import psycopg
import trio
from psycopg import sql

from athena.db.clients import require_db
from athena.db.errors import api_error_from_db
from athena.errors import ApiError
from athena.query.conditions import plan_where, where_sql
from athena.query.fetch import order_by_sql
from athena.query.mutations import InsertRequest, mutation_statement, plan_insert
from athena.query.post_processing import PostProcessing, check_columns, post_process

if TYPE_CHECKING:
    from athena.db.clients import ClientEntry
    from athena.db.introspection import Relation
    from athena.pipelines.config import PipelinePlan
    from athena.runtime import Runtime

# At most this many per-row errors are listed (the count is always exact).
MAX_ERRORS = 1000
# SQLSTATE classes that a single row can cause: data exceptions, integrity constraints,
# WITH CHECK OPTION, and RAISE from a trigger. Anything else fails the whole run.
_ROW_ERROR_CLASSES = ("22", "23", "44", "P0")
_STALE_SCHEMA = {"42P01", "42703"}
_CURSOR = "athena_pipeline_source"


class PipelineStopped(Exception):
    """The caller went away (or the server is shutting down): stop between batches."""


class RowRejected(Exception):
    """A sink row was rejected in all-or-nothing mode; the transaction is rolled back."""

    def __init__(self, index: int, error: ApiError, rows_fetched: int) -> None:
        super().__init__(error.message)
        self.index = index
        self.error = error
        self.rows_fetched = rows_fetched


@dataclass
class PipelineResult:
    """What a run did. ``data_json`` is the JSON array of inserted (or, dry, insertable) rows."""

    data_json: bytes
    rows_fetched: int
    rows_inserted: int
    errors: list[dict[str, Any]]
    error_count: int
    would_insert: int
    data_truncated: bool


@dataclass(frozen=True)
class _Job:
    """Everything the worker thread needs; built on the event loop, executed in the thread."""

    select: sql.Composed
    params: list[Any]
    batch_size: int
    insert: bytes
    transform: PostProcessing | None
    on_error: str
    dry_run: bool
    max_rows: int
    max_bytes: int


@dataclass
class _Collector:
    """Row arrays for the response, capped so a huge run cannot exhaust memory."""

    max_rows: int
    max_bytes: int
    parts: list[str] = field(default_factory=list)
    rows: int = 0
    size: int = 0
    truncated: bool = False

    def add(self, array_text: str, count: int) -> None:
        if count == 0 or self.truncated:
            return
        inner = array_text.strip()[1:-1].strip()
        if self.rows + count > self.max_rows or self.size + len(inner) > self.max_bytes:
            self.truncated = True
            return
        self.parts.append(inner)
        self.rows += count
        self.size += len(inner)

    def json(self) -> bytes:
        return ("[" + ",".join(self.parts) + "]").encode()


@dataclass
class _Progress:
    fetched: int = 0
    inserted: int = 0
    would_insert: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    error_count: int = 0


# -- planning (event loop) -------------------------------------------------------------------


def build_select(source: Relation, plan: PipelinePlan) -> tuple[sql.Composed, list[Any]]:
    """``SELECT row_to_json(t.*)::text FROM (SELECT … LIMIT %s) t`` (DISTINCT for dedup)."""
    src = plan.source
    columns = src.columns if src.columns is not None else tuple(source.columns)
    for name in columns:
        source.column(name)
    for name, _ in src.sort:
        source.column(name)
    params: list[Any] = []
    where = plan_where(source, list(src.conditions), params)
    params.append(src.limit)  # None → LIMIT NULL = every row
    dedup = plan.transform is not None and plan.transform.dedup
    items = []
    for name in columns:
        ident = sql.Identifier(name)
        if dedup and source.columns[name].udt == "json":
            # json has no equality operator; jsonb compares the same documents equal
            items.append(sql.SQL("{}::jsonb AS {}").format(ident, ident))
        else:
            items.append(ident)
    inner = (
        sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(items), sql.Identifier(*source.qualified)
        )
        + where_sql(where)
        + order_by_sql(src.sort)
        + sql.SQL(" LIMIT %s")
    )
    if dedup:
        inner = sql.SQL("SELECT DISTINCT * FROM (") + inner + sql.SQL(") s")
    # t.*: a source column named t would otherwise be what row_to_json is given
    return sql.SQL("SELECT row_to_json(t.*)::text FROM (") + inner + sql.SQL(") t"), params


def sink_columns(source: Relation, plan: PipelinePlan) -> tuple[str, ...]:
    """The columns every sink row carries (CONTRACT "Pipelines")."""
    if plan.transform is not None:
        return plan.transform.columns
    if plan.source.columns is not None:
        return plan.source.columns
    return tuple(source.columns)


def build_insert(sink: Relation, columns: tuple[str, ...]) -> bytes:
    """The gateway's insert statement for rows of ``columns``; its one parameter is the JSON
    array of rows (``athena.query.mutations``)."""
    if sink.kind == "materialized_view":
        raise ApiError(
            "invalid_request", f"'{sink.name}' is a materialized view; it cannot be a sink"
        )
    probe = InsertRequest(rows=({name: None for name in columns},))
    shape, params = plan_insert(sink, probe)
    if len(params) != 1:  # a plain insert binds exactly the rows array
        raise RuntimeError("unexpected insert plan for a pipeline sink")
    return mutation_statement(shape)


# -- execution (worker thread) ---------------------------------------------------------------


def _batches(
    cursor: psycopg.ServerCursor[Any], job: _Job, stop: threading.Event
) -> Iterator[list[str]]:
    """The open source cursor, ``batch_size`` JSON row texts at a time."""
    while True:
        if stop.is_set():
            raise PipelineStopped
        rows = cursor.fetchmany(job.batch_size)
        if not rows:
            return
        yield [row[0] for row in rows]


def _is_row_error(exc: psycopg.Error) -> bool:
    state = getattr(exc, "sqlstate", None) or ""
    return state[:2] in _ROW_ERROR_CLASSES


def _row_error(index: int, error: ApiError) -> dict[str, Any]:
    entry: dict[str, Any] = {"index": index, "code": error.code, "message": error.message}
    if error.data:
        entry.update({k: v for k, v in error.data.items() if k not in entry})
    return entry


def _insert(
    conn: psycopg.Connection, job: _Job, texts: list[str], first_index: int,
    progress: _Progress, out: _Collector,
) -> None:  # fmt: skip
    """Insert one chunk (JSON row texts); on a row-level failure find the row(s) at fault."""
    if job.dry_run:
        progress.would_insert += len(texts)
        out.add("[" + ",".join(texts) + "]", len(texts))
        return
    try:
        with conn.transaction():  # a savepoint: a failed chunk is retried row by row
            text, count = conn.execute(job.insert, ["[" + ",".join(texts) + "]"]).fetchone()  # type: ignore[misc]
        progress.inserted += count
        out.add(text, count)
        return
    except psycopg.Error as exc:
        if not _is_row_error(exc):
            raise
    for offset, row in enumerate(texts):
        index = first_index + offset
        try:
            with conn.transaction():
                text, count = conn.execute(job.insert, ["[" + row + "]"]).fetchone()  # type: ignore[misc]
        except psycopg.Error as exc:
            if not _is_row_error(exc):
                raise
            error = api_error_from_db(exc)
            if job.on_error == "rollback":
                raise RowRejected(index, error, progress.fetched) from None
            progress.error_count += 1
            if len(progress.errors) < MAX_ERRORS:
                progress.errors.append(_row_error(index, error))
            continue
        progress.inserted += count
        out.add(text, count)


def _summaries(grouped: dict[str, Any], spec: PostProcessing) -> list[dict[str, Any]]:
    """One row per group, carrying the group's raw key and sum, for the next ``post_process``."""
    rows = []
    for group in grouped["grouped"]:
        row = {spec.group_by: group["rows"][0].get(spec.group_by)}
        if spec.aggregation_column:
            row[spec.aggregation_column] = group["aggregation"]["value"]
        rows.append(row)
    return rows


def _transform(
    cursor: psycopg.ServerCursor[Any], job: _Job, stop: threading.Event, progress: _Progress
) -> list[dict[str, Any]]:
    """The sink rows of a transform: one per group, in the fetch's group order."""
    spec = job.transform
    assert spec is not None
    # Batches are summed group by group (plain sums; dedup already done by SELECT DISTINCT) …
    partial = replace(spec, strategy="sum", dedup=False)
    pending: list[dict[str, Any]] = []
    compact_at = max(2 * job.batch_size, 1000)
    for texts in _batches(cursor, job, stop):
        progress.fetched += len(texts)
        rows = [json.loads(text) for text in texts]
        pending.extend(_summaries(post_process(rows, partial), spec))
        if len(pending) > compact_at:  # keep memory at one summary per group
            pending = _summaries(post_process(pending, partial), spec)
            # many groups: compact less often, or every batch would re-group all of them
            compact_at = max(compact_at, 2 * len(pending))
    # … and the summaries grouped once more give the final order and the running totals.
    final = post_process(pending, replace(spec, dedup=False))
    sink_rows = []
    for group in final["grouped"]:
        row: dict[str, Any] = {spec.group_by: group["label"]}
        if spec.aggregation_column:
            aggregation = group["aggregation"]
            row[spec.aggregation_column] = (
                aggregation["cumulative"] if spec.cumulative else aggregation["value"]
            )
        sink_rows.append(row)
    return sink_rows


def _execute(conn: psycopg.Connection, job: _Job, stop: threading.Event) -> PipelineResult:
    progress = _Progress()
    out = _Collector(job.max_rows, job.max_bytes)
    # One transaction: the cursor needs one, and the sink insert is all-or-nothing.
    with (
        conn.transaction(force_rollback=job.dry_run),
        conn.cursor(name=_CURSOR) as cursor,  # server-side: rows arrive a batch at a time
    ):
        cursor.execute(job.select, job.params)
        if job.transform is None:
            for texts in _batches(cursor, job, stop):
                _insert(conn, job, texts, progress.fetched, progress, out)
                progress.fetched += len(texts)
        else:
            sink_rows = _transform(cursor, job, stop, progress)
            for start in range(0, len(sink_rows), job.batch_size):
                if stop.is_set():
                    raise PipelineStopped
                chunk = sink_rows[start : start + job.batch_size]
                texts = [
                    json.dumps(row, separators=(",", ":"), ensure_ascii=False) for row in chunk
                ]
                _insert(conn, job, texts, start, progress, out)
    return PipelineResult(
        data_json=out.json(),
        rows_fetched=progress.fetched,
        rows_inserted=0 if job.dry_run else progress.inserted,
        errors=progress.errors,
        error_count=progress.error_count,
        would_insert=progress.would_insert,
        data_truncated=out.truncated,
    )


# -- entry point -------------------------------------------------------------------------------


async def run_pipeline(
    rt: Runtime, entry: ClientEntry, plan: PipelinePlan, *, dry_run: bool
) -> PipelineResult:
    """Check ``plan`` against the client's schema, then run it (see the module docstring)."""
    source = await rt.introspection.relation(entry, plan.source.relation)
    sink = await rt.introspection.relation(entry, plan.sink)
    if plan.transform is not None:
        check_columns(plan.transform, source, plan.source.columns, "source")
    select, params = build_select(source, plan)
    insert = build_insert(sink, sink_columns(source, plan))
    job = _Job(
        select=select,
        params=params,
        batch_size=plan.source.batch_size,
        insert=insert,
        transform=plan.transform,
        on_error=plan.on_error,
        dry_run=dry_run,
        max_rows=rt.settings.max_result_rows,
        max_bytes=rt.settings.max_result_bytes,
    )
    db = require_db(entry)
    stop = threading.Event()
    try:
        # No per-call deadline: a pipeline is a long job, and every statement it sends is still
        # bounded by the pool's statement_timeout (it runs no caller SQL that could lift it).
        return await db.run(lambda conn: _execute(conn, job, stop), deadline_s=None)
    except trio.Cancelled:
        stop.set()  # the abandoned thread stops at the next batch and rolls back
        raise
    except RowRejected as rejected:
        error = rejected.error
        raise ApiError(
            error.code,
            f"row {rejected.index} was rejected by '{sink.name}': {error.message}; "
            "nothing was inserted",
            detail=error.detail,
            data={
                "rows_fetched": rejected.rows_fetched,
                "rows_inserted": 0,
                "errors": [_row_error(rejected.index, error)],
            },
            status=error.status,
        ) from None
    except ApiError:
        raise
    except Exception as exc:
        if getattr(exc, "sqlstate", None) in _STALE_SCHEMA:
            rt.introspection.invalidate(entry.name)
        raise api_error_from_db(exc, client=entry.name) from None
