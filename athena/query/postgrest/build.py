"""AST + schema snapshot → one ``psycopg.sql.Composed`` statement and its parameters (pure).

Every statement returns exactly one row ``(total, page_count, body, event_rows)``:

* ``total`` — the exact count of matching rows when asked for (``Prefer: count=exact``);
* ``page_count`` — rows in this response (or affected by the write);
* ``body`` — the JSON text PostgreSQL built (``json_agg`` of the projected rows, embedded
  resources as correlated sub-selects), passed through to the client untouched;
* ``event_rows`` — the written rows as JSON, only when a subscriber will receive them.

Relationships come resolved from the plan stage (``relationships.Embeds``); a builder only looks
them up. Rules kept here: identifiers are checked against the snapshot and quoted with
``sql.Identifier``; values are named bound parameters (``%(p3)s``, so that the same filter can
be used twice without reordering trouble); operators, casts and ``is`` operands come from
fixed tables; JSON path keys are ``sql.Literal``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from psycopg import sql

from athena.db.introspection import Relation, SchemaSnapshot
from athena.query.postgrest.errors import PgrstError, pgrst_error
from athena.query.postgrest.grammar import (
    IS_KEYWORDS,
    AggregateItem,
    ColumnItem,
    Condition,
    EmbedItem,
    Field,
    Filter,
    NodeOptions,
    OrderTerm,
    ParsedQuery,
    SelectItem,
    StarItem,
    array_literal,
)
from athena.query.postgrest.relationships import Embeds, Relationship, resolve_embeds

BINARY_OPERATORS: dict[str, str] = {
    "eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=",
    "like": "LIKE", "ilike": "ILIKE", "match": "~", "imatch": "~*",
    "cs": "@>", "cd": "<@", "ov": "&&", "sl": "<<", "sr": ">>", "nxr": "&<", "nxl": "&>",
    "adj": "-|-", "isdistinct": "IS DISTINCT FROM",
}  # fmt: skip
FTS_FUNCTIONS: dict[str, str] = {
    "fts": "to_tsquery",
    "plfts": "plainto_tsquery",
    "phfts": "phraseto_tsquery",
    "wfts": "websearch_to_tsquery",
}
IS_SQL: dict[str, str] = {word: "IS " + keyword for word, keyword in IS_KEYWORDS.items()}
# ``::type`` in select: only these names ever reach SQL, each mapped to fixed text.
CASTS: dict[str, str] = {
    name: name
    for name in (
        "text", "varchar", "char", "int", "integer", "int2", "int4", "int8", "smallint",
        "bigint", "numeric", "decimal", "real", "float4", "float8", "boolean", "bool", "json",
        "jsonb", "date", "time", "timetz", "timestamp", "timestamptz", "interval", "uuid",
        "money", "inet", "cidr", "tsvector",
    )
} | {"float": "float8", "double": "float8", "double precision": "float8"}  # fmt: skip


AGGREGATE_SQL = {"count": "count", "sum": "sum", "avg": "avg", "min": "min", "max": "max"}


def _cast(expr: sql.Composable, cast: str | None) -> sql.Composable:
    """``CAST(expr AS t)`` for a type of the allow-list (PGRST100 otherwise)."""
    if cast is None:
        return expr
    target = CASTS.get(cast)
    if target is None:
        raise pgrst_error(
            "PGRST100",
            f"failed to parse select parameter (::{cast})",
            details=f"unsupported cast '{cast}'; allowed: " + ", ".join(sorted(CASTS)),
        )
    return sql.SQL("CAST({} AS {})").format(expr, sql.SQL(target))


def column_not_found(rel: Relation, name: str) -> PgrstError:
    """PostgreSQL's own wording for an unknown column (PostgREST passes 42703 through)."""
    return pgrst_error("42703", f"column {rel.name}.{name} does not exist")


@dataclass
class Statement:
    """What the service executes: the statement and its named parameters."""

    query: sql.Composed
    params: dict[str, Any]


