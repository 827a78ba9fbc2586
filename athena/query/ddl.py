"""Pure builders for the management API: request bodies → validated plans → ``psycopg.sql``.

Nothing here does I/O. Every identifier is checked against ``IDENTIFIER`` and quoted with
``sql.Identifier``; every data type comes from ``DATA_TYPES`` (the SQL text is ours, never the
caller's); every default expression is parsed into one of a few safe shapes (``parse_default``)
and rendered with ``sql.Literal`` or a constant SQL keyword. A request that does not fit is a
400 ``ApiError`` before any SQL exists, so a hostile body can never reach the database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from psycopg import sql

from athena.errors import ApiError

# PostgreSQL truncates identifiers to NAMEDATALEN-1 = 63 bytes; we refuse instead of truncating
# silently, so the name a caller sends is the name that exists.
MAX_IDENTIFIER_BYTES = 63
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SYSTEM_SCHEMAS = frozenset({"pg_catalog", "information_schema", "pg_toast"})

# Columns every managed table gets, and that no management call may drop or rename: the gateway's
# delete-by-id, ordering and change tracking rely on them.
RESERVED_COLUMNS: tuple[str, ...] = ("id", "created_at", "updated_at")
# Tables the management API must not alter or drop: the audit trail itself.
PROTECTED_TABLES = frozenset({"database_audit_log", "athena_provisioning"})

# Accepted spellings → canonical SQL text. The values are the only type text that reaches SQL.
DATA_TYPES: dict[str, str] = {
    "text": "text",
    "varchar": "varchar",
    "character varying": "varchar",
    "char": "char",
    "character": "char",
    "uuid": "uuid",
    "boolean": "boolean",
    "bool": "boolean",
    "smallint": "smallint",
    "int2": "smallint",
    "integer": "integer",
    "int": "integer",
    "int4": "integer",
    "bigint": "bigint",
    "int8": "bigint",
    "real": "real",
    "float4": "real",
    "double precision": "double precision",
    "float8": "double precision",
    "numeric": "numeric",
    "decimal": "numeric",
    "date": "date",
    "time": "time",
    "time without time zone": "time",
    "timestamp": "timestamp",
    "timestamp without time zone": "timestamp",
    "timestamptz": "timestamptz",
    "timestamp with time zone": "timestamptz",
    "interval": "interval",
    "json": "json",
    "jsonb": "jsonb",
    "bytea": "bytea",
    "inet": "inet",
    "cidr": "cidr",
    "citext": "citext",
}
# The canonical names, as /management/capabilities lists them.
ALLOWED_DATA_TYPES: tuple[str, ...] = tuple(sorted(set(DATA_TYPES.values())))
_LENGTH_TYPES = frozenset({"varchar", "char"})  # accept (n)
_PRECISION_TYPES = frozenset({"numeric"})  # accept (p) or (p, s)
_MAX_LENGTH = 10_485_760  # PostgreSQL's limit for varchar(n)
_TYPE_SHAPE = re.compile(
    r"(?P<base>[a-z][a-z0-9 ]*?)\s*(?:\(\s*(?P<a>\d{1,8})\s*(?:,\s*(?P<b>\d{1,4})\s*)?\))?"
    r"(?P<array>\s*\[\s*\])?"
)

ALLOWED_INDEX_METHODS: tuple[str, ...] = ("btree", "hash", "gin", "gist", "brin")

# Default expressions that are not literals: normalized spelling → SQL text we emit.
DEFAULT_FUNCTIONS: dict[str, str] = {
    "now()": "now()",
    "current_timestamp": "CURRENT_TIMESTAMP",
    "current_date": "CURRENT_DATE",
    "current_time": "CURRENT_TIME",
    "localtimestamp": "LOCALTIMESTAMP",
    "gen_random_uuid()": "gen_random_uuid()",
    "true": "true",
    "false": "false",
    "null": "NULL",
}
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_STRING = re.compile(r"'((?:[^']|'')*)'(?:\s*::\s*(?P<cast>[a-z][a-z0-9 ]*?))?")
MAX_DEFAULT_LENGTH = 1000

EDIT_OPERATIONS: tuple[str, ...] = (
    "add_column",
    "rename_column",
    "set_default",
    "drop_default",
    "set_not_null",
    "drop_not_null",
)
# Operation → the right a key needs (CONTRACT.md), as /management/capabilities lists them.
REQUIRED_RIGHTS: dict[str, str] = {
    "capabilities": "management.read",
    "create_table": "management.tables.write",
    "edit_table": "management.tables.write",
    **{op: "management.tables.write" for op in EDIT_OPERATIONS},
    "drop_table": "management.tables.drop",
    "drop_column": "management.columns.drop",
    "create_index": "management.indexes.write",
    "drop_index": "management.indexes.drop",
}


# -- identifiers ---------------------------------------------------------------------------


def identifier(value: Any, what: str) -> str:
    """``value`` if it is a plain identifier of at most 63 bytes, else 400 naming ``what``."""
    if not isinstance(value, str) or not value:
        raise ApiError(
            "invalid_identifier",
            f"{what} must be a non-empty string",
            data={"field": what},
        )
    if len(value.encode()) > MAX_IDENTIFIER_BYTES or not IDENTIFIER.fullmatch(value):
        raise ApiError(
            "invalid_identifier",
            f"{what} must match [A-Za-z_][A-Za-z0-9_]* and be at most 63 characters",
            data={"field": what, "value": value[:80]},
        )
    return value


def schema_name(value: Any) -> str:
    """The target schema (default ``public``); system schemas are refused."""
    if value is None:
        return "public"
    name = identifier(value, "schema_name")
    if name in SYSTEM_SCHEMAS or name.startswith("pg_"):
        raise ApiError(
            "invalid_identifier",
            f"schema '{name}' is a system schema",
            data={"field": "schema_name", "value": name},
        )
    return name


def split_table(path_name: str, body_schema: Any) -> tuple[str, str]:
    """``table`` or ``schema.table`` from a path, with the body's ``schema_name``."""
    if "." in path_name:
        schema_part, _, table_part = path_name.partition(".")
        schema = schema_name(schema_part)
        if body_schema is not None and schema_name(body_schema) != schema:
            raise ApiError(
                "invalid_request",
                "the schema in the path and schema_name in the body disagree",
            )
        return schema, identifier(table_part, "table_name")
    return schema_name(body_schema), identifier(path_name, "table_name")


