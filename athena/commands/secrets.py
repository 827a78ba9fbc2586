"""``athena secrets generate | reencrypt``: the keys that seal client URIs in the catalog.

Rotation: put a new key first in ``ATHENA_ENCRYPTION_KEYS`` (keep the old ones after it),
restart the gateways or run ``athena secrets reencrypt``, then drop the old keys.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: Any) -> None:
    from athena.cli import add_common

    secrets = subparsers.add_parser("secrets", help="encryption keys for client URIs at rest")
    sub = secrets.add_subparsers(dest="secrets_command", required=True)
    generate = sub.add_parser("generate", help="print a new key for ATHENA_ENCRYPTION_KEYS")
    generate.set_defaults(func=_generate)
    reencrypt = sub.add_parser(
        "reencrypt", help="seal plain client URIs and rotate old ones to the first key"
    )
    add_common(reencrypt)
    reencrypt.set_defaults(func=_reencrypt)


def _generate(args: argparse.Namespace) -> int:
    from athena.db.sealed import generate_key

    print(generate_key())
    return 0


def _reencrypt(args: argparse.Namespace) -> int:
    from athena.cli import catalog_connection
    from athena.db.sealed import reencrypt, sealer_for

    with catalog_connection(args) as (settings, conn):
        sealer = sealer_for(settings)
        if not sealer.enabled:
            print("athena: no ATHENA_ENCRYPTION_KEYS configured; nothing to do")
            return 2
        rewritten, unreadable = reencrypt(conn, sealer)
    print(json.dumps({"rewritten": rewritten, "unreadable_clients": unreadable}))
    return 1 if unreadable else 0
