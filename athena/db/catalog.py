"""The catalog database: versioned migrations, built-in seeds, and the embedded default layout.

Everything here is synchronous and runs before the event loop starts (or in a worker thread).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from importlib import resources

import psycopg
from psycopg import sql

# Any constant works: it only has to be the same in every gateway sharing a catalog.
MIGRATION_LOCK_ID = 0x41_7468_656E_61  # "Athena"

# Rights that exist from the first start (CONTRACT.md), plus the wildcard forms so that a key
# holding "everything" can be created without defining rights first.
BUILTIN_RIGHTS: dict[str, str] = {
    "gateway.read": "Read any table through the gateway (fallback for <table>.read)",
    "gateway.write": "Insert and update any table (fallback for <table>.write)",
    "gateway.delete": "Delete from any table (fallback for <table>.delete)",
    "gateway.query": "Run raw SQL through /gateway/query and /query/sql",
    "gateway.direct_uri": "Run a call against the database of its x-pg-uri header "
    "(with ATHENA_ALLOW_DIRECT_URI=true)",
    "gateway.*": "Every gateway.* right",
    "management.read": "Read management capabilities",
    "management.tables.write": "Create and edit tables",
    "management.tables.drop": "Drop tables",
    "management.columns.drop": "Drop columns",
    "management.indexes.write": "Create indexes",
    "management.indexes.drop": "Drop indexes",
    "*.read": "Read every table",
    "*.write": "Write every table",
    "*.delete": "Delete from every table",
    "*": "Every right",
}

CATALOG_DATABASE = "athena_catalog"
DEFAULT_CLIENT_DATABASE = "athena"


def _migrations() -> list[tuple[int, str, str]]:
    found = []
    for entry in resources.files("athena.db").joinpath("migrations").iterdir():
        match = re.fullmatch(r"(\d+)_(\w+)\.sql", entry.name)
        if match:
            found.append((int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    return sorted(found)


def migrate(conn: psycopg.Connection, *, enforce_api_keys_default: bool = True) -> list[int]:
    """Apply pending migrations in one transaction under an advisory lock; return those applied.

    Two gateways starting at once serialize on the lock; the second sees the first's rows and
    applies nothing.
    """
    applied: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_ID,))
        conn.execute(
            """CREATE TABLE IF NOT EXISTS public.athena_schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {row[0] for row in conn.execute("SELECT version FROM athena_schema_migrations")}
        for version, name, text in _migrations():
            if version in done:
                continue
            conn.execute(text)  # type: ignore[arg-type]  # trusted SQL shipped in the package
            conn.execute(
                "INSERT INTO athena_schema_migrations (version, name) VALUES (%s, %s)",
                (version, name),
            )
            applied.append(version)
        seed(conn, enforce_api_keys_default=enforce_api_keys_default)
    return applied


def seed(conn: psycopg.Connection, *, enforce_api_keys_default: bool) -> None:
    """Built-in rights and the global enforcement row; never overwrites an operator's edits."""
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO athena.api_key_rights (name, description) VALUES (%s, %s)"
            " ON CONFLICT (name) DO NOTHING",
            list(BUILTIN_RIGHTS.items()),
        )
    conn.execute(
        "INSERT INTO athena.api_key_config (singleton, enforce_api_keys) VALUES (true, %s)"
        " ON CONFLICT (singleton) DO NOTHING",
        (enforce_api_keys_default,),
    )


@dataclass(frozen=True)
class EmbeddedLayout:
    catalog_uri: str
    client_uri: str


def prepare_embedded(
    superuser_uri_for: callable,  # type: ignore[valid-type]
    app_uri_for: callable,  # type: ignore[valid-type]
    password_file: str,
    app_role: str | None,
) -> EmbeddedLayout:
    """Create the catalog database, the data database ``athena`` and its non-superuser role.

    ``superuser_uri_for(db)`` and ``app_uri_for(db, role, password)`` build URIs for the server.
    The app role's password is generated once and kept in ``password_file``.
    """
    from pathlib import Path

    with psycopg.connect(superuser_uri_for("postgres"), autocommit=True) as conn:
        existing = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
        if CATALOG_DATABASE not in existing:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(CATALOG_DATABASE)))
        # Only the superuser reaches the catalog; the data role cannot even connect to it.
        conn.execute(
            sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(
                sql.Identifier(CATALOG_DATABASE)
            )
        )
        client_uri = superuser_uri_for(DEFAULT_CLIENT_DATABASE)
        if app_role:
            pw_path = Path(password_file)
            if pw_path.exists():
                password = pw_path.read_text().strip()
            else:
                password = secrets.token_hex(24)
                pw_path.write_text(password)
                pw_path.chmod(0o600)
            ensure_login_role(conn, app_role, password)
            client_uri = app_uri_for(DEFAULT_CLIENT_DATABASE, app_role, password)
        if DEFAULT_CLIENT_DATABASE not in existing:
            owner = sql.Identifier(app_role) if app_role else sql.Identifier("postgres")
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(DEFAULT_CLIENT_DATABASE), owner
                )
            )
    return EmbeddedLayout(catalog_uri=superuser_uri_for(CATALOG_DATABASE), client_uri=client_uri)


def ensure_login_role(conn: psycopg.Connection, role: str, password: str) -> None:
    """A LOGIN role with no superuser, createdb, createrole or replication powers."""
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    verb = "ALTER" if exists else "CREATE"
    conn.execute(
        sql.SQL(
            "{} ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD {}"
        ).format(sql.SQL(verb), sql.Identifier(role), sql.Literal(password))
    )
