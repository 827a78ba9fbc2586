"""The app registers the route modules it names; a route module it does not name is never served,
so a new file in ``athena/routes/`` that is missing from ``ROUTE_MODULES`` fails here."""

from __future__ import annotations

import pkgutil

from athena import routes
from athena.http.app import ROUTE_MODULES


def test_every_route_module_is_registered() -> None:
    on_disk = {m.name for m in pkgutil.iter_modules(routes.__path__) if not m.name.startswith("_")}
    named = [module.__name__.rsplit(".", 1)[1] for module in ROUTE_MODULES]
    assert sorted(named) == sorted(on_disk)
    assert len(named) == len(set(named))
    assert all(module.blueprint.name for module in ROUTE_MODULES)
