"""``/api/v2/supabase/ssl_enforcement`` against a loopback server speaking the Management API."""

from __future__ import annotations

import time

import httpx
import pytest
from management_api import PROJECT, VALID_TOKEN, FakeManagementApi
from support.servers import AthenaServer

PATH = "/api/v2/supabase/ssl_enforcement"


def _admin(server: AthenaServer, admin_key: str) -> httpx.Client:
    return server.client(apikey=admin_key)


def test_enable_with_environment_credentials_puts_requested_config(
    ssl_gateway: AthenaServer, fake_api: FakeManagementApi, admin_key: str
) -> None:
    with _admin(ssl_gateway, admin_key) as client:
        response = client.post(PATH, json={"enabled": True})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "success",
        "message": "SSL enforcement enabled",
        "data": {"currentConfig": {"database": True}, "appliedSuccessfully": True},
    }
    assert fake_api.projects[PROJECT] is True
    puts = fake_api.calls("PUT")
    assert len(puts) == 1
    assert puts[0]["path"] == f"/v1/projects/{PROJECT}/ssl-enforcement"
    assert puts[0]["body"] == {"requestedConfig": {"database": True}}
    assert puts[0]["authorization"] == f"Bearer {VALID_TOKEN}"


def test_disable_then_repeat_does_not_reboot_twice(
    ssl_gateway: AthenaServer, fake_api: FakeManagementApi, admin_key: str
) -> None:
    fake_api.projects[PROJECT] = True
    with _admin(ssl_gateway, admin_key) as client:
        first = client.post(PATH, json={"enabled": False})
        second = client.post(PATH, json={"enabled": False})
    assert first.status_code == 200 and second.status_code == 200
    assert first.json()["data"]["currentConfig"] == {"database": False}
    assert first.json()["message"] == "SSL enforcement disabled"
    assert second.json()["message"] == "SSL enforcement already disabled"
    assert second.json()["data"] == {
        "currentConfig": {"database": False},
        "appliedSuccessfully": True,
    }
    # Applying SSL enforcement reboots the database: the second request only read the config.
    assert len(fake_api.calls("PUT")) == 1
    assert fake_api.projects[PROJECT] is False


def test_body_credentials_override_environment_and_need_no_admin_key(
    ssl_gateway: AthenaServer, fake_api: FakeManagementApi
) -> None:
    with ssl_gateway.client() as client:
        response = client.post(
            PATH,
            json={"enabled": True, "access_token": VALID_TOKEN, "project_ref": "otherproject1"},
        )
    assert response.status_code == 200, response.text
    assert fake_api.projects == {"otherproject1": True}
    assert fake_api.calls("PUT")[0]["path"] == "/v1/projects/otherproject1/ssl-enforcement"


def test_gateway_token_needs_the_admin_key(
    ssl_gateway: AthenaServer, fake_api: FakeManagementApi
) -> None:
    with ssl_gateway.client() as client:
        missing = client.post(PATH, json={"enabled": True})
    with ssl_gateway.client(apikey="not-the-admin-key") as client:
        wrong = client.post(PATH, json={"enabled": True})
    assert missing.status_code == 401 and missing.json()["code"] == "admin_key_required"
    assert wrong.status_code == 401 and wrong.json()["code"] == "invalid_admin_key"
    assert fake_api.calls() == []  # nothing reached Supabase


def test_missing_credentials_is_400(
    bare_gateway: AthenaServer, fake_api: FakeManagementApi, admin_key: str
) -> None:
    with _admin(bare_gateway, admin_key) as client:
        no_both = client.post(PATH, json={"enabled": True})
        no_ref = client.post(PATH, json={"enabled": True, "access_token": VALID_TOKEN})
    assert no_both.status_code == 400
    body = no_both.json()
    assert body["status"] == "error" and body["code"] == "missing_supabase_credentials"
    assert len(body["data"]["missing"]) == 2
    assert no_ref.status_code == 400
    assert no_ref.json()["data"]["missing"] == ["project_ref (or PROJECT_REF)"]
    assert fake_api.calls() == []


def test_bad_payloads_are_400(ssl_gateway: AthenaServer, admin_key: str) -> None:
    with _admin(ssl_gateway, admin_key) as client:
        no_enabled = client.post(PATH, json={})
        string_enabled = client.post(PATH, json={"enabled": "yes"})
        not_json = client.post(PATH, content=b"{nope", headers={"content-type": "application/json"})
        bad_ref = client.post(PATH, json={"enabled": True, "project_ref": "../../v1/organizations"})
    assert no_enabled.status_code == 400 and no_enabled.json()["code"] == "validation_error"
    assert string_enabled.status_code == 400
    assert not_json.status_code == 400 and not_json.json()["code"] == "invalid_json"
    assert bad_ref.status_code == 400 and bad_ref.json()["code"] == "invalid_value"


