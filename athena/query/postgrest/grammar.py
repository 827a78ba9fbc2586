"""PostgREST query-string grammar → AST (pure: no I/O, no schema knowledge).

Covers what stock PostgREST clients send for ``/rest/v1/{table}``:

* filters ``col=[not.]op[(any|all)].value`` (``fts(lang)`` for the full-text operators),
  ``in.(a,"b,c")``, ``is.null``, JSON paths in the column (``data->a->>b``);
* logic trees ``or=(a.eq.1,and(b.gt.2,not.c.is.null))``, ``and=(…)``, ``not.or=(…)``;
* keys prefixed with an embedded resource path (``author.name=eq.x``, ``author.order=…``);
* ``select`` (aliases, casts, JSON paths, embeds with ``!hint``/``!inner``), ``order``,
  ``limit``, ``offset``, ``columns``, ``on_conflict``.

Every parse failure raises :class:`ParseError`, which the service turns into PostgREST's 400
``PGRST100`` (``message`` + ``details``), so a client sees the same wording PostgREST gives.

This is the ONE parser of PostgREST expressions. The data gateway's ``not``/``or`` conditions
(``{"operator": "or", "value": "a.eq.1,and(b.gt.2,c.is.null)"}``) are parsed here too, in the
``GATEWAY`` dialect; ``athena.query.conditions`` only reads the JSON around them. ``render()``
is the inverse (AST → query parameters), used to forward gateway conditions to a Supabase
project's PostgREST (``services/gateway/custom_supabase.py``).

Where the two dialects differ, and why (CONTRACT.md: "Fetch body" for /gateway, "/rest/v1"):

============================  ===============================  ==============================
text                          ``GATEWAY`` (/gateway bodies)    ``REST`` (/rest/v1 URLs)
============================  ===============================  ==============================
``a.eq.null``, ``a.neq.null``  IS NULL / IS NOT NULL: CONTRACT  ``= 'null'``: PostgREST
                              "eq null = IS NULL"; the SDK     compares with the text, stock
                              sends ``not(a, "eq", null)``     clients write ``is.null``
                              this way
operator names                CONTRACT's names too             PostgREST's only
                              (``contains``, ``containedBy``)
                              and ``=`` ``!=`` ``>`` …
                              aliases, in any case
operators                     the CONTRACT's set (eq … in,     all of PostgREST's (match,
                              cs, cd): what its builder        ranges, ``(any)``/``(all)``,
                              compiles                         fts(lang) …)
JSON paths (``data->>a``)     refused: gateway columns are     yes
                              plain names
``is.notnull``                accepted (older SDKs)            refused, as PostgREST does
``in.x`` without parentheses  a one-item list                  refused, as PostgREST does
============================  ===============================  ==============================

Both dialects: ``*`` is the LIKE wildcard (turned into ``%`` by the builders), double quotes
carry ``,`` ``(`` ``)`` inside logic trees, and trees nest at most ``MAX_NESTING`` levels — deeper
text is a 400, never a RecursionError.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from athena.query.postgrest.errors import CATALOGUE, PgrstError

# Operators that take one value. The SQL for each lives in build.py; here only names matter.
SIMPLE_OPERATORS = frozenset(
    {
        "eq", "neq", "gt", "gte", "lt", "lte", "like", "ilike", "match", "imatch",
        "isdistinct", "cs", "cd", "ov", "sl", "sr", "nxr", "nxl", "adj",
    }
)  # fmt: skip
FTS_OPERATORS = frozenset({"fts", "plfts", "phfts", "wfts"})
# Operators that accept the (any)/(all) quantifier, as in PostgREST.
QUANTIFIABLE = frozenset(
    {"eq", "neq", "gt", "gte", "lt", "lte", "like", "ilike", "match", "imatch"}
)
ALL_OPERATORS = SIMPLE_OPERATORS | FTS_OPERATORS | {"in", "is"}
# ``is`` only ever takes one of these words; each becomes the SQL keyword beside it (chosen from
# this table: the caller's text never reaches SQL).
IS_KEYWORDS: dict[str, str] = {
    "null": "NULL",
    "not_null": "NOT NULL",
    "true": "TRUE",
    "false": "FALSE",
    "unknown": "UNKNOWN",
}
IS_VALUES = frozenset(IS_KEYWORDS)
# Logic trees deeper than this are refused (400): nobody writes them by hand, and the parser,
# planner and renderer recurse once per level.
MAX_NESTING = 32
# Query keys with a meaning of their own; anything else is a filter.
RESERVED_KEYS = frozenset({"select", "order", "limit", "offset", "columns", "on_conflict"})


@dataclass(frozen=True)
class Dialect:
    """What one API accepts of the grammar (see the table in the module docstring)."""

    name: str
    operators: frozenset[str]
    aliases: Mapping[str, str] = field(default_factory=dict)  # spelling → PostgREST's name
    is_words: Mapping[str, str] = field(default_factory=dict)  # extra ``is`` word → IS_VALUES
    ignore_case: bool = False
    eq_null_is_null: bool = False
    json_paths: bool = True
    bare_in_value: bool = False
    brackets: str = "(){}"  # what keeps a logic tree's item together; gateway values may be JSON

    def operator(self, token: str) -> str | None:
        """PostgREST's name for an operator token, or None when this dialect has no such."""
        key = token.lower() if self.ignore_case else token
        op = self.aliases.get(key, key)
        return op if op in self.operators else None