def qualified(schema: str, name: str) -> sql.Composed:
    return sql.SQL(".").join([sql.Identifier(schema), sql.Identifier(name)])


# -- data types and defaults --------------------------------------------------------------


@dataclass(frozen=True)
class DataType:
    """A validated column type: canonical base, optional modifiers, array flag."""

    base: str
    modifiers: tuple[int, ...] = ()
    array: bool = False

    def render(self) -> sql.Composable:
        text = self.base
        if self.modifiers:
            text += "(" + ",".join(str(m) for m in self.modifiers) + ")"
        if self.array:
            text += "[]"
        # Safe: base comes from DATA_TYPES' values, modifiers are ints we parsed.
        return sql.SQL(text)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return self.render().as_string(None)


def parse_data_type(value: Any) -> DataType:
    """A ``DataType`` from the allow-list, or 400 ``unsupported_data_type``."""
    if not isinstance(value, str) or not value.strip():
        raise ApiError("unsupported_data_type", "data_type must be a non-empty string")
    text = " ".join(value.strip().lower().split())
    match = _TYPE_SHAPE.fullmatch(text)
    base = DATA_TYPES.get(match.group("base").strip()) if match else None
    if match is None or base is None:
        raise ApiError(
            "unsupported_data_type",
            "data_type is not one of the allowed column types",
            data={"data_type": value[:80], "allowed": list(ALLOWED_DATA_TYPES)},
        )
    mods: tuple[int, ...] = ()
    if match.group("a") is not None:
        a = int(match.group("a"))
        b = match.group("b")
        if base in _LENGTH_TYPES and b is None and 1 <= a <= _MAX_LENGTH:
            mods = (a,)
        elif base in _PRECISION_TYPES and 1 <= a <= 1000 and (b is None or int(b) <= a):
            mods = (a,) if b is None else (a, int(b))
        else:
            raise ApiError(
                "unsupported_data_type",
                "data_type has modifiers (length/precision) this type does not take",
                data={"data_type": value[:80]},
            )
    return DataType(base, mods, bool(match.group("array")))


