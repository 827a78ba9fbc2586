"""Prometheus metrics of one process, in a registry of its own (two apps in one process, as in
tests, never share series).

Label cardinality is bounded: ``route`` is the route *template* (``/rest/v1/<table>``), never a
raw path; ``client`` is a configured client name or ``-``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from athena.observability.metrics_share import MetricsShare


class _CallbackCollector(Collector):
    """Gauges computed at scrape time from cheap in-memory state (pool stats, task states)."""

    def __init__(self, fn: Callable[[], Iterable[GaugeMetricFamily]]) -> None:
        self._fn = fn

    def collect(self) -> Iterable[GaugeMetricFamily]:
        return self._fn()


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.share: MetricsShare | None = None  # set in each of ``--workers N``
        self.started = time.time()
        r = self.registry
        self.uptime = Gauge(
            "athena_uptime_seconds", "Seconds since this process started", registry=r
        )
        self.uptime.set_function(lambda: time.time() - self.started)
        self.requests = Counter(
            "athena_requests",
            "HTTP and WebSocket requests served",
            ["route", "method", "status", "client"],
            registry=r,
        )
        self.latency = Histogram(
            "athena_request_duration_seconds",
            "Request latency by route template",
            ["route", "method"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.management_mutations = Counter(
            "athena_management_mutations",
            "Schema changes made through /management",
            ["operation", "client"],
            registry=r,
        )
        self.task_restarts = Counter(
            "athena_background_task_restarts",
            "Restarts of supervised background tasks",
            ["task"],
            registry=r,
        )
        self.request_log_dropped = Counter(
            "athena_request_log_dropped",
            "Request log entries dropped because the log queue was full",
            registry=r,
        )

    def add_collector(self, fn: Callable[[], Iterable[GaugeMetricFamily]]) -> None:
        self.registry.register(_CallbackCollector(fn))

    def observe(self, route: str, method: str, status: int, client: str, seconds: float) -> None:
        self.requests.labels(route, method, str(status), client).inc()
        self.latency.labels(route, method).observe(seconds)

    def render(self) -> bytes:
        """This process's series."""
        return generate_latest(self.registry)

    async def exposition(self) -> bytes:
        """What ``/metrics`` answers: with several workers, every worker's series."""
        if self.share is not None:
            return await self.share.render()
        return self.render()


def gauge(
    name: str, doc: str, labels: list[str], rows: Iterable[tuple[list[str], Any]]
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for values, value in rows:
        family.add_metric(values, float(value))
    return family
