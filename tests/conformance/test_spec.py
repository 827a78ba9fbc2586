"""Spec conformance: schemathesis drives every operation of the served /openapi.yaml.

Required (issue 11): no 5xx that the spec does not document for that operation — and never a
500 ``internal_error`` — and every response's status code, content type and body conform to the
spec. Run against a gateway with its own catalog and seeded data, once with the admin (master)
key and once with a client-bound key holding every right.

Operations whose inputs name *other hosts* (a client's ``pg_uri``, a provisioning ``uri``, a webhook ``url``) are
excluded: generated values would make the gateway connect to arbitrary addresses, and this
workplace only allows loopback traffic. They are covered by their own API tests.

Budget: ``ATHENA_CONFORMANCE_EXAMPLES`` examples per operation (default 6 in CI; the README shows
a larger run).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
)
from support.keys import seed_key
from support.servers import AthenaServer

from athena.errors import CODES

EXAMPLES = int(os.environ.get("ATHENA_CONFORMANCE_EXAMPLES", "6"))

# What "conforms" means here: the documented status, content type, headers and body schema.
# Not schemathesis' data-acceptance heuristics: a gateway rightly answers 400 to a schema-valid
# body naming a table that does not exist, and CONTRACT.md asks us to be liberal in what we
# accept, so neither "valid data must be accepted" nor "invalid data must be rejected" applies.
# Status codes are checked by ``_check_status``: the spec's documented codes, plus the
# cross-cutting error answers CONTRACT.md settles for every route (bad input, auth, limits) —
# when, and only when, they carry the error envelope with a registered code.
CONFORMANCE_CHECKS = [
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
CONTRACT_ERROR_STATUSES = {400, 401, 403, 404, 405, 409, 413, 414, 415, 429}

# Operations that take a URI of another host in their input (see the module docstring).
NETWORK_REACHING = [
    ("POST", "/admin/clients"),
    ("PATCH", "/admin/clients/{client_name}"),
    ("POST", "/admin/provision"),
    # webhook targets: a generated URL would make the gateway resolve and call arbitrary hosts
    ("POST", "/admin/webhooks"),
    ("PATCH", "/admin/webhooks/{id}"),
]


@pytest.fixture(scope="module")
def conformance(athena_factory: Callable[..., AthenaServer], pg: Any) -> dict[str, Any]:
    catalog = pg.create_database(owner="postgres")
    data = pg.create_database()
    with pg.connect(data) as conn:
        conn.execute(
            "CREATE TABLE conf_items (id serial PRIMARY KEY, name text NOT NULL, qty int,"
            " created_at timestamptz DEFAULT now())"
        )
        conn.execute(
            "INSERT INTO conf_items (name, qty) SELECT 'item ' || g, g FROM generate_series(1, 20) g"
        )
    server = athena_factory(
        catalog=catalog,
        clients={"athena": {"pg_uri": pg.app_uri(data)}},
        # Upstream integrations point at a closed loopback port: they fail fast, locally.
        supabase_api_url="http://127.0.0.1:9",
    )
    key = seed_key(pg.superuser_uri(catalog), rights=["*"], client="athena")
    return {"server": server, "bound_key": key}


def _operations(server: AthenaServer) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.yaml")
    for method, path in NETWORK_REACHING:
        schema = schema.exclude(method=method, path=path)
    return [result.ok() for result in schema.get_all_operations()]


def _documented_statuses(case: Any) -> set[str]:
    return {str(code) for code in case.operation.definition.raw.get("responses", {})}


def _check_status(response: Any, case: Any) -> None:
    """Documented, or a CONTRACT.md error envelope; never a 500, never an undocumented 5xx."""
    status = response.status_code
    body: Any = None
    try:
        body = response.json()
    except ValueError:
        pass
    where = f"{case.method} {case.formatted_path}"
    envelope = isinstance(body, dict) and body.get("status") == "error"
    assert not (envelope and body.get("code") == "internal_error"), f"{where}: {body}"
    documented = _documented_statuses(case)
    if str(status) in documented or "default" in documented or f"{str(status)[0]}XX" in documented:
        return
    assert status < 500, f"{where}: undocumented {status} {body}"
    assert status in CONTRACT_ERROR_STATUSES, f"{where}: undocumented {status} {body}"
    # PostgREST-native error objects are the documented alternative on /rest/v1.
    native = isinstance(body, dict) and {"code", "message", "details", "hint"} <= set(body)
    assert (envelope and CODES.get(body.get("code")) == status) or native, (
        f"{where}: {status} without the error envelope: {body}"
    )


def _exercise(case: Any, server: AthenaServer, key: str) -> None:
    headers = dict(case.headers or {})
    # Always the seeded client; real credentials replace whatever the generator put in.
    for name in list(headers):
        if name.lower() in {"apikey", "x-api-key", "x-athena-key", "authorization"}:
            del headers[name]
        elif name.lower() in {"x-supabase-url", "x-supabase-key"}:
            del headers[name]  # never let generated data pick an upstream host
    headers["X-Athena-Client"] = "athena"
    headers["apikey"] = key
    case.headers = headers
    response = case.call(base_url=server.url, timeout=30)
    _check_status(response, case)
    if "yaml" in str(response.headers.get("content-type", "")):
        return  # YAML documents are served byte-for-byte; schemathesis would parse them
    case.validate_response(response, checks=CONFORMANCE_CHECKS)


def _fuzz_every_operation(server: AthenaServer, key: str) -> None:
    """Run each operation's generated cases; collect failures so one report shows them all."""
    failures: list[str] = []
    operations = _operations(server)
    assert len(operations) >= 60, "the served spec lists every operation"
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def run(case: Any) -> None:
            _exercise(case, server, key)

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # schemathesis reports a group
            failures.append(f"{operation.label}: {str(exc).strip()[:600]}")
    assert not failures, "\n\n".join(failures)


def test_every_operation_conforms_with_the_admin_key(
    conformance: dict[str, Any], admin_key: str
) -> None:
    _fuzz_every_operation(conformance["server"], admin_key)


def test_every_operation_conforms_with_a_client_bound_key(conformance: dict[str, Any]) -> None:
    _fuzz_every_operation(conformance["server"], conformance["bound_key"])
