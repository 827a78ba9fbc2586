"""Every worker's metrics, from whichever worker a scrape reaches.

With ``--workers N`` a scrape of ``/metrics`` lands on one worker. Answering with that worker's
counters alone gave Prometheus a different process's totals from one scrape to the next, which
``rate()`` reads as resets. Instead each worker labels its series ``worker="<index>"`` and
writes them to a snapshot file once a second (the ``metrics_share`` background task), and the
worker that is scraped answers with its own series, fresh, plus every other worker's latest
snapshot (at most about a second old). Each series stays monotonic within its worker;
``sum without (worker)`` gives the whole.

The snapshots live in a directory the parent process creates per run and removes after its
workers exit, so no stale totals from an earlier run are ever read.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import trio
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

log = logging.getLogger("athena.metrics")

WRITE_EVERY_SECONDS = 1.0
_SUFFIX = ".prom"


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


class _Labelled(Collector):
    """``source``'s series with one more label."""

    def __init__(self, source: CollectorRegistry, name: str, value: str) -> None:
        self._source = source
        self._name = name
        self._value = value

    def collect(self) -> Iterator[Metric]:
        for family in self._source.collect():
            out = Metric(family.name, family.documentation, family.type, family.unit)
            for sample in family.samples:
                out.add_sample(
                    sample.name,
                    {**sample.labels, self._name: self._value},
                    sample.value,
                    sample.timestamp,
                    sample.exemplar,
                )
            yield out


def merge(texts: list[bytes]) -> bytes:
    """Prometheus text exposition of several sources whose series differ by a label."""
    families: dict[str, Metric] = {}
    for text in texts:
        for family in text_string_to_metric_families(text.decode("utf-8")):
            known = families.get(family.name)
            if known is None:
                families[family.name] = family
            else:
                known.samples.extend(family.samples)
    return generate_latest(_Families(list(families.values())))  # type: ignore[arg-type]


class MetricsShare:
    """One worker's part: its snapshot file, and the merged answer to a scrape."""

    def __init__(self, directory: Path, worker: int, registry: CollectorRegistry) -> None:
        self.directory = directory
        self.own = directory / f"worker-{worker}{_SUFFIX}"
        self._labelled = _Labelled(registry, "worker", str(worker))

    def snapshot(self) -> bytes:
        return generate_latest(self._labelled)  # type: ignore[arg-type]

    async def run(self) -> None:
        """Background task: write this worker's snapshot every second."""
        while True:
            data = self.snapshot()  # on the loop: the callback gauges read loop-owned state
            await trio.to_thread.run_sync(self._write, data)
            await trio.sleep(WRITE_EVERY_SECONDS)

    def _write(self, data: bytes) -> None:
        partial = self.own.with_suffix(".tmp")
        partial.write_bytes(data)
        os.replace(partial, self.own)  # readers see a whole snapshot or the previous one

    async def render(self) -> bytes:
        """This worker's series now, and every other worker's latest snapshot."""
        own = self.snapshot()  # on the loop, as in run()
        return await trio.to_thread.run_sync(lambda: merge([own, *self._read_others()]))

    def _read_others(self) -> list[bytes]:
        texts = []
        for path in sorted(self.directory.glob(f"worker-*{_SUFFIX}")):
            if path != self.own:
                try:
                    texts.append(path.read_bytes())
                except OSError:  # a worker replacing its file; its next snapshot will do
                    log.debug("could not read %s", path, exc_info=True)
        return texts
