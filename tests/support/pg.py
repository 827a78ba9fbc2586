"""A throwaway PostgreSQL for the test session (the same embedded server the product uses)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from athena.db.catalog import ensure_login_role
from athena.db.embedded import EmbeddedPostgres

APP_ROLE = "athena_app"


@dataclass
class TestPostgres:
    __test__ = False  # a helper, not a test class, wherever it is imported

    server: EmbeddedPostgres
    app_password: str

    @classmethod
    def start(cls, data_dir: Path) -> TestPostgres:
        # Every module's gateways live until the session ends, each holding ~10 idle
        # connections (catalog, events, raw SQL, client pools): 300 slots ran out.
        server = EmbeddedPostgres(data_dir, max_connections=1500)
        server.lock()
        server.start()
        password = secrets.token_hex(16)
        with psycopg.connect(server.uri(), autocommit=True) as conn:
            ensure_login_role(conn, APP_ROLE, password)
        return cls(server, password)

    def stop(self) -> None:
        self.server.stop()
        self.server.unlock()

    @property
    def port(self) -> int:
        return self.server.port

    def superuser_uri(self, database: str = "postgres") -> str:
        return self.server.uri(database)

    def app_uri(self, database: str) -> str:
        return self.server.uri(database, user=APP_ROLE, password=self.app_password)

    def create_database(self, name: str | None = None, *, owner: str = APP_ROLE) -> str:
        """A fresh database owned by the app role; returns its name."""
        name = name or f"t_{secrets.token_hex(4)}"
        with psycopg.connect(self.superuser_uri(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(owner)
                )
            )
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.superuser_uri(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def connect(self, database: str, *, superuser: bool = False) -> psycopg.Connection:
        uri = self.superuser_uri(database) if superuser else self.app_uri(database)
        return psycopg.connect(uri, autocommit=True)