_GATEWAY_ALIASES = {
    "contains": "cs", "containedby": "cd", "=": "eq", "==": "eq", "ne": "neq",
    "!=": "neq", "<>": "neq", ">": "gt", ">=": "gte", "<": "lt", "<=": "lte",
}  # fmt: skip
REST = Dialect("rest", ALL_OPERATORS)
GATEWAY = Dialect(
    "gateway",
    frozenset({"eq", "neq", "gt", "gte", "lt", "lte", "like", "ilike", "is", "in", "cs", "cd"}),
    aliases=_GATEWAY_ALIASES,
    is_words={"notnull": "not_null"},
    ignore_case=True,
    eq_null_is_null=True,
    json_paths=False,
    bare_in_value=True,
    brackets="(){}[]",
)


class ParseError(PgrstError):
    """The query string is not valid PostgREST grammar (→ 400 PGRST100)."""

    def __init__(self, message: str, details: str | None = None) -> None:
        entry = CATALOGUE["PGRST100"]
        super().__init__(
            entry.status, "PGRST100", message, details=details, envelope_code=entry.envelope
        )


class UnknownOperator(ParseError):
    """A filter names an operator the dialect does not have (``operator``: as written)."""

    def __init__(self, message: str, details: str, operator: str) -> None:
        super().__init__(message, details)
        self.operator = operator


# -- AST ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JsonStep:
    """One ``->`` / ``->>`` hop; ``key`` is a string key or, when all digits, an array index."""

    arrow: Literal["->", "->>"]
    key: str

    @property
    def is_index(self) -> bool:
        # ASCII digits after at most one minus: str.isdigit() is also true of "²" (and
        # lstrip would take "--1"), which int() refuses.
        digits = self.key[1:] if self.key.startswith("-") else self.key
        return digits.isascii() and digits.isdigit()


@dataclass(frozen=True)
class Field:
    """A column, optionally followed by a JSON path (``data->a->>b``)."""

    name: str
    path: tuple[JsonStep, ...] = ()

    @property
    def output_name(self) -> str:
        """The key PostgREST gives a selected field: the last JSON key, else the column."""
        return self.path[-1].key if self.path else self.name


@dataclass(frozen=True)
class Filter:
    field: Field
    op: str
    value: str | tuple[str, ...]  # a tuple for ``in`` and quantified operators
    negate: bool = False
    quantifier: Literal["any", "all"] | None = None
    language: str | None = None  # fts(english)


@dataclass(frozen=True)
class Logic:
    op: Literal["and", "or"]
    items: tuple[Filter | Logic, ...]
    negate: bool = False


Condition = Filter | Logic


@dataclass(frozen=True)
class OrderTerm:
    field: Field
    desc: bool = False
    nulls: Literal["first", "last"] | None = None
    embed: str | None = None  # ``order=author(name)``: a column of an embedded to-one resource


@dataclass(frozen=True)
class ColumnItem:
    field: Field
    alias: str | None = None
    cast: str | None = None

    @property
    def output_name(self) -> str:
        return self.alias or self.field.output_name


