"""The guard over the real server: every status of CONTRACT.md's API keys table, produced by
real keys against ``/gateway/fetch`` and ``/management/capabilities``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql
from support.keys import seed_key
from support.pg import TestPostgres
from support.servers import AthenaServer

TABLE = "auth_items"
FETCH = {"table_name": TABLE}


@pytest.fixture(scope="module")
def gateway(
    athena_factory: Callable[..., AthenaServer], pg: TestPostgres, data_db: str
) -> AthenaServer:
    """A gateway serving two clients on the shared catalog (both on the test data database)."""
    with pg.connect(data_db) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS auth_items (id int PRIMARY KEY, label text NOT NULL)"
        )
        conn.execute("INSERT INTO auth_items VALUES (1, 'one') ON CONFLICT DO NOTHING")
    uri = pg.app_uri(data_db)
    return athena_factory(clients={"athena": {"pg_uri": uri}, "other": {"pg_uri": uri}})


@pytest.fixture
def gw_admin(gateway: AthenaServer, admin_key: str) -> Iterator[httpx.Client]:
    with gateway.client(apikey=admin_key) as client:
        yield client


@pytest.fixture
def create(gw_admin: httpx.Client) -> Callable[..., tuple[str, dict[str, Any]]]:
    def make(**body: Any) -> tuple[str, dict[str, Any]]:
        body.setdefault("name", "guard test")
        response = gw_admin.post("/admin/api-keys", json=body)
        assert response.status_code == 201, response.text
        return response.json()["api_key"], response.json()["record"]

    return make


def fetch(
    gateway: AthenaServer, key: str | None = None, client: str = "athena", **headers: str
) -> httpx.Response:
    if key is not None:
        headers.setdefault("apikey", key)
    with gateway.client(**{"X-Athena-Client": client}, **headers) as http:
        return http.post("/gateway/fetch", json=FETCH)


def assert_refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "error" and body["code"] == code, body


def assert_served(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.json()["data"] == [{"id": 1, "label": "one"}]


# -- 401 -----------------------------------------------------------------------------------


def test_no_key_is_401_when_enforced(gateway: AthenaServer) -> None:
    assert_refused(fetch(gateway), 401, "api_key_required")


def test_malformed_unknown_and_wrong_secret_keys_are_401(
    gateway: AthenaServer, create: Callable[..., Any]
) -> None:
    key, _ = create(rights=["*"])
    public_id = key.split(".")[0]
    for bad in ["nonsense", public_id + "." + "0" * 64, "ath_0123456789abcdef." + "a" * 64]:
        assert_refused(fetch(gateway, bad), 401, "invalid_api_key")
    assert_served(fetch(gateway, key))


def test_every_key_header_is_accepted(gateway: AthenaServer, create: Callable[..., Any]) -> None:
    key, _ = create(rights=["gateway.read"])
    for headers in (
        {"apikey": key},
        {"x-api-key": key},
        {"X-Athena-Key": key},
        {"Authorization": f"Bearer {key}"},
        # Supabase-style: our key in apikey, a user token as Bearer
        {"apikey": key, "Authorization": "Bearer some.user.jwt"},
    ):
        assert_served(fetch(gateway, **headers))


def test_deactivated_key_stops_on_the_next_request(
    gateway: AthenaServer, gw_admin: httpx.Client, create: Callable[..., Any]
) -> None:
    key, record = create(rights=["*"])
    assert_served(fetch(gateway, key))  # now cached by the gateway
    patched = gw_admin.patch(f"/admin/api-keys/{record['id']}", json={"is_active": False})
    assert patched.status_code == 200
    assert_refused(fetch(gateway, key), 401, "inactive_api_key")
    gw_admin.patch(f"/admin/api-keys/{record['id']}", json={"is_active": True})
    assert_served(fetch(gateway, key))
    assert gw_admin.delete(f"/admin/api-keys/{record['id']}").status_code == 200
    assert_refused(fetch(gateway, key), 401, "invalid_api_key")


def test_expired_key_is_401(
    gateway: AthenaServer, gw_admin: httpx.Client, create: Callable[..., Any]
) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    key, _ = create(rights=["*"], expires_at=past)
    assert_refused(fetch(gateway, key), 401, "expired_api_key")

    soon_key, record = create(rights=["*"], expires_at="2999-01-01T00:00:00Z")
    assert_served(fetch(gateway, soon_key))
    gw_admin.patch(f"/admin/api-keys/{record['id']}", json={"expires_at": past})
    assert_refused(fetch(gateway, soon_key), 401, "expired_api_key")


# -- 403 -----------------------------------------------------------------------------------


def test_key_bound_to_one_client_is_refused_for_another(
    gateway: AthenaServer, create: Callable[..., Any]
) -> None:
    key, _ = create(rights=["*"], client_name="other")
    assert_served(fetch(gateway, key, client="other"))
    assert_refused(fetch(gateway, key, client="athena"), 403, "api_key_client_mismatch")


def test_rights_decide_what_a_key_may_read(
    gateway: AthenaServer, gw_admin: httpx.Client, create: Callable[..., Any]
) -> None:
    for right in (f"{TABLE}.read", f"{TABLE}.*"):
        gw_admin.post("/admin/api-key-rights", json={"name": right})  # 201, or 409 on rerun
    for granted in ([f"{TABLE}.read"], [f"{TABLE}.*"], ["gateway.read"], ["*.read"], ["*"]):
        key, _ = create(rights=granted)
        assert_served(fetch(gateway, key))
    for granted in ([], ["gateway.write"], ["*.delete"], ["management.read"], ["gateway.query"]):
        key, _ = create(rights=granted)
        response = fetch(gateway, key)
        assert_refused(response, 403, "insufficient_rights")
        assert response.json()["data"] == {"required_right": f"{TABLE}.read"}


def test_rights_edit_applies_on_the_next_request(
    gateway: AthenaServer, gw_admin: httpx.Client, create: Callable[..., Any]
) -> None:
    key, record = create(rights=["gateway.read"])
    assert_served(fetch(gateway, key))
    gw_admin.patch(f"/admin/api-keys/{record['id']}", json={"rights": ["gateway.write"]})
    assert_refused(fetch(gateway, key), 403, "insufficient_rights")
    gw_admin.patch(f"/admin/api-keys/{record['id']}", json={"rights": ["*"]})
    assert_served(fetch(gateway, key))


def test_management_needs_a_bound_key_with_the_right(
    gateway: AthenaServer, create: Callable[..., Any]
) -> None:
    def capabilities(key: str | None) -> httpx.Response:
        headers = {"X-Athena-Client": "athena"} | ({"apikey": key} if key else {})
        with gateway.client(**headers) as http:
            return http.get("/management/capabilities")

    unbound, _ = create(rights=["*"])
    assert_refused(capabilities(unbound), 403, "api_key_not_client_bound")
    weak, _ = create(rights=["gateway.read"], client_name="athena")
    assert_refused(capabilities(weak), 403, "insufficient_rights")
    strong, _ = create(rights=["management.read"], client_name="athena")
    assert capabilities(strong).status_code == 200
    assert_refused(capabilities(None), 401, "api_key_required")


def test_admin_key_is_a_master_key(gateway: AthenaServer, admin_key: str) -> None:
    assert_served(fetch(gateway, admin_key))
    assert_served(fetch(gateway, admin_key, client="other"))
    assert_served(fetch(gateway, **{"Authorization": f"Bearer {admin_key}"}))


# -- enforcement ---------------------------------------------------------------------------


@pytest.fixture
def enforcement_restored(gw_admin: httpx.Client) -> Iterator[None]:
    yield
    gw_admin.put("/admin/api-key-config", json={"enforce_api_keys": True})
    for client in gw_admin.get("/admin/api-key-clients").json()["clients"]:
        gw_admin.delete(f"/admin/api-key-clients/{client['client_name']}")


def test_enforcement_off_lets_keyless_requests_through_but_not_bad_keys(
    gateway: AthenaServer,
    gw_admin: httpx.Client,
    create: Callable[..., Any],
    enforcement_restored: None,
) -> None:
    gw_admin.put("/admin/api-key-config", json={"enforce_api_keys": False})
    assert_served(fetch(gateway))
    assert_refused(fetch(gateway, "ath_0123456789abcdef." + "b" * 64), 401, "invalid_api_key")
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    expired, _ = create(rights=["*"], expires_at=past)
    assert_refused(fetch(gateway, expired), 401, "expired_api_key")
    # a valid key without the right identifies the caller; off means rights are not enforced
    weak, _ = create(rights=[])
    assert_served(fetch(gateway, weak))

    gw_admin.put("/admin/api-key-config", json={"enforce_api_keys": True})
    assert_refused(fetch(gateway), 401, "api_key_required")


def test_per_client_override_wins_over_the_global_flag(
    gateway: AthenaServer, gw_admin: httpx.Client, enforcement_restored: None
) -> None:
    gw_admin.put("/admin/api-key-clients/other", json={"enforce_api_keys": False})
    assert_served(fetch(gateway, client="other"))
    assert_refused(fetch(gateway, client="athena"), 401, "api_key_required")

    gw_admin.put("/admin/api-key-config", json={"enforce_api_keys": False})
    gw_admin.put("/admin/api-key-clients/athena", json={"enforce_api_keys": True})
    assert_refused(fetch(gateway, client="athena"), 401, "api_key_required")
    assert_served(fetch(gateway, client="other"))

    gw_admin.delete("/admin/api-key-clients/athena")
    assert_served(fetch(gateway, client="athena"))  # back to the global flag (off)


def test_last_used_at_is_recorded_off_the_hot_path(
    gateway: AthenaServer, gw_admin: httpx.Client, create: Callable[..., Any]
) -> None:
    key, record = create(rights=["*"])
    assert record["last_used_at"] is None
    assert_served(fetch(gateway, key))
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        keys = gw_admin.get("/admin/api-keys").json()["api_keys"]
        used = next(k for k in keys if k["id"] == record["id"])["last_used_at"]
        if used is not None:
            break
        time.sleep(0.3)
    assert used is not None


# -- 503: fail closed ----------------------------------------------------------------------


def _set_connectable(pg: TestPostgres, database: str, allowed: bool) -> None:
    with psycopg.connect(pg.superuser_uri(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
                sql.Identifier(database), sql.SQL("true" if allowed else "false")
            )
        )
        if not allowed:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (database,),
            )


def test_unreachable_catalog_fails_closed_and_recovers(
    athena_factory: Callable[..., AthenaServer], pg: TestPostgres, data_db: str
) -> None:
    catalog = pg.create_database(owner="postgres")
    server = athena_factory(
        catalog=catalog,
        clients={"athena": {"pg_uri": pg.app_uri(data_db)}},
        pool_timeout_s="1",
        auth_cache_seconds="0.2",
    )
    key = seed_key(pg.superuser_uri(catalog), rights=["*"])
    assert_served(fetch(server, key))
    _set_connectable(pg, catalog, False)
    try:
        time.sleep(0.3)  # past the decision cache
        assert_refused(fetch(server, key), 503, "auth_unavailable")
        # without a key the enforcement flag cannot be read either: still closed
        assert_refused(fetch(server), 503, "auth_unavailable")
        with server.client(apikey=server.env["ATHENA_KEY_12"]) as admin:
            assert_refused(admin.get("/admin/api-keys"), 503, "catalog_unavailable")
    finally:
        _set_connectable(pg, catalog, True)
    deadline = time.monotonic() + 15
    while fetch(server, key).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert_served(fetch(server, key))
    server.stop()
