"""Which granted rights satisfy which required right: wildcards, fallbacks, fixed rights."""

from __future__ import annotations

import pytest

from athena.auth.guard import MASTER, Principal
from athena.auth.rights import has_right, table_right

CASES = [
    # (granted, required, allowed)
    (["users.read"], "users.read", True),
    (["users.read"], "users.write", False),
    (["users.read"], "orders.read", False),
    (["users.*"], "users.read", True),
    (["users.*"], "users.write", True),
    (["users.*"], "users.delete", True),
    (["users.*"], "users_archive.read", False),  # the dot is part of the prefix
    (["users.*"], "orders.read", False),
    (["*.read"], "users.read", True),
    (["*.read"], "orders.read", True),
    (["*.read"], "users.write", False),
    (["*.read"], "management.read", False),  # table wildcards never reach management
    (["*.write"], "management.tables.write", False),
    (["*.write"], "users.write", True),
    (["*.delete"], "users.delete", True),
    (["*.*"], "users.delete", True),
    (["*.*"], "gateway.query", True),
    (["*.*"], "management.read", False),
    (["gateway.read"], "users.read", True),  # fallback for any table
    (["gateway.read"], "users.write", False),
    (["gateway.write"], "users.write", True),
    (["gateway.delete"], "users.delete", True),
    (["gateway.read"], "gateway.query", False),
    (["gateway.*"], "users.read", True),
    (["gateway.*"], "users.delete", True),
    (["gateway.*"], "gateway.query", True),
    (["gateway.*"], "management.read", False),
    (["gateway.query"], "gateway.query", True),
    (["gateway.query"], "users.read", False),
    (["management.read"], "management.read", True),
    (["management.read"], "management.tables.write", False),
    (["management.*"], "management.tables.drop", True),
    (["management.*"], "management.indexes.write", True),
    (["management.tables.write"], "management.tables.drop", False),
    (["management.tables.write"], "users.write", False),
    (["*"], "users.read", True),
    (["*"], "management.columns.drop", True),
    (["*"], "gateway.query", True),
    ([], "users.read", False),
    (["Users.read"], "users.read", False),  # exact, case-sensitive like quoted identifiers
    (["users.read", "orders.write"], "orders.write", True),
    # A right names one relation: schema-qualified rights name schema AND table.
    (["customers.*"], "customers.ssn.read", False),  # not the schema named customers
    (["customers.read"], "customers.ssn.read", False),
    (["customers.*"], "customers.read", True),
    (["customers.ssn.*"], "customers.ssn.read", True),
    (["customers.ssn.read"], "customers.ssn.read", True),
    (["customers.ssn.read"], "customers.ssn.write", False),
    (["customers.ssn.read"], "ssn.read", False),  # public.ssn is another table
    (["ssn.read"], "customers.ssn.read", False),
    (["public.users.read"], "users.read", True),  # bare names are public
    (["users.read"], "public.users.read", True),
    (["public.*"], "public.users.read", False),  # a table named public, not the schema
    (["*.read"], "billing.invoices.read", True),  # "any table" includes other schemas
    (["gateway.read"], "billing.invoices.read", True),
    (["gateway.*"], "billing.invoices.delete", True),
    (["*.*"], "billing.invoices.delete", True),
]


@pytest.mark.parametrize(("granted", "required", "allowed"), CASES)
def test_has_right(granted: list[str], required: str, allowed: bool) -> None:
    assert has_right(granted, required) is allowed


def test_table_right_names_the_operation() -> None:
    assert table_right("users", "read") == "users.read"
    assert table_right("users", "delete") == "users.delete"
    assert table_right("public.users", "read") == "users.read"
    assert table_right("users", "read", schema="public") == "users.read"
    assert table_right("ssn", "read", schema="customers") == "customers.ssn.read"
    assert table_right("customers.ssn", "read") == "customers.ssn.read"
    with pytest.raises(ValueError):
        table_right("users", "drop")


def test_principal_can() -> None:
    assert MASTER.can("management.tables.drop")
    reader = Principal(key_id="k", public_id="p", rights=("*.read",))
    assert reader.can("users.read") and not reader.can("users.write")
    assert not Principal(anonymous=True).can("users.read")
