"""The seven ``/admin/api-key*`` paths over the real server and catalog."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest
from support.servers import AthenaServer

from athena.db.catalog import BUILTIN_RIGHTS

KEY_RE = re.compile(r"ath_([0-9a-f]{16})\.([0-9a-f]{64})")
RECORD_FIELDS = {
    "id", "public_id", "name", "description", "client_name", "expires_at", "is_active",
    "last_used_at", "created_at", "updated_at", "rights", "ip_allowlist", "ip_denylist",
}  # fmt: skip

MakeKey = Callable[..., tuple[str, dict[str, Any]]]


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "error"
    assert body["code"] == code
    assert isinstance(body["message"], str) and body["message"]
    assert "Traceback" not in response.text and "SELECT" not in response.text
    return body


# -- the admin key guard -------------------------------------------------------------------


def test_admin_routes_need_the_admin_key(athena: AthenaServer, admin_key: str) -> None:
    with athena.client() as anonymous:
        assert_error(anonymous.get("/admin/api-keys"), 401, "admin_key_required")
        assert_error(
            anonymous.get("/admin/api-keys", headers={"apikey": "nope"}), 401, "invalid_admin_key"
        )
        # a well-formed gateway key is not the admin key either
        fake = "ath_0123456789abcdef." + "0" * 64
        assert_error(
            anonymous.get("/admin/api-key-config", headers={"x-api-key": fake}),
            401,
            "invalid_admin_key",
        )
        accepted = [
            {"headers": {"apikey": admin_key}},
            {"headers": {"x-api-key": admin_key}},
            {"headers": {"X-Athena-Key": admin_key}},
            {"headers": {"X-Athena-Admin-Key": admin_key}},
            {"headers": {"Authorization": f"Bearer {admin_key}"}},
            # a Supabase-style pair: some other credential first, the admin key as Bearer
            {"headers": {"apikey": "anon", "Authorization": f"Bearer {admin_key}"}},
        ]
        for kwargs in accepted:
            response = anonymous.get("/admin/api-key-rights", **kwargs)
            assert response.status_code == 200, kwargs
        # never in the URL (issue 17): ?api_key= lands in access logs, so it is refused
        assert_error(
            anonymous.get("/admin/api-key-rights", params={"api_key": admin_key}),
            400,
            "api_key_in_url",
        )


def test_every_admin_path_refuses_without_the_key(athena: AthenaServer) -> None:
    some_id = str(uuid.uuid4())
    calls = [
        ("GET", "/admin/api-keys"), ("POST", "/admin/api-keys"),
        ("PATCH", f"/admin/api-keys/{some_id}"), ("DELETE", f"/admin/api-keys/{some_id}"),
        ("GET", "/admin/api-key-rights"), ("POST", "/admin/api-key-rights"),
        ("PATCH", f"/admin/api-key-rights/{some_id}"),
        ("DELETE", f"/admin/api-key-rights/{some_id}"),
        ("GET", "/admin/api-key-config"), ("PUT", "/admin/api-key-config"),
        ("GET", "/admin/api-key-clients"), ("PUT", "/admin/api-key-clients/athena"),
        ("DELETE", "/admin/api-key-clients/athena"),
    ]  # fmt: skip
    with athena.client() as anonymous:
        for method, path in calls:
            response = anonymous.request(method, path, json={"enforce_api_keys": False})
            assert_error(response, 401, "admin_key_required")


# -- keys ----------------------------------------------------------------------------------


def test_create_returns_the_key_once_and_stores_only_a_salted_hash(
    admin: httpx.Client, catalog_conn: psycopg.Connection, unique: Callable[[str], str]
) -> None:
    name = unique("create")
    response = admin.post(
        "/admin/api-keys",
        json={
            "name": name,
            "description": "billing export",
            "client_name": "athena",
            "rights": ["gateway.read", "*.write", "gateway.read"],
            "expires_at": "2999-01-01T00:00:00Z",
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"api_key", "record"}
    match = KEY_RE.fullmatch(body["api_key"])
    assert match is not None
    public_id, secret = match.groups()
    record = body["record"]
    assert set(record) == RECORD_FIELDS
    assert record["public_id"] == public_id
    assert record["name"] == name
    assert record["description"] == "billing export"
    assert record["client_name"] == "athena"
    assert record["rights"] == ["*.write", "gateway.read"]
    assert record["is_active"] is True
    assert record["last_used_at"] is None
    assert record["expires_at"].startswith("2999-01-01T00:00:00")
    uuid.UUID(record["id"])

    row = catalog_conn.execute(
        "SELECT k.*::text, key_salt, key_hash FROM athena.api_keys k WHERE id = %s",
        (record["id"],),
    ).fetchone()
    assert row is not None
    whole_row, salt, key_hash = row
    assert secret not in whole_row
    assert body["api_key"] not in whole_row
    assert key_hash == hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()

    # listing shows the record, never the key or anything derived from its secret
    listing = admin.get("/admin/api-keys")
    assert listing.status_code == 200
    assert record["id"] in {k["id"] for k in listing.json()["api_keys"]}
    assert secret not in listing.text and key_hash not in listing.text and salt not in listing.text


def test_create_validates_its_input(
    admin: httpx.Client, catalog_conn: psycopg.Connection, unique: Callable[[str], str]
) -> None:
    name = unique("bad")
    body = assert_error(
        admin.post("/admin/api-keys", json={"name": name, "rights": ["gateway.read", "nope.x"]}),
        400,
        "unknown_right",
    )
    assert body["data"]["unknown_rights"] == ["nope.x"]
    assert_error(admin.post("/admin/api-keys", json={"rights": []}), 400, "validation_error")
    assert_error(admin.post("/admin/api-keys", json={"name": ""}), 400, "validation_error")
    assert_error(
        admin.post("/admin/api-keys", json={"name": name, "expires_at": "next tuesday"}),
        400,
        "validation_error",
    )
    assert_error(
        admin.post("/admin/api-keys", json={"name": name, "rights": "gateway.read,nope.y"}),
        400,
        "unknown_right",
    )
    assert_error(
        admin.post("/admin/api-keys", json={"name": name, "client_name": "no_such_client"}),
        400,
        "unknown_client",
    )
    assert_error(
        admin.post(
            "/admin/api-keys",
            content=b"{not json",
            headers={"content-type": "application/json"},
        ),
        400,
        "invalid_json",
    )
    assert_error(admin.post("/admin/api-keys", json=["a"]), 400, "invalid_request")
    assert_error(admin.post("/admin/api-keys", json={"name": "a\u0000b"}), 400, "validation_error")
    assert_error(
        admin.post("/admin/api-keys", json={"name": name, "rights": ["gateway.read\u0000"]}),
        400,
        "validation_error",
    )
    # nothing was half-created by any of the refused requests
    count = catalog_conn.execute(
        "SELECT count(*) FROM athena.api_keys WHERE name = %s", (name,)
    ).fetchone()
    assert count == (0,)


def test_duplicate_public_id_is_a_conflict(admin: httpx.Client, make_key: MakeKey) -> None:
    public_id = uuid.uuid4().hex[:16]
    _, record = make_key(public_id=public_id, rights=["gateway.read"])
    assert record["public_id"] == public_id
    body = assert_error(
        admin.post("/admin/api-keys", json={"name": "again", "public_id": public_id}),
        409,
        "api_key_exists",
    )
    assert body["data"] == {"public_id": public_id}
    assert_error(
        admin.post("/admin/api-keys", json={"name": "bad id", "public_id": "XYZ"}),
        400,
        "validation_error",
    )


def test_update_changes_fields_and_replaces_rights(admin: httpx.Client, make_key: MakeKey) -> None:
    _, record = make_key(rights=["gateway.read", "gateway.write"], client_name="athena")
    path = f"/admin/api-keys/{record['id']}"

    response = admin.patch(path, json={"name": "renamed", "rights": ["management.read"]})
    assert response.status_code == 200, response.text
    updated = response.json()["record"]
    assert updated["name"] == "renamed"
    assert updated["rights"] == ["management.read"]
    assert updated["client_name"] == "athena"  # absent fields stay as they were
    assert updated["updated_at"] >= record["updated_at"]

    updated = admin.patch(
        path,
        json={
            "client_name": None,
            "description": "now unbound",
            "is_active": False,
            "expires_at": "2030-06-01T12:00:00+02:00",
        },
    ).json()["record"]
    assert updated["client_name"] is None
    assert updated["description"] == "now unbound"
    assert updated["is_active"] is False
    assert updated["expires_at"].startswith("2030-06-01T10:00:00")
    assert updated["rights"] == ["management.read"]

    assert admin.patch(path, json={"rights": []}).json()["record"]["rights"] == []
    assert admin.patch(path, json={}).status_code == 200

    assert_error(admin.patch(path, json={"rights": ["nope.z"]}), 400, "unknown_right")
    assert_error(admin.patch(path, json={"name": None}), 400, "validation_error")
    assert_error(admin.patch(path, json={"is_active": "perhaps"}), 400, "validation_error")
    assert_error(admin.patch(path, json={"client_name": "no_such_client"}), 400, "unknown_client")
    missing = f"/admin/api-keys/{uuid.uuid4()}"
    assert_error(admin.patch(missing, json={"name": "x"}), 404, "api_key_not_found")
    assert_error(admin.patch("/admin/api-keys/not-a-uuid", json={}), 400, "invalid_uuid")


def test_delete_removes_the_key(admin: httpx.Client, make_key: MakeKey) -> None:
    _, record = make_key(rights=["gateway.read"])
    response = admin.delete(f"/admin/api-keys/{record['id']}")
    assert response.status_code == 200
    assert response.json() == {"id": record["id"]}
    assert record["id"] not in {k["id"] for k in admin.get("/admin/api-keys").json()["api_keys"]}
    assert_error(admin.delete(f"/admin/api-keys/{record['id']}"), 404, "api_key_not_found")
    assert_error(admin.delete("/admin/api-keys/12345"), 400, "invalid_uuid")


def test_list_pages_with_limit_and_offset(admin: httpx.Client, make_key: MakeKey) -> None:
    make_key()
    make_key()
    every = admin.get("/admin/api-keys").json()["api_keys"]
    assert len(every) >= 2
    page = admin.get("/admin/api-keys", params={"limit": 1, "offset": 1}).json()["api_keys"]
    assert [k["id"] for k in page] == [every[1]["id"]]
    assert_error(admin.get("/admin/api-keys", params={"limit": -1}), 400, "invalid_pagination")
    assert_error(admin.get("/admin/api-keys", params={"offset": "x"}), 400, "invalid_pagination")
    assert_error(
        admin.get("/admin/api-keys", params={"limit": "9" * 30}), 400, "invalid_pagination"
    )


# -- rights --------------------------------------------------------------------------------


def test_builtin_rights_are_listed(admin: httpx.Client) -> None:
    response = admin.get("/admin/api-key-rights")
    assert response.status_code == 200
    rights = response.json()["rights"]
    names = {r["name"] for r in rights}
    assert set(BUILTIN_RIGHTS) <= names
    gateway_read = next(r for r in rights if r["name"] == "gateway.read")
    assert set(gateway_read) == {"id", "name", "description", "created_at", "updated_at"}
    assert gateway_read["description"]


def test_rights_crud_follows_keys_that_hold_them(
    admin: httpx.Client, make_key: MakeKey, unique: Callable[[str], str]
) -> None:
    name = unique("orders") + ".read"
    created = admin.post("/admin/api-key-rights", json={"name": name, "description": "orders"})
    assert created.status_code == 201, created.text
    right = created.json()["right"]
    assert right["name"] == name and right["description"] == "orders"
    assert_error(admin.post("/admin/api-key-rights", json={"name": name}), 409, "right_exists")
    assert_error(
        admin.post("/admin/api-key-rights", json={"name": "has space"}), 400, "validation_error"
    )
    assert_error(admin.post("/admin/api-key-rights", json={}), 400, "validation_error")

    _, key = make_key(rights=[name])
    assert key["rights"] == [name]

    renamed = name.replace(".read", ".write")
    response = admin.patch(f"/admin/api-key-rights/{right['id']}", json={"name": renamed})
    assert response.status_code == 200, response.text
    assert response.json()["right"]["name"] == renamed
    assert response.json()["right"]["description"] == "orders"
    # the key holds the right under its new name
    listing = admin.get("/admin/api-keys").json()["api_keys"]
    assert next(k for k in listing if k["id"] == key["id"])["rights"] == [renamed]

    assert_error(
        admin.patch(f"/admin/api-key-rights/{right['id']}", json={"name": "gateway.read"}),
        409,
        "right_exists",
    )
    assert_error(
        admin.patch(f"/admin/api-key-rights/{uuid.uuid4()}", json={"name": "x.read"}),
        404,
        "right_not_found",
    )
    assert_error(admin.patch("/admin/api-key-rights/nope", json={"name": "x"}), 400, "invalid_uuid")

    deleted = admin.delete(f"/admin/api-key-rights/{right['id']}")
    assert deleted.status_code == 200
    assert deleted.json() == {"id": right["id"]}
    listing = admin.get("/admin/api-keys").json()["api_keys"]
    assert next(k for k in listing if k["id"] == key["id"])["rights"] == []
    assert_error(admin.delete(f"/admin/api-key-rights/{right['id']}"), 404, "right_not_found")


# -- enforcement ---------------------------------------------------------------------------


@pytest.fixture
def restore_enforcement(admin: httpx.Client) -> Any:
    before = admin.get("/admin/api-key-config").json()
    yield
    admin.put(
        "/admin/api-key-config", json={"enforce_api_keys": before["global"]["enforce_api_keys"]}
    )
    for override in admin.get("/admin/api-key-clients").json()["clients"]:
        admin.delete(f"/admin/api-key-clients/{override['client_name']}")
    for override in before["clients"]:
        admin.put(
            f"/admin/api-key-clients/{override['client_name']}",
            json={"enforce_api_keys": override["enforce_api_keys"]},
        )


def test_global_enforcement_toggles(admin: httpx.Client, restore_enforcement: None) -> None:
    config = admin.get("/admin/api-key-config")
    assert config.status_code == 200
    body = config.json()
    assert set(body) == {"global", "clients"}
    assert body["global"]["enforce_api_keys"] is True  # ATHENA_ENFORCE_API_KEYS default
    assert set(body["global"]) == {"enforce_api_keys", "updated_at", "ip_denylist"}

    off = admin.put("/admin/api-key-config", json={"enforce_api_keys": False})
    assert off.status_code == 200
    assert off.json()["global"]["enforce_api_keys"] is False
    assert admin.get("/admin/api-key-config").json()["global"]["enforce_api_keys"] is False
    on = admin.put("/admin/api-key-config", json={"enforce_api_keys": True})
    assert on.json()["global"]["enforce_api_keys"] is True

    assert_error(admin.put("/admin/api-key-config", json={}), 400, "validation_error")
    assert_error(
        admin.put("/admin/api-key-config", json={"enforce_api_keys": "sometimes"}),
        400,
        "validation_error",
    )


def test_per_client_overrides(admin: httpx.Client, restore_enforcement: None) -> None:
    response = admin.put("/admin/api-key-clients/athena", json={"enforce_api_keys": False})
    assert response.status_code == 200, response.text
    client = response.json()["client"]
    assert client["client_name"] == "athena"
    assert client["enforce_api_keys"] is False
    assert set(client) == {"client_name", "enforce_api_keys", "created_at", "updated_at"}

    again = admin.put("/admin/api-key-clients/athena", json={"enforce_api_keys": True}).json()
    assert again["client"]["enforce_api_keys"] is True
    assert again["client"]["created_at"] == client["created_at"]

    listed = admin.get("/admin/api-key-clients").json()["clients"]
    assert [c["client_name"] for c in listed] == ["athena"]
    assert admin.get("/admin/api-key-config").json()["clients"] == listed

    assert_error(
        admin.put("/admin/api-key-clients/no_such_client", json={"enforce_api_keys": True}),
        400,
        "unknown_client",
    )
    assert_error(admin.put("/admin/api-key-clients/athena", json={}), 400, "validation_error")
    assert_error(
        admin.put("/admin/api-key-clients/a%00b", json={"enforce_api_keys": True}),
        400,
        "validation_error",
    )

    deleted = admin.delete("/admin/api-key-clients/athena")
    assert deleted.status_code == 200
    assert deleted.json() == {"client_name": "athena"}
    assert admin.get("/admin/api-key-clients").json()["clients"] == []
    assert_error(admin.delete("/admin/api-key-clients/athena"), 404, "client_config_not_found")
