"""``/rest/v1``: PostgREST's behaviour over Athena's clients, keys and pools.

Split along PostgREST's own stages (``ApiRequest → Plan → Query → Response``):

* ``request.py`` — headers, ``Range`` and ``Prefer`` read purely; what is applied is returned;
* ``plan.py`` — ``ReadPlan`` / ``MutatePlan``: paging, counts, rows, embeds resolved;
* ``athena.query.postgrest`` — the grammar, the relationship resolver and the pure SQL builders;
* ``service.py`` — rights, execution on the client's pool, change events;
* ``response.py`` — status, headers and body;
* ``errors.py`` — database errors and ``ApiError`` in either wire format.

Every PostgREST code the gateway raises is in ``athena.query.postgrest.errors.CATALOGUE``.
"""

from __future__ import annotations

from athena.services.rest.response import RestResult
from athena.services.rest.service import RestService, is_native

__all__ = ["RestResult", "RestService", "is_native"]