@dataclass(frozen=True)
class DefaultExpr:
    """A safe default: a constant SQL keyword/function, or a literal value (maybe cast)."""

    keyword: str | None = None
    literal: Any = None
    cast: DataType | None = None

    def render(self) -> sql.Composable:
        if self.keyword is not None:
            return sql.SQL(self.keyword)  # type: ignore[arg-type]  # from DEFAULT_FUNCTIONS
        lit: sql.Composable = sql.Literal(self.literal)
        if self.cast is not None:
            return sql.SQL("{}::{}").format(lit, self.cast.render())
        return lit


def parse_default(value: Any) -> DefaultExpr:
    """A default expression restricted to literals and ``DEFAULT_FUNCTIONS``; else 400."""
    if isinstance(value, bool):
        return DefaultExpr(keyword="true" if value else "false")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return DefaultExpr(literal=value if isinstance(value, int) else Decimal(str(value)))
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_DEFAULT_LENGTH:
        raise _bad_default(value)
    text = value.strip()
    normalized = re.sub(r"\s+", "", text.lower())
    if normalized in DEFAULT_FUNCTIONS:
        return DefaultExpr(keyword=DEFAULT_FUNCTIONS[normalized])
    if _NUMBER.fullmatch(text):
        try:
            number: int | Decimal = int(text) if re.fullmatch(r"[+-]?\d+", text) else Decimal(text)
        except (ValueError, InvalidOperation):
            raise _bad_default(value) from None
        return DefaultExpr(literal=number)
    match = _STRING.fullmatch(text)
    if match:
        literal = match.group(1).replace("''", "'")
        if "\x00" in literal:
            raise _bad_default(value)
        cast = parse_data_type(match.group("cast")) if match.group("cast") else None
        return DefaultExpr(literal=literal, cast=cast)
    raise _bad_default(value)


def _bad_default(value: Any) -> ApiError:
    shown = value[:80] if isinstance(value, str) else repr(value)[:80]
    return ApiError(
        "unsupported_default",
        "default_expression must be a literal ('text', 42, 1.5, true, false, null) or one of "
        + ", ".join(sorted(DEFAULT_FUNCTIONS)),
        data={"default_expression": shown, "allowed_functions": sorted(DEFAULT_FUNCTIONS)},
    )


# -- plans ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    data_type: DataType
    nullable: bool = True
    default: DefaultExpr | None = None

    def render(self) -> sql.Composed:
        parts: list[sql.Composable] = [sql.Identifier(self.name), self.data_type.render()]
        if self.default is not None:
            parts += [sql.SQL("DEFAULT"), self.default.render()]
        if not self.nullable:
            parts.append(sql.SQL("NOT NULL"))
        return sql.SQL(" ").join(parts)


def parse_column(body: Any, where: str = "column") -> ColumnSpec:
    """A ``ManagementColumnRequest`` → ``ColumnSpec`` (400 on anything off)."""
    if not isinstance(body, dict):
        raise ApiError("invalid_request", f"{where} must be an object")
    nullable = body.get("nullable", True)
    if not isinstance(nullable, bool):
        raise ApiError("invalid_request", f"{where}.nullable must be a boolean")
    default = body.get("default_expression")
    return ColumnSpec(
        name=identifier(body.get("name"), f"{where}.name"),
        data_type=parse_data_type(body.get("data_type")),
        nullable=nullable,
        default=None if default is None else parse_default(default),
    )


@dataclass(frozen=True)
class Statement:
    """One DDL statement and what the audit log records about it."""

    operation: str
    query: sql.Composed
    details: dict[str, Any] = field(default_factory=dict)