@dataclass(frozen=True)
class StarItem:
    pass


@dataclass(frozen=True)
class EmbedItem:
    """``alias:name!hint!inner(children)``."""

    name: str
    children: tuple[SelectItem, ...]
    alias: str | None = None
    hint: str | None = None
    inner: bool = False
    spread: bool = False  # ``...author(name)``: the to-one row's columns join the parent's

    @property
    def output_name(self) -> str:
        return self.alias or self.name


AGGREGATES = ("count", "sum", "avg", "min", "max")


@dataclass(frozen=True)
class AggregateItem:
    """``count()``, ``amount.sum()``, ``total:amount::int.sum()::text`` (PostgREST 12): the
    other columns selected beside it are the groups."""

    function: str
    field: Field | None  # None: ``count()`` counts rows
    alias: str | None = None
    cast: str | None = None  # of the column, before aggregating
    result_cast: str | None = None

    @property
    def output_name(self) -> str:
        return self.alias or self.function


SelectItem = ColumnItem | StarItem | EmbedItem | AggregateItem


@dataclass
class NodeOptions:
    """Filters, order and paging for one resource (the root or an embedded one)."""

    conditions: list[Condition] = field(default_factory=list)
    order: list[OrderTerm] = field(default_factory=list)
    limit: int | None = None
    offset: int | None = None


@dataclass
class ParsedQuery:
    select: tuple[SelectItem, ...] = (StarItem(),)
    # options per embed path: () is the root, ("author",) the embed named/aliased author
    nodes: dict[tuple[str, ...], NodeOptions] = field(default_factory=dict)
    columns: tuple[str, ...] | None = None
    on_conflict: tuple[str, ...] | None = None

    def node(self, path: tuple[str, ...]) -> NodeOptions:
        return self.nodes.setdefault(path, NodeOptions())

    @property
    def root(self) -> NodeOptions:
        return self.node(())

    @property
    def has_root_filters(self) -> bool:
        return bool(self.nodes.get(()) and self.nodes[()].conditions)


# -- low-level splitting ----------------------------------------------------------------------


def split_top(text: str, sep: str = ",", *, brackets: str = "(){}") -> list[str]:
    """Split on ``sep`` outside brackets and double quotes (quotes are kept).

    ``{…}`` counts as a bracket so that an array value inside a logic tree
    (``or=(tags.cs.{a,b},id.eq.1)``) stays one item, as in PostgREST. ``brackets`` lists
    opener/closer pairs; the gateway's expressions add ``[]`` for JSON arrays.
    """
    openers, closers = brackets[0::2], brackets[1::2]
    parts: list[str] = []
    depth = 0
    quoted = False
    current: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if quoted:
            current.append(ch)
            if ch == "\\" and i + 1 < len(text):
                current.append(text[i + 1])
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
            current.append(ch)
        elif ch in openers:
            depth += 1
            current.append(ch)
        elif ch in closers:
            depth -= 1
            if depth < 0:
                raise ParseError(f"failed to parse ({text})", f'unexpected "{ch}"')
            current.append(ch)
        elif ch == sep and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    if quoted:
        raise ParseError(f"failed to parse ({text})", 'unterminated double quote (")')
    if depth != 0:
        raise ParseError(f"failed to parse ({text})", "unbalanced brackets")
    parts.append("".join(current))
    return parts


