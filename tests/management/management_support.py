"""Helpers of the management tests: a scratch client database, provisioned and registered through
the API, plus a key bound to it holding every management right."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
from support.pg import TestPostgres
from support.servers import AthenaServer

MANAGEMENT_RIGHTS = [
    "management.read",
    "management.tables.write",
    "management.tables.drop",
    "management.columns.drop",
    "management.indexes.write",
    "management.indexes.drop",
]


@dataclass
class Scratch:
    """A registered client whose database nobody else touches."""

    name: str
    db: str
    pg: TestPostgres
    server: AthenaServer
    key: str

    def conn(self) -> psycopg.Connection:
        return self.pg.connect(self.db, superuser=True)

    def client(self, key: str | None = None, **headers: str) -> httpx.Client:
        base = {"X-Athena-Client": self.name}
        if key is not None or self.key:
            base["apikey"] = key if key is not None else self.key
        base.update(headers)
        return self.server.client(**base)

    def columns(self, table: str) -> dict[str, tuple[str, str | None, str]]:
        """name → (data_type, column_default, is_nullable) from information_schema."""
        with self.conn() as conn:
            rows = conn.execute(
                """SELECT column_name, data_type, column_default, is_nullable
                     FROM information_schema.columns
                    WHERE table_schema = 'public' AND table_name = %s""",
                (table,),
            ).fetchall()
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    def audit(self) -> list[dict[str, Any]]:
        with self.conn() as conn:
            rows = conn.execute(
                "SELECT to_jsonb(a) FROM database_audit_log a ORDER BY id"
            ).fetchall()
        return [r[0] for r in rows]

    def schema_fingerprint(self) -> list[Any]:
        """Every user relation, column (type, default, nullability) and index, sorted."""
        with self.conn() as conn:
            cols = conn.execute(
                """SELECT table_schema, table_name, column_name, data_type,
                          coalesce(column_default, ''), is_nullable
                     FROM information_schema.columns
                    WHERE table_schema NOT IN ('pg_catalog', 'information_schema')
                    ORDER BY 1, 2, 3"""
            ).fetchall()
            rels = conn.execute(
                """SELECT n.nspname, c.relname, c.relkind::text FROM pg_class c
                     JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
                    ORDER BY 1, 2"""
            ).fetchall()
            audit = conn.execute("SELECT count(*) FROM database_audit_log").fetchone()
        return [cols, rels, audit]


def make_scratch(
    pg: TestPostgres,
    server: AthenaServer,
    admin_key: str,
    catalog_uri: str,
    *,
    provision: bool = True,
) -> Scratch:
    from support.keys import seed_key

    db = pg.create_database()
    name = f"mg_{secrets.token_hex(4)}"
    with server.client(apikey=admin_key) as admin:
        if provision:
            response = admin.post(
                "/admin/provision",
                json={"uri": pg.app_uri(db), "register": True, "register_name": name},
            )
        else:
            response = admin.post(
                "/admin/clients", json={"client_name": name, "pg_uri": pg.app_uri(db)}
            )
        assert response.status_code in (200, 201), response.text
    key = seed_key(catalog_uri, rights=MANAGEMENT_RIGHTS, client=name)
    return Scratch(name, db, pg, server, key)
