#!/usr/bin/env python
"""Benchmark: back up and restore a ~500 MB database through a running gateway.

Everything is real and on loopback: an embedded PostgreSQL (the product's own), moto's S3
server, and ``python -m athena serve`` as a subprocess. The script reports the throughput of
the backup and of the restore (database size / wall time) and the gateway process's resident
memory: its baseline after start-up, its peak while each job ran (sampled every 50 ms from
/proc, cross-checked with VmHWM), and the growth. Target: growth < 100 MB.

    .venv/bin/python scripts/bench_backup.py [--size-mb 500] [--json out.json]

pg_dump and pg_restore run as child processes of the gateway; their memory is theirs (and
PostgreSQL's), not the gateway's, so it is reported separately only as a note.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from athena.backups.pgtools import ToolTarget  # noqa: E402
from athena.db.catalog import ensure_login_role, migrate  # noqa: E402
from athena.db.embedded import EmbeddedPostgres, free_port  # noqa: E402

MB = 1024 * 1024


def rss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            name, value = line.split(":", 1)
            values[name] = int(value.split()[0])
    return values.get("VmRSS", 0), values.get("VmHWM", 0)


class RssSampler:
    """Samples a process's RSS in a thread; ``peak`` is the highest sample since ``reset``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def reset(self) -> None:
        self.peak = rss_kb(self.pid)[0]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, rss_kb(self.pid)[0])
            except OSError:
                return
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def build_source(uri: str, size_mb: int) -> None:
    """A table of mixed types grown in batches until the database reaches ``size_mb``."""
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(
            """CREATE TABLE events (
                   id bigint PRIMARY KEY, at timestamptz NOT NULL, kind text NOT NULL,
                   amount numeric(14, 2), payload text, attrs jsonb)"""
        )
        conn.execute("CREATE TABLE kinds (name text PRIMARY KEY, description text)")
        conn.execute(
            "INSERT INTO kinds SELECT 'k' || g, repeat('description ', g % 20)"
            " FROM generate_series(0, 99) g"
        )
        batch, start = 500_000, 1
        while True:
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
            print(f"  source database: {size / MB:8.1f} MB", flush=True)
            if size >= size_mb * MB:
                return
            conn.execute(
                """INSERT INTO events
                   SELECT g, timestamptz '2026-01-01' + g * interval '1 second', 'k' || g %% 100,
                          (g %% 100000) / 100.0, md5(g::text) || ' ' || md5((g * 31)::text),
                          jsonb_build_object('g', g, 'odd', g %% 2 = 1)
                     FROM generate_series(%s::bigint, %s::bigint) g""",
                (start, start + batch - 1),
            )
            start += batch


def fingerprint(uri: str) -> dict[str, tuple[int, str]]:
    with psycopg.connect(uri, autocommit=True) as conn:
        return {
            table: conn.execute(
                psycopg.sql.SQL(
                    "SELECT count(*), coalesce(sum(hashtext(t::text)), 0)::text FROM {} t"
                ).format(psycopg.sql.Identifier(table))
            ).fetchone()
            for table in ("events", "kinds")
        }


def streamed(
    client: httpx.Client, method: str, url: str, body: dict, phases: dict[str, float]
) -> dict:
    """Run a job with SSE (re-attaching if the stream is cut), printing progress on one line
    and noting in ``phases`` when each phase was first seen; return the job's result."""
    from athena.commands.backup import CliError, follow_job

    def show(event: dict) -> None:
        phases.setdefault(event["phase"], time.perf_counter())
        print(f"\r  {event['phase']:<11} {event['bytes'] / MB:9.1f} MB", end="", flush=True)

    assert method == "POST"
    try:
        result = follow_job(client, url, body, show)
    except CliError as exc:
        raise SystemExit(f"job failed: {exc}") from None
    phases.setdefault("done", time.perf_counter())
    print()
    return result


