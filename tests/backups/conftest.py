"""Real parts for backup tests: an S3 API server (moto's standalone server) on loopback, a
gateway configured to use it, and small real databases.

The gateway gets its own catalog database so that a frozen client can be seeded before it
starts, and the AWS credentials through its environment (``server_env`` would prefix them
with ``ATHENA_``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import psycopg
import pytest
from backup_support import (
    AWS_ENV,
    BROKEN_SQL,
    BUCKET,
    PREFIX,
    SOURCE_SQL,
    BackupEnv,
)
from moto.server import ThreadedMotoServer
from support.pg import TestPostgres
from support.servers import AthenaServer, server_env

from athena.db.catalog import migrate
from athena.db.embedded import free_port


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


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    return tmp_path
