"""Request → response: the ASGI application hypercorn and the plain-HTTP lane serve.

- ``gate``: ``Gate`` — the hot lane in front of the Quart app (or Quart alone), behind the one
  rule about unread request bodies and double framing (Content-Length + Transfer-Encoding).
- ``app``: the Quart application (every route blueprint, the hooks, the error handlers).
- ``hot_lane``: the hot routes (``/gateway/*`` bodies, ``/rest/v1/{table}``, ``/ping``) served
  straight from ASGI, with the same checks and errors as Quart.
- ``calls``: ``CallGate`` — opening and closing a call (context, limits, rate limits, metrics,
  request log), shared by both paths so they cannot drift apart.
- ``render``: every body the gateway answers with — success envelopes, the error envelope, the
  one 500 ``internal_error``, HTTP-level errors, the WebSocket replies, ``/ping``.
- ``body_routes``: the body-in, envelope-out routes and the services they call (both paths).
- ``bodies``: request bodies parsed as JSON, with their 400s (both paths).
- ``rest_answer``: a ``/rest/v1`` answer in the caller's format, PostgREST-native or envelope
  (both paths).
- ``prefixes``: SDK 5's ``/db/…`` and ``/storage/…`` service prefixes.

Sockets and processes live one layer down, in ``athena.serving``; what a route does lives in
``athena.routes`` and ``athena.services``. Nothing here imports ``athena.routes`` except ``app``,
which registers its blueprints: what both paths share lives here or in ``athena.services``.
"""
