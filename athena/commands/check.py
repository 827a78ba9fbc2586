"""``athena check [--config FILE]``: validate a configuration before serving it.

Validates the settings, reaches the catalog and every client database (with the role each is
configured with: can it connect, is the Athena schema provisioned, is the role a superuser),
the S3 bucket and the mirrors when configured, and prints one table row per finding. Exit
status: 0 when nothing is an error (warnings too with ``--strict``), 1 otherwise, 2 when the
settings cannot even be read. Read-only: nothing is created, migrated or provisioned.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

STYLE = {"ok": "green", "warn": "yellow", "error": "red", "fatal": "bold red"}


def register(subparsers: Any) -> None:
    from athena.cli import add_common

    parser = subparsers.add_parser(
        "check", help="validate settings and reach the catalog, clients, S3 and mirrors"
    )
    add_common(parser)
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    parser.add_argument("--strict", action="store_true", help="warnings fail the check too")
    parser.set_defaults(func=_check)


def _check(args: argparse.Namespace) -> int:
    from athena.cli import _settings_from
    from athena.serving.parent import embedded_catalog_uri, embedded_client_uri
    from athena.serving.preflight import run_checks, worst

    settings = _settings_from(args)  # ConfigError → one line, exit 2 (athena.cli.main)
    catalog_uri = embedded_catalog_uri(settings)
    embedded = not settings.catalog_uri
    if embedded and catalog_uri is not None and not _reachable(catalog_uri):
        catalog_uri = None  # the files of a server that is not running
    default_client = embedded_client_uri(settings) if embedded and catalog_uri else None
    findings = run_checks(
        settings, catalog_uri=catalog_uri, embedded=embedded, default_client_uri=default_client
    )
    if args.json:
        print(json.dumps([f.__dict__ for f in findings], indent=2))
    else:
        _table(findings)
    level = worst(findings)
    if level in ("error", "fatal") or (args.strict and level == "warn"):
        return 1
    return 0


def _reachable(uri: str) -> bool:
    import psycopg

    try:
        psycopg.connect(uri, connect_timeout=2).close()
    except psycopg.Error:
        return False
    return True


def _table(findings: list[Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="athena check", title_justify="left")
    for column in ("check", "target", "status", "detail"):
        table.add_column(column, overflow="fold")
    for f in findings:
        table.add_row(f.check, f.target, f"[{STYLE[f.level]}]{f.level}[/]", f.detail)
    console = Console(file=sys.stdout)
    console.print(table)
    counts = {level: sum(1 for f in findings if f.level == level) for level in STYLE}
    summary = ", ".join(f"{n} {level}" for level, n in counts.items() if n)
    console.print(summary)
