"""Issue 17, finding 6: keys never in URLs; /metrics, /registry and the WebSocket upgrade can be
closed with a key.

- A key in the query string (``?api_key=``, ``?apikey=``, or any parameter whose value is a
  key) is 400 ``api_key_in_url`` on every path — admin routes, the hot lane, Quart routes,
  /rest/v1 and the WebSocket upgrade — and the key is never used.
- ``ATHENA_METRICS_KEY`` / ``ATHENA_REGISTRY_KEY`` close /metrics and /registry*; unset (the
  default, as Prometheus expects) they stay open.
- ``ATHENA_WS_REQUIRE_KEY``: the upgrade needs a valid key where enforcement applies.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
import trio
from support.servers import AthenaServer
from trio_websocket import ConnectionRejected, open_websocket_url


def _refused(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "api_key_in_url"


def test_admin_routes_refuse_the_admin_key_in_the_query_string(
    athena: AthenaServer, admin_key: str
) -> None:
    with athena.client() as http:
        _refused(http.get("/admin/api-keys", params={"api_key": admin_key}))
        # even with the key in a header as well: the URL is already in someone's log
        _refused(
            http.get(
                "/admin/api-keys", params={"api_key": admin_key}, headers={"apikey": admin_key}
            )
        )
        assert http.get("/admin/api-keys", headers={"apikey": admin_key}).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "param"),
    [
        ("POST", "/gateway/fetch", "apikey"),  # the hot lane
        ("POST", "/gateway/fetch", "api_key"),
        ("GET", "/rest/v1/gw_items", "token"),  # /rest/v1: refused by the value
        ("GET", "/schema/tables", "api_key"),  # a Quart route
        ("GET", "/", "x"),
    ],
)
def test_data_routes_refuse_keys_in_the_url(
    athena: AthenaServer, admin_key: str, method: str, path: str, param: str
) -> None:
    with athena.client(**{"X-Athena-Client": "athena"}) as http:
        response = http.request(
            method, path, params={param: admin_key}, json={"table_name": "gw_items"}
        )
    _refused(response)
    assert admin_key not in response.text


def test_rest_filters_on_columns_named_like_keys_still_work(
    athena: AthenaServer, admin_key: str
) -> None:
    # "apikey=eq.x" on /rest/v1 is a filter on a column named apikey, not a key: not refused
    with athena.client(apikey=admin_key, **{"X-Athena-Client": "athena"}) as http:
        response = http.get("/rest/v1/gw_items", params={"apikey": "eq.x"})
    assert response.json().get("code") != "api_key_in_url"


async def test_the_websocket_upgrade_refuses_a_key_in_the_url(
    athena: AthenaServer, admin_key: str
) -> None:
    url = f"ws://127.0.0.1:{athena.port}/wss/gateway?apikey={admin_key}"
    with pytest.raises(ConnectionRejected) as rejected:
        with trio.fail_after(10):
            async with open_websocket_url(url):
                pass
    assert rejected.value.status_code == 400
    assert b"api_key_in_url" in (rejected.value.body or b"")


@pytest.fixture(scope="module")
def closed(athena_factory: Callable[..., AthenaServer]) -> AthenaServer:
    return athena_factory(
        metrics_key="scrape-secret-1", registry_key="registry-secret-1", ws_require_key="true"
    )


def test_metrics_are_open_by_default(athena: AthenaServer) -> None:
    assert httpx.get(f"{athena.url}/metrics").status_code == 200


def test_metrics_and_registry_keys_close_those_routes(closed: AthenaServer, admin_key: str) -> None:
    with closed.client() as http:
        for path, key in (("/metrics", "scrape-secret-1"), ("/registry", "registry-secret-1")):
            missing = http.get(path)
            assert missing.status_code == 401 and missing.json()["code"] == "api_key_required"
            wrong = http.get(path, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401 and wrong.json()["code"] == "invalid_api_key"
            assert http.get(path, headers={"Authorization": f"Bearer {key}"}).status_code == 200
            assert http.get(path, headers={"apikey": admin_key}).status_code == 200
        # each key opens its own route only
        other = http.get("/registry", headers={"Authorization": "Bearer scrape-secret-1"})
        assert other.status_code == 401
        assert "athena_" in http.get("/metrics", headers={"x-api-key": "scrape-secret-1"}).text


async def test_ws_require_key_authenticates_the_upgrade(
    closed: AthenaServer, seeded_key: Callable[..., str]
) -> None:
    url = f"ws://127.0.0.1:{closed.port}/wss/gateway"
    for headers in ([], [(b"apikey", b"ath_0123456789abcdef.nope")]):
        with pytest.raises(ConnectionRejected) as rejected:
            with trio.fail_after(10):
                async with open_websocket_url(url, extra_headers=headers):
                    pass
        assert rejected.value.status_code == 401
    key = seeded_key(rights=["*"]).encode()
    with trio.fail_after(10):
        async with open_websocket_url(url, extra_headers=[(b"apikey", key)]) as ws:
            hello = await ws.get_message()
    assert '"connection"' in hello
