"""Real parts for backup tests: an S3 API server (moto's standalone server) on loopback, a
gateway configured to use it, and small real databases.

The gateway gets its own catalog database so that a frozen client can be seeded before it
starts, and the AWS credentials through its environment (``server_env`` would prefix them
with ``ATHENA_``).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import psycopg
import pytest
from moto.server import ThreadedMotoServer
from support.pg import TestPostgres
from support.servers import AthenaServer, server_env

from athena.db.catalog import migrate
from athena.db.embedded import free_port

BUCKET = "athena-test-backups"
PREFIX = "backups-test"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "athena-test-access",
    "AWS_SECRET_ACCESS_KEY": "athena-test-secret-" + secrets.token_hex(8),
    "AWS_DEFAULT_REGION": "us-east-1",
}

SOURCE_SQL = """
CREATE TABLE customers (
    id         serial PRIMARY KEY,
    name       text NOT NULL,
    email      text UNIQUE,
    created_at timestamptz NOT NULL DEFAULT '2026-01-01 00:00:00+00',
    meta       jsonb
);
CREATE TABLE orders (
    id          bigserial PRIMARY KEY,
    customer_id int NOT NULL REFERENCES customers (id),
    amount      numeric(12, 2) NOT NULL,
    note        text,
    tags        text[]
);
CREATE INDEX orders_customer_idx ON orders (customer_id);
CREATE VIEW big_orders AS SELECT * FROM orders WHERE amount > 500;
CREATE TABLE "Odd Name" ("Mixed Case" text, emoji text);
CREATE TABLE empty_table (x int);
INSERT INTO customers (name, email, meta)
     SELECT 'customer ' || g, 'c' || g || '@example.com', jsonb_build_object('n', g, 'even', g % 2 = 0)
       FROM generate_series(1, 1500) g;
INSERT INTO orders (customer_id, amount, note, tags)
     SELECT 1 + g % 1500, (g * 7 % 1000)::numeric + 0.25, md5(g::text),
            ARRAY['t' || g % 5, 'u' || g % 3]
       FROM generate_series(1, 12000) g;
INSERT INTO "Odd Name" VALUES ('Grüße, 世界', '🐘'), ('quote '' and "double"', NULL);
"""

# A table whose data pg_dump cannot read (forced row-level security makes its COPY fail)
# after ~20 MB of incompressible data has been dumped: the dump fails midway, after at least
# one multipart part went up.
BROKEN_SQL = """
CREATE TABLE a_bulk (id int, payload text);
INSERT INTO a_bulk SELECT g, md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text)
  FROM generate_series(1, 220000) g;
CREATE TABLE z_guarded (id int);
INSERT INTO z_guarded VALUES (1);
ALTER TABLE z_guarded ENABLE ROW LEVEL SECURITY;
ALTER TABLE z_guarded FORCE ROW LEVEL SECURITY;
CREATE POLICY only_none ON z_guarded USING (false);
"""


@dataclass
class BackupEnv:
    """The gateway under test and what the tests need to check its work."""

    server: AthenaServer
    pg: TestPostgres
    s3: Any  # a boto3 S3 client talking to the same server
    admin_key: str
    databases: dict[str, str]  # client name → database name
    catalog_db: str

    def client(self, **headers: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.server.url,
            headers={"X-Athena-Admin-Key": self.admin_key, **headers},
            timeout=120,
        )

    def keys(self, prefix: str = PREFIX + "/") -> list[str]:
        listed = self.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
        return [o["Key"] for o in listed.get("Contents", [])]

    def uploads(self) -> list[dict[str, Any]]:
        return self.s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="session")
def s3_client(s3_endpoint: str) -> Any:
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
    )
    client.create_bucket(Bucket=BUCKET)
    return client


def _run_sql(pg: TestPostgres, db: str, text: str, *, superuser: bool = False) -> None:
    with pg.connect(db, superuser=superuser) as conn:
        conn.execute(text)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def backup_env(
    pg: TestPostgres,
    admin_key: str,
    s3_endpoint: str,
    s3_client: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[BackupEnv]:
    databases = {
        "source": pg.create_database(),
        "target": pg.create_database(),
        "target2": pg.create_database(),
        "broken": pg.create_database(),
        # owned by postgres: the app role may not create tables there (PostgreSQL >= 15)
        "locked": pg.create_database(owner="postgres"),
    }
    _run_sql(pg, databases["source"], SOURCE_SQL)
    _run_sql(pg, databases["broken"], BROKEN_SQL)
    catalog_db = pg.create_database(owner="postgres")
    with psycopg.connect(pg.superuser_uri(catalog_db), autocommit=True) as conn:
        migrate(conn)
        # A frozen client, known to the gateway from the catalog at start-up.
        conn.execute(
            """INSERT INTO athena.athena_clients (client_name, pg_uri, source, is_frozen)
               VALUES ('frozen', %s, 'database', true)""",
            (pg.app_uri(databases["target2"]),),
        )
    clients = {name: {"pg_uri": pg.app_uri(db)} for name, db in databases.items()}
    clients["catalog"] = {"pg_uri": pg.superuser_uri(catalog_db)}
    env = server_env(
        catalog_uri=pg.superuser_uri(catalog_db),
        admin_key=admin_key,
        clients=clients,
        backup_s3_bucket=BUCKET,
        backup_s3_prefix=PREFIX,
        backup_s3_endpoint=s3_endpoint,
    )
    env.update(AWS_ENV)
    server = AthenaServer(tmp_path_factory.mktemp("athena-backups"), env).start()
    yield BackupEnv(server, pg, s3_client, admin_key, databases, catalog_db)
    server.stop()


@pytest.fixture
def api(backup_env: BackupEnv) -> Iterator[httpx.Client]:
    with backup_env.client() as client:
        yield client


def table_fingerprints(pg: TestPostgres, db: str) -> dict[str, tuple[int, str]]:
    """Every public table → (row count, md5 of its rows in a canonical order)."""
    with pg.connect(db, superuser=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        ]
        out = {}
        for table in tables:
            row = conn.execute(
                psycopg.sql.SQL(
                    "SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))"
                    " FROM {} t"
                ).format(psycopg.sql.Identifier(table))
            ).fetchone()
            assert row is not None
            out[table] = (row[0], row[1])
        return out


def sequence_values(pg: TestPostgres, db: str) -> dict[str, int | None]:
    with pg.connect(db, superuser=True) as conn:
        return {
            r[0]: r[1]
            for r in conn.execute(
                "SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = 'public'"
            )
        }


def parse_sse(text: str) -> list[tuple[str, str]]:
    """(event, data) pairs of a Server-Sent Events body; comment lines skipped."""
    events = []
    for block in text.split("\n\n"):
        name, data = "message", []
        for line in block.splitlines():
            if line.startswith(":"):
                continue
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        if data:
            events.append((name, "\n".join(data)))
    return events


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    return tmp_path
