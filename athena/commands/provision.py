"""``athena provision --uri URI [--register NAME]``: apply the Athena client schema to a database.

Runs the same bundled, idempotent SQL as ``POST /admin/provision``. With ``--register NAME`` the
database is also added to the client catalog (``source: database``); running gateways sharing
that catalog pick it up within ``catalog_poll_seconds``. Prints one JSON object; failures are one
line on stderr with exit code 1 (2 for configuration problems).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import psycopg

from athena.errors import ApiError


def register(subparsers: Any) -> None:
    from athena.cli import add_common

    parser = subparsers.add_parser(
        "provision", help="apply the Athena client schema (database_audit_log …) to a database"
    )
    parser.add_argument("--uri", required=True, help="postgres:// URI of the database")
    parser.add_argument(
        "--register", metavar="NAME", help="also add the database to the client catalog as NAME"
    )
    add_common(parser)
    parser.set_defaults(func=_provision)


def _provision(args: argparse.Namespace) -> int:
    from athena.services.client_catalog import CLIENT_NAME, safe_uri, validate_pg_uri
    from athena.services.provisioning import apply_provisioning

    try:
        uri = validate_pg_uri(args.uri)
        if args.register is not None and not CLIENT_NAME.fullmatch(args.register):
            raise ApiError(
                "invalid_request", "--register NAME must match [A-Za-z0-9_][A-Za-z0-9_.-]*"
            )
    except ApiError as exc:
        print(f"athena: {exc.message}", file=sys.stderr)
        return 1
    try:
        with psycopg.connect(uri, autocommit=True, connect_timeout=5) as conn:
            result = apply_provisioning(conn)
    except psycopg.Error as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(f"athena: provisioning {safe_uri(uri)} failed: {reason}", file=sys.stderr)
        return 1
    registered = None
    if args.register:
        outcome = _register(args, args.register, uri)
        if outcome is not None:
            print(f"athena: {outcome}", file=sys.stderr)
            return 1
        registered = args.register
    print(
        json.dumps(
            {
                "statements_executed": result.statements_executed,
                "client": registered or safe_uri(uri),
                "registered": registered,
                "tables": result.tables,
            }
        )
    )
    return 0


def _register(args: argparse.Namespace, name: str, uri: str) -> str | None:
    """Insert (or revive) the catalog row; an error message, or None on success."""
    from athena.cli import catalog_connection
    from athena.db.sealed import sealer_for

    with catalog_connection(args) as (settings, conn), conn.transaction():
        sealer = sealer_for(settings)
        existing = conn.execute(
            "SELECT pg_uri, deleted_at IS NULL FROM athena.athena_clients"
            " WHERE client_name = %s FOR UPDATE",
            (name,),
        ).fetchone()
        if existing is not None and existing[1]:
            if sealer.reveal_or_none(existing[0], f"client {name}") != uri:
                return f"client '{name}' already exists with another database"
        conn.execute(
            """INSERT INTO athena.athena_clients AS c
                   (client_name, description, pg_uri, source)
               VALUES (%s, 'provisioned', %s, 'database')
               ON CONFLICT (client_name) DO UPDATE
                  SET pg_uri = EXCLUDED.pg_uri, source = 'database', is_frozen = false,
                      is_active = true, deleted_at = NULL, updated_at = now()""",
            (name, sealer.seal(uri)),
        )
    return None
