"""SSL enforcement of a Supabase project, through the Supabase Management API.

Two upstream calls, as documented by Supabase:

``GET  {base}/v1/projects/{ref}/ssl-enforcement``
    → ``{"currentConfig": {"database": bool}, "appliedSuccessfully": bool}``
``PUT  {base}/v1/projects/{ref}/ssl-enforcement``  body ``{"requestedConfig": {"database": bool}}``
    → the same shape.

``set_ssl_enforcement`` reads first and only writes when the project is not already in the
requested state: applying SSL enforcement reboots the project's database, so a repeated request
(a retry, a deploy script run twice) must not cause a second outage.

Failures, all as ``ApiError``:

- no token or project ref (body nor ``SUPABASE_ACCESS_TOKEN`` / ``PROJECT_REF``) → 400
  ``missing_supabase_credentials``;
- the API answers with an error status → 500 ``supabase_api_error`` carrying the upstream status
  and message (``data.upstream_status`` / ``data.upstream_message``);
- no answer within ``ATHENA_SUPABASE_API_TIMEOUT_S`` → 500 ``upstream_timeout``;
- unreachable, or an answer that is not the documented shape → 500 ``upstream_error``.

All upstream failures are 500 because that is the status the spec documents for this route
("Supabase API error"); the codes tell them apart.

The access token is a secret: it is sent only in the ``Authorization`` header upstream and is
scrubbed from anything the API sends back before it reaches a response or a log line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from athena import __version__
from athena.errors import ApiError
from athena.services.outbound import is_credential_text

# The one failure status the spec documents for this route ("Supabase API error").
UPSTREAM_FAILURE_STATUS = 500

TOKEN_ENV = "SUPABASE_ACCESS_TOKEN"
PROJECT_REF_ENV = "PROJECT_REF"

# Project refs are short lowercase ids (20 letters today); the ref goes into the URL path, so only
# lowercase letters and digits, starting with a letter, are accepted — "__proto__", "..",
# "%2e" and friends are 400 before anything is sent.
_PROJECT_REF = re.compile(r"^[a-z][a-z0-9]{0,63}$")
# An upstream error message is shown to the caller; long HTML error pages are cut.
_MAX_UPSTREAM_MESSAGE = 300


@dataclass(frozen=True)
class SslCredentials:
    """Who we are at Supabase and which project. ``token_from_env``: the gateway's own token."""

    access_token: str
    project_ref: str
    token_from_env: bool

    def __repr__(self) -> str:  # never let the token reach a log line through a repr
        return f"SslCredentials(project_ref={self.project_ref!r}, token=***)"


@dataclass(frozen=True)
class SslStatus:
    """The documented answer of both upstream calls."""

    database: bool
    applied_successfully: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "currentConfig": {"database": self.database},
            "appliedSuccessfully": self.applied_successfully,
        }


def resolve_credentials(
    access_token: Any, project_ref: Any, environ: Mapping[str, str] | None = None
) -> SslCredentials:
    """Body values win over ``SUPABASE_ACCESS_TOKEN`` / ``PROJECT_REF``; 400 when either is missing."""
    env = os.environ if environ is None else environ
    for name, value in (("access_token", access_token), ("project_ref", project_ref)):
        if value is not None and not isinstance(value, str):
            raise ApiError("validation_error", f"'{name}' must be a string", data={"field": name})
    token = (access_token or "").strip()
    from_env = not token
    if from_env:
        token = env.get(TOKEN_ENV, "").strip()
    ref = (project_ref or "").strip() or env.get(PROJECT_REF_ENV, "").strip()
    missing = [
        label
        for label, value in (
            (f"access_token (or {TOKEN_ENV})", token),
            (f"project_ref (or {PROJECT_REF_ENV})", ref),
        )
        if not value
    ]
    if missing:
        raise ApiError(
            "missing_supabase_credentials",
            "Supabase credentials are missing: " + ", ".join(missing),
            data={"missing": missing},
        )
    if not is_credential_text(token):
        source = f"the {TOKEN_ENV} setting" if from_env else "'access_token'"
        raise ApiError(
            "validation_error",
            f"{source} must be a Supabase access token: visible ASCII characters only",
            data={"field": "access_token"},
        )
    if not _PROJECT_REF.match(ref):
        raise ApiError(
            "invalid_value",
            "project_ref must be a Supabase project reference (lowercase letters and digits)",
            data={"field": "project_ref"},
        )
    return SslCredentials(token, ref, from_env)