@dataclass
class _Builder:
    snapshot: SchemaSnapshot
    query: ParsedQuery
    params: dict[str, Any] = field(default_factory=dict)
    used_paths: set[tuple[str, ...]] = field(default_factory=lambda: {()})
    _aliases: int = 0
    strip_nulls: bool = False
    # every embed's relationship, resolved before any SQL is built (relationships.py)
    embeds: Embeds = field(default_factory=Embeds)
    scalar_column: str | None = None
    csv: bool = False  # Accept: text/csv — the body is CSV text, not a JSON array

    # -- small pieces ----------------------------------------------------------------------

    def bind(self, value: Any) -> sql.Placeholder:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return sql.Placeholder(name)

    def alias(self) -> str:
        name = f"pgrst_{self._aliases}"
        self._aliases += 1
        return name

    def field_sql(self, rel: Relation, alias: str, f: Field) -> sql.Composable:
        col = rel.columns.get(f.name)
        if col is None:
            raise column_not_found(rel, f.name)
        expr: sql.Composable = sql.Identifier(alias, f.name)
        for step in f.path:
            key = sql.Literal(int(step.key)) if step.is_index else sql.Literal(step.key)
            expr = sql.SQL("({} {} {})").format(expr, sql.SQL(step.arrow), key)
        return expr

    # -- filters ---------------------------------------------------------------------------

    def filter_sql(
        self,
        rel: Relation,
        alias: str,
        flt: Filter,
        items: tuple[SelectItem, ...] = (),
        path: tuple[str, ...] = (),
    ) -> sql.Composable:
        if (
            flt.op == "is"
            and flt.value in ("null", "not_null")
            and not flt.field.path
            and flt.field.name not in rel.columns
        ):
            embed = next(
                (i for i in items if isinstance(i, EmbedItem) and i.output_name == flt.field.name),
                None,
            )
            if embed is not None:
                # ``author=not.is.null``: PostgREST's null filtering on an embedded resource
                exists = self.exists_sql(rel, alias, embed, path)
                present = flt.value == "not_null"
                expr: sql.Composable = exists if present else sql.SQL("NOT {}").format(exists)
                return sql.SQL("NOT ({})").format(expr) if flt.negate else expr
        lhs = self.field_sql(rel, alias, flt.field)
        op = flt.op
        if op == "is":
            expr = sql.SQL("{} {}").format(lhs, sql.SQL(IS_SQL[str(flt.value)]))
        elif op == "in":
            expr = sql.SQL("{} = ANY({})").format(lhs, self.bind(array_literal(flt.value)))
        elif op in FTS_FUNCTIONS:
            column = rel.columns[flt.field.name]
            fn = sql.SQL(FTS_FUNCTIONS[op])
            if flt.language:
                lang = sql.SQL("{}::regconfig").format(self.bind(flt.language))
                query = sql.SQL("{}({}, {})").format(fn, lang, self.bind(flt.value))
                doc = (
                    lhs
                    if column.udt == "tsvector" and not flt.field.path
                    else sql.SQL("to_tsvector({}, {})").format(lang, lhs)
                )
            else:
                query = sql.SQL("{}({})").format(fn, self.bind(flt.value))
                doc = (
                    lhs
                    if column.udt == "tsvector" and not flt.field.path
                    else sql.SQL("to_tsvector({})").format(lhs)
                )
            expr = sql.SQL("{} @@ {}").format(doc, query)
        else:
            sql_op = sql.SQL(BINARY_OPERATORS[op])
            if flt.quantifier is not None:
                values = list(flt.value)
                if op in ("like", "ilike"):
                    values = [v.replace("*", "%") for v in values]
                expr = sql.SQL("{} {} {}({})").format(
                    lhs, sql_op, sql.SQL(flt.quantifier.upper()), self.bind(array_literal(values))
                )
            else:
                value = str(flt.value)
                if op in ("like", "ilike"):
                    value = value.replace("*", "%")  # PostgREST's URL-safe wildcard
                elif op == "ov" and value.startswith("(") and rel.columns[flt.field.name].is_array:
                    value = array_literal(_plain_list(value))
                expr = sql.SQL("{} {} {}").format(lhs, sql_op, self.bind(value))
        return sql.SQL("NOT ({})").format(expr) if flt.negate else expr

    def condition_sql(
        self,
        rel: Relation,
        alias: str,
        cond: Condition,
        items: tuple[SelectItem, ...] = (),
        path: tuple[str, ...] = (),
    ) -> sql.Composable:
        if isinstance(cond, Filter):
            return self.filter_sql(rel, alias, cond, items, path)
        joiner = sql.SQL(" AND ") if cond.op == "and" else sql.SQL(" OR ")
        inner = sql.SQL("({})").format(
            joiner.join(self.condition_sql(rel, alias, c, items, path) for c in cond.items)
        )
        return sql.SQL("NOT {}").format(inner) if cond.negate else inner

    def order_sql(
        self,
        rel: Relation,
        alias: str,
        terms: list[OrderTerm],
        items: tuple[SelectItem, ...] = (),
    ) -> sql.Composable:
        parts = []
        for term in terms:
            if term.embed is not None:
                expr = self.embedded_order_expr(rel, alias, term, items)
            else:
                expr = self.field_sql(rel, alias, term.field)
            piece = sql.SQL("{} {}").format(expr, sql.SQL("DESC" if term.desc else "ASC"))
            if term.nulls:
                piece = sql.SQL("{} {}").format(
                    piece, sql.SQL("NULLS FIRST" if term.nulls == "first" else "NULLS LAST")
                )
            parts.append(piece)
        return sql.SQL(", ").join(parts)

    def embedded_order_expr(
        self, rel: Relation, alias: str, term: OrderTerm, items: tuple[SelectItem, ...]
    ) -> sql.Composable:
        """``order=author(name)``: the to-one embed's column as a scalar sub-select."""
        item = next(
            (i for i in items if isinstance(i, EmbedItem) and i.output_name == term.embed), None
        )
        rship = self.embeds.of(rel, item) if item is not None else None
        if rship is None or not rship.to_one:
            raise pgrst_error(
                "PGRST118",
                f"A related order on '{term.embed}' is not possible",
                hint=f"'{term.embed}' must be a to-one resource embedded in 'select'.",
            )
        child = self.alias()
        return sql.SQL("(SELECT {} FROM {} AS {} WHERE {} LIMIT 1)").format(
            self.field_sql(rship.target, child, term.field),
            sql.Identifier(*rship.target.qualified),
            sql.Identifier(child),
            self.join_sql(rship, alias, child),
        )

    # -- embedding -------------------------------------------------------------------------

    def node_conditions(
        self, rel: Relation, alias: str, path: tuple[str, ...], items: tuple[SelectItem, ...]
    ) -> list[sql.Composable]:
        """This node's filters plus ``EXISTS`` for every ``!inner`` child embed."""
        opts = self.query.nodes.get(path) or NodeOptions()
        conds = [self.condition_sql(rel, alias, c, items, path) for c in opts.conditions]
        for item in items:
            if isinstance(item, EmbedItem) and item.inner:
                conds.append(self.exists_sql(rel, alias, item, path))
        return conds

    def exists_sql(
        self, rel: Relation, alias: str, item: EmbedItem, path: tuple[str, ...]
    ) -> sql.Composable:
        """``EXISTS`` a row of the embedded resource (with its own filters) for this row."""
        rship = self.embeds.of(rel, item)
        child_path = (*path, item.output_name)
        child_alias = self.alias()
        inner = [self.join_sql(rship, alias, child_alias)]
        inner += self.node_conditions(rship.target, child_alias, child_path, item.children)
        return sql.SQL("EXISTS (SELECT 1 FROM {} AS {} WHERE {})").format(
            sql.Identifier(*rship.target.qualified),
            sql.Identifier(child_alias),
            sql.SQL(" AND ").join(inner),
        )

    def join_sql(self, rship: Relationship, parent_alias: str, child_alias: str) -> sql.Composable:
        if rship.junction is not None:
            # EXISTS rather than a join: two links between the same rows must not duplicate
            j = self.alias()
            links = [
                sql.SQL("{} = {}").format(sql.Identifier(j, jc), sql.Identifier(child_alias, tc))
                for tc, jc in rship.target_pairs
            ] + [
                sql.SQL("{} = {}").format(sql.Identifier(j, jc), sql.Identifier(parent_alias, pc))
                for pc, jc in rship.parent_pairs
            ]
            return sql.SQL("EXISTS (SELECT 1 FROM {} AS {} WHERE {})").format(
                sql.Identifier(*rship.junction.qualified),
                sql.Identifier(j),
                sql.SQL(" AND ").join(links),
            )
        return sql.SQL(" AND ").join(
            sql.SQL("{} = {}").format(
                sql.Identifier(child_alias, cc), sql.Identifier(parent_alias, pc)
            )
            for pc, cc in rship.pairs
        )

    def embed_sql(
        self, parent: Relation, parent_alias: str, path: tuple[str, ...], item: EmbedItem
    ) -> sql.Composable:
        rship = self.embeds.of(parent, item)
        child_path = (*path, item.output_name)
        self.used_paths.add(child_path)
        child_alias = self.alias()
        opts = self.query.nodes.get(child_path) or NodeOptions()
        where = [self.join_sql(rship, parent_alias, child_alias)]
        where += self.node_conditions(rship.target, child_alias, child_path, item.children)
        inner = sql.SQL("SELECT {} FROM {} AS {} WHERE {}").format(
            self.projection(rship.target, child_alias, child_path, item.children),
            sql.Identifier(*rship.target.qualified),
            sql.Identifier(child_alias),
            sql.SQL(" AND ").join(where),
        )
        groups = self.group_by(rship.target, child_alias, item.children)
        if groups is not None:
            inner = sql.SQL("{} GROUP BY {}").format(inner, groups)
        row = sql.Identifier(self.alias())
        if rship.to_one:
            # {row}.*: the whole row even where a column has the alias's name
            return sql.SQL("(SELECT row_to_json({row}.*) FROM ({inner} LIMIT 1) {row})").format(
                row=row, inner=inner
            )
        if opts.order:
            inner = sql.SQL("{} ORDER BY {}").format(
                inner, self.order_sql(rship.target, child_alias, opts.order, item.children)
            )
        if opts.limit is not None:
            inner = sql.SQL("{} LIMIT {}").format(inner, self.bind(opts.limit))
        if opts.offset:
            inner = sql.SQL("{} OFFSET {}").format(inner, self.bind(opts.offset))
        return sql.SQL(
            "(SELECT coalesce(json_agg({row}.*), '[]'::json) FROM ({inner}) {row})"
        ).format(row=row, inner=inner)

    def column_expr(self, rel: Relation, alias: str, item: ColumnItem) -> sql.Composable:
        return _cast(self.field_sql(rel, alias, item.field), item.cast)

    def aggregate_expr(self, rel: Relation, alias: str, item: AggregateItem) -> sql.Composable:
        """``sum(CAST(col AS int))::text``: the function and casts from fixed tables."""
        if item.field is None:
            expr: sql.Composable = sql.SQL("count(*)")
        else:
            inner = _cast(self.field_sql(rel, alias, item.field), item.cast)
            expr = sql.SQL("{}({})").format(sql.SQL(AGGREGATE_SQL[item.function]), inner)
        return _cast(expr, item.result_cast)

    def group_by(
        self, rel: Relation, alias: str, items: tuple[SelectItem, ...]
    ) -> sql.Composable | None:
        """With an aggregate among ``items``, the other selected columns are the groups."""
        if not any(isinstance(i, AggregateItem) for i in items):
            return None
        if any(isinstance(i, StarItem | EmbedItem) for i in items):
            raise pgrst_error(
                "PGRST100",
                "failed to parse select parameter (aggregates)",
                details="aggregates group by the other selected columns: name them instead of "
                "* or an embedded resource at the same level",
            )
        keys = [self.column_expr(rel, alias, i) for i in items if isinstance(i, ColumnItem)]
        return sql.SQL(", ").join(keys) if keys else None

    def spread_columns(
        self, parent: Relation, parent_alias: str, path: tuple[str, ...], item: EmbedItem
    ) -> list[sql.Composable]:
        """``...author(name,country)``: one scalar sub-select per column of the to-one row."""
        rship = self.embeds.of(parent, item)
        if not rship.to_one:
            raise pgrst_error(
                "PGRST119",
                f"A spread operation on '{item.name}' is not possible",
                hint="Spread works on a to-one (many-to-one) resource only.",
            )
        child_path = (*path, item.output_name)
        self.used_paths.add(child_path)
        columns: list[ColumnItem] = []
        for child in item.children:
            if isinstance(child, StarItem):
                ordered = sorted(rship.target.columns.values(), key=lambda c: c.position)
                columns.extend(ColumnItem(Field(c.name)) for c in ordered)
            elif isinstance(child, ColumnItem):
                columns.append(child)
            else:
                raise pgrst_error(
                    "PGRST100",
                    f"failed to parse select parameter (...{item.name})",
                    details="embedding inside a spread resource is not supported",
                )
        parts = []
        for column in columns:
            child_alias = self.alias()
            where = [self.join_sql(rship, parent_alias, child_alias)]
            where += self.node_conditions(rship.target, child_alias, child_path, ())
            parts.append(
                sql.SQL("(SELECT {} FROM {} AS {} WHERE {} LIMIT 1) AS {}").format(
                    self.column_expr(rship.target, child_alias, column),
                    sql.Identifier(*rship.target.qualified),
                    sql.Identifier(child_alias),
                    sql.SQL(" AND ").join(where),
                    sql.Identifier(column.output_name),
                )
            )
        return parts

    def projection(
        self, rel: Relation, alias: str, path: tuple[str, ...], items: tuple[SelectItem, ...]
    ) -> sql.Composable:
        parts: list[sql.Composable] = []
        for item in items:
            if isinstance(item, StarItem):
                parts.append(sql.SQL("{}.*").format(sql.Identifier(alias)))
            elif isinstance(item, ColumnItem):
                expr = self.column_expr(rel, alias, item)
                parts.append(sql.SQL("{} AS {}").format(expr, sql.Identifier(item.output_name)))
            elif isinstance(item, AggregateItem):
                expr = self.aggregate_expr(rel, alias, item)
                parts.append(sql.SQL("{} AS {}").format(expr, sql.Identifier(item.output_name)))
            elif item.spread:
                parts.extend(self.spread_columns(rel, alias, path, item))
            else:
                parts.append(
                    sql.SQL("{} AS {}").format(
                        self.embed_sql(rel, alias, path, item), sql.Identifier(item.output_name)
                    )
                )
        return sql.SQL(", ").join(parts)

    def check_paths(self) -> None:
        """Options given for an embed that is not in ``select`` → PGRST108, as PostgREST."""
        for path, opts in self.query.nodes.items():
            if path not in self.used_paths and (
                opts.conditions or opts.order or opts.limit is not None or opts.offset is not None
            ):
                name = ".".join(path)
                raise pgrst_error(
                    "PGRST108",
                    f"'{name}' is not an embedded resource in this request",
                    hint=f"Verify that '{name}' is included in the 'select' query parameter.",
                )

    def output_names(self, rel: Relation, items: tuple[SelectItem, ...]) -> list[str]:
        """The column names a projection of ``items`` produces, in order (the CSV header)."""
        names: list[str] = []
        for item in items:
            if isinstance(item, StarItem):
                names += [c.name for c in sorted(rel.columns.values(), key=lambda c: c.position)]
            elif isinstance(item, ColumnItem | AggregateItem):
                names.append(item.output_name)
            elif item.spread:
                names += self.output_names(self.embeds.of(rel, item).target, item.children)
            else:
                names.append(item.output_name)
        return names

    def csv_sql(self, rel: Relation) -> sql.Composable:
        """PostgREST's CSV: a header line, then each row's record text without its
        parentheses (PostgreSQL quotes values with commas, quotes or spaces; NULL is empty)."""
        if self.scalar_column is not None:
            names = [self.scalar_column]
        else:
            names = self.output_names(rel, self.query.select)
        header = self.bind(",".join(names))
        return sql.SQL(
            "{}::text || chr(10) || coalesce(string_agg(substring((pgrst_r.*)::text, 2, "
            "length((pgrst_r.*)::text) - 2), chr(10)), '')"
        ).format(header)

    def body_sql(self, source: sql.Composable) -> sql.Composable:
        """``json_agg`` of the projected rows of ``source`` (a sub-select aliased ``r``)."""
        # pgrst_r.*, not pgrst_r: a selected column may be named pgrst_r (select=pgrst_r:id)
        agg = sql.SQL("json_agg(pgrst_r.*)")
        if self.scalar_column is not None:  # a set of scalars: the values, not objects
            agg = sql.SQL("json_agg({})").format(sql.Identifier("pgrst_r", self.scalar_column))
        elif self.strip_nulls:
            agg = sql.SQL("json_agg(json_strip_nulls(row_to_json(pgrst_r.*)))")
        return sql.SQL("coalesce({}, '[]'::json)::text").format(agg)


