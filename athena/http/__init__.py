"""Request → response: the ASGI application hypercorn and the plain-HTTP lane serve.

- ``gate``: ``create_asgi`` — the hot lane in front of the Quart app, or Quart alone.
- ``app``: the Quart application (every route blueprint, the hooks, the error handlers).
- ``hot_lane``: the hot routes (``/gateway/*`` bodies, ``/rest/v1/{table}``, ``/ping``) served
  straight from ASGI, with the same checks and errors as Quart.
- ``calls``: ``CallGate`` — opening and closing a call (context, limits, rate limits, metrics,
  request log), shared by both paths so they cannot drift apart.

Sockets and processes live one layer down, in ``athena.serving``; what a route does lives in
``athena.routes`` and ``athena.services``.
"""
