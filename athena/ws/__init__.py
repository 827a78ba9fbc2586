"""The WebSocket gateway ``/wss/gateway``.

* ``protocol``   — the wire format: parse client messages, build replies (pure).
* ``actions``    — what each action does: the HTTP gateway's services, subscribe/unsubscribe.
* ``connection`` — one socket: read loop, bounded concurrency, outbound queue, close codes.
* ``relay``      — events between gateway instances over PostgreSQL LISTEN/NOTIFY.

The route itself (``athena.routes.wss``) only builds a ``Connection`` and serves it.
"""
