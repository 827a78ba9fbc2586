"""Settings: environment variables ``ATHENA_*`` plus an optional YAML file.

Precedence, highest first: explicit keyword arguments (the CLI), environment variables, the YAML
file given with ``--config`` (or ``ATHENA_CONFIG``), then the defaults below. Every field is listed
with its default in the README's configuration table.

Usage::

    settings = load_settings(config_file="athena.yaml", port=4053)
    settings.clients["athena"].pg_uri
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

DEFAULT_DOCS_URL = "https://xylex.group/docs/athena"


class ConfigError(Exception):
    """The configuration cannot be used. Raised at start-up; the CLI prints it as one line."""


class ClientConfig(BaseModel):
    """One PostgreSQL database that Athena serves, as written in config."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pg_uri: str | None = None
    pg_uri_env_var: str | None = None
    description: str | None = None

    def resolve_uri(self) -> str | None:
        """The URI to connect with: the literal one, else the named environment variable."""
        if self.pg_uri:
            return self.pg_uri
        if self.pg_uri_env_var:
            return os.environ.get(self.pg_uri_env_var) or None
        return None


class _YamlSource(PydanticBaseSettingsSource):
    """Reads the optional YAML file. Missing file → nothing; unreadable → ConfigError."""

    def __init__(self, settings_cls: type[BaseSettings], path: str | None) -> None:
        super().__init__(settings_cls)
        self._data: dict[str, Any] = {}
        if not path:
            return
        try:
            raw = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
        try:
            loaded = yaml.safe_load(raw) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must be a mapping of settings")
        self._data = loaded

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._data.items() if k in self.settings_cls.model_fields}


