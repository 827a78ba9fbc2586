"""Which granted rights satisfy which required right (pure).

Required rights look like ``users.read`` (table rights), ``gateway.query`` or
``management.tables.write`` (fixed rights). A table right names a relation and an operation:
``users.read`` is table ``users`` in ``public`` (bare names are always ``public``), and
``billing.invoices.read`` is table ``invoices`` in schema ``billing``; ``public.users.read`` is
the same right as ``users.read``. A table right is also satisfied by the matching
``gateway.read|write|delete`` fallback. Granted rights may use wildcards:

======================  ===========================================================
``*``                   everything
``users.*``             every right on table ``public.users`` (never on a schema
                        named ``users``: ``users.*`` does not grant ``users.ssn.read``)
``billing.invoices.*``  every right on table ``billing.invoices``
``gateway.*``           every gateway right (the fallbacks and ``gateway.query``)
``*.read``              ``<any table>.read`` and ``gateway.read`` — never a management right
``*.*``                 every table and gateway right — never a management right
======================  ===========================================================

Functions (``/rest/v1/rpc``, ``/gateway/rpc``, ``/rpc``) need ``<function>.execute``, granted
only by that right itself, ``rpc.*`` or ``*``: table rights and their wildcards (``*.*``,
``<name>.*``) never grant a function, so a key made for tables cannot run code.

A right never matches across the schema/table boundary: the part before the operation names
one whole relation, compared exactly and case-sensitively, like PostgreSQL's quoted
identifiers. A table literally named ``management`` collides with the fixed namespace: reading
it needs ``management.read`` itself (no wildcard or gateway fallback), which is the safe side of
the collision.
"""

from __future__ import annotations

from collections.abc import Iterable

TABLE_OPERATIONS = ("read", "write", "delete")
# Wildcards over tables must never grant these namespaces.
_FIXED_PREFIXES = ("management.",)


def relation_key(table: str, schema: str | None = None) -> str:
    """The name a right uses for a relation: bare for ``public``, else ``schema.table``."""
    if schema is None and "." in table:
        schema, _, table = table.partition(".")
    return table if schema in (None, "", "public") else f"{schema}.{table}"


def table_right(table: str, operation: str, schema: str | None = None) -> str:
    """The right needed to ``operation`` (read|write|delete) on ``table`` (in ``schema``, or
    ``schema.table``; bare names are ``public``)."""
    if operation not in TABLE_OPERATIONS:
        raise ValueError(f"unknown table operation {operation!r}")
    return f"{relation_key(table, schema)}.{operation}"


def _table_parts(right: str) -> tuple[str, str] | None:
    """``(relation, operation)`` of a table right (or a wildcard over one), else None."""
    if right.startswith(_FIXED_PREFIXES):
        return None
    relation, _, op = right.rpartition(".")
    if not relation or (op not in TABLE_OPERATIONS and op != "*"):
        return None
    if relation.count(".") == 1 and relation.startswith("public."):
        relation = relation[len("public.") :]  # public.users.read is users.read
    return relation, op


FUNCTION_OPERATION = "execute"


def function_right(function: str, schema: str | None = None) -> str:
    """The right needed to call ``function`` (bare for ``public``, else ``schema.fn``)."""
    return f"{relation_key(function, schema)}.{FUNCTION_OPERATION}"


def _candidates(required: str) -> list[str]:
    parts = _table_parts(required)
    if parts is not None and parts[1] != "*" and parts[0] != "gateway":
        relation, op = parts
        return [f"{relation}.{op}", f"gateway.{op}"]
    return [required]


def _matches(granted: str, required: str) -> bool:
    if granted == "*" or granted == required:
        return True
    if granted == "*.*":  # every table right and gateway right, like ``*`` minus management
        return not required.startswith(_FIXED_PREFIXES)
    need, have = _table_parts(required), _table_parts(granted)
    if need is not None and have is not None:
        # A table right: the relation is one whole name, never a prefix of a longer one.
        relation_ok = have[0] == "*" or have[0] == need[0]
        return relation_ok and have[1] in ("*", need[1])
    # Fixed rights (gateway.query, management.*): wildcards by namespace.
    if granted.endswith(".*"):
        return required.startswith(granted[:-1])
    if granted.startswith("*."):
        if required.startswith(_FIXED_PREFIXES):
            return False
        return required.endswith(granted[1:]) and "." in required
    return False


def has_right(granted: Iterable[str], required: str) -> bool:
    """True when any granted right (with wildcards) covers ``required``."""
    granted = list(granted)
    if required.endswith("." + FUNCTION_OPERATION):
        return any(g in ("*", "rpc.*", required) for g in granted)
    return any(_matches(g, c) for c in _candidates(required) for g in granted)
