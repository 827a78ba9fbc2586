"""``athena keys create | list | revoke`` — API keys for operators with shell access to the
catalog but not the admin key.

Same behaviour as ``/admin/api-keys`` (one implementation: ``athena.services.api_keys``).
``create`` prints the full key on stdout, once and alone, so ``KEY=$(athena keys create …)``
captures exactly the key; the record goes to stderr. A running gateway picks a change up on its
next request (``NOTIFY athena_auth_changed``), at the latest after ``ATHENA_AUTH_CACHE_SECONDS``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import psycopg

from athena.config import Settings
from athena.db.catalog import DEFAULT_CLIENT_DATABASE
from athena.errors import ApiError


def register(subparsers: Any) -> None:
    from athena.cli import add_common

    keys = subparsers.add_parser("keys", help="create, list and revoke API keys")
    sub = keys.add_subparsers(dest="keys_command", required=True)

    create = sub.add_parser("create", help="create a key and print it (shown only once)")
    create.add_argument("--name", required=True, help="what the key is for")
    create.add_argument("--client", help="bind the key to this client (X-Athena-Client)")
    create.add_argument(
        "--right",
        action="append",
        default=[],
        metavar="RIGHT",
        help="grant a right (repeatable), e.g. users.read, gateway.*, *",
    )
    create.add_argument("--expires", metavar="ISO", help="expiry, e.g. 2027-01-31T00:00:00Z")
    create.add_argument("--description", help="free text")
    add_common(create)
    create.set_defaults(func=_create)

    listing = sub.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--json", action="store_true", help="print JSON records")
    add_common(listing)
    listing.set_defaults(func=_list)

    revoke = sub.add_parser("revoke", help="deactivate a key by id or public id")
    revoke.add_argument("id", help="the key's id (uuid) or public id (16 hex characters)")
    add_common(revoke)
    revoke.set_defaults(func=_revoke)


def _run(args: argparse.Namespace, action: Any) -> int:
    """Open the catalog, make sure it is migrated, run ``action(conn, configured clients)``;
    every failure is one line on stderr and exit code 1."""
    from athena.cli import catalog_connection
    from athena.db.catalog import migrate

    try:
        with catalog_connection(args) as (settings, conn):
            # Idempotent: lets ``keys create`` work before the first ``athena serve``.
            migrate(conn, enforce_api_keys_default=settings.enforce_api_keys)
            return int(action(conn, _configured_clients(settings)))
    except ApiError as exc:
        print(f"athena: {exc.message}", file=sys.stderr)
        return 1
    except psycopg.Error as exc:
        reason = (exc.diag.message_primary if exc.diag else None) or type(exc).__name__
        print(f"athena: catalog error: {reason}", file=sys.stderr)
        return 1


def _configured_clients(settings: Settings) -> set[str]:
    """Clients the configuration defines: valid bindings even before the first ``serve`` has
    synced them into the catalog (the embedded default always serves ``athena``)."""
    names = set(settings.clients)
    if not settings.catalog_uri:
        names.add(DEFAULT_CLIENT_DATABASE)
    return names


def _create(args: argparse.Namespace) -> int:
    from athena.services import api_keys as svc

    body: dict[str, Any] = {
        "name": args.name,
        "client_name": args.client,
        "rights": args.right,
        "expires_at": args.expires,
        "description": args.description,
    }

    def action(conn: psycopg.Connection, clients: set[str]) -> int:
        request = svc.parse(svc.KeyCreate, body)
        full, record = svc.create_key(conn, request, known_clients=clients)
        print(full)
        print(
            f"created key {record['public_id']} (id {record['id']}); "
            "store it now, it is not shown again",
            file=sys.stderr,
        )
        return 0

    return _run(args, action)


def _list(args: argparse.Namespace) -> int:
    from athena.services import api_keys as svc

    def action(conn: psycopg.Connection, clients: set[str]) -> int:
        records = svc.list_keys(conn)
        if args.json:
            print(json.dumps(records, indent=2))
            return 0
        print(_table(records))
        return 0

    return _run(args, action)


def _revoke(args: argparse.Namespace) -> int:
    from athena.services import api_keys as svc

    def action(conn: psycopg.Connection, clients: set[str]) -> int:
        record = svc.revoke_key(conn, args.id)
        print(f"revoked key {record['public_id']} (id {record['id']})")
        return 0

    return _run(args, action)


_COLUMNS = ("id", "public_id", "name", "client_name", "is_active", "expires_at", "rights")


def _table(records: list[dict[str, Any]]) -> str:
    """Plain aligned columns (no dependency for a table that operators read or grep)."""

    def cell(record: dict[str, Any], column: str) -> str:
        value = record.get(column)
        if column == "rights":
            return ",".join(value or []) or "-"
        if value is None:
            return "-"
        return str(value).lower() if isinstance(value, bool) else str(value)

    rows = [list(_COLUMNS)] + [[cell(r, c) for c in _COLUMNS] for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    return "\n".join(
        "  ".join(value.ljust(widths[i]) for i, value in enumerate(row)).rstrip() for row in rows
    )
