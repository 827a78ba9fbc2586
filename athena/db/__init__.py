"""PostgreSQL, and nothing above it.

``database`` the handle on one database (pool, deadline, event-loop and thread calls);
``clients`` the registry of clients (name → entry with its database); ``uris`` URIs as they may
be shown; ``libpq`` the gateway's fast path; ``errors`` the one mapping of database errors;
``introspection`` the schema cache; ``catalog`` + ``migrations`` the catalog; ``embedded`` the
bundled server.
"""
