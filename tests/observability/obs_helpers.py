"""Helpers of the observability tests: polling, and /metrics parsed with prometheus-client."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
from prometheus_client.parser import text_string_to_metric_families
from support.servers import AthenaServer

T = TypeVar("T")

FAST = {
    "STATISTICS_ROLLUP_SECONDS": "0.3",
    "POOL_HEALTH_INTERVAL_S": "0.5",
}


def wait_for(check: Callable[[], T], timeout: float = 15.0, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


def scrape(server: AthenaServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` parsed with prometheus-client's parser: (sample name, labels) → value."""
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def families(server: AthenaServer) -> set[str]:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return {f.name for f in text_string_to_metric_families(text)}
