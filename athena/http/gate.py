"""The gate: what hypercorn (and the plain-HTTP lane) serve — the hot lane in front of Quart.

A request on a hot route (``athena.http.hot_lane``) is answered there; everything else, and
everything with ``ATHENA_HOT_LANE=false``, goes to the Quart application (``athena.http.app``).
"""

from __future__ import annotations

from typing import Any

from quart import Quart

from athena.http.app import create_app
from athena.http.hot_lane import HotLane
from athena.http.prefixes import ServicePrefixes
from athena.observability import tracing
from athena.runtime import Runtime


def create_asgi(runtime: Runtime) -> HotLane | ServicePrefixes:
    """What hypercorn serves: the hot lane in front of the Quart application (or Quart alone
    with ``ATHENA_HOT_LANE=false``); SDK 5's ``/db/…`` and ``/storage/…`` prefixes are mapped on
    both paths (the hot lane in its route match, ``ServicePrefixes`` in front of Quart)."""
    app: Quart = create_app(runtime)
    served: Any = app
    if tracing.TRACER is not None:  # ends each call's spans once Quart has sent its response
        served = tracing.Middleware(app)
    quart = ServicePrefixes(served)
    if not runtime.settings.hot_lane:
        return quart
    return HotLane(quart, runtime, app.call_gate)  # type: ignore[attr-defined]