def _plain_list(text: str) -> list[str]:
    from athena.query.postgrest.grammar import parse_list

    return list(parse_list(text, context=text))


# -- public entry points --------------------------------------------------------------------


@dataclass
class Built:
    """A builder's answer: the statement, and the tables it reads through embeds."""

    statement: Statement
    embeds: Embeds

    @property
    def embedded_tables(self) -> list[Relation]:
        return self.embeds.tables


def build_read(
    snapshot: SchemaSnapshot,
    rel: Relation,
    query: ParsedQuery,
    *,
    limit: int | None,
    offset: int,
    count_exact: bool = False,
    count_cap: int | None = None,
    strip_nulls: bool = False,
    body: bool = True,
    embeds: Embeds | None = None,
    source: sql.Composable | None = None,
    scalar_column: str | None = None,
    csv: bool = False,
) -> Built:
    """The GET statement: ``(total, page_count, body, NULL)``; ``embeds`` as planned (resolved
    here when the caller did not plan them). ``source`` reads the rows from elsewhere than
    ``rel`` itself (a function's result, see ``call.py``), ``scalar_column`` makes the body an
    array of that column's values."""
    if embeds is None:
        embeds = resolve_embeds(snapshot, rel, query.select)
    b = _Builder(
        snapshot,
        query,
        strip_nulls=strip_nulls,
        embeds=embeds,
        scalar_column=scalar_column,
        csv=csv,
    )
    from_item = source if source is not None else sql.Identifier(*rel.qualified)
    alias = b.alias()
    root = query.root
    where = b.node_conditions(rel, alias, (), query.select)
    has_embeds = any(isinstance(item, EmbedItem) for item in query.select)
    # With embeds, page first and project after: PostgreSQL evaluates a projection below
    # LIMIT/OFFSET, so ``offset=50000`` would otherwise run the embedded sub-selects for every
    # skipped row.
    page = sql.SQL("SELECT {} FROM {} AS {}").format(
        sql.SQL("{}.*").format(sql.Identifier(alias))
        if has_embeds
        else b.projection(rel, alias, (), query.select),
        from_item,
        sql.Identifier(alias),
    )
    if where:
        page = sql.SQL("{} WHERE {}").format(page, sql.SQL(" AND ").join(where))
    groups = b.group_by(rel, alias, query.select)
    if groups is not None:
        page = sql.SQL("{} GROUP BY {}").format(page, groups)
    if root.order:
        page = sql.SQL("{} ORDER BY {}").format(
            page, b.order_sql(rel, alias, root.order, query.select)
        )
    if limit is not None:
        page = sql.SQL("{} LIMIT {}").format(page, b.bind(limit))
    if offset:
        page = sql.SQL("{} OFFSET {}").format(page, b.bind(offset))
    rows = page
    if has_embeds:
        rows = sql.SQL("SELECT {} FROM ({}) AS {}").format(
            b.projection(rel, alias, (), query.select), page, sql.Identifier(alias)
        )
    total: sql.Composable = sql.SQL("NULL::bigint")
    if count_exact:
        count_src = sql.SQL("SELECT 1 FROM {} AS {}").format(from_item, sql.Identifier(alias))
        if where:
            count_src = sql.SQL("{} WHERE {}").format(count_src, sql.SQL(" AND ").join(where))
        if count_cap is not None:  # stop counting past the cap (the caller then estimates)
            count_src = sql.SQL("{} LIMIT {}").format(count_src, b.bind(count_cap + 1))
        total = sql.SQL("(SELECT count(*) FROM ({}) pgrst_c)").format(count_src)
    b.check_paths()
    if not body:
        body_sql: sql.Composable = sql.SQL("NULL")
    elif csv:
        body_sql = b.csv_sql(rel)
    else:
        body_sql = b.body_sql(rows)
    statement = sql.SQL("SELECT {}, count(*), {}, NULL FROM ({}) pgrst_r").format(
        total, body_sql, rows
    )
    return Built(Statement(statement, b.params), b.embeds)