def test_upstream_401_is_500_with_upstream_status_and_message(
    ssl_gateway: AthenaServer, fake_api: FakeManagementApi
) -> None:
    wrong_token = "sbp_wrong_token_that_must_not_be_echoed"
    with ssl_gateway.client() as client:
        response = client.post(PATH, json={"enabled": True, "access_token": wrong_token})
    assert response.status_code == 500
    body = response.json()
    assert body["code"] == "supabase_api_error"
    assert body["error"] == "HTTP 401: Unauthorized"
    assert body["data"]["upstream_status"] == 401
    assert body["data"]["upstream_message"] == "Unauthorized"
    assert wrong_token not in response.text
    assert fake_api.projects == {}


def test_upstream_500_is_reported(ssl_gateway: AthenaServer, admin_key: str) -> None:
    with _admin(ssl_gateway, admin_key) as client:
        response = client.post(PATH, json={"enabled": True, "project_ref": "broken"})
    assert response.status_code == 500
    body = response.json()
    assert body["code"] == "supabase_api_error"
    assert body["data"]["upstream_status"] == 500
    assert body["data"]["upstream_message"] == "Internal server error"


def test_upstream_message_never_echoes_the_token(ssl_gateway: AthenaServer, admin_key: str) -> None:
    with _admin(ssl_gateway, admin_key) as client:
        response = client.post(PATH, json={"enabled": True, "project_ref": "leaky"})
    assert response.status_code == 500
    assert response.json()["data"]["upstream_status"] == 400
    assert VALID_TOKEN not in response.text
    assert "***" in response.json()["data"]["upstream_message"]


def test_slow_upstream_times_out_with_the_documented_500(
    ssl_gateway: AthenaServer, admin_key: str
) -> None:
    started = time.monotonic()
    with _admin(ssl_gateway, admin_key) as client:
        response = client.post(PATH, json={"enabled": True, "project_ref": "slow"})
    elapsed = time.monotonic() - started
    assert response.status_code == 500
    assert response.json()["code"] == "upstream_timeout"
    assert elapsed < 2.5  # the gateway gave up after its 1 s timeout, not the upstream's 3 s
    # and it still serves afterwards
    with ssl_gateway.client() as client:
        assert client.get("/ping").text == "pong"


def test_a_change_not_yet_applied_is_reported_as_such(
    ssl_gateway: AthenaServer, fake_api: FakeManagementApi, admin_key: str
) -> None:
    with _admin(ssl_gateway, admin_key) as client:
        response = client.post(PATH, json={"enabled": True, "project_ref": "pending"})
    assert response.status_code == 200
    assert response.json()["data"] == {
        "currentConfig": {"database": True},
        "appliedSuccessfully": False,
    }
    assert (
        response.json()["message"] == "SSL enforcement enabled was requested but is not applied yet"
    )


@pytest.mark.parametrize(
    "ref", ["__proto__", "constructor.prototype", "_", "-x", "ABCDEFGHIJKLMNOPQRST", "a" * 65]
)
def test_odd_project_refs_are_400_and_never_sent(
    ssl_gateway: AthenaServer, fake_api: FakeManagementApi, admin_key: str, ref: str
) -> None:
    before = len(fake_api.calls())
    with _admin(ssl_gateway, admin_key) as client:
        response = client.post(PATH, json={"enabled": True, "project_ref": ref})
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_value"
    assert response.json()["data"]["field"] == "project_ref"
    assert len(fake_api.calls()) == before


@pytest.mark.parametrize("token", ["sbp_café", "sbp_a b", "sbp_a\x01b", "sbp_\u2028x"])
def test_a_token_that_cannot_be_a_header_is_400_and_never_sent(
    ssl_gateway: AthenaServer, fake_api: FakeManagementApi, token: str
) -> None:
    # The spec fuzzer found "café": httpx cannot encode it, and that was a 500.
    before = len(fake_api.calls())
    with ssl_gateway.client() as client:
        response = client.post(PATH, json={"enabled": True, "access_token": token})
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "validation_error"
    assert response.json()["data"]["field"] == "access_token"
    assert token not in response.text
    assert len(fake_api.calls()) == before
