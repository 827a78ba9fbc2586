"""The one answer to "which clients should exist": configuration merged with the catalog rows.

Start-up and every reload go through ``desired_clients(configured_clients(…), rows)``; these are
its rules, row by row (the rows are the JSON objects ``athena.athena_clients`` holds, their URI
already opened).
"""

from __future__ import annotations

from typing import Any

import pytest

from athena.config import Settings
from athena.services.client_catalog import configured_clients, desired_clients


def _row(name: str, source: str, **fields: Any) -> dict[str, Any]:
    return {
        "client_name": name,
        "source": source,
        "pg_uri": None,
        "pg_uri_env_var": None,
        "description": None,
        "config_uri_template": None,
        "is_active": True,
        "is_frozen": False,
        "deleted_at": None,
        **fields,
    }


def test_configuration_names_the_clients_and_the_embedded_default() -> None:
    settings = Settings(clients={"app": {"pg_uri": "postgresql://h/app", "description": "App"}})
    configured = configured_clients(settings, "postgresql://h/embedded")
    assert sorted(configured) == ["app", "athena"]
    assert configured["app"].uri == "postgresql://h/app"
    assert configured["athena"].uri == "postgresql://h/embedded"
    assert {e.source for e in configured.values()} == {"config"}
    assert "athena" not in configured_clients(settings, None)


def test_a_configured_athena_wins_over_the_embedded_default() -> None:
    settings = Settings(clients={"athena": {"pg_uri": "postgresql://h/mine"}})
    assert configured_clients(settings, "postgresql://h/embedded")["athena"].uri == (
        "postgresql://h/mine"
    )


def test_a_uri_in_an_environment_variable_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_DB_URI", "postgresql://h/from-env")
    settings = Settings(clients={"app": {"pg_uri_env_var": "APP_DB_URI"}})
    (entry,) = configured_clients(settings).values()
    assert (entry.uri, entry.pg_uri_env_var) == ("postgresql://h/from-env", "APP_DB_URI")


def test_rows_merge_with_configuration() -> None:
    settings = Settings(clients={"app": {"pg_uri": "postgresql://h/app"}})
    configured = configured_clients(settings)
    wanted = desired_clients(
        configured,
        [
            # a config client keeps its configured URI; its freeze state lives in the row
            _row("app", "config", pg_uri="postgresql://h/ignored", is_frozen=True),
            _row("added", "database", pg_uri="postgresql://h/added", description="API"),
            _row("gone", "config"),  # left the configuration: not served
            _row("deleted", "database", pg_uri="postgresql://h/x", deleted_at="2026-01-01"),
        ],
    )
    assert sorted(wanted) == ["added", "app"]
    assert (wanted["app"].uri, wanted["app"].is_frozen) == ("postgresql://h/app", True)
    assert (wanted["added"].uri, wanted["added"].source) == ("postgresql://h/added", "database")
    assert wanted["added"].description == "API"


def test_a_database_client_falls_back_to_its_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ADDED_DB_URI", "postgresql://h/env")
    wanted = desired_clients({}, [_row("added", "database", pg_uri_env_var="ADDED_DB_URI")])
    assert wanted["added"].uri == "postgresql://h/env"


def test_a_config_row_taken_over_by_the_api_serves_its_own_uri() -> None:
    configured = configured_clients(Settings(clients={"app": {"pg_uri": "postgresql://h/cfg"}}))
    taken = desired_clients(configured, [_row("app", "database", pg_uri="postgresql://h/api")])
    assert (taken["app"].uri, taken["app"].source) == ("postgresql://h/api", "database")
    # …and the configured URI when the row's cannot be opened (no key opens its seal)
    unopened = desired_clients(configured, [_row("app", "database", pg_uri=None)])
    assert unopened["app"].uri == "postgresql://h/cfg"


def test_a_soft_deleted_row_of_a_config_client_does_not_remove_it() -> None:
    configured = configured_clients(Settings(clients={"app": {"pg_uri": "postgresql://h/app"}}))
    wanted = desired_clients(configured, [_row("app", "config", deleted_at="2026-01-01")])
    assert wanted["app"].uri == "postgresql://h/app"
