"""Seed API keys straight into the catalog (test set-up for areas other than the admin API)."""

from __future__ import annotations

from collections.abc import Iterable

import psycopg

from athena.auth.keys import generate_key


def seed_key(
    catalog_uri: str,
    *,
    name: str = "test key",
    rights: Iterable[str] = ("*",),
    client: str | None = None,
    active: bool = True,
    expires_at: str | None = None,
) -> str:
    """Insert a key with ``rights`` (created if missing); return the full key text."""
    key = generate_key()
    with psycopg.connect(catalog_uri, autocommit=True) as conn, conn.transaction():
        key_id = conn.execute(
            """INSERT INTO athena.api_keys
                   (public_id, name, client_name, key_salt, key_hash, is_active, expires_at)
               VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id""",
            (key.public_id, name, client, key.salt, key.key_hash, active, expires_at),
        ).fetchone()[0]
        for right in rights:
            conn.execute(
                "INSERT INTO athena.api_key_rights (name) VALUES (%s) ON CONFLICT (name) DO NOTHING",
                (right,),
            )
            conn.execute(
                """INSERT INTO athena.api_key_right_grants (api_key_id, right_id)
                   SELECT %s, id FROM athena.api_key_rights WHERE name = %s""",
                (key_id, right),
            )
    return key.full
