"""Cluster health: the mirrors of ``ATHENA_CLUSTER_MIRRORS`` probed in the background.

Two tasks:

* ``cluster_probes`` (lease ``LEASE_CLUSTER_PROBES``: once per deployment) probes every mirror
  that some instance wants, each in its own loop, concurrently, with a timeout — so a dead or slow
  mirror never delays the others. A probe is ``GET /ping`` (latency), ``GET /`` (the version the
  mirror reports) and a timed ``GET /openapi.yaml`` (download throughput). Results go to the
  catalog table ``athena.cluster_mirror_health`` as soon as each probe ends.
* ``cluster_health_cache`` (every worker) marks its configured mirrors as wanted and reads their
  latest results into memory about once a second; ``/health/cluster`` serves that snapshot and
  never probes or queries on the request path.

A result older than ``stale_after`` (the prober stopped: lease in hand-over, catalog down) is
reported ``offline`` with a message saying so, never as a stale ``online``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
import psycopg
import trio
from psycopg import sql
from psycopg.rows import dict_row

from athena import __version__
from athena.observability.metrics import gauge
from athena.supervisor import LEASE_CLUSTER_PROBES, BackgroundTask

if TYPE_CHECKING:
    from athena.runtime import Runtime

log = logging.getLogger("athena.cluster")

# The snapshot served by /health/cluster is at most this old.
CACHE_REFRESH_S = 1.0
# A mirror nobody has asked for within this long is no longer probed.
WANTED_FOR_S = 300
# wanted_at is only rewritten when older than this: one write per instance per half minute.
WANTED_TOUCH_S = 30

_TOUCH_WANTED = sql.SQL("""
INSERT INTO athena.cluster_mirror_health AS m (url, wanted_at) VALUES (%s, now())
ON CONFLICT (url) DO UPDATE SET wanted_at = now()
 WHERE m.wanted_at < now() - make_interval(secs => %s)
""")
_READ = sql.SQL("""
SELECT url, status, latency_ms, download_bytes_per_sec, cargo_toml_version, message, checked_at,
       extract(epoch FROM now() - checked_at) AS age_s
  FROM athena.cluster_mirror_health WHERE url = ANY(%s)
""")
_WANTED = sql.SQL(
    "SELECT url FROM athena.cluster_mirror_health"
    " WHERE wanted_at > now() - make_interval(secs => %s) ORDER BY url"
)
_STORE = sql.SQL("""
UPDATE athena.cluster_mirror_health
   SET status = %(status)s, latency_ms = %(latency_ms)s,
       download_bytes_per_sec = %(download_bytes_per_sec)s,
       cargo_toml_version = %(cargo_toml_version)s, message = %(message)s, checked_at = now()
 WHERE url = %(url)s
