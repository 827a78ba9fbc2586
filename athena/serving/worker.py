"""One worker process: the root trio nursery holding the runtime and the server.

``serve_worker()`` opens the runtime (pools, supervisor and its background tasks) and serves
HTTP on the listening socket it is given. SIGINT/SIGTERM trigger a graceful shutdown: stop
accepting, let in-flight requests finish (up to ``GRACEFUL_SECONDS``), close WebSockets with
1001, flush the request log, close the pools. A second signal cancels at once.

``run_child_worker()`` is the entry point of a worker process spawned by
``athena.serving.parent`` with ``--workers N``; what the parent hands it travels in the
``ENV_*`` variables below.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
from dataclasses import dataclass
from pathlib import Path

import trio
from hypercorn.config import Config as HypercornConfig

from athena.config import Settings
from athena.db.embedded import EmbeddedPostgres
from athena.serving import balance, hypercorn_adapter
from athena.supervisor import BackgroundTask

log = logging.getLogger("athena.server")

# In-flight requests get this long after a shutdown signal; the process exits within ~5 s.
GRACEFUL_SECONDS = 4.0

ENV_FD = "ATHENA_INTERNAL_LISTEN_FD"
ENV_CATALOG = "ATHENA_INTERNAL_CATALOG_URI"
ENV_DEFAULT_CLIENT = "ATHENA_INTERNAL_DEFAULT_CLIENT_URI"
ENV_ADMIN = "ATHENA_INTERNAL_ADMIN_KEY"
ENV_BOARD_FD = "ATHENA_INTERNAL_BOARD_FD"
ENV_WORKER_INDEX = "ATHENA_INTERNAL_WORKER_INDEX"
ENV_WORKER_COUNT = "ATHENA_INTERNAL_WORKER_COUNT"
ENV_METRICS_DIR = "ATHENA_INTERNAL_METRICS_DIR"


@dataclass
class Prepared:
    catalog_uri: str
    default_client_uri: str | None
    admin_key: str
    admin_key_generated: bool
    embedded: EmbeddedPostgres | None
    sock: socket.socket | None = None


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
    from athena.db.sealed import sealer_for
    from athena.http.gate import Gate
    from athena.observability import tracing
    from athena.observability.metrics_share import MetricsShare
    from athena.runtime import Runtime

    tracing.setup(settings)  # per process: the exporter's thread does not survive a fork

    runtime = await Runtime.open(
        settings,
        admin_key=prepared.admin_key,
        catalog_uri=prepared.catalog_uri,
        default_client_uri=prepared.default_client_uri,
        sealer=sealer_for(settings),
    )
    try:
        app = Gate(runtime)
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

            lane = app.lane if settings.lane_http else None
            await hypercorn_adapter.serve(
                app,
                config,
                listener,
                shutdown_trigger=shutdown_trigger,
                lane=lane,
                max_connections=settings.max_connections,
                max_connections_per_ip=settings.max_connections_per_ip,
                body_min_rate=settings.body_min_bytes_per_s,
            )
            root.cancel_scope.cancel()
    finally:
        await runtime.aclose()
        if tracing.TRACER is not None:
            await trio.to_thread.run_sync(tracing.shutdown)  # export what is buffered


async def _watch_signals(stop: trio.Event, scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            if stop.is_set():
                scope.cancel()  # second signal: stop now
                return
            log.info("shutting down: finishing in-flight requests")
            stop.set()


def run_child_worker(settings: Settings) -> int:
    """Entry point of a worker process spawned by ``_run_workers``."""
    prepared = Prepared(
        catalog_uri=os.environ[ENV_CATALOG],
        default_client_uri=os.environ.get(ENV_DEFAULT_CLIENT) or None,
        admin_key=os.environ[ENV_ADMIN],
        admin_key_generated=False,
        embedded=None,
    )
    index = int(os.environ[ENV_WORKER_INDEX])
    board = None
    if os.environ.get(ENV_BOARD_FD):
        board = balance.Board(
            int(os.environ[ENV_BOARD_FD]), index, int(os.environ[ENV_WORKER_COUNT])
        )
    seat = Seat(index, board, Path(os.environ[ENV_METRICS_DIR]))
    trio.run(serve_worker, settings, prepared, int(os.environ[ENV_FD]), seat)
    return 0
