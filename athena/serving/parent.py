"""Start-up, serving and shutdown of the gateway.

``prepare()`` runs before any event loop: it starts the embedded PostgreSQL (when no
``ATHENA_CATALOG_URI`` is set), migrates the catalog, settles the admin key and binds the
listening socket, so that every start-up failure is one clear line from the CLI.

``serve_worker()`` is one worker process: a root trio nursery holding the runtime (pools,
supervisor and its background tasks) and hypercorn. SIGINT/SIGTERM trigger a graceful shutdown:
stop accepting, let in-flight requests finish (up to ``GRACEFUL_SECONDS``), close WebSockets
with 1001, flush the request log, close the pools. A second signal cancels at once.

``run()`` is ``athena serve``: with ``--workers N`` (N > 1) it spawns N worker processes that
share the listening socket, forwards signals to them, and stops the embedded server after they
exit.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg
import trio
from hypercorn.config import Config as HypercornConfig

from athena.config import ConfigError, Settings
from athena.db import catalog as catalog_db
from athena.db.embedded import EmbeddedPostgres, pg_bin_dir
from athena.db.uris import mask_uri
from athena.serving import balance, hypercorn_adapter

log = logging.getLogger("athena.serving.parent")

# In-flight requests get this long after a shutdown signal; the process exits within ~5 s.
GRACEFUL_SECONDS = 4.0

_ENV_FD = "ATHENA_INTERNAL_LISTEN_FD"
_ENV_CATALOG = "ATHENA_INTERNAL_CATALOG_URI"
_ENV_DEFAULT_CLIENT = "ATHENA_INTERNAL_DEFAULT_CLIENT_URI"
_ENV_ADMIN = "ATHENA_INTERNAL_ADMIN_KEY"
_ENV_BOARD_FD = "ATHENA_INTERNAL_BOARD_FD"
_ENV_WORKER_INDEX = "ATHENA_INTERNAL_WORKER_INDEX"
_ENV_WORKER_COUNT = "ATHENA_INTERNAL_WORKER_COUNT"
_ENV_METRICS_DIR = "ATHENA_INTERNAL_METRICS_DIR"


@dataclass
class Prepared:
    catalog_uri: str
    default_client_uri: str | None
    admin_key: str
    admin_key_generated: bool
    embedded: EmbeddedPostgres | None
    sock: socket.socket | None = None


def start_embedded(settings: Settings) -> tuple[EmbeddedPostgres, catalog_db.EmbeddedLayout]:
    """Lock the data dir, start the embedded server, create the catalog and ``athena`` DBs."""
    pg = EmbeddedPostgres(
        settings.data_dir, port=settings.embedded_pg_port, bin_dir=pg_bin_dir(settings.pg_bin_dir)
    )
    pg.lock()
    try:
        pg.start()
        layout = catalog_db.prepare_embedded(
            lambda db: pg.uri(db),
            lambda db, role, pw: pg.uri(db, user=role, password=pw),
            str(settings.data_dir.resolve() / "app-role.password"),
            settings.client_role,
        )
    except BaseException:
        pg.stop()
        pg.unlock()
        raise
    return pg, layout


def migrate_catalog(uri: str, settings: Settings) -> None:
    try:
        with psycopg.connect(uri, autocommit=True, connect_timeout=5) as conn:
            catalog_db.migrate(conn, enforce_api_keys_default=settings.enforce_api_keys)
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot reach the catalog database {mask_uri(uri)}: {reason}") from None


def admin_key_for(settings: Settings) -> tuple[str, bool]:
    """``ATHENA_KEY_12``, else the key kept in ``<data-dir>/admin.key`` (generated once)."""
    if settings.key_12:
        return settings.key_12, False
    path = settings.data_dir / "admin.key"
    if path.exists():
        return path.read_text().strip(), False
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    key = "athena_admin_" + secrets.token_hex(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key, True


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"port {port} on {host} is already in use") from None
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def prepare(settings: Settings) -> Prepared:
    """Everything that must succeed before serving; raises ConfigError with one clear line."""
    from athena.pipelines.config import load_pipelines

    load_pipelines(settings)  # a bad pipelines file stops start-up before anything is started
    sock = bind_socket(settings.host, settings.port)
    try:
        embedded = None
        default_client_uri = None
        if settings.catalog_uri:
            catalog_uri = settings.catalog_uri
        else:
            embedded, layout = start_embedded(settings)
            catalog_uri, default_client_uri = layout.catalog_uri, layout.client_uri
        try:
            migrate_catalog(catalog_uri, settings)
            admin_key, generated = admin_key_for(settings)
        except BaseException:
            if embedded is not None:
                embedded.stop()
            raise
    except BaseException:
        sock.close()
        raise
    return Prepared(catalog_uri, default_client_uri, admin_key, generated, embedded, sock)


def hypercorn_config(keep_alive_s: float = 30.0) -> HypercornConfig:
    config = HypercornConfig()
    config.graceful_timeout = GRACEFUL_SECONDS
    # Idle keep-alive connections are closed after ATHENA_KEEP_ALIVE_S (30 s). No read
    # timeout: hypercorn applies it to client bytes even while a response streams, which cut
    # backups and downloads at 60 s.
    # Slow clients cost one trio task and a socket each, so they do not tie the server up
    # (tests/core/test_limits.py holds 200 of them open while serving normally).
    config.keep_alive_timeout = keep_alive_s
    config.read_timeout = None
    config.h11_max_incomplete_size = 64 * 1024  # request line + headers
    config.websocket_max_message_size = 1024 * 1024
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.include_server_header = False
    return config


@dataclass
class Seat:
    """Where a worker sits among the ``--workers N`` sharing one socket."""

    index: int
    board: balance.Board | None  # even shares of connections (None: no memfd here)
    metrics_dir: Path  # every worker's metrics snapshot, for whichever one is scraped


async def serve_worker(
    settings: Settings, prepared: Prepared, fd: int, seat: Seat | None = None
) -> None:
    """One worker: the root nursery with runtime, supervisor and hypercorn.

    ``fd`` is the listening socket (this process owns and closes it). ``seat`` is given when
    several workers share that socket.
    """
    from athena.http.app import create_asgi
    from athena.http.hot_lane import HotLane
    from athena.observability.metrics_share import MetricsShare
    from athena.runtime import BackgroundTask, Runtime

    runtime = await Runtime.open(
        settings,
        admin_key=prepared.admin_key,
        catalog_uri=prepared.catalog_uri,
        default_client_uri=prepared.default_client_uri,
    )
    try:
        app = create_asgi(runtime)
        config = hypercorn_config(settings.keep_alive_s)
        sock = socket.socket(fileno=fd)
        listener: trio.abc.Listener[trio.abc.Stream]
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
        if seat is not None:
            share = MetricsShare(seat.metrics_dir, seat.index, runtime.metrics.registry)
            runtime.metrics.share = share
            runtime.background.append(BackgroundTask("metrics_share", share.run))
            if seat.board is not None:
                listener = balance.BalancedListener(sock, seat.board)
                runtime.background.append(
                    BackgroundTask("worker_heartbeat", seat.board.keep_beating)
                )
        # Everything allocated so far lives as long as the process: move it out of the
        # collector's sight, and collect young objects less often. Full collections over a
        # large heap were the biggest source of tail latency under load.
        gc.collect()
        gc.freeze()
        gc.set_threshold(20_000, 20, 20)
        async with trio.open_nursery() as root:
            runtime.start_background(root)
            stop = trio.Event()
            root.start_soon(_watch_signals, stop, root.cancel_scope)

            async def shutdown_trigger() -> None:
                await stop.wait()
                runtime.shutting_down.set()

            lane = app if isinstance(app, HotLane) and settings.lane_http else None
            await hypercorn_adapter.serve(
                app, config, listener, shutdown_trigger=shutdown_trigger, lane=lane
            )
            root.cancel_scope.cancel()
    finally:
        await runtime.aclose()


async def _watch_signals(stop: trio.Event, scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            if stop.is_set():
                scope.cancel()  # second signal: stop now
                return
            log.info("shutting down: finishing in-flight requests")
            stop.set()


def _announce(settings: Settings, prepared: Prepared) -> None:
    where = "embedded PostgreSQL" if prepared.embedded else mask_uri(prepared.catalog_uri)
    print(
        f"athena: serving on http://{settings.host}:{settings.port} (catalog: {where})",
        file=sys.stderr,
        flush=True,
    )
    if prepared.admin_key_generated or (not settings.key_12 and prepared.embedded):
        print(
            f"athena: admin key (ATHENA_KEY_12): {prepared.admin_key}"
            f"  [stored in {settings.data_dir / 'admin.key'}]",
            file=sys.stderr,
            flush=True,
        )


def run(settings: Settings) -> int:
    """``athena serve``: returns the process exit code."""
    prepared = prepare(settings)
    assert prepared.sock is not None
    try:
        _announce(settings, prepared)
        if settings.workers <= 1:
            # hypercorn closes the socket it serves; give it a duplicate so ours stays valid.
            trio.run(serve_worker, settings, prepared, os.dup(prepared.sock.fileno()))
        else:
            _run_workers(settings, prepared)
    finally:
        prepared.sock.close()
        if prepared.embedded is not None:
            prepared.embedded.stop()
            prepared.embedded.unlock()
    return 0


def _run_workers(settings: Settings, prepared: Prepared) -> None:
    assert prepared.sock is not None
    fd = prepared.sock.fileno()
    board_fd = balance.create_board(settings.workers)
    metrics_dir = tempfile.mkdtemp(prefix="athena-metrics-")
    env = dict(os.environ)
    env.update(
        {
            _ENV_FD: str(fd),
            _ENV_CATALOG: prepared.catalog_uri,
            _ENV_DEFAULT_CLIENT: prepared.default_client_uri or "",
            _ENV_ADMIN: prepared.admin_key,
            _ENV_WORKER_COUNT: str(settings.workers),
            _ENV_METRICS_DIR: metrics_dir,
            "ATHENA_WORKERS": "1",
        }
    )
    if settings.config:
        env["ATHENA_CONFIG"] = str(settings.config)
    shared = [fd]
    if board_fd is not None:
        env[_ENV_BOARD_FD] = str(board_fd)
        shared.append(board_fd)
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "athena", "_worker"],
            pass_fds=shared,
            env={**env, _ENV_WORKER_INDEX: str(index)},
        )
        for index in range(settings.workers)
    ]
    if board_fd is not None:
        os.close(board_fd)  # the workers hold it now

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for child in children:
            child.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        shutil.rmtree(metrics_dir, ignore_errors=True)


def run_child_worker(settings: Settings) -> int:
    """Entry point of a worker process spawned by ``_run_workers``."""
    prepared = Prepared(
        catalog_uri=os.environ[_ENV_CATALOG],
        default_client_uri=os.environ.get(_ENV_DEFAULT_CLIENT) or None,
        admin_key=os.environ[_ENV_ADMIN],
        admin_key_generated=False,
        embedded=None,
    )
    index = int(os.environ[_ENV_WORKER_INDEX])
    board = None
    if os.environ.get(_ENV_BOARD_FD):
        board = balance.Board(
            int(os.environ[_ENV_BOARD_FD]), index, int(os.environ[_ENV_WORKER_COUNT])
        )
    seat = Seat(index, board, Path(os.environ[_ENV_METRICS_DIR]))
    trio.run(serve_worker, settings, prepared, int(os.environ[_ENV_FD]), seat)
    return 0


def embedded_catalog_uri(settings: Settings) -> str | None:
    """For CLI commands: the catalog URI of a configured or running embedded server."""
    if settings.catalog_uri:
        return settings.catalog_uri
    data_dir: Path = settings.data_dir
    try:
        port = int((data_dir / "pg.port").read_text().strip())
        password = (data_dir / "pg.password").read_text().strip()
    except (OSError, ValueError):
        return None
    from urllib.parse import quote

    return (
        f"postgresql://postgres:{quote(password, safe='')}@127.0.0.1:{port}/"
        f"{catalog_db.CATALOG_DATABASE}"
    )
