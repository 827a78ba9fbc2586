"""Shared pieces of the backup tests: bucket, seed SQL, the environment object, and checks on
databases and Server-Sent Events. Kept out of conftest.py so test modules import them by name."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
from support.pg import TestPostgres
from support.servers import AthenaServer

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
