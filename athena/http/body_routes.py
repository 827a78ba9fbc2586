"""The body-in, envelope-out routes, by HTTP method and path: the services they call.

``athena.http.hot_lane`` serves them straight from ASGI; the Quart views of
``athena.routes.gateway`` serve the requests it hands over (chunked or over-limit bodies), and
everything with ``ATHENA_HOT_LANE=false``. One table, so the two paths cannot serve different
routes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from athena.context import CallContext
from athena.services import gateway
from athena.services.gateway import GatewayResult
from athena.services.rest.rpc import gateway_rpc
from athena.services.transaction import transaction

if TYPE_CHECKING:
    from athena.runtime import Runtime

BodyService = Callable[["Runtime", CallContext, dict[str, Any]], Awaitable[GatewayResult]]
BODY_ROUTES: dict[tuple[str, str], BodyService] = {
    ("POST", "/gateway/fetch"): gateway.fetch,
    ("POST", "/gateway/data"): gateway.fetch,
    ("POST", "/gateway/update"): gateway.update,
    ("PUT", "/gateway/insert"): gateway.insert,
    ("DELETE", "/gateway/delete"): gateway.delete,
    ("POST", "/gateway/query"): gateway.query,
    ("POST", "/gateway/rpc"): gateway_rpc,
    ("POST", "/gateway/transaction"): transaction,
}