MANAGED_COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec("id", DataType("uuid"), False, DefaultExpr(keyword="gen_random_uuid()")),
    ColumnSpec("created_at", DataType("timestamptz"), False, DefaultExpr(keyword="now()")),
    ColumnSpec("updated_at", DataType("timestamptz"), False, DefaultExpr(keyword="now()")),
)


@dataclass(frozen=True)
class CreateTablePlan:
    schema: str
    table: str
    columns: tuple[ColumnSpec, ...]

    def statement(self) -> Statement:
        defs = [c.render() for c in MANAGED_COLUMNS] + [c.render() for c in self.columns]
        defs.append(sql.SQL("PRIMARY KEY ({})").format(sql.Identifier("id")))
        query = sql.SQL("CREATE TABLE {} ({})").format(
            qualified(self.schema, self.table), sql.SQL(", ").join(defs)
        )
        return Statement(
            "create_table",
            query,
            {"columns": [c.name for c in MANAGED_COLUMNS + self.columns]},
        )


def plan_create_table(body: dict[str, Any]) -> CreateTablePlan:
    schema = schema_name(body.get("schema_name"))
    table = identifier(body.get("table_name"), "table_name")
    _not_protected(table)
    raw = body.get("columns") or []
    if not isinstance(raw, list):
        raise ApiError("invalid_request", "columns must be an array")
    columns = tuple(parse_column(c, f"columns[{i}]") for i, c in enumerate(raw))
    seen: set[str] = set()
    for col in columns:
        if col.name in RESERVED_COLUMNS:
            raise ApiError(
                "reserved_column",
                f"column '{col.name}' is added to every managed table automatically",
                data={"column": col.name, "reserved_columns": list(RESERVED_COLUMNS)},
            )
        if col.name in seen:
            raise ApiError(
                "column_exists", f"column '{col.name}' is listed twice", data={"column": col.name}
            )
        seen.add(col.name)
    if len(columns) + len(MANAGED_COLUMNS) > 1600:  # PostgreSQL's column limit
        raise ApiError("invalid_request", "a table can have at most 1600 columns")
    return CreateTablePlan(schema, table, columns)


@dataclass(frozen=True)
class EditOp:
    """One validated ``EditTableRequest`` operation."""

    type: str
    column: str  # the column it acts on (for rename: the old name)
    new_name: str | None = None
    spec: ColumnSpec | None = None
    default: DefaultExpr | None = None

    def statement(self, schema: str, table: str) -> Statement:
        target = qualified(schema, table)
        col = sql.Identifier(self.column)
        if self.type == "add_column":
            assert self.spec is not None
            query = sql.SQL("ALTER TABLE {} ADD COLUMN {}").format(target, self.spec.render())
            details: dict[str, Any] = {
                "column": self.column,
                "data_type": str(self.spec.data_type),
                "nullable": self.spec.nullable,
            }
        elif self.type == "rename_column":
            query = sql.SQL("ALTER TABLE {} RENAME COLUMN {} TO {}").format(
                target, col, sql.Identifier(self.new_name or "")
            )
            details = {"column": self.column, "to": self.new_name}
        elif self.type == "set_default":
            assert self.default is not None
            query = sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET DEFAULT {}").format(
                target, col, self.default.render()
            )
            details = {"column": self.column}
        else:
            clause = {
                "drop_default": "DROP DEFAULT",
                "set_not_null": "SET NOT NULL",
                "drop_not_null": "DROP NOT NULL",
            }[self.type]
            query = sql.SQL("ALTER TABLE {} ALTER COLUMN {} {}").format(
                target,
                col,
                sql.SQL(clause),  # type: ignore[arg-type]  # constant above
            )
            details = {"column": self.column}
        return Statement(self.type, query, details)


@dataclass(frozen=True)
class EditTablePlan:
    schema: str
    table: str
    operations: tuple[EditOp, ...]

    def statements(self) -> list[Statement]:
        return [op.statement(self.schema, self.table) for op in self.operations]


