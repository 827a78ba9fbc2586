"""/health/cluster with two live mirrors, a closed port and a slow server; registries' cache."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import psycopg
import pytest
from obs_helpers import scrape, wait_for
from support.pg import TestPostgres
from support.servers import AthenaServer

from athena.db.embedded import free_port

PROBE_TIMEOUT_S = 2.0


class _Slow(BaseHTTPRequestHandler):
    """Answers every request, but only after 10 s."""

    def do_GET(self) -> None:
        time.sleep(10)
        try:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"pong")
        except OSError:
            pass  # the prober gave up long ago

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def slow_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_cluster_health_probes_mirrors_in_the_background(
    athena_factory: Callable[..., AthenaServer],
    pg: TestPostgres,
    data_db: str,
    slow_url: str,
    athena: AthenaServer,
    obs: AthenaServer,
) -> None:
    mirror_a, mirror_b = athena, obs  # two live gateways already running
    closed = f"http://127.0.0.1:{free_port()}"
    mirrors = [mirror_a.url, mirror_b.url + "/", closed, slow_url]
    catalog = pg.create_database(owner="postgres")
    clients = {"athena": {"pg_uri": pg.app_uri(data_db)}}
    main = athena_factory(
        clients=clients,
        catalog=catalog,
        CLUSTER_MIRRORS=json.dumps(mirrors),
        CLUSTER_PROBE_TIMEOUT_S=str(PROBE_TIMEOUT_S),
    )
    # A second instance on the same catalog, configured with one mirror: it does not hold the
    # probe lease, yet answers from the probes the first one stores in the catalog.
    peer = athena_factory(clients=clients, catalog=catalog, CLUSTER_MIRRORS=mirror_a.url)

    def settled() -> dict | None:
        started = time.monotonic()
        body = httpx.get(f"{main.url}/health/cluster", timeout=5).json()
        # Served from memory: a response that waited for a probe would take at least the probe
        # timeout (the slow mirror answers after 10 s). The margin absorbs a loaded machine.
        assert time.monotonic() - started < PROBE_TIMEOUT_S * 0.75
        by_url = {m["url"]: m for m in body["mirrors"]}
        done = all(by_url[u]["message"] != "not probed yet" for u in by_url)
        return body if done and by_url[mirror_a.url]["status"] == "online" else None

    body = wait_for(settled, timeout=20, what="all mirrors probed")
    assert body["version"] == body["cargo_toml_version"] == "1.3.0"
    assert body["athena_api"] == "online"
    by_url = {m["url"]: m for m in body["mirrors"]}
    assert list(by_url) == [mirror_a.url, mirror_b.url, closed, slow_url]  # configured order
    for url in (mirror_a.url, mirror_b.url):
        mirror = by_url[url]
        assert mirror["status"] == "online", mirror
        assert mirror["cargo_toml_version"] == "1.3.0"
        assert mirror["latency_ms"] > 0
        assert mirror["download_bytes_per_sec"] > 0
        assert mirror["message"] is None
    assert by_url[closed]["status"] == "offline"
    assert by_url[closed]["message"] == "unreachable: ConnectError"
    assert by_url[slow_url]["status"] == "offline"
    assert by_url[slow_url]["message"] == f"no answer within {PROBE_TIMEOUT_S:g} s"
    assert by_url[slow_url]["latency_ms"] is None
    assert body["message"] == "2 of 4 mirrors online"

    metrics = scrape(main)
    assert metrics[("athena_cluster_mirror_up", (("mirror", mirror_a.url),))] == 1
    assert metrics[("athena_cluster_mirror_up", (("mirror", closed),))] == 0
    assert metrics[("athena_cluster_mirror_up", (("mirror", slow_url),))] == 0
    assert metrics[("athena_cluster_mirror_latency_seconds", (("mirror", mirror_b.url),))] > 0
    assert (
        metrics[("athena_cluster_mirror_download_bytes_per_second", (("mirror", mirror_b.url),))]
        > 0
    )

    peer_body = wait_for(
        lambda: (
            (b := httpx.get(f"{peer.url}/health/cluster").json())["mirrors"][0]["status"]
            == "online"
            and b
        ),
        what="the peer's view",
    )
    assert [m["url"] for m in peer_body["mirrors"]] == [mirror_a.url]
    # Stop probing the shared gateways now: their logged traffic is counted by other tests.
    assert peer.stop() == 0 and main.stop() == 0


def test_cluster_health_without_mirrors(http: httpx.Client) -> None:
    body = http.get("/health/cluster").json()
    assert body["mirrors"] == []
    assert body["message"] == "0 of 0 mirrors online"


def _add(conn: psycopg.Connection, table: str, row_id: str, name: str | None, doc: dict) -> None:
    conn.execute(
        f"INSERT INTO athena.{table} (id, name, document) VALUES (%s, %s, %s)",
        (row_id, name, json.dumps(doc)),
    )


def test_registry_is_cached_and_no_cache_reloads(
    obs: AthenaServer, obs_catalog: psycopg.Connection
) -> None:
    _add(obs_catalog, "api_registry", "svc-1", "billing", {"base_url": "https://b", "id": "x"})
    with obs.client() as http:
        first = http.get("/registry")
        assert first.status_code == 200
        assert first.headers["x-athena-cache"] == "miss"
        [row] = first.json()
        assert row["id"] == "svc-1"  # the row's id wins over the document's
        assert row["name"] == "billing"
        assert row["base_url"] == "https://b"
        assert {"created_at", "updated_at"} <= set(row)

        _add(obs_catalog, "api_registry", "svc-2", None, {"base_url": "https://c"})
        cached = http.get("/registry")
        assert cached.headers["x-athena-cache"] == "hit"
        assert [r["id"] for r in cached.json()] == ["svc-1"]
        assert http.get("/registry/svc-2").json() == []  # same cached copy

        fresh = http.get("/registry", headers={"Cache-Control": "no-cache"})
        assert fresh.headers["x-athena-cache"] == "miss"
        assert [r["id"] for r in fresh.json()] == ["svc-1", "svc-2"]
        assert "name" not in fresh.json()[1]
        after = http.get("/registry")
        assert after.headers["x-athena-cache"] == "hit"
        assert [r["id"] for r in after.json()] == ["svc-1", "svc-2"]

        [one] = http.get("/registry/svc-2").json()
        assert one["base_url"] == "https://c"
        assert http.get("/registry/absent").json() == []
        assert http.get("/registry/absent").status_code == 200


def test_router_registry(obs: AthenaServer, obs_catalog: psycopg.Connection) -> None:
    _add(obs_catalog, "router_registry", "r-1", "edge", {"routes": ["/a", "/b"]})
    with obs.client(**{"Cache-Control": "no-cache"}) as http:
        response = http.get("/router/registry")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        [row] = response.json()
        assert (row["id"], row["name"], row["routes"]) == ("r-1", "edge", ["/a", "/b"])
