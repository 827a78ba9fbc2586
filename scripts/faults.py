"""Stop the client's and then the catalog's PostgreSQL for 10 s under mixed load (issue 11)."""

from __future__ import annotations

import argparse
import json
import sys

from _rig import TABLE, start_rig
from support.faultload import LoadRun, verdict

RECOVERY_S = 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--outage", type=float, default=10.0, help="seconds each database is down")
    parser.add_argument("--threads", type=int, default=16, help="concurrent load threads")
    parser.add_argument("--pool-timeout", default="2", help="ATHENA_POOL_TIMEOUT_S of the gateway")
    args = parser.parse_args()
    rig = start_rig(pool_timeout_s=args.pool_timeout, connect_timeout_s="1")
    try:
        report = {}
        for name, pg, code in (
            ("client", rig.client_pg, "client_unavailable"),
            ("catalog", rig.catalog_pg, "auth_unavailable"),
        ):
            run = LoadRun(rig.server.url, rig.headers, TABLE, threads=args.threads)
            marks = run.run_with_fault(
                warmup=3.0,
                outage=args.outage,
                after=10.0,
                stop_db=pg.server.stop,
                start_db=pg.server.start,
            )
            with rig.client_pg.connect(rig.db) as conn:
                report[name] = verdict(run, marks, conn, code)
        print(json.dumps(report, indent=2))
    finally:
        rig.close()
    # The bar of issue 17: serving again within 1 s of the restart, nothing acknowledged lost,
    # never a 500.
    failed = [
        name
        for name, r in report.items()
        if r["recovery_seconds"] is None
        or r["recovery_seconds"] >= RECOVERY_S
        or r["lost_writes"]
        or r["server_errors_500"]
    ]
    for name in failed:
        print(f"FAIL {name}: recovery {report[name]['recovery_seconds']} s", file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
