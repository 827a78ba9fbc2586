"""IP allow/deny lists per key and the global deny list, over the real server.

The test clients are on loopback, so 127.0.0.0/8 is "our" network and 10.0.0.0/8 somebody
else's; no traffic leaves loopback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from support.servers import AthenaServer

MakeKey = Callable[..., tuple[str, dict[str, Any]]]
FETCH = {"table_name": "ip_list_items"}


@pytest.fixture(scope="module", autouse=True)
def _table(pg: Any, data_db: str) -> None:
    with pg.connect(data_db) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS ip_list_items (id int PRIMARY KEY)")
        conn.execute("INSERT INTO ip_list_items VALUES (1) ON CONFLICT DO NOTHING")


def _fetch(athena: AthenaServer, key: str) -> httpx.Response:
    with athena.client(apikey=key, **{"X-Athena-Client": "athena"}) as client:
        return client.post("/gateway/fetch", json=FETCH)


def _code(response: httpx.Response) -> str | None:
    return response.json().get("code") if response.status_code >= 400 else None


def test_allowlist_admits_only_its_networks(
    athena: AthenaServer, admin: httpx.Client, make_key: MakeKey
) -> None:
    key, record = make_key(rights=["gateway.read"], ip_allowlist=["10.0.0.0/8"])
    assert record["ip_allowlist"] == ["10.0.0.0/8"] and record["ip_denylist"] == []
    refused = _fetch(athena, key)
    assert refused.status_code == 403 and _code(refused) == "ip_not_allowed"
    assert "10.0.0.0" not in refused.text, "the response does not reveal the list"

    patched = admin.patch(
        f"/admin/api-keys/{record['id']}", json={"ip_allowlist": ["10.0.0.0/8", "127.0.0.0/8"]}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["record"]["ip_allowlist"] == ["10.0.0.0/8", "127.0.0.0/8"]
    served = _fetch(athena, key)
    assert served.status_code == 200, served.text
    assert served.json()["data"] == [{"id": 1}]


def test_denylist_wins_over_allowlist(athena: AthenaServer, make_key: MakeKey) -> None:
    key, record = make_key(
        rights=["gateway.read"], ip_allowlist="127.0.0.0/8", ip_denylist=["127.0.0.1"]
    )
    assert record["ip_denylist"] == ["127.0.0.1/32"], "a bare address is a /32, normalised"
    refused = _fetch(athena, key)
    assert refused.status_code == 403 and _code(refused) == "ip_denied"


def test_a_wrong_secret_is_still_invalid_outside_the_allowlist(
    athena: AthenaServer, make_key: MakeKey
) -> None:
    """The lists are checked once the key is proven: public ids cannot be probed by address."""
    key, _ = make_key(rights=["gateway.read"], ip_allowlist=["10.0.0.0/8"])
    forged = key.rsplit(".", 1)[0] + "." + "0" * 64
    refused = _fetch(athena, forged)
    assert refused.status_code == 401 and _code(refused) == "invalid_api_key"


@pytest.mark.parametrize(
    "bad", [["not-a-network"], ["10.0.0.0/33"], ["42"], "10.0.0.0/8,nope", [7]]
)
def test_bad_networks_are_refused_and_nothing_is_written(
    admin: httpx.Client, catalog_conn: psycopg.Connection, bad: Any
) -> None:
    response = admin.post("/admin/api-keys", json={"name": "bad-cidr-key", "ip_allowlist": bad})
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "validation_error"
    assert "ip_allowlist" in response.text
    assert catalog_conn.execute(
        "SELECT count(*) FROM athena.api_keys WHERE name = 'bad-cidr-key'"
    ).fetchone() == (0,)


@pytest.fixture
def global_denylist(admin: httpx.Client) -> Iterator[Callable[[list[str]], httpx.Response]]:
    def put(networks: list[str]) -> httpx.Response:
        return admin.put("/admin/api-key-config", json={"ip_denylist": networks})

    try:
        yield put
    finally:
        assert put([]).status_code == 200


def test_global_denylist_refuses_every_route_but_its_own(
    athena: AthenaServer,
    admin: httpx.Client,
    make_key: MakeKey,
    global_denylist: Callable[[list[str]], httpx.Response],
) -> None:
    key, _ = make_key(rights=["gateway.read"])
    before = admin.get("/admin/api-key-config").json()["global"]["enforce_api_keys"]

    elsewhere = global_denylist(["10.0.0.0/8"])
    assert elsewhere.status_code == 200, elsewhere.text
    assert elsewhere.json()["global"]["ip_denylist"] == ["10.0.0.0/8"]
    assert elsewhere.json()["global"]["enforce_api_keys"] == before, "the flag is unchanged"
    assert _fetch(athena, key).status_code == 200

    ours = global_denylist(["127.0.0.0/8"])
    assert ours.status_code == 200
    for response in (
        _fetch(athena, key),
        admin.post("/gateway/fetch", json=FETCH),  # the master key too
        admin.get("/admin/api-keys"),
        admin.get("/"),
    ):
        assert response.status_code == 403, response.text
        assert _code(response) == "ip_denied"
    # liveness, scraping and the list itself stay reachable
    assert admin.get("/ping").text == "pong"
    assert admin.get("/admin/api-key-config").json()["global"]["ip_denylist"] == ["127.0.0.0/8"]

    assert global_denylist([]).status_code == 200
    assert _fetch(athena, key).status_code == 200


def test_global_denylist_applies_on_another_instance(
    athena_factory: Callable[..., AthenaServer],
    make_key: MakeKey,
    global_denylist: Callable[[list[str]], httpx.Response],
) -> None:
    """The list lives in the catalog: an instance that did not make the change obeys it too."""
    other = athena_factory()
    key, _ = make_key(rights=["gateway.read"])
    assert _fetch(other, key).status_code == 200
    assert global_denylist(["127.0.0.0/8"]).status_code == 200
    import time

    deadline = time.monotonic() + 5
    while _fetch(other, key).status_code != 403 and time.monotonic() < deadline:
        time.sleep(0.1)
    refused = _fetch(other, key)
    assert refused.status_code == 403 and _code(refused) == "ip_denied"
