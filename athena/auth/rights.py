"""Which granted rights satisfy which required right (pure).

Required rights look like ``users.read`` (table rights), ``gateway.query`` or
``management.tables.write`` (fixed rights). A table right is also satisfied by the matching
``gateway.read|write|delete`` fallback. Granted rights may use wildcards:

=============  ====================================================================
``*``          everything
``users.*``    every right on table ``users`` (and ``gateway.*``: every gateway right)
``*.read``     ``<any table>.read`` and ``gateway.read`` — never a management right
``*.*``        every table and gateway right — never a management right
=============  ====================================================================

Matching is exact and case-sensitive, like PostgreSQL's quoted identifiers. A table literally
named ``management`` collides with the fixed namespace: reading it needs ``management.read``
itself (no wildcard or gateway fallback), which is the safe side of the collision.
"""

from __future__ import annotations

from collections.abc import Iterable

TABLE_OPERATIONS = ("read", "write", "delete")
# Wildcards over tables must never grant these namespaces.
_FIXED_PREFIXES = ("management.",)


def table_right(table: str, operation: str) -> str:
    """The right needed to ``operation`` (read|write|delete) on ``table``."""
    if operation not in TABLE_OPERATIONS:
        raise ValueError(f"unknown table operation {operation!r}")
    return f"{table}.{operation}"


def _candidates(required: str) -> list[str]:
    head, _, op = required.rpartition(".")
    if op in TABLE_OPERATIONS and head and not required.startswith(_FIXED_PREFIXES):
        return [required, f"gateway.{op}"]
    return [required]


def _matches(granted: str, required: str) -> bool:
    if granted == "*" or granted == required:
        return True
    if granted == "*.*":  # every table right and gateway right, like ``*`` minus management
        return not required.startswith(_FIXED_PREFIXES)
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
    return any(_matches(g, c) for c in _candidates(required) for g in granted)