def plan_edit_table(path_table: str, body: dict[str, Any]) -> EditTablePlan:
    schema, table = split_table(path_table, body.get("schema_name"))
    _not_protected(table)
    raw = body.get("operations")
    if not isinstance(raw, list) or not raw:
        raise ApiError("invalid_request", "operations must be a non-empty array")
    if len(raw) > 100:
        raise ApiError("invalid_request", "at most 100 operations per request")
    ops = tuple(_parse_edit_op(item, i) for i, item in enumerate(raw))
    return EditTablePlan(schema, table, ops)


def _parse_edit_op(item: Any, index: int) -> EditOp:
    where = f"operations[{index}]"
    if not isinstance(item, dict):
        raise ApiError("invalid_request", f"{where} must be an object")
    kind = item.get("type")
    if kind not in EDIT_OPERATIONS:
        raise ApiError(
            "unsupported_operation",
            f"{where}.type must be one of {', '.join(EDIT_OPERATIONS)}",
            data={"type": str(kind)[:80], "supported": list(EDIT_OPERATIONS)},
        )
    if kind == "add_column":
        spec = parse_column(item.get("column"), f"{where}.column")
        if spec.name in RESERVED_COLUMNS:
            raise ApiError(
                "reserved_column",
                f"column name '{spec.name}' is reserved",
                data={"column": spec.name, "reserved_columns": list(RESERVED_COLUMNS)},
            )
        return EditOp(kind, spec.name, spec=spec)
    if kind == "rename_column":
        old = identifier(item.get("from"), f"{where}.from")
        new = identifier(item.get("to"), f"{where}.to")
        for name in (old, new):
            if name in RESERVED_COLUMNS:
                raise ApiError(
                    "reserved_column",
                    f"column '{name}' is reserved and cannot be renamed to or from",
                    data={"column": name, "reserved_columns": list(RESERVED_COLUMNS)},
                )
        return EditOp(kind, old, new_name=new)
    column = identifier(item.get("column_name"), f"{where}.column_name")
    if kind == "set_default":
        if "default_expression" not in item or item["default_expression"] is None:
            raise ApiError(
                "invalid_request", f"{where}.default_expression is required for set_default"
            )
        return EditOp(kind, column, default=parse_default(item["default_expression"]))
    return EditOp(kind, column)


@dataclass(frozen=True)
class DropTablePlan:
    schema: str
    table: str
    cascade: bool

    def statement(self) -> Statement:
        query = sql.SQL("DROP TABLE {}{}").format(
            qualified(self.schema, self.table), sql.SQL(" CASCADE" if self.cascade else "")
        )
        return Statement("drop_table", query, {"cascade": self.cascade})


def _cascade(body: dict[str, Any]) -> bool:
    value = body.get("cascade", False)
    if not isinstance(value, bool):
        raise ApiError("invalid_request", "cascade must be a boolean")
    return value


def plan_drop_table(path_table: str, body: dict[str, Any]) -> DropTablePlan:
    schema, table = split_table(path_table, body.get("schema_name"))
    _not_protected(table)
    return DropTablePlan(schema, table, _cascade(body))


@dataclass(frozen=True)
class DropColumnPlan:
    schema: str
    table: str
    column: str
    cascade: bool

    def statement(self) -> Statement:
        query = sql.SQL("ALTER TABLE {} DROP COLUMN {}{}").format(
            qualified(self.schema, self.table),
            sql.Identifier(self.column),
            sql.SQL(" CASCADE" if self.cascade else ""),
        )
        return Statement("drop_column", query, {"column": self.column, "cascade": self.cascade})


def plan_drop_column(path_table: str, path_column: str, body: dict[str, Any]) -> DropColumnPlan:
    schema, table = split_table(path_table, body.get("schema_name"))
    _not_protected(table)
    column = identifier(path_column, "column_name")
    if column in RESERVED_COLUMNS:
        raise ApiError(
            "reserved_column",
            f"column '{column}' is reserved and cannot be dropped",
            data={"column": column, "reserved_columns": list(RESERVED_COLUMNS)},
        )
    return DropColumnPlan(schema, table, column, _cascade(body))