class Settings(BaseSettings):
    """Every setting of the gateway. Environment names are the field names upper-cased with
    the ``ATHENA_`` prefix (``key_12`` → ``ATHENA_KEY_12``)."""

    model_config = SettingsConfigDict(env_prefix="ATHENA_", extra="ignore", frozen=True)

    # where and how to listen
    host: str = "127.0.0.1"
    port: int = 4052
    workers: int = 1
    data_dir: Path = Path(".athena")
    config: str | None = None

    # identity and databases
    key_12: str | None = None
    catalog_uri: str | None = None
    clients: dict[str, ClientConfig] = Field(default_factory=dict)
    embedded_pg_port: int = 0  # 0 = pick a free port once, then keep it in <data-dir>/pg.port
    pg_bin_dir: str | None = None
    # Data routes connect as this non-superuser role (created on the embedded server).
    client_role: str | None = "athena_app"
    # Fernet keys sealing client URIs in the catalog (athena/db/sealed.py), comma list: the
    # first encrypts, all decrypt. Empty: the embedded default keeps one in the data directory.
    encryption_keys: Annotated[list[str], NoDecode] = Field(default_factory=list, repr=False)
    # With an external catalog and no encryption_keys, a client URI carrying a password is
    # refused (403 plaintext_secret_refused) unless this is true: a production gateway does not
    # put database passwords in a catalog in clear by accident.
    allow_plaintext_secrets: bool = False

    # pools and timeouts
    pool_min_size: int = 1
    pool_max_size: int = 10
    db_threads: int = 32
    statement_timeout_ms: int = 15_000
    connect_timeout_s: float = 3.0
    pool_timeout_s: float = 5.0

    # behaviour
    enforce_api_keys: bool = True
    # Optional since SDK 5 (which cannot send X-Company-Id) and Athena RS 3.x; recorded when sent.
    require_context_headers: bool = False
    rest_format: Literal["envelope", "postgrest"] = "envelope"
    # Serve the hot routes straight from ASGI (athena/http/hot_lane.py); false: everything via Quart.
    hot_lane: bool = True
    # Read and write the hot lane's plain HTTP/1.1 requests straight on the socket
    # (athena/serving/lane_http.py); false: hypercorn serves every connection.
    lane_http: bool = True
    # Schemas /rest/v1 serves besides ``public`` (Accept-Profile / Content-Profile), comma list.
    rest_schemas: str = ""
    # Accept: application/vnd.pgrst.plan+json|+text (EXPLAIN) on /rest/v1: "admin" (the admin
    # key only, as PostgREST's db-plan-enabled is off for ordinary roles), "true" or "false"
    rest_plan_enabled: Literal["admin", "true", "false"] = "admin"
    # count()/sum()/avg()/min()/max() in select (PostgREST 12's db-aggregates-enabled)
    rest_aggregates_enabled: bool = True
    docs_url: str = DEFAULT_DOCS_URL
    auth_cache_seconds: float = 2.0

    # limits
    max_body_bytes: int = 10 * 1024 * 1024
    max_result_rows: int = 100_000
    max_result_bytes: int = 64 * 1024 * 1024
    # /gateway/transaction: at most this many operations in one transaction
    transaction_max_operations: int = Field(default=100, ge=1)
    rate_limit_per_key: float = 0.0  # requests/second; 0 disables
    rate_limit_per_ip: float = 0.0
    rate_limit_burst: int = 100
    # Buckets in the catalog, shared by every worker and instance (athena/services/ratelimit.py);
    # false: each process keeps its own (N workers then allow N x the limit).
    rate_limit_shared: bool = True
    # How many tokens a process leases at a time: rate x this period (at least one).
    rate_limit_lease_ms: float = Field(default=100.0, gt=0, le=5000)
    # An idle keep-alive connection, or a request head still arriving, is closed after this.
    keep_alive_s: float = Field(default=30.0, gt=0)
    # A request body (on every HTTP path) must arrive whole within keep_alive_s +
    # length / this rate (bytes per second), so a trickling client cannot hold one for ever.
    body_min_bytes_per_s: int = Field(default=64 * 1024, gt=0)
    # Open connections per worker process, and per client IP within a worker; extra ones are
    # answered 503 / 429 and closed at once. 0 disables a cap.
    max_connections: int = Field(default=4096, ge=0)
    max_connections_per_ip: int = Field(default=512, ge=0)

    # observability
    # text (default) | json (one object per line) | auto (text on a terminal, else json)
    log_format: Literal["text", "json", "auto"] = "text"
    log_level: Literal["debug", "info", "warning", "error"] = "warning"
    # unset/false: off; true or "-": one line per request on stderr; else a file to append to
    access_log: str | None = None
    # OpenTelemetry traces (athena/observability/tracing.py): unset = on when
    # OTEL_EXPORTER_OTLP_ENDPOINT is set
    tracing: bool | None = None
    request_log_enabled: bool = True
    request_log_batch_size: int = 500
    request_log_flush_seconds: float = 1.0
    request_log_queue_size: int = 10_000
    # Rows older than this are deleted once the statistics rollup has counted them; 0 keeps all.
    request_log_retention_days: float = 30.0
    request_log_prune_interval_s: float = 3600.0
    # NoDecode: the validator below reads a JSON list *or* a comma list from the environment.
    cluster_mirrors: Annotated[list[str], NoDecode] = Field(default_factory=list)
    cluster_probe_interval_s: float = 15.0
    cluster_probe_timeout_s: float = 3.0
    registry_cache_ttl_s: float = 30.0
    statistics_rollup_seconds: float = 5.0
    pool_health_interval_s: float = 5.0
    catalog_poll_seconds: float = 2.0

    # WebSocket gateway (/wss/gateway). Messages above ws_max_message_bytes get an error reply
    # and close 1009; hypercorn's own frame limit (1 MiB) caps it. The idle timeout stays below
    # hypercorn's 60 s read timeout so that the close is ours (with a reason), not a TCP drop.
    ws_max_message_bytes: int = 512 * 1024
    ws_max_concurrent_requests: int = 16
    ws_outbound_queue_size: int = 64
    ws_event_queue_size: int = 256
    ws_max_subscriptions: int = 100
    ws_ping_interval_s: float = 20.0
    ws_idle_timeout_s: float = 50.0
    event_relay_queue_size: int = 10_000

    # Optional static keys that close /metrics and /registry* (unset: open, as Prometheus
    # scrapers expect by default); the admin key is always accepted as well.
    metrics_key: str | None = None
    registry_key: str | None = None
    # The WebSocket upgrade must carry a valid key where enforcement applies (else 401 before
    # the upgrade). Off by default: the documented protocol lets each message bring its key.
    ws_require_key: bool = False

    # integrations
    scylla_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    supabase_api_url: str = "https://api.supabase.com"
    supabase_api_timeout_s: float = 10.0
    # Outbound URLs that arrive through a request or the API (athena/services/outbound.py):
    # https only unless outbound_allow_http; loopback/private/link-local addresses only inside
    # these networks (comma list of CIDRs, e.g. 127.0.0.0/8).
    outbound_allow_cidrs: Annotated[list[str], NoDecode] = Field(default_factory=list)
    outbound_allow_http: bool = False
    # x-pg-uri (a direct PostgreSQL URI per call, athena/services/direct_uri.py): refused unless
    # this is on AND the key holds gateway.direct_uri AND the host passes the outbound guard.
    allow_direct_uri: bool = False
    direct_uri_max_pools: int = Field(8, ge=1)
    direct_uri_idle_s: float = Field(300.0, gt=0)
    pipelines_file: str = "config/pipelines.yaml"
    backup_s3_bucket: str | None = None
    backup_s3_prefix: str = "athena-backups"
    backup_s3_endpoint: str | None = None
    backup_s3_region: str = "us-east-1"
    # A running job whose heartbeat is older than this belongs to a gateway that died: it is
    # marked failed. Schedules: how often each instance looks for due ones.
    backup_job_orphan_seconds: float = Field(60.0, gt=0)
    backup_scheduler_interval_s: float = Field(15.0, gt=0)
    # Webhooks (athena/webhooks/): delivery timeout, retries (capped exponential backoff with
    # jitter, then "dead"), how often every instance re-reads webhooks and polls for work,
    # and how long a sender's lease on a webhook lasts without renewal.
    webhook_timeout_s: float = Field(10.0, gt=0)
    webhook_max_attempts: int = Field(8, ge=1)
    webhook_retry_base_s: float = Field(1.0, gt=0)
    webhook_retry_max_s: float = Field(300.0, gt=0)
    webhook_refresh_seconds: float = Field(1.0, gt=0)
    webhook_poll_seconds: float = Field(1.0, gt=0)
    webhook_lease_seconds: float = Field(30.0, gt=0)

    @field_validator(
        "cluster_mirrors", "scylla_hosts", "outbound_allow_cidrs", "encryption_keys", mode="before"
    )
    @classmethod
    def _json_or_comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if not text:
                return []
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("outbound_allow_cidrs")
    @classmethod
    def _valid_cidrs(cls, value: list[str]) -> list[str]:
        import ipaddress

        for item in value:
            try:
                ipaddress.ip_network(item.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not a CIDR network") from None
        return value

    @field_validator("encryption_keys")
    @classmethod
    def _fernet_keys(cls, value: list[str]) -> list[str]:
        import base64
        import binascii

        for index, key in enumerate(value):
            try:
                ok = len(base64.urlsafe_b64decode(key.encode())) == 32
            except (binascii.Error, ValueError):
                ok = False
            if not ok:  # never echo the key itself
                raise ValueError(f"entry {index + 1} is not a Fernet key (athena secrets generate)")
        return value

    @field_validator("clients", mode="before")
    @classmethod
    def _clients_from_json(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = json.loads(value) if value.strip() else {}
        if isinstance(value, list):  # [{name: …, pg_uri: …}, …] is accepted too
            return {item["name"]: {k: v for k, v in item.items() if k != "name"} for item in value}
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = init_settings.init_kwargs.get("config") or os.environ.get("ATHENA_CONFIG")  # type: ignore[attr-defined]
        return (init_settings, env_settings, _YamlSource(settings_cls, path))

    @property
    def pg_dir(self) -> Path:
        return self.data_dir / "pg"

    def s3_missing(self) -> list[str]:
        """Names of the settings that backups need but are unset."""
        return [] if self.backup_s3_bucket else ["ATHENA_BACKUP_S3_BUCKET"]


def load_settings(**overrides: Any) -> Settings:
    """Build Settings, turning every validation problem into one readable ConfigError."""
    from pydantic import ValidationError

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise ConfigError(f"invalid setting {where}: {first['msg']}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"invalid JSON in a setting: {exc}") from None
