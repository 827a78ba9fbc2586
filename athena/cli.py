"""``athena serve | keys … | provision … | backup …`` and ``athena --version``.

Every failure an operator can fix (busy port, unreadable config, unreachable catalog) is printed
as one line on stderr with a non-zero exit code, never as a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import pkgutil
import signal
import sys
from collections.abc import Iterator
from typing import Any

import psycopg

from athena import __version__
from athena import commands as commands_pkg
from athena.config import ConfigError, Settings, load_settings
from athena.observability import logs


def _settings_from(args: argparse.Namespace) -> Settings:
    return load_settings(
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        data_dir=getattr(args, "data_dir", None),
        config=getattr(args, "config", None),
        workers=getattr(args, "workers", None),
    )


def add_common(parser: argparse.ArgumentParser) -> None:
    """Options every command that touches the catalog accepts."""
    parser.add_argument("--data-dir", help="data directory (default ./.athena)")
    parser.add_argument("--config", help="YAML configuration file")


@contextlib.contextmanager
def catalog_connection(args: argparse.Namespace) -> Iterator[tuple[Settings, psycopg.Connection]]:
    """A connection to the catalog for operator commands.

    Uses ``ATHENA_CATALOG_URI``; else the embedded server of ``--data-dir`` — the running one,
    or, when no gateway is running, one started just for this command.
    """
    from athena.serving.parent import embedded_catalog_uri, migrate_catalog, start_embedded

    settings = _settings_from(args)
    uri = embedded_catalog_uri(settings)
    started = None
    if uri is not None:
        try:
            conn = psycopg.connect(uri, autocommit=True, connect_timeout=3)
        except psycopg.OperationalError:
            if settings.catalog_uri:
                raise ConfigError("cannot reach the catalog database") from None
            conn = None
    else:
        conn = None
    if conn is None:
        started, layout = start_embedded(settings)
        migrate_catalog(layout.catalog_uri, settings)
        conn = psycopg.connect(layout.catalog_uri, autocommit=True)
    try:
        with conn:
            yield settings, conn
    finally:
        if started is not None:
            started.stop()
            started.unlock()


def _serve(args: argparse.Namespace) -> int:
    from athena.observability import logs, tracing
    from athena.serving.parent import run

    settings = _settings_from(args)
    logs.configure(settings)
    tracing.check_available(settings)
    return run(settings)


def _worker() -> int:
    """``athena _worker``: a child worker process started by ``athena serve --workers N``.

    Not an argparse sub-command, so ``athena --help`` does not list it.
    """
    from athena.observability import logs
    from athena.serving.worker import run_child_worker

    settings = load_settings()
    logs.configure(settings)
    return run_child_worker(settings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="athena", description="Athena database gateway")
    parser.add_argument("--version", action="version", version=f"athena {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--host", help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default 4052)")
    serve.add_argument("--workers", type=int, help="worker processes sharing the port (default 1)")
    add_common(serve)
    serve.set_defaults(func=_serve)

    for info in sorted(pkgutil.iter_modules(commands_pkg.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands_pkg.__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["_worker"]:
        return _worker()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: Any = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
    except ConfigError as exc:
        logs.drain()
        print(f"athena: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`athena keys list --json | head`): exit as a tool killed by
        # SIGPIPE does, without a traceback, and keep the interpreter's final flush of stdout
        # from raising again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