def build_count_source(
    snapshot: SchemaSnapshot,
    rel: Relation,
    query: ParsedQuery,
    embeds: Embeds | None = None,
    source: sql.Composable | None = None,
) -> Statement:
    """``SELECT 1 FROM rel WHERE …`` — the service EXPLAINs it for ``count=planned``."""
    if embeds is None:
        embeds = resolve_embeds(snapshot, rel, query.select)
    b = _Builder(snapshot, query, embeds=embeds)
    alias = b.alias()
    where = b.node_conditions(rel, alias, (), query.select)
    stmt = sql.SQL("SELECT 1 FROM {} AS {}").format(
        source if source is not None else sql.Identifier(*rel.qualified), sql.Identifier(alias)
    )
    if where:
        stmt = sql.SQL("{} WHERE {}").format(stmt, sql.SQL(" AND ").join(where))
    return Statement(stmt, b.params)


Returning = Literal["rows", "none"]


def _write_tail(
    b: _Builder,
    rel: Relation,
    query: ParsedQuery,
    write: sql.Composable,
    *,
    returning: Returning,
    want_events: bool,
    embeds: Embeds | None,
) -> Built:
    """Wrap a data-modifying statement (``… RETURNING *``) as ``pgrst_source`` and project it."""
    alias = b.alias()
    body: sql.Composable = sql.SQL("NULL::text")
    if returning == "rows":
        # only a returned body reads embeds (return=minimal never resolves them)
        b.embeds = embeds if embeds is not None else resolve_embeds(b.snapshot, rel, query.select)
        source = sql.SQL("SELECT {} FROM pgrst_source AS {}").format(
            b.projection(rel, alias, (), query.select), sql.Identifier(alias)
        )
        body = sql.SQL("(SELECT {} FROM ({}) pgrst_r)").format(b.body_sql(source), source)
    events: sql.Composable = sql.SQL("NULL::text")
    if want_events:
        events = sql.SQL("(SELECT json_agg(pgrst_e.*)::text FROM pgrst_source pgrst_e)")
    b.check_paths()
    statement = sql.SQL(
        "WITH pgrst_source AS ({}) SELECT NULL::bigint, (SELECT count(*) FROM pgrst_source), {}, {}"
    ).format(write, body, events)
    return Built(Statement(statement, b.params), b.embeds)


