"""A scratch client database per test module, provisioned and registered through the API on the
shared gateway, plus a key bound to it holding every management right."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from management_support import Scratch, make_scratch
from support.pg import TestPostgres
from support.servers import AthenaServer


@pytest.fixture(scope="module")
def scratch_factory(
    pg: TestPostgres, athena: AthenaServer, admin_key: str, catalog_uri: str
) -> Iterator[Callable[..., Scratch]]:
    made: list[Scratch] = []

    def make(**kwargs: Any) -> Scratch:
        s = make_scratch(pg, athena, admin_key, catalog_uri, **kwargs)
        made.append(s)
        return s

    yield make
    with athena.client(apikey=admin_key) as admin:
        for s in made:
            admin.delete(f"/admin/clients/{s.name}")
    for s in made:
        pg.drop_database(s.db)


@pytest.fixture(scope="module")
def scratch(scratch_factory: Callable[..., Scratch]) -> Scratch:
    return scratch_factory()
