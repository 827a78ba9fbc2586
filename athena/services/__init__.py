"""What a call does, shared by HTTP (``athena.routes``, ``athena.http``) and the WebSocket gateway
(``athena.ws``), which stay thin.

- ``gateway/``: the data gateway; its ``__init__`` chooses the backend once per call —
  ``postgres`` (and ``raw_sql``, the client's raw pool), ``custom_supabase``, ``scylla``.
- ``rest/``: ``/rest/v1`` along PostgREST's stages; ``transaction``: ``/gateway/transaction``.
- ``client_catalog``: which clients exist (``desired_clients``, the one loader, at start-up and
  on every reload) and ``/admin/clients``; ``clients`` resolves the client a call names;
  ``direct_uri`` the ``x-pg-uri`` pools.
- ``api_keys``, ``ratelimit``, ``outbound`` (the one gate for caller-named URLs), ``events`` (the
  event bus), ``management``, ``schema_info``, ``provisioning``, ``statistics``,
  ``request_log_query``, ``supabase_ssl``, ``release``.

What a gateway process holds of these is a typed attribute of ``athena.runtime.Runtime``,
started there in one listed order; a module that adds supervised tasks or metrics at start-up
has an ``attach(rt)`` the runtime calls.
"""