""")


def normalize(url: str) -> str:
    return url.strip().rstrip("/")


@dataclass
class MirrorResult:
    url: str
    status: str  # online | offline
    latency_ms: float | None = None
    download_bytes_per_sec: float | None = None
    cargo_toml_version: str | None = None
    message: str | None = None

    def as_params(self) -> dict[str, Any]:
        return dict(self.__dict__)


async def probe_mirror(client: httpx.AsyncClient, url: str, timeout_s: float) -> MirrorResult:
    """One probe; never raises (except Cancelled): a failure is an ``offline`` result."""
    result = MirrorResult(url, "offline")
    with trio.move_on_after(timeout_s) as timer:
        try:
            started = time.perf_counter()
            ping = await client.get(f"{url}/ping")
            result.latency_ms = round((time.perf_counter() - started) * 1000.0, 3)
            ping.raise_for_status()
            root = (await client.get(f"{url}/")).raise_for_status().json()
            version = root.get("cargo_toml_version") or root.get("version")
            result.cargo_toml_version = str(version) if version is not None else None
            started = time.perf_counter()
            document = (await client.get(f"{url}/openapi.yaml")).raise_for_status()
            elapsed = max(time.perf_counter() - started, 1e-6)
            result.download_bytes_per_sec = round(len(document.content) / elapsed, 1)
            result.status = "online"
            return result
        except httpx.HTTPStatusError as exc:
            result.message = f"{exc.request.url.path} answered HTTP {exc.response.status_code}"
        except httpx.TimeoutException:
            result.message = f"no answer within {timeout_s:g} s"
        except httpx.HTTPError as exc:
            result.message = f"unreachable: {type(exc).__name__}"
        except (ValueError, AttributeError):
            result.message = "GET / did not answer an Athena JSON document"
    if timer.cancelled_caught:
        result.message = f"no answer within {timeout_s:g} s"
    return result


def _touch_and_read(conn: psycopg.Connection, urls: list[str], touch: bool) -> list[dict]:
    if touch:
        with conn.cursor() as cur:
            cur.executemany(_TOUCH_WANTED, [(u, WANTED_TOUCH_S) for u in urls])
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(_READ, (urls,))
        return cur.fetchall()


def _wanted(conn: psycopg.Connection) -> list[str]:
    return [r[0] for r in conn.execute(_WANTED, (WANTED_FOR_S,)).fetchall()]


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class ClusterHealth:
    rt: Runtime
    mirrors: list[str]
    interval_s: float
    timeout_s: float
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    read_at: float = 0.0  # monotonic time of the last read: ages keep growing if reads stop
    probes_run: int = 0

    @property
    def stale_after_s(self) -> float:
        # Three missed rounds (each at most interval + timeout) plus a lease hand-over.
        return 3 * (self.interval_s + self.timeout_s) + 5

    # -- every worker: the snapshot ------------------------------------------------------

    async def run_cache(self) -> None:
        last_touch = 0.0
        while True:
            touch = time.monotonic() - last_touch >= WANTED_TOUCH_S / 2
            rows = await self.rt.catalog.run(
                lambda conn, t=touch: _touch_and_read(conn, self.mirrors, t)
            )
            if touch:
                last_touch = time.monotonic()
            self.rows = {r["url"]: r for r in rows}
            self.read_at = time.monotonic()
            await trio.sleep(CACHE_REFRESH_S)

    def snapshot(self) -> list[dict[str, Any]]:
        """ClusterMirrorHealth objects in configured order, from memory."""
        out = []
        for url in self.mirrors:
            row = self.rows.get(url)
            item: dict[str, Any] = {
                "url": url,
                "status": "offline",
                "latency_ms": None,
                "download_bytes_per_sec": None,
                "cargo_toml_version": None,
                "message": None,
                "checked_at": None,
            }
            if row is None or row["checked_at"] is None:
                item["message"] = "not probed yet"
            elif (age := self._age(row)) > self.stale_after_s:
                item["message"] = f"no probe result for {age:.0f} s"
                item["checked_at"] = _iso(row["checked_at"])
            else:
                for key in ("status", "latency_ms", "download_bytes_per_sec"):
                    item[key] = row[key]
                item["cargo_toml_version"] = row["cargo_toml_version"]
                item["message"] = row["message"]
                item["checked_at"] = _iso(row["checked_at"])
            out.append(item)
        return out

    def _age(self, row: dict[str, Any]) -> float:
        """Seconds since the mirror was probed, as of now (not as of the last catalog read)."""
        return float(row["age_s"] or 0.0) + (time.monotonic() - self.read_at)

    # -- once per deployment: the prober -------------------------------------------------

    async def run_prober(self) -> None:
        headers = {"user-agent": f"athena-cluster-probe/{__version__}"}
        timeout = httpx.Timeout(self.timeout_s)
        async with httpx.AsyncClient(timeout=timeout, headers=headers) as client:
            loops: dict[str, trio.CancelScope] = {}
            async with trio.open_nursery() as nursery:
                while True:
                    wanted = set(await self.rt.catalog.run(_wanted))
                    for url in wanted - loops.keys():
                        loops[url] = await nursery.start(self._probe_loop, client, url)
                    for url in loops.keys() - wanted:
                        loops.pop(url).cancel()
                    await trio.sleep(max(self.interval_s, CACHE_REFRESH_S))

    async def _probe_loop(
        self,
        client: httpx.AsyncClient,
        url: str,
        task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            while True:
                result = await probe_mirror(client, url, self.timeout_s)
                await self.rt.catalog.run(
                    lambda conn, r=result: conn.execute(_STORE, r.as_params())
                )
                self.probes_run += 1
                await trio.sleep(self.interval_s)

    def collect(self) -> list[Any]:
        items = self.snapshot()
        up = [([m["url"]], 1 if m["status"] == "online" else 0) for m in items]
        latency = [
            ([m["url"]], m["latency_ms"] / 1000.0) for m in items if m["latency_ms"] is not None
        ]
        throughput = [
            ([m["url"]], m["download_bytes_per_sec"])
            for m in items
            if m["download_bytes_per_sec"] is not None
        ]
        return [
            gauge(
                "athena_cluster_mirror_up",
                "1 if the mirror answered its last probe",
                ["mirror"],
                up,
            ),
            gauge(
                "athena_cluster_mirror_latency_seconds",
                "Round trip of the mirror's GET /ping in its last probe",
                ["mirror"],
                latency,
            ),
            gauge(
                "athena_cluster_mirror_download_bytes_per_second",
                "Throughput of the timed GET /openapi.yaml in the mirror's last probe",
                ["mirror"],
                throughput,
            ),
        ]


def attach(rt: Runtime) -> ClusterHealth:
    """Start-up (``Runtime._start_capabilities``): the mirror cache and the prober."""
    settings = rt.settings
    mirrors = list(dict.fromkeys(normalize(u) for u in settings.cluster_mirrors if u.strip()))
    health = ClusterHealth(
        rt, mirrors, settings.cluster_probe_interval_s, settings.cluster_probe_timeout_s
    )
    rt.metrics.add_collector(health.collect)
    if mirrors:
        rt.background.append(BackgroundTask("cluster_health_cache", health.run_cache))
    # Every instance contends for the prober lease, even one without mirrors of its own: the
    # holder probes what any instance wants.
    rt.background.append(
        BackgroundTask("cluster_probes", health.run_prober, lease_id=LEASE_CLUSTER_PROBES)
    )
    return health
