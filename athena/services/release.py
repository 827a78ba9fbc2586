"""What this server is, and which Athena protocol it serves — for SDK compatibility checks.

SDK 5 (``system.compatibility()``) reads ``release.version`` from ``GET /health`` (falling back to
``GET /``) and accepts an Athena server of major 4 or 5. Our own version (``athena.__version__``,
the Python package) is reported as it is, top-level ``version``; ``release`` describes the
*protocol* level, and that level is computed from the routes this server actually has: 5.0 only
when every capability SDK 5 calls is served (``PROTOCOL_5_ROUTES``), otherwise 4.1 with the
missing ones listed — so the check passes because the features are there, not because a number
was bumped.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from athena import __version__

IMPLEMENTATION = "athena-python"
# The routes SDK 5.x calls beyond 4.x: without all of them we do not claim 5.0.
PROTOCOL_5_ROUTES = (
    "/health",
    "/gateway/fetch",
    "/gateway/rpc",
    "/gateway/transaction",
    "/admin/backups/jobs",
)


def release_info(paths: Iterable[str]) -> dict[str, Any]:
    """The ``release`` object for ``GET /`` and ``GET /health``, given the served paths."""
    served = set(paths)
    missing = [p for p in PROTOCOL_5_ROUTES if p not in served]
    protocol = "4.1.0" if missing else "5.0.0"
    info: dict[str, Any] = {
        "product": "Athena",
        "version": protocol,
        "channel": "stable",
        "codename": None,
        "display_name": f"Athena {protocol[:3]} protocol ({IMPLEMENTATION} {__version__})",
        "implementation": {"name": IMPLEMENTATION, "version": __version__},
    }
    if missing:
        info["missing_routes"] = missing
    return info
