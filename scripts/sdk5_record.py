"""Record the SDK 5 wire log that tests/sdk/test_sdk5_replay.py replays.

The npm registry has only 0.2.1 of ``@xylex-group/athena``; 5.x is built from its source
(github xylex-group/athena-js; ``npm install --legacy-peer-deps``, then ``npx tsup --no-dts``;
at its current HEAD ``src/generator/database-authority.ts`` is missing and must be stubbed —
the HTTP client does not use it). CI cannot fetch that source, so the suite replays what this
script recorded instead. Run it again after a wire change, and review the diff of the log:

    .venv/bin/python scripts/sdk5_record.py /path/to/athena-js/dist

It starts a throwaway PostgreSQL and a gateway with default settings (as tests do), creates
``tests/sdk/sdk5_scenario.py``'s data, drives ``scripts/sdk5_record.mjs`` and writes
``tests/sdk/sdk5_wire.json``. Keys in the log are placeholders, never the real ones.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from sdk.sdk5_scenario import RIGHTS, SCHEMA_SQL  # noqa: E402
from support.keys import seed_key  # noqa: E402
from support.pg import TestPostgres  # noqa: E402
from support.servers import AthenaServer, server_env  # noqa: E402


def main(dist: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pg = TestPostgres.start(Path(tmp) / "pg")
        try:
            catalog = pg.create_database("athena_catalog", owner="postgres")
            data = pg.create_database("athena_data")
            with pg.connect(data) as conn:
                conn.execute(SCHEMA_SQL)
            admin_key = "sdk5_admin_" + secrets.token_hex(16)
            env = server_env(
                catalog_uri=pg.superuser_uri(catalog),
                admin_key=admin_key,
                clients={"athena": {"pg_uri": pg.app_uri(data)}},
            )
            server = AthenaServer(Path(tmp) / "athena", env).start()
            try:
                key = seed_key(pg.superuser_uri(catalog), rights=RIGHTS, client="athena")
                out = subprocess.run(
                    ["node", "--conditions=react-server", str(ROOT / "scripts/sdk5_record.mjs"),
                     dist, server.url, key, admin_key],
                    check=True, capture_output=True, text=True, timeout=300,
                )  # fmt: skip
            finally:
                server.stop()
        finally:
            pg.stop()
    log = json.loads(out.stdout)
    target = ROOT / "tests/sdk/sdk5_wire.json"
    target.write_text(json.dumps(log, indent=1, ensure_ascii=False) + "\n")
    print(f"{len(log['exchanges'])} exchanges in {len(log['seen'])} steps → {target}")


if __name__ == "__main__":
    main(sys.argv[1])
