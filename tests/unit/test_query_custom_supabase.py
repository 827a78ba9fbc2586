"""Gateway conditions → PostgREST query parameters (the custom_supabase translation, pure)."""

from __future__ import annotations

import pytest

from athena.errors import ApiError
from athena.query.conditions import parse_conditions
from athena.services.gateway.custom_supabase import filter_params


def test_conditions_become_postgrest_filters() -> None:
    params = filter_params(
        parse_conditions(
            [
                {"eq_column": "state", "eq_value": "open"},
                {"column": "a", "operator": "in", "value": "(x,y)"},
                {"column": "b", "operator": "in", "value": ["p,q", "r"]},
                {"operator": "or", "value": 'a.eq.1,b.not.in.(1,2),c.eq."x,y"'},
                {"column": "c", "operator": "neq", "value": None},
                {"column": "t", "operator": "contains", "value": ["x"]},
                {"column": "m", "operator": "containedBy", "value": {"k": 1}},
                {"operator": "not", "value": "d.is.true"},
                {"column": "n", "operator": "ilike", "value": "%ab%"},
            ]
        )
    )
    assert params == [
        ("state", "eq.open"),
        ("a", "in.(x,y)"),
        ("b", 'in.("p,q",r)'),
        ("or", '(a.eq.1,b.not.in.(1,2),c.eq."x,y")'),
        ("c", "not.is.null"),
        ("t", 'cs.{"x"}'),
        ("m", 'cd.{"k":1}'),
        ("d", "not.is.true"),
        ("n", "ilike.%ab%"),
    ]


def test_names_must_be_plain_identifiers() -> None:
    with pytest.raises(ApiError) as caught:
        filter_params(parse_conditions([{"eq_column": "a&select=secret", "eq_value": 1}]))
    assert caught.value.code == "invalid_identifier"
