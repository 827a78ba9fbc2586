"""`athena serve` as an operator runs it: embedded default, one-line start-up errors, signals."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from support.pg import TestPostgres
from support.servers import AthenaServer

from athena.db.embedded import free_port


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATHENA_")}
    env.update(extra)
    return env


def _serve(
    args: list[str], env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "athena", "serve", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _assert_one_line_error(result: subprocess.CompletedProcess[str], needle: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("athena:")]
    assert any(needle in line for line in lines), result.stderr


@pytest.fixture
def embedded_server(tmp_path: Path) -> Iterator[AthenaServer]:
    """A gateway with no configuration at all (AthenaServer drops inherited ATHENA_* vars)."""
    server = AthenaServer(tmp_path / "data", {})
    server.start(timeout=90)
    yield server
    server.stop()


def test_embedded_default_creates_catalog_and_separate_data_database(
    embedded_server: AthenaServer,
) -> None:
    data_dir = embedded_server.data_dir
    key_file = data_dir / "admin.key"
    assert key_file.exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    admin_key = key_file.read_text().strip()
    assert admin_key in embedded_server.log(), "the generated admin key is printed at start-up"

    port = int((data_dir / "pg.port").read_text())
    password = (data_dir / "pg.password").read_text().strip()
    base = f"postgresql://postgres:{password}@127.0.0.1:{port}"
    uri = f"{base}/postgres"
    with psycopg.connect(uri) as conn:
        dbs = dict(
            conn.execute(
                "SELECT d.datname, r.rolname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba"
            ).fetchall()
        )
        assert "athena_catalog" in dbs and "athena" in dbs
        assert dbs["athena"] == "athena_app", (
            "user data lives apart from the catalog, owned by a non-superuser"
        )
        role = conn.execute(
            "SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = 'athena_app'"
        ).fetchone()
        assert role == (False, False)
    with psycopg.connect(f"{base}/athena_catalog") as conn:
        applied = conn.execute("SELECT version FROM athena_schema_migrations").fetchall()
        assert (1,) in applied
        tables = {
            r[0]
            for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'athena'")
        }
        assert {"api_keys", "athena_clients", "gateway_request_log", "backup_jobs"} <= tables
        clients = conn.execute("SELECT client_name, source FROM athena.athena_clients").fetchall()
        assert ("athena", "config") in clients

    app_password = (data_dir / "app-role.password").read_text().strip()
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        psycopg.connect(
            f"postgresql://athena_app:{app_password}@127.0.0.1:{port}/athena_catalog",
            connect_timeout=3,
        )

    # The default client is live: its pool shows in the metrics.
    metrics = httpx.get(f"{embedded_server.url}/metrics").text
    assert 'athena_pool_size{client="athena"}' in metrics

    # Clean exit on SIGTERM stops the embedded server too.
    assert embedded_server.stop() == 0
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(uri, connect_timeout=2)

    # A second start keeps the data and the admin key, and is quick.
    again = AthenaServer(data_dir, {})
    started = time.monotonic()
    again.start(timeout=30)
    try:
        assert time.monotonic() - started < 10
        assert (data_dir / "admin.key").read_text().strip() == admin_key
        # printed when generated, never again: start-up output lands in log collectors
        assert admin_key not in again.log()
        assert str(data_dir / "admin.key") in again.log()
    finally:
        assert again.stop() == 0


def test_second_gateway_on_the_same_data_dir_fails_clearly(embedded_server: AthenaServer) -> None:
    result = _serve(
        ["--port", str(free_port()), "--data-dir", str(embedded_server.data_dir)], _clean_env()
    )
    _assert_one_line_error(result, "in use by another Athena process")
    assert httpx.get(f"{embedded_server.url}/ping").text == "pong", "the first one is untouched"


def test_busy_port_is_one_clear_line(athena: AthenaServer, tmp_path: Path) -> None:
    result = _serve(
        ["--port", str(athena.port), "--data-dir", str(tmp_path)],
        _clean_env(ATHENA_CATALOG_URI="postgresql://nobody@127.0.0.1:1/none"),
    )
    _assert_one_line_error(result, f"port {athena.port} on 127.0.0.1 is already in use")


def test_unreadable_config_is_one_clear_line(tmp_path: Path) -> None:
    result = _serve(
        ["--port", str(free_port()), "--config", str(tmp_path / "missing.yaml")], _clean_env()
    )
    _assert_one_line_error(result, "cannot read config file")
    bad = tmp_path / "bad.yaml"
    bad.write_text("port: [unclosed\n")
    result = _serve(["--port", str(free_port()), "--config", str(bad)], _clean_env())
    _assert_one_line_error(result, "not valid YAML")


def test_unreachable_catalog_is_one_clear_line_without_the_password(tmp_path: Path) -> None:
    result = _serve(
        ["--port", str(free_port()), "--data-dir", str(tmp_path)],
        _clean_env(ATHENA_CATALOG_URI=f"postgresql://athena:s3cret@127.0.0.1:{free_port()}/cat"),
    )
    _assert_one_line_error(result, "cannot reach the catalog database")
    assert "s3cret" not in result.stderr


def test_version_flag() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "athena", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "athena 1.3.0"


def test_config_file_supplies_settings(
    tmp_path: Path, pg: TestPostgres, catalog_db: str, data_db: str
) -> None:
    config = tmp_path / "athena.yaml"
    config.write_text(
        "docs_url: https://docs.example.test/athena\n"
        f"catalog_uri: {pg.superuser_uri(catalog_db)}\n"
        "key_12: from-the-file\n"
        f"clients:\n  filecfg:\n    pg_uri: {pg.app_uri(data_db)}\n"
    )
    server = AthenaServer(tmp_path / "d", {}, args=["--config", str(config)]).start()
    try:
        assert (
            httpx.get(f"{server.url}/docs").headers["location"]
            == "https://docs.example.test/athena"
        )
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'athena_pool_size{client="filecfg"}' in metrics
    finally:
        assert server.stop() == 0


@pytest.fixture
def two_workers(
    pg: TestPostgres, catalog_db: str, data_db: str, tmp_path: Path, admin_key: str
) -> Iterator[tuple[AthenaServer, list[str]]]:
    """``athena serve --workers 2`` and the pids of its two worker processes."""
    import json

    env = {
        "ATHENA_CATALOG_URI": pg.superuser_uri(catalog_db),
        "ATHENA_KEY_12": admin_key,
        "ATHENA_CLIENTS": json.dumps({"athena": {"pg_uri": pg.app_uri(data_db)}}),
    }
    server = AthenaServer(tmp_path, env, args=["--workers", "2"]).start()
    try:
        assert server.proc is not None
        children = subprocess.run(
            ["pgrep", "-P", str(server.proc.pid)], capture_output=True, text=True
        ).stdout.split()
        assert len(children) == 2
        _wait_until_both_accept(server.port, children)
        yield server, children
    finally:
        server.stop()


def test_workers_share_one_port_and_exit_cleanly(
    two_workers: tuple[AthenaServer, list[str]],
) -> None:
    server, children = two_workers
    try:
        with httpx.Client(base_url=server.url) as client:
            assert all(client.get("/ping").text == "pong" for _ in range(50))
    finally:
        assert server.stop() == 0
    for pid in children:
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        )


def _wait_until_both_accept(port: int, pids: list[str]) -> None:
    """/ping answers once one worker is up; the other may still be opening its pools."""
    import socket

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pair = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
        try:
            for sock in pair:
                sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
                assert sock.recv(4096).endswith(b"pong")
            if sorted(_connections_by_worker(port, pids)) == [1, 1]:
                return
        finally:
            for sock in pair:
                sock.close()
        time.sleep(0.3)
    raise AssertionError("the second worker never took a connection")


def _connections_by_worker(port: int, pids: list[str]) -> list[int]:
    """How many established connections to ``port`` each worker process holds (from /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":  # ESTABLISHED
                inodes.add(f"socket:[{fields[9]}]")
    counts = []
    for pid in pids:
        held = 0
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                held += os.readlink(fd) in inodes
        counts.append(held)
    return counts


def test_workers_take_even_shares_of_connections(
    two_workers: tuple[AthenaServer, list[str]],
) -> None:
    """A client's pool of keep-alive connections is split evenly, round after round.

    With a plain shared socket whichever worker wakes first takes a connection: 32 connections
    often split 12/20, and the worker holding 20 queued more requests (athena/balance.py).
    """
    import socket

    server, pids = two_workers
    try:
        for _ in range(5):
            pool = []
            for _ in range(32):
                sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
                sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
                assert sock.recv(4096).endswith(b"pong")
                pool.append(sock)
            shares = _connections_by_worker(server.port, pids)
            assert sum(shares) == 32 and abs(shares[0] - shares[1]) <= 2, shares
            for sock in pool:
                sock.close()
            deadline = time.monotonic() + 5
            while sum(_connections_by_worker(server.port, pids)) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _connections_by_worker(server.port, pids) == [0, 0]
    finally:
        assert server.stop() == 0


def test_every_scrape_shows_every_workers_metrics(
    two_workers: tuple[AthenaServer, list[str]],
) -> None:
    """Whichever worker a scrape reaches, it answers for both, each series labelled."""
    import re
    import socket

    server, pids = two_workers
    metrics_dir = Path(
        dict(
            entry.split("=", 1)
            for entry in Path(f"/proc/{pids[0]}/environ").read_text().split("\0")
            if "=" in entry
        )["ATHENA_INTERNAL_METRICS_DIR"]
    )
    pool = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(8)]
    try:
        for sock in pool:  # 8 keep-alive connections: both workers hold some
            for _ in range(10):
                sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
                assert sock.recv(4096).endswith(b"pong")
        assert sorted(_connections_by_worker(server.port, pids)) == [4, 4]
    finally:
        for sock in pool:
            sock.close()
    time.sleep(1.5)  # every worker has written a snapshot since
    ping = re.compile(r'^athena_requests_total\{.*route="/ping".*worker="(\d)"\} (\S+)$', re.M)
    seen: dict[str, list[float]] = {"0": [], "1": []}
    for _ in range(6):  # a new connection each time: scrapes land on either worker
        text = httpx.get(f"{server.url}/metrics", headers={"Connection": "close"}).text
        assert 'athena_uptime_seconds{worker="0"}' in text
        assert 'athena_uptime_seconds{worker="1"}' in text
        counts = {worker: float(value) for worker, value in ping.findall(text)}
        assert set(counts) == {"0", "1"}, text
        for worker, value in counts.items():
            seen[worker].append(value)
    assert all(values == sorted(values) for values in seen.values()), "counters never go back"
    assert seen["0"][-1] + seen["1"][-1] >= 80
    assert metrics_dir.is_dir()
    assert server.stop() == 0
    assert not metrics_dir.exists(), "the snapshots go when the server does"


def test_sigterm_lets_an_in_flight_request_finish(athena_factory, admin_key: str) -> None:  # type: ignore[no-untyped-def]
    """A slow raw query started before SIGTERM still gets its answer; the process exits 0."""
    server = athena_factory()
    result: dict[str, object] = {}

    def slow_request() -> None:
        try:
            response = httpx.post(
                f"{server.url}/gateway/query",
                json={"query": "SELECT true AS slept FROM pg_sleep(1.5)"},
                headers={"apikey": admin_key, "X-Athena-Client": "athena"},
                timeout=30,
            )
            result["status"] = response.status_code
            result["body"] = response.json()
        except Exception as exc:  # recorded, asserted below
            result["error"] = exc

    thread = threading.Thread(target=slow_request)
    thread.start()
    time.sleep(0.5)  # the request is now waiting on Postgres
    assert server.proc is not None
    server.proc.send_signal(signal.SIGTERM)
    thread.join(30)
    assert server.proc.wait(10) == 0
    assert result.get("status") == 200, result
    assert result["body"]["data"] == [{"slept": True}]  # type: ignore[index]