def phase_seconds(phases: dict[str, float]) -> dict[str, float]:
    """How long each phase lasted (until the next one started)."""
    ordered = sorted(phases.items(), key=lambda item: item[1])
    return {name: round(ordered[i + 1][1] - at, 1) for i, (name, at) in enumerate(ordered[:-1])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args()

    from moto.server import ThreadedMotoServer

    work = Path(tempfile.mkdtemp(prefix="athena-bench-"))
    pg = EmbeddedPostgres(work / "pg")
    pg.lock()
    pg.start()
    s3_port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=s3_port, verbose=False)
    moto.start()
    gateway = None
    try:
        password = secrets.token_hex(16)
        with psycopg.connect(pg.uri(), autocommit=True) as conn:
            ensure_login_role(conn, "bench_app", password)
            for db, owner in (("bench_catalog", "postgres"), ("bench_src", "bench_app"),
                              ("bench_dst", "bench_app")):  # fmt: skip
                conn.execute(
                    psycopg.sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        psycopg.sql.Identifier(db), psycopg.sql.Identifier(owner)
                    )
                )
        with psycopg.connect(pg.uri("bench_catalog"), autocommit=True) as conn:
            migrate(conn)
        src = pg.uri("bench_src", user="bench_app", password=password)
        dst = pg.uri("bench_dst", user="bench_app", password=password)
        print(f"building a {args.size_mb} MB source database …", flush=True)
        build_source(src, args.size_mb)
        with psycopg.connect(src, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
            db_bytes = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]

        # The floor: pg_dump alone, writing its archive nowhere.
        t0 = time.perf_counter()
        target = ToolTarget.from_uri(src)  # password in the environment, not in argv
        subprocess.run(
            [str(pg.bin_dir / "pg_dump"), "--format=custom", "--compress=0", "--no-sync",
             "-f", "/dev/null", f"--dbname={target.conninfo}"],
            check=True, env=target.env(),
        )  # fmt: skip
        pg_dump_alone_s = time.perf_counter() - t0

        import boto3

        creds = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench-secret"}
        boto3.client("s3", endpoint_url=f"http://127.0.0.1:{s3_port}", region_name="us-east-1",
                     **creds).create_bucket(Bucket="bench")  # fmt: skip
        admin_key = "bench_admin_" + secrets.token_hex(16)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("ATHENA_")}
        env.update(
            ATHENA_CATALOG_URI=pg.uri("bench_catalog"),
            ATHENA_KEY_12=admin_key,
            ATHENA_CLIENTS=json.dumps({"src": {"pg_uri": src}, "dst": {"pg_uri": dst}}),
            ATHENA_BACKUP_S3_BUCKET="bench",
            ATHENA_BACKUP_S3_ENDPOINT=f"http://127.0.0.1:{s3_port}",
            AWS_ACCESS_KEY_ID=creds["aws_access_key_id"],
            AWS_SECRET_ACCESS_KEY=creds["aws_secret_access_key"],
        )
        log = open(work / "gateway.log", "wb")
        gateway = subprocess.Popen(
            [sys.executable, "-m", "athena", "serve", "--port", str(port),
             "--data-dir", str(work / "gw")],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(f"{url}/ping", timeout=1).text == "pong":
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        client = httpx.Client(base_url=url, headers={"X-Athena-Admin-Key": admin_key},
                              timeout=httpx.Timeout(30, read=None))  # fmt: skip
        # Warm up: load the routes, boto3 and one S3 connection before measuring the baseline.
        client.get("/admin/backups").raise_for_status()
        client.get("/admin/backups/jobs").raise_for_status()
        time.sleep(1)
        baseline, _ = rss_kb(gateway.pid)
        sampler = RssSampler(gateway.pid).start()

        print(f"backing up {db_bytes / MB:.1f} MB …", flush=True)
        sampler.reset()
        t0 = time.perf_counter()
        backup_phases: dict[str, float] = {}
        backup = streamed(
            client, "POST", "/admin/backups", {"client_name": "src", "label": "bench"},
            backup_phases,
        )  # fmt: skip
        backup_s = time.perf_counter() - t0
        backup_peak = sampler.peak

        print(f"restoring {backup['size_bytes'] / MB:.1f} MB archive …", flush=True)
        sampler.reset()
        t0 = time.perf_counter()
        restore_phases: dict[str, float] = {}
        streamed(client, "POST", f"/admin/backups/{quote(backup['key'], safe='')}/restore",
                 {"client_name": "dst"}, restore_phases)  # fmt: skip
        restore_s = time.perf_counter() - t0
        restore_peak = sampler.peak
        sampler.stop()
        _, hwm = rss_kb(gateway.pid)

        same = fingerprint(src) == fingerprint(dst)
        results = {
            "database_mb": round(db_bytes / MB, 1),
            "archive_mb": round(backup["size_bytes"] / MB, 1),
            "pg_dump_alone_seconds": round(pg_dump_alone_s, 1),
            "backup_seconds": round(backup_s, 1),
            "backup_mb_per_s": round(db_bytes / MB / backup_s, 1),
            "backup_phase_seconds": phase_seconds(backup_phases),
            "restore_seconds": round(restore_s, 1),
            "restore_phase_seconds": phase_seconds(restore_phases),
            "restore_mb_per_s": round(db_bytes / MB / restore_s, 1),
            "gateway_rss_baseline_mb": round(baseline / 1024, 1),
            "gateway_rss_peak_backup_mb": round(backup_peak / 1024, 1),
            "gateway_rss_peak_restore_mb": round(restore_peak / 1024, 1),
            "gateway_vmhwm_mb": round(hwm / 1024, 1),
            "gateway_rss_growth_mb": round(
                (max(backup_peak, restore_peak, hwm) - baseline) / 1024, 1
            ),
            "restored_data_identical": same,
        }
        results["load_average_1m"] = round(os.getloadavg()[0], 1)
        print(json.dumps(results, indent=2))
        ok = results["gateway_rss_growth_mb"] < 100 and same
        print("target (RSS growth < 100 MB, data identical):", "MET" if ok else "NOT MET")
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        return 0 if ok else 1
    finally:
        if gateway is not None:
            gateway.terminate()
            gateway.wait(15)
        moto.stop()
        pg.stop()
        pg.unlock()
        shutil.rmtree(work, ignore_errors=True)  # the databases take over 1 GB


if __name__ == "__main__":
    sys.exit(main())
