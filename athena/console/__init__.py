"""The operator console: a small client-side app served at ``/console`` from package data.

The console is a client of the public HTTP API and nothing else: every screen calls the same
routes curl or an SDK would, with the key the operator typed in, held in a JavaScript variable
(never a URL, a cookie or web storage). This package only finds the files to serve and the
headers they are served with.

Assets: ``static/`` of this package, plus the chart library ``plotly.min.js`` from the
installed ``plotly`` package (its package data), so nothing is pasted into this repository and
nothing is fetched from another host.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable

# The only inline content the console needs is none: scripts and styles come from files under
# 'self'. Plotly draws SVG and sets element styles through the CSSOM, which 'self' permits.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), clipboard-write=(self)",
}

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}

# Files outside static/ served under /console/assets/vendor/<name>: (package, path in it).
VENDORED = {"plotly.min.js": ("plotly", "package_data/plotly.min.js")}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def _static_root() -> Traversable:
    return resources.files(__name__).joinpath("static")


def _content_type(name: str) -> str | None:
    dot = name.rfind(".")
    return _TYPES.get(name[dot:]) if dot >= 0 else None


@cache
def asset(path: str) -> Asset | None:
    """The console file at ``path`` (relative to /console/assets/), or None.

    Only plain names made of the expected characters are looked up, one directory level at
    most, so no path can climb out of the package (``..``, absolute paths, backslashes)."""
    parts = path.split("/")
    if not 1 <= len(parts) <= 2 or any(not _safe_part(p) for p in parts):
        return None
    content_type = _content_type(parts[-1])
    if content_type is None:
        return None
    if parts[0] == "vendor":
        if len(parts) != 2 or parts[1] not in VENDORED:
            return None
        package, inner = VENDORED[parts[1]]
        try:
            node = resources.files(package).joinpath(inner)
        except ModuleNotFoundError:
            return None
    else:
        node = _static_root()
        for part in parts:
            node = node.joinpath(part)
    if not node.is_file():
        return None
    body = node.read_bytes()
    return Asset(body, content_type, hashlib.sha256(body).hexdigest()[:32])


def _safe_part(part: str) -> bool:
    return (
        0 < len(part) <= 64
        and not part.startswith(".")
        and all(c.isalnum() or c in "-_." for c in part)
    )


def index_html() -> bytes:
    return _static_root().joinpath("index.html").read_bytes()
