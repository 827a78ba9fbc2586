"""Database URIs as the gateway may show them: the password never leaves the process."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def mask_uri(uri: str | None) -> str | None:
    """The URI with its password replaced by ``***`` — the only form any response may show."""
    if not uri:
        return uri
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "***"
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, ""))
