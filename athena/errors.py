"""Every way an Athena request can fail, in one place.

Exception tree::

    Exception
    └── ApiError            a request failed; rendered as the JSON error envelope
                            {"status":"error","code","message","error","data"?}

A handler never builds an error response itself: it raises ``ApiError(code, message)`` and the
one error handler in ``athena/http/app.py`` renders it. Any other exception escaping a handler is a bug: it is
logged with the request id and rendered as 500 ``internal_error`` with no detail.

``CODES`` is the table of every stable code with its HTTP status. Add new codes here, grouped,
with a comment per group, so that clients can rely on them.
"""

from __future__ import annotations

from typing import Any

CODES: dict[str, int] = {
    # -- request shape: the caller sent something we cannot read --------------------------
    "invalid_json": 400,
    "invalid_request": 400,
    "validation_error": 400,
    "missing_client_header": 400,
    "missing_context_header": 400,
    "missing_header": 400,
    "api_key_in_url": 400,  # a key in the query string: refused, it would land in access logs
    "invalid_uuid": 400,
    "invalid_identifier": 400,
    "invalid_operator": 400,
    "invalid_value": 400,
    "invalid_pagination": 400,
    "unsupported_driver": 400,
    "invalid_direct_uri": 400,  # x-pg-uri allowed but not a single-host postgresql:// URI
    "direct_uri_not_allowed": 400,  # x-pg-uri: a caller-chosen database is never connected to
    "update_requires_conditions": 400,
    "delete_requires_conditions": 400,
    "payload_too_large": 413,
    "body_timeout": 408,  # the body did not arrive by ATHENA_KEEP_ALIVE_S + length ÷ min rate
    "too_many_connections": 503,  # ATHENA_MAX_CONNECTIONS open in this worker
    "too_many_connections_from_ip": 429,  # ATHENA_MAX_CONNECTIONS_PER_IP open from one IP
    "uri_too_long": 414,
    "headers_too_large": 431,
    "result_too_large": 413,
    "unsupported_media_type": 415,
    # -- routing: the URL or method does not exist ------------------------------------------
    "not_found": 404,
    "method_not_allowed": 405,
    "not_supported": 404,  # an SDK 5 service path (storage catalogs, auth) Athena does not serve
    # -- clients: the X-Athena-Client named a database we cannot use ------------------------
    "unknown_client": 400,
    "client_frozen": 403,
    "client_inactive": 403,
    "client_unavailable": 503,
    "client_not_found": 404,
    "client_exists": 409,
    # -- authentication and rights ----------------------------------------------------------
    "api_key_required": 401,
    "invalid_api_key": 401,
    "inactive_api_key": 401,
    "expired_api_key": 401,
    "admin_key_required": 401,
    "invalid_admin_key": 401,
    "api_key_client_mismatch": 403,
    "api_key_not_client_bound": 403,
    "insufficient_rights": 403,
    "ip_denied": 403,  # the caller's address is in the global or the key's deny list
    "ip_not_allowed": 403,  # the key has an allow list and the address is not in it
    "auth_unavailable": 503,
    "rate_limited": 429,
    # -- API key administration (/admin/api-key*) -------------------------------------------
    "api_key_not_found": 404,
    "right_not_found": 404,
    "client_config_not_found": 404,
    "api_key_exists": 409,
    "right_exists": 409,
    # -- schema: tables and columns are checked against the live schema ---------------------
    "unknown_table": 400,
    "unknown_column": 400,
    "unknown_relation": 400,  # a findMany select embeds a relation no foreign key makes
    "ambiguous_relation": 400,  # … that several foreign keys make (name one with `via`)
    "unknown_right": 400,
    "unknown_function": 404,  # /rest/v1/rpc, /gateway/rpc, /rpc: no such function (overload)
    # -- database outcomes, mapped from SQLSTATE ---------------------------------------------
    "unique_violation": 409,
    "foreign_key_violation": 409,
    "check_violation": 400,
    "not_null_violation": 400,
    "exclusion_violation": 409,
    "invalid_input": 400,
    "undefined_object": 400,
    "duplicate_object": 409,
    "insufficient_privilege": 403,
    "statement_refused": 403,  # raw SQL that would outlive its session (ALTER ROLE/DATABASE, COMMIT)
    "statement_timeout": 504,
    "query_failed": 400,
    "conflict": 409,
    "catalog_unavailable": 503,
    "audit_log_missing": 503,
    "scylla_unavailable": 503,
    "service_unavailable": 503,
    "upstream_error": 502,
    "upstream_timeout": 504,
    "outbound_url_refused": 400,  # a URL from a request/API failed athena/services/outbound.py
    # -- pipelines and integrations (issue 10) ----------------------------------------------
    "unknown_pipeline": 400,
    "invalid_pipeline": 400,
    "missing_supabase_credentials": 400,
    "supabase_api_error": 500,  # the Supabase Management API answered with an error status
    # -- backups: S3 storage and pg_dump / pg_restore jobs -----------------------------------
    "s3_not_configured": 503,
    "storage_unavailable": 503,
    "backup_not_found": 404,
    "backup_job_not_found": 404,
    "backup_job_conflict": 409,
    "backup_job_finished": 409,  # cancel of a job that already ended
    "backup_job_active": 409,  # delete of a job that has not ended
    "backup_job_cancelled": 409,  # the job a request waited for was cancelled
    "backup_schedule_not_found": 404,
    "invalid_schedule": 400,
    # -- outbound webhooks (issue 21) --------------------------------------------------------
    "invalid_webhook": 400,
    "webhook_not_found": 404,
    "webhook_delivery_not_found": 404,
    "webhook_outbox_unavailable": 503,  # the client's role cannot create athena_outbox.events
    "restore_refused": 403,
    "backup_failed": 502,
    "restore_failed": 502,
    # -- client catalog and management DDL (issue 6) ----------------------------------------
    "invalid_pg_uri": 400,  # pg_uri is not a postgres:// URI
    "pg_uri_unreachable": 400,  # pg_uri parsed but no connection could be made when saving
    "client_config_managed": 409,  # the client comes from configuration; change it there
    "plaintext_secret_refused": 403,  # no ATHENA_ENCRYPTION_KEYS: a password would be stored in clear
    "unknown_schema": 400,
    "schema_not_exposed": 400,  # a data route named a schema outside ATHENA_REST_SCHEMAS
    "unsupported_data_type": 400,
    "unsupported_default": 400,
    "unsupported_index_method": 400,
    "unsupported_operation": 400,
    "reserved_column": 400,
    "protected_table": 400,
    "column_exists": 400,
    "table_exists": 409,
    "index_exists": 409,
    "table_not_found": 404,
    "column_not_found": 404,
    "index_not_found": 404,
    # -- WebSocket gateway (/wss/gateway): replies to a message, the socket stays open -------
    "unknown_action": 400,
    "unknown_subscription": 404,
    "too_many_subscriptions": 429,
    # -- /rest/v1 (PostgREST-compatible, issue 5), envelope mode -----------------------------
    "not_acceptable": 406,  # singular object requested but not one row; schema not exposed
    "range_not_satisfiable": 416,
    "max_affected_exceeded": 400,
    # -- everything else is a bug ------------------------------------------------------------
    "internal_error": 500,
}


class ApiError(Exception):
    """A request failed in a way the caller can act on.

    Raised anywhere below a route; ``code`` must be a key of ``CODES`` (its status is taken from
    there unless ``status`` overrides it). ``message`` is for humans, ``detail`` is the error's
    short technical reason (the envelope's ``error``), ``data`` optional structured details.
    Never put SQL text, a traceback or a secret into any of them.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        detail: str | None = None,
        data: dict[str, Any] | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if code not in CODES:
            raise KeyError(f"unregistered error code {code!r}")  # a programming error
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail or message
        self.data = data
        self.status = status or CODES[code]
        self.headers = headers or {}

    def envelope(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": "error",
            "code": self.code,
            "message": self.message,
            "error": self.detail,
        }
        if self.data is not None:
            body["data"] = self.data
        return body

    def __repr__(self) -> str:
        return f"ApiError({self.code!r}, {self.message!r}, status={self.status})"
