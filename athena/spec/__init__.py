"""The OpenAPI documents shipped as package data, served byte-for-byte."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

import yaml


@cache
def spec_bytes(name: str = "openapi.yaml") -> bytes:
    return resources.files("athena").joinpath("spec", name).read_bytes()


@cache
def summaries() -> dict[tuple[str, str], str]:
    """(path template, METHOD) → the summary in openapi.yaml (or openapi-wss.yaml)."""
    found: dict[tuple[str, str], str] = {}
    for name in ("openapi-wss.yaml", "openapi.yaml"):  # the HTTP contract wins on overlap
        doc = yaml.safe_load(spec_bytes(name))
        for path, ops in (doc.get("paths") or {}).items():
            for method, op in ops.items():
                if isinstance(op, dict) and "summary" in op:
                    found[(path, method.upper())] = op["summary"]
    return found


_CONVERTER = re.compile(r"<(?:[a-z_]+:)?([A-Za-z_][A-Za-z0-9_]*)>")


def openapi_path(rule: str) -> str:
    """Quart rule ``/rest/v1/<table>`` → OpenAPI template ``/rest/v1/{table}``."""
    return _CONVERTER.sub(r"{\1}", rule)
