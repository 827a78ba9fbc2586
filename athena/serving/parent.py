"""``athena serve``: the process parent.

``prepare()`` runs before any event loop: it starts the embedded PostgreSQL (when no
``ATHENA_CATALOG_URI`` is set), migrates the catalog, settles the admin key and binds the
listening socket, so that every start-up failure is one clear line from the CLI.

``run()`` then serves: one worker in this process, or with ``--workers N`` (N > 1) N worker
processes (``athena.serving.worker``) that share the listening socket; it forwards signals to
them, and stops the embedded server after they exit.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import trio

from athena.config import ConfigError, Settings
from athena.db import catalog as catalog_db
from athena.db.embedded import EmbeddedPostgres, pg_bin_dir
from athena.db.uris import mask_uri
from athena.serving import balance
from athena.serving.worker import (
    ENV_ADMIN,
    ENV_BOARD_FD,
    ENV_CATALOG,
    ENV_DEFAULT_CLIENT,
    ENV_FD,
    ENV_METRICS_DIR,
    ENV_WORKER_COUNT,
    ENV_WORKER_INDEX,
    Prepared,
    serve_worker,
)

log = logging.getLogger("athena.server")


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


def seal_client_uris(uri: str, settings: Settings) -> None:
    """Start-up step: seal client URIs still in clear, rotate old tokens to the first key."""
    from athena.db.sealed import reencrypt, sealer_for

    sealer = sealer_for(settings)
    if not sealer.enabled:
        log.warning(
            "client database URIs are stored in clear in the catalog:"
            " set ATHENA_ENCRYPTION_KEYS (athena secrets generate) to encrypt them%s",
            ""
            if settings.allow_plaintext_secrets
            else "; new URIs with a password are refused until then",
        )
        return
    with psycopg.connect(uri, autocommit=True, connect_timeout=5) as conn:
        rewritten, unreadable = reencrypt(conn, sealer)
    if rewritten:
        log.info("sealed %d client URI(s) under the current encryption key", rewritten)
    for name in unreadable:
        log.error("the stored URI of client %s opens with none of ATHENA_ENCRYPTION_KEYS", name)


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
            seal_client_uris(catalog_uri, settings)
            admin_key, generated = admin_key_for(settings)
        except BaseException:
            if embedded is not None:
                embedded.stop()
            raise
    except BaseException:
        sock.close()
        raise
    return Prepared(catalog_uri, default_client_uri, admin_key, generated, embedded, sock)


def _announce(settings: Settings, prepared: Prepared) -> None:
    from athena.observability import logs

    where = "embedded PostgreSQL" if prepared.embedded else mask_uri(prepared.catalog_uri)
    if logs.active_format() == "json":
        # Structured logs are collected and shipped: the key itself stays in its 0600 file.
        log.info("serving on http://%s:%s (catalog: %s)", settings.host, settings.port, where)
        if prepared.admin_key_generated:
            log.info("admin key (ATHENA_KEY_12) stored in %s", settings.data_dir / "admin.key")
        return
    print(
        f"athena: serving on http://{settings.host}:{settings.port} (catalog: {where})",
        file=sys.stderr,
        flush=True,
    )
    # The key itself only once, when it was just generated: start-up output ends up in log
    # collectors, and a key printed on every start is a key in every log.
    if prepared.admin_key_generated:
        print(
            f"athena: admin key (ATHENA_KEY_12): {prepared.admin_key}"
            f"  [stored in {settings.data_dir / 'admin.key'}]",
            file=sys.stderr,
            flush=True,
        )
    elif not settings.key_12:
        print(
            f"athena: admin key (ATHENA_KEY_12) in {settings.data_dir / 'admin.key'}",
            file=sys.stderr,
            flush=True,
        )


def run(settings: Settings) -> int:
    """``athena serve``: returns the process exit code."""
    from athena.serving import preflight

    _refuse_on_fatal(preflight.check_settings(settings))  # before anything is started
    prepared = prepare(settings)
    assert prepared.sock is not None
    try:
        _refuse_on_fatal(
            preflight.run_checks(
                settings,
                catalog_uri=prepared.catalog_uri,
                embedded=prepared.embedded is not None,
                default_client_uri=prepared.default_client_uri,
            )
        )
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


def _refuse_on_fatal(findings: list) -> None:  # type: ignore[type-arg]
    """The pre-flight checks at start (``athena check`` prints the same): a fatal finding stops
    the start with its one-line reason; errors and warnings are logged, and serving goes on."""
    for finding in findings:
        if finding.level == "fatal":
            raise ConfigError(f"{finding.check} {finding.target}: {finding.detail}")
    for finding in findings:
        if finding.level in ("warn", "error"):
            log.warning(
                "check %s %s: %s: %s", finding.check, finding.target, finding.level, finding.detail
            )


def _run_workers(settings: Settings, prepared: Prepared) -> None:
    assert prepared.sock is not None
    fd = prepared.sock.fileno()
    board_fd = balance.create_board(settings.workers)
    metrics_dir = tempfile.mkdtemp(prefix="athena-metrics-")
    env = dict(os.environ)
    env.update(
        {
            ENV_FD: str(fd),
            ENV_CATALOG: prepared.catalog_uri,
            ENV_DEFAULT_CLIENT: prepared.default_client_uri or "",
            ENV_ADMIN: prepared.admin_key,
            ENV_WORKER_COUNT: str(settings.workers),
            ENV_METRICS_DIR: metrics_dir,
            "ATHENA_WORKERS": "1",
        }
    )
    if settings.config:
        env["ATHENA_CONFIG"] = str(settings.config)
    shared = [fd]
    if board_fd is not None:
        env[ENV_BOARD_FD] = str(board_fd)
        shared.append(board_fd)
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "athena", "_worker"],
            pass_fds=shared,
            env={**env, ENV_WORKER_INDEX: str(index)},
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


def embedded_client_uri(settings: Settings) -> str | None:
    """For CLI commands: the URI of the embedded ``athena`` client (as the gateway reaches it)."""
    from urllib.parse import quote

    data_dir: Path = settings.data_dir
    try:
        port = int((data_dir / "pg.port").read_text().strip())
        if settings.client_role:
            user = settings.client_role
            password = (data_dir / "app-role.password").read_text().strip()
        else:
            user, password = "postgres", (data_dir / "pg.password").read_text().strip()
    except (OSError, ValueError):
        return None
    return (
        f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{port}/"
        f"{catalog_db.DEFAULT_CLIENT_DATABASE}"
    )


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
