"""Conditions: the ``conditions`` array of a gateway body → a WHERE clause (pure, no I/O).

Two stages, so that the SQL text can be cached per request *shape*:

1. ``parse_conditions(raw)`` turns the JSON the caller sent into a tree of ``Filter`` /
   ``Group`` nodes. It accepts every form of CONTRACT.md: ``{eq_column, eq_value}``,
   ``{column, operator, value}`` (or both in one object), and the PostgREST expressions carried
   by ``not`` / ``or`` (``a.eq.1,b.gt.2``, ``and(...)``, ``or(...)``, ``x.not.in.(1,2)``). This
   module reads only the JSON: the expressions are parsed by the one PostgREST grammar
   (``athena.query.postgrest.grammar``, ``GATEWAY`` dialect), whose AST becomes nodes here.
2. ``plan_where(relation, nodes, params)`` checks every column against the live schema, appends
   the bound values to ``params`` and returns a hashable *shape*; ``where_sql(shape)`` renders
   it. The shape holds identifiers and operators only — never a value — so two requests that
   differ only in values share one rendered statement.

Values are always bound parameters. They are sent as text of unknown type so PostgreSQL casts
them to the column's own type (``'42'`` compares with an ``integer`` column, ``'{"a":1}'`` with a
``jsonb`` one) instead of failing on ``text = integer``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from psycopg import sql

from athena.errors import ApiError
from athena.query.postgrest import grammar
from athena.query.postgrest.grammar import (
    GATEWAY,
    IS_KEYWORDS,
    MAX_NESTING,
    ParseError,
    UnknownOperator,
    array_literal,
    split_top,
    value_text,
)

if TYPE_CHECKING:
    from athena.db.introspection import Column, Relation

MAX_EXPRESSION_LENGTH = 64 * 1024

# Canonical operator names, with the aliases PostgREST and older clients use.
OPERATORS: dict[str, str] = {
    "eq": "eq", "=": "eq", "==": "eq",
    "neq": "neq", "ne": "neq", "!=": "neq", "<>": "neq",
    "gt": "gt", ">": "gt",
    "gte": "gte", ">=": "gte",
    "lt": "lt", "<": "lt",
    "lte": "lte", "<=": "lte",
    "like": "like",
    "ilike": "ilike",
    "is": "is",
    "in": "in",
    "contains": "contains", "cs": "contains",
    "containedby": "containedBy", "cd": "containedBy",
    "not": "not",
    "or": "or",
    "and": "and",
}  # fmt: skip

_COMPARISONS: dict[str, sql.SQL] = {
    "eq": sql.SQL("="),
    "neq": sql.SQL("<>"),
    "gt": sql.SQL(">"),
    "gte": sql.SQL(">="),
    "lt": sql.SQL("<"),
    "lte": sql.SQL("<="),
    "like": sql.SQL("LIKE"),
    "ilike": sql.SQL("ILIKE"),
    "contains": sql.SQL("@>"),
    "containedBy": sql.SQL("<@"),
}

# `is` accepts the grammar's words (and the gateway dialect's spellings of them); anything else is
# 400. The keyword is chosen from the grammar's table: the caller's text never reaches SQL.
_IS_VALUES: dict[str, str] = IS_KEYWORDS | {
    word: IS_KEYWORDS[canonical] for word, canonical in GATEWAY.is_words.items()
}
_IS_SQL = {kw: sql.SQL(kw) for kw in set(_IS_VALUES.values())}
# The grammar's operator names → this layer's (CONTRACT.md's) names.
_FROM_GRAMMAR = {"cs": "contains", "cd": "containedBy"}
_TO_GRAMMAR = {mine: theirs for theirs, mine in _FROM_GRAMMAR.items()}


@dataclass(frozen=True)
class Filter:
    """One ``column <operator> value`` test; ``negate`` wraps it in NOT."""

    column: str
    op: str
    value: Any
    negate: bool = False


@dataclass(frozen=True)
class Group:
    """``and`` / ``or`` of nodes (``negate`` → NOT (...))."""

    kind: str  # "and" | "or"
    items: tuple[Filter | Group, ...]
    negate: bool = False


Node = Filter | Group


def _bad(message: str, code: str = "invalid_request", **data: Any) -> ApiError:
    return ApiError(code, message, data=data or None)


def canonical_operator(name: Any) -> str:
    """The canonical operator for ``name`` (case-insensitive), or 400 ``invalid_operator``."""
    if not isinstance(name, str):
        raise _bad("operator must be a string", "invalid_operator", operator=name)
    op = OPERATORS.get(name.strip().lower()) or OPERATORS.get(name.strip())
    if op is None:
        raise _bad(f"unknown operator '{name}'", "invalid_operator", operator=name)
    return op


# -- stage 1: JSON → nodes -------------------------------------------------------------------


def parse_conditions(raw: Any) -> list[Node]:
    """The caller's ``conditions`` as nodes (ANDed). Absent/null → no conditions."""
    try:
        nodes = _parse_list(raw)
    except RecursionError:  # `not` nested in `not` … hundreds deep
        raise _bad("conditions are nested too deeply") from None
    if any(_depth(node) > MAX_NESTING for node in nodes):
        raise _bad(f"conditions are nested deeper than {MAX_NESTING} levels")
    return nodes


