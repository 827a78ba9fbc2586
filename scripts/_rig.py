"""A gateway on loopback with its own PostgreSQL servers, for the operational scripts."""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.keys import seed_key  # noqa: E402
from support.pg import TestPostgres  # noqa: E402
from support.servers import AthenaServer  # noqa: E402

TABLE = "ops_items"


@dataclass
class Rig:
    server: AthenaServer
    client_pg: TestPostgres
    catalog_pg: TestPostgres
    db: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {
            "apikey": self.key,
            "X-Athena-Client": "ops",
            "X-User-Id": "u1",
            "X-Company-Id": "c1",
            "X-Organization-Id": "o1",
        }

    def close(self) -> None:
        self.server.stop()
        self.client_pg.stop()
        self.catalog_pg.stop()


def start_rig(**settings: str) -> Rig:
    base = Path(tempfile.mkdtemp(prefix="athena-ops-"))
    client_pg = TestPostgres.start(base / "client-pg")
    catalog_pg = TestPostgres.start(base / "catalog-pg")
    db = client_pg.create_database("ops")
    with client_pg.connect(db) as conn:
        conn.execute(f"CREATE TABLE {TABLE} (id text PRIMARY KEY, note text)")
    env = {
        "ATHENA_CATALOG_URI": catalog_pg.superuser_uri("postgres"),
        "ATHENA_KEY_12": "ops-admin-key",
        "ATHENA_CLIENTS": json.dumps({"ops": {"pg_uri": client_pg.app_uri(db)}}),
        **{f"ATHENA_{k.upper()}": v for k, v in settings.items()},
    }
    server = AthenaServer(base / "athena", env).start()
    key = seed_key(catalog_pg.superuser_uri("postgres"), rights=["*"], client="ops")
    return Rig(server, client_pg, catalog_pg, db, key)