def build_insert(
    snapshot: SchemaSnapshot,
    rel: Relation,
    query: ParsedQuery,
    *,
    rows: list[dict[str, Any]],
    columns: list[str],
    body_json: str,
    resolution: Literal["merge", "ignore"] | None,
    on_conflict: tuple[str, ...],
    missing_default: bool,
    returning: Returning,
    want_events: bool = False,
    embeds: Embeds | None = None,
) -> Built:
    """``INSERT … SELECT … FROM json_populate_recordset(NULL::rel, body)`` — one statement for
    one row or thousands; with ``missing_default`` keys absent from a row take the column
    default (``VALUES (…, DEFAULT)``) instead of NULL."""
    b = _Builder(snapshot, query)
    target = sql.Identifier(*rel.qualified)
    for name in columns:
        if name not in rel.columns:
            raise pgrst_error(
                "PGRST204",
                f"Could not find the '{name}' column of '{rel.name}' in the schema cache",
            )
    col_ids = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    if not columns:
        write = sql.SQL("INSERT INTO {} AS pgrst_w DEFAULT VALUES").format(target)
    elif missing_default and any(set(columns) - set(r) for r in rows):
        values = []
        for row in rows:
            import json as _json

            record = sql.SQL("json_populate_record(NULL::{}, {}::json)").format(
                target, b.bind(_json.dumps(row))
            )
            cells = [
                sql.SQL("({}).{}").format(record, sql.Identifier(c))
                if c in row
                else sql.SQL("DEFAULT")
                for c in columns
            ]
            values.append(sql.SQL("({})").format(sql.SQL(", ").join(cells)))
        write = sql.SQL("INSERT INTO {} AS pgrst_w ({}) VALUES {}").format(
            target, col_ids, sql.SQL(", ").join(values)
        )
    else:
        write = sql.SQL(
            "INSERT INTO {} AS pgrst_w ({}) SELECT {} FROM json_populate_recordset(NULL::{}, {}::json)"
        ).format(target, col_ids, col_ids, target, b.bind(body_json))
    if resolution is not None:
        for name in on_conflict:
            if name not in rel.columns:
                raise column_not_found(rel, name)
        conflict = sql.SQL(", ").join(sql.Identifier(c) for c in on_conflict)
        if resolution == "ignore" or not columns:
            write = sql.SQL("{} ON CONFLICT ({}) DO NOTHING").format(write, conflict)
        else:
            sets = sql.SQL(", ").join(
                sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(c), sql.Identifier(c))
                for c in columns
            )
            write = sql.SQL("{} ON CONFLICT ({}) DO UPDATE SET {}").format(write, conflict, sets)
    write = sql.SQL("{} RETURNING pgrst_w.*").format(write)
    return _write_tail(
        b, rel, query, write, returning=returning, want_events=want_events, embeds=embeds
    )


