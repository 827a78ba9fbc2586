"""Fixtures for API key tests: a real Runtime on the test catalog, keys made through the API."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from support.pg import TestPostgres
from support.servers import AthenaServer

from athena.config import ClientConfig, Settings
from athena.runtime import Runtime

# A long TTL proves that a change applies through invalidation, not because the cache expired.
LONG_TTL = 600.0


def open_runtime_settings(pg: TestPostgres, data_db: str, **overrides: Any) -> Settings:
    clients = {
        "athena": ClientConfig(pg_uri=pg.app_uri(data_db)),
        "other": ClientConfig(pg_uri=pg.app_uri(data_db)),
    }
    values: dict[str, Any] = {
        "clients": clients,
        "auth_cache_seconds": LONG_TTL,
        "pool_timeout_s": 1.0,
        "connect_timeout_s": 1.0,
        "request_log_enabled": False,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
async def runtime(
    pg: TestPostgres, data_db: str, catalog_uri: str, admin_key: str, athena: AthenaServer
) -> AsyncIterator[Runtime]:
    """A real Runtime (pools, AuthStore) on the shared test catalog; background tasks off.

    Depends on ``athena`` so that the catalog is migrated by the server before we use it.
    """
    rt = await Runtime.open(
        open_runtime_settings(pg, data_db), admin_key=admin_key, catalog_uri=catalog_uri
    )
    try:
        yield rt
    finally:
        await rt.aclose()


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Names that never collide between tests or reruns against the same catalog."""
    return lambda prefix: f"{prefix}_{secrets.token_hex(4)}"


@pytest.fixture
def make_key(admin: httpx.Client) -> Callable[..., tuple[str, dict[str, Any]]]:
    """Create a key through ``POST /admin/api-keys``; returns ``(full key, record)``."""

    def make(**body: Any) -> tuple[str, dict[str, Any]]:
        body.setdefault("name", "test key")
        response = admin.post("/admin/api-keys", json=body)
        assert response.status_code == 201, response.text
        payload = response.json()
        return payload["api_key"], payload["record"]

    return make