class SupabaseManagement:
    """A small client of the Supabase Management API (one ``httpx.AsyncClient`` per call:
    these are rare operator actions, not a hot path worth a long-lived connection pool)."""

    def __init__(self, base_url: str, timeout_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    def _url(self, creds: SslCredentials) -> str:
        return f"{self.base_url}/v1/projects/{creds.project_ref}/ssl-enforcement"

    async def _call(
        self, method: str, creds: SslCredentials, action: str, json: Any = None
    ) -> SslStatus:
        headers = {
            "Authorization": f"Bearer {creds.access_token}",
            "Accept": "application/json",
            "User-Agent": f"athena/{__version__}",
        }
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s) as client:
                response = await client.request(
                    method, self._url(creds), headers=headers, json=json
                )
        except httpx.TimeoutException:
            raise ApiError(
                "upstream_timeout",
                f"the Supabase Management API did not answer within {self.timeout_s:g} s",
                data={"project_ref": creds.project_ref},
                status=UPSTREAM_FAILURE_STATUS,
            ) from None
        except httpx.HTTPError as exc:
            raise ApiError(
                "upstream_error",
                "the Supabase Management API cannot be reached",
                detail=type(exc).__name__,
                data={"project_ref": creds.project_ref},
                status=UPSTREAM_FAILURE_STATUS,
            ) from None
        if response.status_code >= 400:
            message = _scrub(upstream_message(response), creds.access_token)
            raise ApiError(
                "supabase_api_error",
                f"Failed to {action} SSL enforcement",
                detail=f"HTTP {response.status_code}: {message}",
                data={
                    "upstream_status": response.status_code,
                    "upstream_message": message,
                    "project_ref": creds.project_ref,
                },
            )
        return _parse_status(response)

    async def get(self, creds: SslCredentials) -> SslStatus:
        """The project's current SSL-enforcement config."""
        return await self._call("GET", creds, "read")

    async def put(self, creds: SslCredentials, enabled: bool) -> SslStatus:
        """Request SSL enforcement on (``True``) or off for the project's database."""
        body = {"requestedConfig": {"database": enabled}}
        return await self._call("PUT", creds, "update", json=body)

    async def ensure(self, creds: SslCredentials, enabled: bool) -> tuple[SslStatus, bool]:
        """Bring the project to ``enabled``; returns the final status and whether a PUT was sent."""
        current = await self.get(creds)
        if current.database == enabled and current.applied_successfully:
            return current, False
        return await self.put(creds, enabled), True


def upstream_message(response: httpx.Response) -> str:
    """The human part of an upstream error: ``message``/``error``/``msg`` of a JSON body, else
    the text (cut), else the reason phrase."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("message", "error", "msg", "error_description"):
            value = body.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()[:_MAX_UPSTREAM_MESSAGE]
    text = response.text.strip()
    if text:
        return text[:_MAX_UPSTREAM_MESSAGE]
    return response.reason_phrase or "error"


def _scrub(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


def _parse_status(response: httpx.Response) -> SslStatus:
    try:
        body = response.json()
        database = body["currentConfig"]["database"]
        applied = body.get("appliedSuccessfully", True)
        if not isinstance(database, bool) or not isinstance(applied, bool):
            raise TypeError
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ApiError(
            "upstream_error",
            "the Supabase Management API sent an answer that is not an SSL-enforcement config",
            status=UPSTREAM_FAILURE_STATUS,
        ) from None
    return SslStatus(database, applied)