def _mutation_where(b: _Builder, rel: Relation, alias: str, query: ParsedQuery) -> sql.Composable:
    root = query.root
    conds = [b.condition_sql(rel, alias, c) for c in root.conditions]
    if root.limit is not None:
        # PostgREST's limited update/delete: only the first ``limit`` rows in ``order``.
        if not rel.is_table:
            raise pgrst_error("PGRST100", "limit on PATCH/DELETE is only supported for tables")
        inner_alias = b.alias()
        inner = sql.SQL("SELECT {}.ctid FROM {} AS {}").format(
            sql.Identifier(inner_alias), sql.Identifier(*rel.qualified), sql.Identifier(inner_alias)
        )
        inner_conds = [b.condition_sql(rel, inner_alias, c) for c in root.conditions]
        if inner_conds:
            inner = sql.SQL("{} WHERE {}").format(inner, sql.SQL(" AND ").join(inner_conds))
        if root.order:
            inner = sql.SQL("{} ORDER BY {}").format(
                inner, b.order_sql(rel, inner_alias, root.order, query.select)
            )
        inner = sql.SQL("{} LIMIT {}").format(inner, b.bind(root.limit))
        if root.offset:
            inner = sql.SQL("{} OFFSET {}").format(inner, b.bind(root.offset))
        conds.append(sql.SQL("{}.ctid = ANY(ARRAY({}))").format(sql.Identifier(alias), inner))
    return sql.SQL(" AND ").join(conds)