def unquote(text: str) -> str:
    """``"a\\"b"`` → ``a"b``; unquoted text is returned as is."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        body = text[1:-1]
        out: list[str] = []
        i = 0
        while i < len(body):
            if body[i] == "\\" and i + 1 < len(body):
                out.append(body[i + 1])
                i += 2
            else:
                out.append(body[i])
                i += 1
        return "".join(out)
    return text


def value_text(value: Any) -> str | None:
    """A JSON value as the text PostgreSQL casts to the compared column's type."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def array_literal(values: Any) -> str:
    """A PostgreSQL array literal with every element quoted (``{"a","b",NULL}``); bound as ONE
    parameter, so the server coerces it to the compared column's array type."""
    items = []
    for v in values:
        if v is None:
            items.append("NULL")
        elif isinstance(v, (list, tuple)):
            items.append(array_literal(v))
        else:
            text = value_text(v) or ""
            items.append('"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "{" + ",".join(items) + "}"


def nesting_depth(text: str) -> int:
    """How deep parentheses nest in ``text`` (quoted text included: a cheap upper bound)."""
    depth = deepest = 0
    for ch in text:
        if ch == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif ch == ")":
            depth -= 1
    return deepest


def parse_list(text: str, *, context: str) -> tuple[str, ...]:
    """``(a,"b,c")`` or ``{a,b}`` → ``("a", "b,c")``; ``()`` → ``()``."""
    text = text.strip()
    if len(text) < 2 or (text[0], text[-1]) not in {("(", ")"), ("{", "}")}:
        raise ParseError(f"failed to parse filter ({context})", "expecting a list like (a,b)")
    inner = text[1:-1]
    if not inner.strip():
        return ()
    return tuple(unquote(p.strip()) for p in split_top(inner))


def _name(text: str, what: str) -> str:
    name = unquote(text.strip())
    if not name:
        raise ParseError(f"failed to parse {what}", "empty name")
    return name


def parse_field(text: str) -> Field:
    """``data->a->>b`` → Field("data", (->a, ->>b)); ``"my col"`` allowed."""
    text = text.strip()
    if not text:
        raise ParseError("failed to parse field", "empty column name")
    steps: list[JsonStep] = []
    # find the first arrow outside quotes
    pieces: list[tuple[str, str]] = []  # (arrow, token)
    i = 0
    start = 0
    arrow = ""
    quoted = False
    while i < len(text):
        ch = text[i]
        if ch == '"':
            quoted = not quoted
        elif not quoted and text.startswith("->", i):
            pieces.append((arrow, text[start:i]))
            arrow = "->>" if text.startswith("->>", i) else "->"
            i += len(arrow)
            start = i
            continue
        i += 1
    pieces.append((arrow, text[start:]))
    name = _name(pieces[0][1], "field")
    for arr, token in pieces[1:]:
        key = unquote(token.strip())
        if not key:
            raise ParseError(f"failed to parse field ({text})", "empty JSON key")
        steps.append(JsonStep(arr, key))  # type: ignore[arg-type]
    return Field(name, tuple(steps))


# -- filters ------------------------------------------------------------------------------------


def parse_operation(
    field: Field, expr: str, *, raw: str, in_logic: bool = False, dialect: Dialect = REST
) -> Filter:
    """``[not.]op[(any|all)].value`` applied to ``field``.

    Inside a logic tree a value may be double-quoted (to carry ``,``, ``(`` or ``)``); a
    top-level value is taken verbatim, as PostgREST does.
    """
    negate = False
    rest = expr
    head = rest[:4].lower() if dialect.ignore_case else rest[:4]
    if head == "not.":
        negate = True
        rest = rest[4:]
    op_token, dot, value = rest.partition(".")
    if not dot:
        raise ParseError(f"failed to parse filter ({raw})", "expecting an operator and a value")
    if field.path and not dialect.json_paths:
        raise ParseError(f"failed to parse filter ({raw})", "JSON paths are not supported here")
    op = op_token
    quantifier: Literal["any", "all"] | None = None
    language: str | None = None
    if dialect is not REST:
        known = dialect.operator(op_token)
        if known is None:
            raise UnknownOperator(
                f"failed to parse filter ({raw})", f'unknown operator "{op_token}"', op_token
            )
        op = known
    elif "(" in op_token and op_token.endswith(")"):
        op, _, arg = op_token[:-1].partition("(")
        if op in FTS_OPERATORS:
            language = arg
            if not language or not language.replace("_", "").isalnum():
                raise ParseError(f"failed to parse filter ({raw})", "invalid text search language")
        elif arg in ("any", "all") and op in QUANTIFIABLE:
            quantifier = arg  # type: ignore[assignment]
        else:
            raise ParseError(f"failed to parse filter ({raw})", f'unexpected "({arg})"')
    if op not in ALL_OPERATORS:
        raise UnknownOperator(
            f"failed to parse filter ({raw})",
            f'unknown operator "{op}"; expecting one of {", ".join(sorted(ALL_OPERATORS))}',
            op,
        )
    if op == "in":
        if dialect.bare_in_value and value.strip()[:1] not in ("(", "{"):
            return Filter(field, op, (unquote(value.strip()),) if value.strip() else (), negate)
        return Filter(field, op, parse_list(value, context=raw), negate)
    if op == "is":
        word = value.lower()
        word = dialect.is_words.get(word, word)
        if word not in IS_VALUES:
            raise ParseError(
                f"failed to parse filter ({raw})",
                "is accepts only null, not_null, true, false or unknown",
            )
        return Filter(field, op, word, negate)
    if quantifier is not None:
        return Filter(field, op, parse_list(value, context=raw), negate, quantifier)
    if in_logic:
        value = unquote(value)
    return Filter(field, op, value, negate, None, language)


def parse_filter(column: str, value: str) -> Filter:
    """A top-level ``column=expr`` pair."""
    return parse_operation(parse_field(column), value, raw=value)


def parse_logic(
    op: Literal["and", "or"], value: str, *, negate: bool = False, dialect: Dialect = REST
) -> Logic:
    """``or=(a.eq.1,and(b.gt.2,c.lt.3))`` (the value includes the parentheses)."""
    value = value.strip()
    if not (value.startswith("(") and value.endswith(")")):
        raise ParseError(
            f"failed to parse logic tree ({value})", 'expecting "(" … ")" around the conditions'
        )
    _check_nesting(value)
    return Logic(op, _logic_items(value[1:-1], whole=value, dialect=dialect), negate)


def parse_expression(text: str, *, dialect: Dialect = GATEWAY) -> tuple[Condition, ...]:
    """The items of a logic tree without its operator: ``a.eq.1,and(b.gt.2,c.is.null)``, with
    or without the surrounding parentheses (the value of a gateway ``or``/``not``)."""
    text = text.strip()
    _check_nesting(text)
    if text.startswith("(") and _closing_paren(text) == len(text) - 1:
        text = text[1:-1]
    return _logic_items(text, whole=text, dialect=dialect)


def _check_nesting(text: str) -> None:
    if nesting_depth(text) > MAX_NESTING:
        raise ParseError(
            f"failed to parse logic tree ({text[:40]}…)",
            f"logic trees may nest at most {MAX_NESTING} levels",
        )


def _logic_items(inner: str, *, whole: str, dialect: Dialect) -> tuple[Condition, ...]:
    items: list[Condition] = []
    for part in split_top(inner, brackets=dialect.brackets):
        part = part.strip()
        if not part:
            raise ParseError(f"failed to parse logic tree ({whole})", "empty condition")
        items.append(_parse_logic_item(part, whole=whole, dialect=dialect))
    if not items:
        raise ParseError(f"failed to parse logic tree ({whole})", "no conditions")
    return tuple(items)


def _parse_logic_item(part: str, *, whole: str, dialect: Dialect) -> Condition:
    negate = False
    body = part
    lowered = body.lower() if dialect.ignore_case else body
    if lowered.startswith("not.") and lowered[4:].startswith(("or(", "and(")):
        negate = True
        body, lowered = body[4:], lowered[4:]
    for op in ("or", "and"):
        if lowered.startswith(op + "(") and body.endswith(")"):
            return parse_logic(op, body[len(op) :], negate=negate, dialect=dialect)  # type: ignore[arg-type]
    # field.[not.]op.value — the field may be quoted or a JSON path containing no dots
    if body.startswith('"'):
        end = _closing_quote(body)
        field_text, rest = body[: end + 1], body[end + 1 :]
        if not rest.startswith("."):
            raise ParseError(f"failed to parse logic tree ({whole})", f"bad condition {part}")
        rest = rest[1:]
    else:
        field_text, dot, rest = body.partition(".")
        if not dot:
            raise ParseError(f"failed to parse logic tree ({whole})", f"bad condition {part}")
    return parse_operation(parse_field(field_text), rest, raw=part, in_logic=True, dialect=dialect)


def _closing_paren(text: str) -> int:
    """Where the parenthesis opening ``text`` closes (outside quotes), or -1."""
    depth, quoted, i = 0, False, 0
    while i < len(text):
        ch = text[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _closing_quote(text: str) -> int:
    i = 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == '"':
            return i
        i += 1
    raise ParseError(f"failed to parse ({text})", 'unterminated double quote (")')


# -- order, paging -----------------------------------------------------------------------------


def parse_order(value: str) -> list[OrderTerm]:
    """``a.desc.nullslast,data->>x`` → terms."""
    terms: list[OrderTerm] = []
    for raw in split_top(value):
        raw = raw.strip()
        if not raw:
            raise ParseError(f"failed to parse order ({value})", "empty order term")
        parts = raw.split(".")
        desc = False
        nulls: Literal["first", "last"] | None = None
        modifiers = []
        while len(parts) > 1 and parts[-1] in ("asc", "desc", "nullsfirst", "nullslast"):
            modifiers.insert(0, parts.pop())
        for mod in modifiers:
            if mod in ("asc", "desc"):
                desc = mod == "desc"
            else:
                nulls = "first" if mod == "nullsfirst" else "last"
        text = ".".join(parts)
        embed: str | None = None
        if text.endswith(")") and "(" in text:
            embed, _, inner = text[:-1].partition("(")
            embed = _name(embed, "order")
            text = inner
        terms.append(OrderTerm(parse_field(text), desc, nulls, embed))
    return terms


def parse_non_negative(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ParseError(
            f"failed to parse {name} parameter ({value})", "expecting a number"
        ) from None
    if number < 0:
        raise ParseError(f"failed to parse {name} parameter ({value})", "must be >= 0")
    return number


# -- select ------------------------------------------------------------------------------------


def parse_select(value: str) -> tuple[SelectItem, ...]:
    value = value.strip()
    if not value:
        return (StarItem(),)
    items: list[SelectItem] = []
    for raw in split_top(value):
        raw = raw.strip()
        if not raw:
            raise ParseError(f"failed to parse select parameter ({value})", "empty item")
        items.append(_parse_select_item(raw, whole=value))
    return tuple(items)


def _split_alias(raw: str) -> tuple[str | None, str]:
    """``alias:rest`` (but not ``col::cast``)."""
    i = 0
    quoted = False
    while i < len(raw):
        ch = raw[i]
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "(":
            break
        elif not quoted and ch == ":":
            if raw.startswith("::", i):
                return None, raw
            return _name(raw[:i], "alias"), raw[i + 1 :]
        i += 1
    return None, raw


_AGGREGATE = re.compile(
    r"^(?:(?P<column>[^()]+)\.)?(?P<fn>" + "|".join(AGGREGATES) + r")\(\)(?:::(?P<cast>[\w ]+))?$"
)


def _aggregate_item(match: re.Match[str], alias: str | None, *, whole: str) -> AggregateItem:
    fn, column = match.group("fn"), match.group("column")
    result_cast = (match.group("cast") or "").strip().lower() or None
    if column is None:
        if fn != "count":
            raise ParseError(
                f"failed to parse select parameter ({whole})", f"{fn}() needs a column: col.{fn}()"
            )
        return AggregateItem(fn, None, alias, None, result_cast)
    cast: str | None = None
    if "::" in column:
        column, _, cast = column.rpartition("::")
        cast = cast.strip().lower() or None
    return AggregateItem(fn, parse_field(column), alias, cast, result_cast)


def _parse_select_item(raw: str, *, whole: str) -> SelectItem:
    if raw == "*":
        return StarItem()
    spread = raw.startswith("...")
    if spread:
        raw = raw[3:]
    alias, rest = _split_alias(raw)
    aggregate = _AGGREGATE.match(rest) if not spread else None
    if aggregate is not None:
        return _aggregate_item(aggregate, alias, whole=whole)
    if spread and not (rest.endswith(")") and "(" in rest):
        raise ParseError(f"failed to parse select parameter ({whole})", "... needs a resource(…)")
    if rest.endswith(")") and "(" in rest and not rest.startswith('"'):
        head, _, body = rest.partition("(")
        body = body[:-1]
        if not body.strip() and "." in head:
            raise ParseError(
                f"failed to parse select parameter ({whole})",
                f"unknown aggregate '{head.rpartition('.')[2]}()'; use one of "
                + ", ".join(f"{a}()" for a in AGGREGATES),
            )
        names = head.split("!")
        name = _name(names[0], "select parameter")
        hint: str | None = None
        inner = False
        for mod in names[1:]:
            if mod == "inner":
                inner = True
            elif mod == "left":
                inner = False
            elif mod:
                hint = mod
            else:
                raise ParseError(f"failed to parse select parameter ({whole})", "empty hint")
        children = parse_select(body) if body.strip() else (StarItem(),)
        return EmbedItem(name, children, alias, hint, inner, spread)
    if "(" in rest and not rest.startswith('"'):
        raise ParseError(
            f"failed to parse select parameter ({whole})", f'unexpected "(" in "{rest}"'
        )
    cast: str | None = None
    if "::" in rest:
        rest, _, cast = rest.rpartition("::")
        cast = cast.strip().lower()
        if not cast:
            raise ParseError(f"failed to parse select parameter ({whole})", "empty cast")
    return ColumnItem(parse_field(rest), alias, cast)


# -- the whole query string ---------------------------------------------------------------------


def _split_key(key: str) -> tuple[tuple[str, ...], str]:
    """``author.books.title`` → (("author","books"), "title"); JSON arrows stay in the field."""
    arrow = key.find("->")
    head, tail = (key, "") if arrow < 0 else (key[:arrow], key[arrow:])
    parts = head.split(".")
    return tuple(parts[:-1]), parts[-1] + tail


def parse_query(pairs: list[tuple[str, str]]) -> ParsedQuery:
    """Every query parameter, in order (repeated filters are ANDed)."""
    q = ParsedQuery()
    for key, value in pairs:
        if key == "select":
            if nesting_depth(value) > MAX_NESTING:  # embeds recurse once per level
                raise ParseError(
                    "failed to parse select parameter",
                    f"embedded resources may nest at most {MAX_NESTING} levels",
                )
            q.select = parse_select(value)
            continue
        if key == "columns":
            q.columns = tuple(_name(c, "columns parameter") for c in split_top(value))
            continue
        if key == "on_conflict":
            q.on_conflict = tuple(_name(c, "on_conflict parameter") for c in split_top(value))
            continue
        path, last = _split_key(key)
        negate = False
        if last in ("or", "and") and path and path[-1] == "not":
            negate, path = True, path[:-1]
        node = q.node(path)
        if last in ("or", "and"):
            node.conditions.append(parse_logic(last, value, negate=negate))  # type: ignore[arg-type]
        elif last == "order":
            node.order.extend(parse_order(value))
        elif last == "limit":
            node.limit = parse_non_negative("limit", value)
        elif last == "offset":
            node.offset = parse_non_negative("offset", value)
        else:
            node.conditions.append(parse_operation(parse_field(last), value, raw=value))
    return q


# -- render: the inverse of the filters of parse_query -------------------------------------------

# Characters that the grammar reserves inside list items and logic-tree values.
_RESERVED = frozenset(',().:"\\ ')


def _quoted(text: str) -> str:
    if any(ch in _RESERVED for ch in text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def _render_field(f: Field) -> str:
    return f.name + "".join(step.arrow + step.key for step in f.path)


def _render_operation(f: Filter, *, in_logic: bool) -> str:
    op = f.op
    if f.quantifier:
        op += f"({f.quantifier})"
    elif f.language:
        op += f"({f.language})"
    if isinstance(f.value, tuple):
        value = "(" + ",".join(_quoted(v) for v in f.value) + ")"
    else:
        value = _quoted(f.value) if in_logic and f.op != "is" else f.value
    return ("not." if f.negate else "") + op + "." + value


def _render_item(c: Condition) -> str:
    if isinstance(c, Logic):
        inner = ",".join(_render_item(i) for i in c.items)
        return ("not." if c.negate else "") + f"{c.op}({inner})"
    return _render_field(c.field) + "." + _render_operation(c, in_logic=True)


def render(conditions: list[Condition] | tuple[Condition, ...]) -> list[tuple[str, str]]:
    """Query parameters that ``parse_query`` reads back as ``conditions`` (ANDed)."""
    params: list[tuple[str, str]] = []
    for c in conditions:
        if isinstance(c, Logic):
            key = ("not." if c.negate else "") + c.op
            params.append((key, "(" + ",".join(_render_item(i) for i in c.items) + ")"))
        else:
            params.append((_render_field(c.field), _render_operation(c, in_logic=False)))
    return params