def _depth(node: Node) -> int:
    if isinstance(node, Filter):
        return 1
    return 1 + max((_depth(item) for item in node.items), default=0)


def _parse_list(raw: Any) -> list[Node]:
    if raw is None:
        return []
    if isinstance(raw, dict):
        # Liberal: an object of column → value means equality on each.
        if "column" in raw or "eq_column" in raw or "operator" in raw:
            raw = [raw]
        else:
            return [Filter(str(k), "eq", v) for k, v in raw.items()]
    if not isinstance(raw, list):
        raise _bad("conditions must be an array of condition objects")
    nodes: list[Node] = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise _bad(f"condition {index} must be an object", index=index)
        nodes.extend(_parse_item(item, index))
    return nodes


def _parse_item(item: dict[str, Any], index: int) -> list[Node]:
    found: list[Node] = []
    if "eq_column" in item:
        column = item["eq_column"]
        if not isinstance(column, str) or not column.strip():
            raise _bad(f"condition {index}: eq_column must be a column name", index=index)
        found.append(Filter(column.strip(), "eq", item.get("eq_value")))
    operator = item.get("operator", item.get("op"))
    column = item.get("column")
    if operator is None and column is None:
        if not found:
            raise _bad(f"condition {index} needs eq_column, or column and operator", index=index)
        return found
    op = canonical_operator(operator) if operator is not None else "eq"
    value = item.get("value")
    if op in ("or", "and"):
        found.append(Group(op, tuple(_expression_nodes(value, index))))
    elif op == "not":
        found.append(_negate(_not_target(column, value, index)))
    else:
        if not isinstance(column, str) or not column.strip():
            raise _bad(f"condition {index}: column must be a column name", index=index)
        found.append(Filter(column.strip(), op, value))
    return found


def _not_target(column: Any, value: Any, index: int) -> Node:
    """What ``not`` negates: ``a.eq.1`` / ``a.eq.1,b.gt.2`` (AND of them), or, with a
    ``column``, PostgREST's ``a=not.eq.1`` form ``{column: a, value: "eq.1"}``."""
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        nodes = _parse_list(value)
        return nodes[0] if len(nodes) == 1 else Group("and", tuple(nodes))
    if not isinstance(value, str) or not value.strip():
        raise _bad(f"condition {index}: 'not' needs a PostgREST expression value", index=index)
    text = value.strip()
    if isinstance(column, str) and column.strip():
        op_text, sep, _ = text.partition(".")
        if sep and op_text.lower() in OPERATORS and op_text.lower() not in ("not", "or", "and"):
            return _operation(column.strip(), text, index)
    nodes = _expression_nodes(text, index)
    return nodes[0] if len(nodes) == 1 else Group("and", tuple(nodes))


def _negate(node: Node) -> Node:
    if isinstance(node, Filter):
        return Filter(node.column, node.op, node.value, not node.negate)
    return Group(node.kind, node.items, not node.negate)


def _expression_nodes(value: Any, index: int) -> list[Node]:
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        return _parse_list(value)
    if not isinstance(value, str) or not value.strip():
        raise _bad(f"condition {index}: expected a PostgREST expression such as 'a.eq.1,b.gt.2'")
    if len(value) > MAX_EXPRESSION_LENGTH:
        raise _bad(f"condition {index}: expression longer than {MAX_EXPRESSION_LENGTH} characters")
    if grammar.nesting_depth(value) > MAX_NESTING:
        raise _bad(f"condition {index}: expression nested deeper than {MAX_NESTING} levels")
    try:
        return parse_expression(value)
    except ValueError as exc:
        raise _bad(f"condition {index}: {exc}", "invalid_value", index=index) from None


