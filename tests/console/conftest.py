"""Real parts for the console tests: a gateway with its own catalog, a data database with an
``orders`` table (and a row whose text is an XSS probe), S3 on loopback (moto's standalone
server) for backups, and one headless Chromium (Debian's ``chromium``) driven by Playwright.

Without /usr/bin/chromium the tests FAIL with the install command: a console nobody ran in a
browser is not a tested console.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import psycopg
import pytest
from moto.server import ThreadedMotoServer
from support.console import XSS
from support.keys import seed_key
from support.pg import TestPostgres
from support.servers import AthenaServer, server_env

from athena.db.catalog import migrate
from athena.db.embedded import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
BUCKET = "athena-console-backups"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "console-test-access",
    "AWS_SECRET_ACCESS_KEY": "console-test-secret-" + secrets.token_hex(8),
    "AWS_DEFAULT_REGION": "us-east-1",
}

DATA_SQL = f"""
CREATE TABLE orders (
    id     serial PRIMARY KEY,
    state  text NOT NULL,
    amount numeric(10, 2) NOT NULL,
    note   text,
    tags   text[],
    meta   jsonb
);
INSERT INTO orders (state, amount, note, tags, meta)
SELECT CASE WHEN g % 3 = 0 THEN 'paid' ELSE 'open' END, g * 1.5, 'order ' || g,
       ARRAY['t' || (g % 4)], jsonb_build_object('n', g)
  FROM generate_series(1, 120) g;
INSERT INTO orders (state, amount, note) VALUES ('xss', 1, '{XSS.replace("'", "''")}');
"""


def require_chromium() -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"the console tests need Chromium at {CHROMIUM}: install it with "
            "`apt-get update && apt-get install -y chromium` (.ci/run does this when run as root)",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def console_env(
    pg: TestPostgres, admin_key: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    require_chromium()
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
    ).create_bucket(Bucket=BUCKET)
    data = pg.create_database()
    with pg.connect(data) as conn:
        conn.execute(DATA_SQL)  # type: ignore[arg-type]
    spare = pg.create_database()  # empty: the Clients screen adds it, Backups restores into it
    catalog = pg.create_database(owner="postgres")
    with psycopg.connect(pg.superuser_uri(catalog), autocommit=True) as conn:
        migrate(conn)
    # The Cluster screen's mirrors: this gateway itself (online, its version) and a port
    # nobody listens on (offline), probed every second.
    port, dead = free_port(), free_port()
    env = server_env(
        catalog_uri=pg.superuser_uri(catalog),
        admin_key=admin_key,
        clients={"shop": {"pg_uri": pg.app_uri(data), "description": "console test shop"}},
        backup_s3_bucket=BUCKET,
        backup_s3_prefix="console",
        backup_s3_endpoint=endpoint,
        statistics_rollup_seconds="1",
        cluster_mirrors=f"http://127.0.0.1:{port},http://127.0.0.1:{dead}",
        cluster_probe_timeout_s="1",
    )
    env.update(AWS_ENV)
    server = AthenaServer(tmp_path_factory.mktemp("athena-console"), env, port=port).start()
    with server.client(apikey=admin_key) as admin:
        # the management API needs the audit log table in the client database
        assert admin.post("/admin/provision", json={"client_name": "shop"}).status_code == 200
    yield {
        "server": server,
        "pg": pg,
        "data_db": data,
        "spare_db": spare,
        "dead_mirror": f"http://127.0.0.1:{dead}",
        "catalog_uri": pg.superuser_uri(catalog),
        "admin_key": admin_key,
    }
    server.stop()
    moto.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    require_chromium()
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="athena-console-chromium-")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1366, "height": 860}, accept_downloads=True,
        )  # fmt: skip
        yield context
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def seeded(console_env: dict[str, Any]) -> Any:
    def make(**kwargs: Any) -> str:
        return seed_key(console_env["catalog_uri"], **kwargs)

    return make


@pytest.fixture(scope="session")
def admin_api(console_env: dict[str, Any]) -> Iterator[httpx.Client]:
    with console_env["server"].client(
        apikey=console_env["admin_key"], **{"X-Athena-Client": "shop"}
    ) as client:
        yield client