def build_update(
    snapshot: SchemaSnapshot,
    rel: Relation,
    query: ParsedQuery,
    *,
    columns: list[str],
    body_json: str,
    returning: Returning,
    want_events: bool = False,
    embeds: Embeds | None = None,
) -> Built:
    """``UPDATE rel SET c = body.c … FROM json_populate_record(NULL::rel, body) WHERE filters``."""
    b = _Builder(snapshot, query)
    for name in columns:
        if name not in rel.columns:
            raise pgrst_error(
                "PGRST204",
                f"Could not find the '{name}' column of '{rel.name}' in the schema cache",
            )
    alias = b.alias()
    sets = sql.SQL(", ").join(
        sql.SQL("{} = pgrst_body.{}").format(sql.Identifier(c), sql.Identifier(c)) for c in columns
    )
    write = sql.SQL(
        "UPDATE {} AS {} SET {} FROM json_populate_record(NULL::{}, {}::json) AS pgrst_body "
        "WHERE {} RETURNING {}.*"
    ).format(
        sql.Identifier(*rel.qualified),
        sql.Identifier(alias),
        sets,
        sql.Identifier(*rel.qualified),
        b.bind(body_json),
        _mutation_where(b, rel, alias, query),
        sql.Identifier(alias),
    )
    return _write_tail(
        b, rel, query, write, returning=returning, want_events=want_events, embeds=embeds
    )


def build_delete(
    snapshot: SchemaSnapshot,
    rel: Relation,
    query: ParsedQuery,
    *,
    returning: Returning,
    want_events: bool = False,
    embeds: Embeds | None = None,
) -> Built:
    """``DELETE FROM rel WHERE filters RETURNING *``."""
    b = _Builder(snapshot, query)
    alias = b.alias()
    write = sql.SQL("DELETE FROM {} AS {} WHERE {} RETURNING {}.*").format(
        sql.Identifier(*rel.qualified),
        sql.Identifier(alias),
        _mutation_where(b, rel, alias, query),
        sql.Identifier(alias),
    )
    return _write_tail(
        b, rel, query, write, returning=returning, want_events=want_events, embeds=embeds
    )