def _operation(column: str, text: str, index: int) -> Node:
    """PostgREST's ``a=not.eq.1`` form: ``text`` is ``eq.1`` for ``column``."""
    try:
        parsed = grammar.parse_operation(
            grammar.Field(column), text, raw=text, in_logic=True, dialect=GATEWAY
        )
    except UnknownOperator as exc:
        raise _bad(
            f"unknown operator '{exc.operator}'", "invalid_operator", operator=exc.operator
        ) from None
    except ParseError as exc:
        detail = exc.details or exc.message
        raise _bad(f"condition {index}: {detail}", "invalid_value", index=index) from None
    return _from_grammar(parsed)


def parse_expression(text: str) -> list[Node]:
    """PostgREST logic-tree items ``a.eq.1,b.not.in.(1,2),and(c.is.null,d.lt.3)`` → nodes, by
    the one grammar in its gateway dialect.

    Raises ``ValueError`` with a human message on malformed text, ``ApiError``
    ``invalid_operator`` for an operator the gateway does not have.
    """
    try:
        return [_from_grammar(item) for item in grammar.parse_expression(text, dialect=GATEWAY)]
    except UnknownOperator as exc:
        raise ApiError(
            "invalid_operator",
            f"unknown operator '{exc.operator}'",
            data={"operator": exc.operator},
        ) from None
    except ParseError as exc:
        raise ValueError(exc.details or exc.message) from None


def _from_grammar(item: grammar.Condition) -> Node:
    """A grammar AST node as this layer's node (values as the gateway has always read them)."""
    if isinstance(item, grammar.Logic):
        return Group(item.op, tuple(_from_grammar(i) for i in item.items), item.negate)
    op = _FROM_GRAMMAR.get(item.op, item.op)
    value: Any = item.value
    if op == "in":
        value = list(value)
    elif op in ("like", "ilike"):
        value = value.replace("*", "%")  # PostgREST's URL-safe wildcard
    elif op in ("eq", "neq") and value == "null" and GATEWAY.eq_null_is_null:
        value = None  # the SDK's not(col, "eq", null) arrives as `col.eq.null`: mean NULL
    return Filter(item.field.name, op, value, item.negate)


def to_grammar(node: Node) -> grammar.Condition:
    """This layer's node as the grammar's AST, values as PostgREST text, so that
    ``grammar.render`` can send it to a PostgREST (the inverse of ``_from_grammar``)."""
    if isinstance(node, Group):
        return grammar.Logic(node.kind, tuple(to_grammar(n) for n in node.items), node.negate)  # type: ignore[arg-type]
    field = grammar.Field(node.column)
    op, value, negate = node.op, node.value, node.negate
    if op in ("eq", "neq") and value is None:
        return grammar.Filter(field, "is", "null", negate != (op == "neq"))
    if op == "is":
        word = (value_text(value) or "null").lower()
        word = GATEWAY.is_words.get(word, word)
        if word == "not_null":
            word, negate = "null", not negate
        return grammar.Filter(field, "is", word, negate)
    if op == "in":
        if isinstance(value, str):  # "(a,b)" / "a,b": already a list in PostgREST's syntax
            inner = value.strip()
            inner = inner[1:-1] if inner.startswith("(") and inner.endswith(")") else inner
            items = tuple(grammar.unquote(v.strip()) for v in split_top(inner)) if inner else ()
        else:
            items = tuple(_pgrst_text(v) for v in (value if isinstance(value, list) else [value]))
        return grammar.Filter(field, "in", items, negate)
    if op in ("contains", "containedBy") and isinstance(value, list):
        return grammar.Filter(field, _TO_GRAMMAR[op], array_literal(value), negate)
    return grammar.Filter(field, _TO_GRAMMAR.get(op, op), _pgrst_text(value), negate)


def _pgrst_text(value: Any) -> str:
    return "null" if value is None else value_text(value) or ""


