"""The SQL of a ``/rest/v1`` read built once per query *shape*, as ``/gateway/fetch`` does.

Building a statement with ``psycopg.sql`` and rendering it costs more CPU than anything else
a by-id read does in Python (measured in-process: about a third of the request). But the SQL
text of a read depends only on its shape — the table, the select list, which filters on which
columns with which operators, the order, whether there is a limit/offset/count — never on the
filter values, which ``build_read`` always binds as parameters. So the statement is built once
per shape (with the real builder, so every check it makes still runs) and kept as bytes with
PostgreSQL's ``$n`` placeholders; a later request of the same shape only computes its
parameters, in the order the builder binds them.

That order is re-derived here (``_values``) for a deliberately small set of shapes — filters
with plain operators, no embedded resources, no CSV, no full-text search or quantifiers —
and checked against the builder's own parameters each time a shape is first built: a shape
whose parameters differ is never cached, so a mistake here can cost speed, never a wrong
answer. Anything else goes through the builder every time, as before.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from athena.db.introspection import Relation, SchemaSnapshot
from athena.query.postgrest.build import BINARY_OPERATORS, Built, build_read
from athena.query.postgrest.grammar import (
    AggregateItem,
    ColumnItem,
    Condition,
    Logic,
    ParsedQuery,
    StarItem,
    array_literal,
)

# Operators whose bound value is ``str(value)`` (``*`` → ``%`` for the LIKEs). ``ov`` rewrites
# some values into array literals depending on the column, so it is left to the builder.
_PLAIN = frozenset(BINARY_OPERATORS) - {"ov"}
_PLACEHOLDER = re.compile(rb"%\(p(\d+)\)s")
_UNCACHEABLE = object()


@dataclass(frozen=True)
class ReadStatement:
    """One read, ready for libpq: SQL with ``$n`` placeholders and its parameters."""

    sql: bytes
    params: list[Any]
    built: Built | None  # the builder's output on a miss (embeds for the rights check)


@dataclass(frozen=True)
class _Entry:
    snapshot: SchemaSnapshot  # the statement is only valid against the schema it was built on
    sql: bytes


def _condition_key(cond: Condition) -> tuple[Any, ...] | None:
    if isinstance(cond, Logic):
        items = []
        for item in cond.items:
            key = _condition_key(item)
            if key is None:
                return None
            items.append(key)
        return ("logic", cond.op, cond.negate, tuple(items))
    if cond.quantifier is not None or cond.language is not None:
        return None
    if cond.op == "is":
        # the operand is a keyword written into the SQL, so it is part of the shape
        return ("is", cond.field, cond.negate, cond.value)
    if cond.op == "in" or cond.op in _PLAIN:
        return (cond.op, cond.field, cond.negate)
    return None  # full-text search, ov, anything new: the builder every time


@dataclass(frozen=True)
class ReadFlags:
    """The arguments of ``build_read`` besides the query that change its SQL or parameters."""

    limit: int | None
    offset: int
    count_exact: bool
    count_cap: int | None
    strip_nulls: bool
    body: bool


def shape_key(
    client: str, rel: Relation, query: ParsedQuery, flags: ReadFlags
) -> tuple[Any, ...] | None:
    """What the SQL text of this read depends on; ``None`` when it is not a cached shape."""
    if set(query.nodes) - {()}:
        return None  # options of embedded resources
    if not all(isinstance(item, (ColumnItem, StarItem, AggregateItem)) for item in query.select):
        return None  # embeds and spreads
    root = query.root
    conditions = []
    for cond in root.conditions:
        key = _condition_key(cond)
        if key is None:
            return None
        conditions.append(key)
    return (
        client,
        rel.qualified,
        query.select,
        tuple(conditions),
        tuple(root.order),
        flags.limit is None,
        bool(flags.offset),
        flags.count_exact,
        flags.count_cap is None,
        flags.strip_nulls,
        flags.body,
    )


def _bound(cond: Condition, out: list[Any]) -> None:
    """The values ``_Builder.filter_sql`` binds for ``cond``, in its order."""
    if isinstance(cond, Logic):
        for item in cond.items:
            _bound(item, out)
        return
    if cond.op == "is":
        return
    if cond.op == "in":
        out.append(array_literal(cond.value))
        return
    value = str(cond.value)
    if cond.op in ("like", "ilike"):
        value = value.replace("*", "%")
    out.append(value)


def _values(query: ParsedQuery, flags: ReadFlags) -> list[Any]:
    """Every parameter of the read, in the order ``build_read`` binds them."""
    out: list[Any] = []
    for cond in query.root.conditions:
        _bound(cond, out)
    if flags.limit is not None:
        out.append(flags.limit)
    if flags.offset:
        out.append(flags.offset)
    if flags.count_exact and flags.count_cap is not None:
        out.append(flags.count_cap + 1)
    return out


def _numbered(statement: bytes, count: int) -> bytes | None:
    """``%(pN)s`` → ``$N+1``; ``None`` if the text holds any other ``%`` (a JSON key, say),
    which only psycopg's own parsing may interpret."""
    numbered, replaced = _PLACEHOLDER.subn(lambda m: b"$%d" % (int(m.group(1)) + 1), statement)
    if b"%" in numbered or replaced < count:
        return None
    return numbered


class ReadStatements:
    """Shape → SQL for one runtime's ``/rest/v1`` reads; bounded, rebuilt on a new schema."""

    def __init__(self, max_entries: int = 2048) -> None:
        self._entries: dict[tuple[Any, ...], _Entry | object] = {}
        self._max = max_entries

    def __len__(self) -> int:
        return len(self._entries)

    def read(
        self,
        client: str,
        snapshot: SchemaSnapshot,
        rel: Relation,
        query: ParsedQuery,
        *,
        limit: int | None,
        offset: int,
        count_exact: bool,
        count_cap: int | None,
        strip_nulls: bool,
        body: bool,
        embeds: Any,
    ) -> ReadStatement | None:
        """The statement of this read, or ``None`` when it has to be run the builder's way
        (the caller then calls ``build_read`` itself)."""
        flags = ReadFlags(limit, offset, count_exact, count_cap, strip_nulls, body)
        key = shape_key(client, rel, query, flags)
        if key is None:
            return None
        entry = self._entries.get(key)
        if isinstance(entry, _Entry) and entry.snapshot is snapshot:
            return ReadStatement(entry.sql, _values(query, flags), None)
        if entry is _UNCACHEABLE:
            return None
        built = build_read(snapshot, rel, query, embeds=embeds, **asdict(flags))
        params = built.statement.params
        ordered = [params[f"p{i}"] for i in range(len(params))]
        values = _values(query, flags)
        numbered = _numbered(built.statement.query.as_bytes(None), len(ordered))
        if len(self._entries) >= self._max:
            self._entries.clear()  # bound memory against endless distinct shapes
        if numbered is None or values != ordered:
            self._entries[key] = _UNCACHEABLE
            return None
        self._entries[key] = _Entry(snapshot, numbered)
        return ReadStatement(numbered, ordered, built)
