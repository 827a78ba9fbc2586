"""Athena: one safe HTTP + WebSocket gateway in front of many PostgreSQL databases."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("athena")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "1.3.0"
