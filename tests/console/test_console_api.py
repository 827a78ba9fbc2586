"""The read routes the console relies on, over plain HTTP: ``/auth/key`` and
``/admin/request-log`` (+ ``/series``), and how ``/console`` refuses odd asset paths."""

from __future__ import annotations

import time
from typing import Any

import httpx


def test_auth_key_describes_a_key_and_resolves_rights(
    console_env: dict[str, Any], seeded: Any
) -> None:
    url = console_env["server"].url
    key = seeded(name="describe me", rights=["orders.*", "gateway.query"], client="shop")
    body = httpx.get(
        f"{url}/auth/key",
        params={"rights": "orders.read,orders.delete,customers.read,management.read"},
        headers={"apikey": key},
    ).json()
    assert body["key"]["admin"] is False
    assert body["key"]["client_name"] == "shop"
    assert body["key"]["public_id"] == key[4:20]
    assert body["key"]["rights"] == ["gateway.query", "orders.*"]
    assert body["granted"] == {
        "orders.read": True,
        "orders.delete": True,
        "customers.read": False,
        "management.read": False,
    }
    assert key.split(".")[1] not in httpx.get(f"{url}/auth/key", headers={"apikey": key}).text

    admin = httpx.get(
        f"{url}/auth/key", params={"rights": "x.read"}, headers={"apikey": console_env["admin_key"]}
    )
    assert admin.json() == {
        "key": {"public_id": "admin", "admin": True, "client_name": None, "rights": ["*"]},
        "granted": {"x.read": True},
    }


def test_auth_key_refuses_missing_bad_and_inactive_keys(
    console_env: dict[str, Any], seeded: Any
) -> None:
    url = console_env["server"].url
    missing = httpx.get(f"{url}/auth/key")
    assert (missing.status_code, missing.json()["code"]) == (401, "api_key_required")
    bad = httpx.get(f"{url}/auth/key", headers={"apikey": "ath_0123456789abcdef.wrong"})
    assert (bad.status_code, bad.json()["code"]) == (401, "invalid_api_key")
    inactive = seeded(rights=["orders.read"], active=False)
    off = httpx.get(f"{url}/auth/key", headers={"apikey": inactive})
    assert (off.status_code, off.json()["code"]) == (401, "inactive_api_key")
    many = httpx.get(
        f"{url}/auth/key",
        params={"rights": ",".join(["a.read"] * 501)},
        headers={"apikey": console_env["admin_key"]},
    )
    assert (many.status_code, many.json()["code"]) == (400, "invalid_request")


def test_request_log_filters_pages_and_series(console_env: dict[str, Any]) -> None:
    server = console_env["server"]
    with server.client(apikey=console_env["admin_key"], **{"X-Athena-Client": "shop"}) as api:
        marker = api.post("/gateway/fetch", json={"table_name": "no_such_table_for_log"})
        assert marker.status_code == 400
        request_id = marker.headers["x-request-id"]
        deadline = time.monotonic() + 15
        entries: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            entries = api.get(
                "/admin/request-log", params={"status": "4xx", "route": "/gateway/fetch"}
            ).json()["entries"]
            if any(e["request_id"] == request_id for e in entries):
                break
            time.sleep(0.2)
        [entry] = [e for e in entries if e["request_id"] == request_id]
        assert entry["status_code"] == 400 and entry["client_name"] == "shop"
        assert entry["api_key_public_id"] == "admin" and "remote_addr" not in entry
        assert all(400 <= e["status_code"] < 500 for e in entries)

        # paging by id, newest first
        first = api.get("/admin/request-log", params={"limit": 2}).json()
        assert len(first["entries"]) == 2 and first["next_before_id"] == first["entries"][1]["id"]
        second = api.get(
            "/admin/request-log", params={"limit": 2, "before_id": first["next_before_id"]}
        ).json()
        assert all(e["id"] < first["next_before_id"] for e in second["entries"])
        # a LIKE wildcard in the filter is a literal character
        assert api.get("/admin/request-log", params={"route": "%"}).json()["entries"] == []

        series = api.get(
            "/admin/request-log/series", params={"minutes": 5, "client_name": "shop"}
        ).json()
        assert series["bucket_seconds"] == 60 and len(series["series"]) == 5
        assert sum(p["errors"] for p in series["series"]) >= 1
        assert all(p["errors"] <= p["requests"] for p in series["series"])

        # "²" passes str.isdigit() but not int(): the spec fuzzer found it as a 500
        bad = ({"status": "teapot"}, {"status": "²"}, {"limit": "0"}, {"minutes": "x"})
        bad += ({"minutes": "5", "status": "¹²³"},)
        for params in bad:
            refused = api.get(
                "/admin/request-log/series" if "minutes" in params else "/admin/request-log",
                params=params,
            )
            assert (refused.status_code, refused.json()["code"]) == (400, "invalid_request"), params
    gateway_key = httpx.get(f"{server.url}/admin/request-log")
    assert gateway_key.status_code == 401