def split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets (JSON's too) and double quotes: the REST grammar's
    splitter, with ``ValueError`` for unbalanced text."""
    try:
        return split_top(text, brackets="(){}[]")
    except ParseError as exc:
        raise ValueError(exc.details or exc.message) from None


# -- stage 2: nodes → shape + params ---------------------------------------------------------


def scalar_text(value: Any, column: Column | None = None) -> str | None:
    """A JSON value as the text PostgreSQL should cast to the column's type."""
    if isinstance(value, (list, tuple)) and column is not None and not column.is_json:
        return array_literal(value)
    return value_text(value)


def plan_where(relation: Relation, nodes: list[Node], params: list[Any]) -> tuple[Any, ...]:
    """Validate ``nodes`` against ``relation``; append values to ``params``; return the shape."""
    return tuple(_plan_node(relation, node, params) for node in nodes)


def _plan_node(relation: Relation, node: Node, params: list[Any]) -> tuple[Any, ...]:
    if isinstance(node, Group):
        inner = tuple(_plan_node(relation, item, params) for item in node.items)
        shape: tuple[Any, ...] = (node.kind, inner)
        return ("not", shape) if node.negate else shape
    column = relation.column(node.column)
    shape = _plan_filter(column, node.op, node.value, params)
    return ("not", shape) if node.negate else shape


def _plan_filter(column: Column, op: str, value: Any, params: list[Any]) -> tuple[Any, ...]:
    name = column.name
    if op in ("eq", "neq") and value is None:
        return ("null", name, op == "neq")  # eq null = IS NULL, neq null = IS NOT NULL
    if op == "is":
        key = "null" if value is None else scalar_text(value)
        keyword = _IS_VALUES.get((key or "").strip().lower())
        if keyword is None:
            raise ApiError(
                "invalid_value",
                f"'is' accepts null, true, false or unknown, not '{value}'",
                data={"column": name, "operator": "is"},
            )
        return ("is", name, keyword)
    if op == "in":
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("(") and text.endswith(")"):
                text = text[1:-1]
            try:
                value = (
                    [grammar.unquote(v.strip()) for v in split_top_level(text)]
                    if text.strip()
                    else []
                )
            except ValueError as exc:
                raise ApiError("invalid_value", f"'in' list: {exc}") from None
        elif not isinstance(value, (list, tuple)):
            value = [value]
        params.append(array_literal(value))
        return ("in", name)
    if op in ("contains", "containedBy"):
        if isinstance(value, (list, tuple)) and not column.is_json:
            params.append(array_literal(value))
        else:
            params.append(scalar_text(value, column))
        return ("cmp", name, op, False)
    if value is None:
        raise ApiError(
            "invalid_value",
            f"operator '{op}' needs a value for column '{name}'",
            data={"column": name, "operator": op},
        )
    if isinstance(value, (dict, list)) and not column.is_json and op not in ("eq", "neq"):
        raise ApiError(
            "invalid_value",
            f"operator '{op}' needs a scalar value for column '{name}'",
            data={"column": name, "operator": op},
        )
    params.append(scalar_text(value, column))
    # LIKE on a non-text column (uuid, int …) compares its text form, as callers expect.
    as_text = op in ("like", "ilike") and column.category != "S"
    return ("cmp", name, op, as_text)


def where_sql(
    shape: tuple[Any, ...], placeholder: Callable[[], sql.Composable] | None = None
) -> sql.Composable:
    """`` WHERE …`` for a top-level shape (empty when there are no conditions).

    ``placeholder`` makes each value's marker (in ``plan_where``'s order); by default ``%s``.
    The embedding fetch passes named ones, to sit beside the PostgREST builder's parameters.
    """
    if not shape:
        return sql.SQL("")
    return sql.SQL(" WHERE ") + _and(shape, placeholder or _positional)


def _positional() -> sql.Composable:
    return sql.SQL("%s")


def _and(shapes: tuple[Any, ...], ph: Callable[[], sql.Composable]) -> sql.Composable:
    if len(shapes) == 1:
        return _node_sql(shapes[0], ph)
    return sql.SQL(" AND ").join(_node_sql(s, ph) for s in shapes)


def _node_sql(shape: tuple[Any, ...], ph: Callable[[], sql.Composable]) -> sql.Composable:
    kind = shape[0]
    if kind == "cmp":
        _, name, op, as_text = shape
        col: sql.Composable = sql.Identifier(name)
        if as_text:
            col = col + sql.SQL("::text")
        return sql.SQL("{} {} {}").format(col, _COMPARISONS[op], ph())
    if kind == "null":
        _, name, negated = shape
        return sql.SQL("{} IS NOT NULL" if negated else "{} IS NULL").format(sql.Identifier(name))
    if kind == "is":
        _, name, keyword = shape
        return sql.SQL("{} IS {}").format(sql.Identifier(name), _IS_SQL[keyword])
    if kind == "in":
        return sql.SQL("{} = ANY({})").format(sql.Identifier(shape[1]), ph())
    if kind == "not":
        return sql.SQL("NOT (") + _node_sql(shape[1], ph) + sql.SQL(")")
    if kind in ("and", "or"):
        items = shape[1]
        if not items:
            return sql.SQL("TRUE" if kind == "and" else "FALSE")
        joiner = sql.SQL(" AND " if kind == "and" else " OR ")
        return sql.SQL("(") + joiner.join(_node_sql(s, ph) for s in items) + sql.SQL(")")
    raise ValueError(f"unknown condition shape {kind!r}")  # a programming error