@dataclass(frozen=True)
class CreateIndexPlan:
    schema: str
    table: str
    index: str
    columns: tuple[str, ...]
    unique: bool
    method: str

    def statement(self) -> Statement:
        query = sql.SQL("CREATE {}INDEX {} ON {} USING {} ({})").format(
            sql.SQL("UNIQUE " if self.unique else ""),
            sql.Identifier(self.index),
            qualified(self.schema, self.table),
            sql.SQL(self.method),  # type: ignore[arg-type]  # from ALLOWED_INDEX_METHODS
            sql.SQL(", ").join(sql.Identifier(c) for c in self.columns),
        )
        return Statement(
            "create_index",
            query,
            {
                "index": self.index,
                "columns": list(self.columns),
                "unique": self.unique,
                "method": self.method,
            },
        )


def default_index_name(table: str, columns: tuple[str, ...], unique: bool) -> str:
    """``<table>_<cols>_idx`` (``_key`` when unique), cut to 63 bytes like PostgreSQL does."""
    suffix = "_key" if unique else "_idx"
    stem = f"{table}_{'_'.join(columns)}"
    return stem[: MAX_IDENTIFIER_BYTES - len(suffix)] + suffix


def plan_create_index(body: dict[str, Any]) -> CreateIndexPlan:
    schema = schema_name(body.get("schema_name"))
    table = identifier(body.get("table_name"), "table_name")
    raw = body.get("columns")
    if isinstance(raw, str):
        raw = [part.strip() for part in raw.split(",")]
    if not isinstance(raw, list) or not raw:
        raise ApiError("invalid_request", "columns must be a non-empty array of column names")
    if len(raw) > 32:  # INDEX_MAX_KEYS
        raise ApiError("invalid_request", "an index can have at most 32 columns")
    columns = tuple(identifier(c, f"columns[{i}]") for i, c in enumerate(raw))
    if len(set(columns)) != len(columns):
        raise ApiError("invalid_request", "columns must not repeat")
    unique = body.get("unique", False)
    if not isinstance(unique, bool):
        raise ApiError("invalid_request", "unique must be a boolean")
    method = body.get("method") or "btree"
    if not isinstance(method, str) or method.lower() not in ALLOWED_INDEX_METHODS:
        raise ApiError(
            "unsupported_index_method",
            f"method must be one of {', '.join(ALLOWED_INDEX_METHODS)}",
            data={"method": str(method)[:80], "allowed": list(ALLOWED_INDEX_METHODS)},
        )
    method = method.lower()
    if unique and method != "btree":
        raise ApiError(
            "unsupported_index_method", "only btree indexes can be unique", data={"method": method}
        )
    name = body.get("index_name")
    index = (
        identifier(name, "index_name")
        if name is not None
        else default_index_name(table, columns, unique)
    )
    return CreateIndexPlan(schema, table, index, columns, unique, method)


@dataclass(frozen=True)
class DropIndexPlan:
    schema: str
    index: str

    def statement(self) -> Statement:
        query = sql.SQL("DROP INDEX {}").format(qualified(self.schema, self.index))
        return Statement("drop_index", query, {"index": self.index})


def plan_drop_index(path_index: str, body: dict[str, Any]) -> DropIndexPlan:
    if "." in path_index:
        schema, index = split_table(path_index, body.get("schema_name"))
        return DropIndexPlan(schema, identifier(index, "index_name"))
    return DropIndexPlan(schema_name(body.get("schema_name")), identifier(path_index, "index_name"))


def _not_protected(table: str) -> None:
    if table in PROTECTED_TABLES:
        raise ApiError(
            "protected_table",
            f"table '{table}' belongs to Athena and cannot be changed through management",
            data={"table": table},
        )


# -- the audit row -------------------------------------------------------------------------

AUDIT_TABLE = ("public", "database_audit_log")

AUDIT_INSERT = sql.SQL(
    "INSERT INTO {} (client_name, operation, schema_name, table_name, object_name, ddl, details,"
    " api_key_public_id, request_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id"
).format(qualified(*AUDIT_TABLE))
