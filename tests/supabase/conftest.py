"""Fixtures: the fake Supabase Management API and gateways pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from management_api import (
    GATEWAY_TIMEOUT,
    PROJECT,
    VALID_TOKEN,
    FakeManagementApi,
    serve_management_api,
)
from support.servers import AthenaServer, server_env


@pytest.fixture(scope="session")
def management_api() -> Iterator[FakeManagementApi]:
    with serve_management_api() as api:
        yield api


@pytest.fixture
def fake_api(management_api: FakeManagementApi) -> FakeManagementApi:
    management_api.reset()
    return management_api


def _start(
    base: Path, catalog_uri: str, admin_key: str, api_url: str, extra_env: dict[str, str]
) -> Iterator[AthenaServer]:
    env = server_env(
        catalog_uri=catalog_uri,
        admin_key=admin_key,
        clients={},
        supabase_api_url=api_url,
        supabase_api_timeout_s=GATEWAY_TIMEOUT,
    )
    env.update(extra_env)
    server = AthenaServer(base, env).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ssl_gateway(
    management_api: FakeManagementApi,
    catalog_uri: str,
    admin_key: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AthenaServer]:
    """A gateway whose environment holds SUPABASE_ACCESS_TOKEN and PROJECT_REF."""
    yield from _start(
        tmp_path_factory.mktemp("ssl"),
        catalog_uri,
        admin_key,
        management_api.url,
        {"SUPABASE_ACCESS_TOKEN": VALID_TOKEN, "PROJECT_REF": PROJECT},
    )


@pytest.fixture(scope="session")
def bare_gateway(
    management_api: FakeManagementApi,
    catalog_uri: str,
    admin_key: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AthenaServer]:
    """A gateway without Supabase credentials in its environment."""
    yield from _start(
        tmp_path_factory.mktemp("ssl-bare"),
        catalog_uri,
        admin_key,
        management_api.url,
        {"SUPABASE_ACCESS_TOKEN": "", "PROJECT_REF": ""},
    )
