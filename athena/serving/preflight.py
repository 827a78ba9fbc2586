"""Pre-flight checks of a configuration: ``athena check`` prints them, ``athena serve`` runs
them at start and refuses to start on a fatal one.

Levels, from good to bad: ``ok``; ``warn`` (works, but an operator should know: a superuser
role, an unprovisioned client database, a mirror not answering); ``error`` (something will not
work — a client that cannot be reached — but the gateway can serve the rest: ``athena check``
exits 1, ``athena serve`` logs it and starts); ``fatal`` (the gateway cannot serve: invalid
settings, the catalog unreachable — ``athena serve`` refuses to start with the reason).

Every check is read-only: nothing is created, migrated or provisioned. Messages never carry a
password (URIs are masked).
"""

from __future__ import annotations

import concurrent.futures
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from athena.config import Settings
from athena.db.uris import mask_uri

LEVELS = ("ok", "warn", "error", "fatal")


@dataclass(frozen=True)
class Finding:
    check: str  # settings | catalog | client | s3 | mirror | tracing | logging
    target: str  # what was checked (a setting, a client name, a URL)
    level: str  # one of LEVELS
    detail: str

    @property
    def rank(self) -> int:
        return LEVELS.index(self.level)


def worst(findings: list[Finding]) -> str:
    return max((f.level for f in findings), key=LEVELS.index, default="ok")


# -- settings ---------------------------------------------------------------------------------


def check_settings(settings: Settings) -> list[Finding]:
    """What pydantic cannot see: values that are valid alone but not together."""
    out: list[Finding] = []

    def bad(target: str, detail: str, level: str = "fatal") -> None:
        out.append(Finding("settings", target, level, detail))

    if settings.pool_min_size > settings.pool_max_size:
        bad(
            "ATHENA_POOL_MIN_SIZE",
            f"{settings.pool_min_size} > ATHENA_POOL_MAX_SIZE {settings.pool_max_size}",
        )
    if settings.pool_max_size < 1:
        bad("ATHENA_POOL_MAX_SIZE", "must be at least 1")
    if settings.workers < 1:
        bad("ATHENA_WORKERS", "must be at least 1")
    if not 0 <= settings.port <= 65535:
        bad("ATHENA_PORT", f"{settings.port} is not a TCP port")
    for name, client in settings.clients.items():
        if client.resolve_uri() is None:
            where = f"${client.pg_uri_env_var} is unset" if client.pg_uri_env_var else "no pg_uri"
            bad(f"ATHENA_CLIENTS.{name}", f"no database URI ({where})", "error")
    if settings.catalog_uri and not settings.encryption_keys:
        bad(
            "ATHENA_ENCRYPTION_KEYS",
            "unset with an external catalog: client URIs are not encrypted at rest"
            + (
                " (ATHENA_ALLOW_PLAINTEXT_SECRETS=true: ones with a password are stored in clear)"
                if settings.allow_plaintext_secrets
                else " (ones with a password are refused)"
            ),
            "warn",
        )
    if settings.backup_s3_endpoint and not settings.backup_s3_bucket:
        bad(
            "ATHENA_BACKUP_S3_ENDPOINT",
            "set without ATHENA_BACKUP_S3_BUCKET: backups are off",
            "warn",
        )
    if settings.access_log and settings.access_log.lower() not in (
        "", "true", "false", "0", "1", "yes", "no", "on", "off", "-", "stderr"
    ):  # fmt: skip
        path = Path(settings.access_log)
        folder = path.parent if not path.exists() else path
        if not os.access(folder, os.W_OK):
            bad("ATHENA_ACCESS_LOG", f"{path} is not writable")
    from athena.observability import tracing

    if tracing.wanted(settings):
        try:
            tracing.check_available(settings)
        except Exception as exc:  # ConfigError: its message is the reason
            bad("ATHENA_TRACING", str(exc))
        else:
            endpoint = next(
                (os.environ[v] for v in tracing.OTEL_ENDPOINT_VARS if os.environ.get(v)), None
            )
            out.append(
                Finding("tracing", endpoint or "http://127.0.0.1:4318", "ok", "OTLP/HTTP export on")
            )
    if not out:
        out.append(Finding("settings", settings.config or "environment", "ok", "valid"))
    return out


# -- databases --------------------------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _connect(uri: str, timeout_s: float) -> psycopg.Connection:
    return psycopg.connect(uri, autocommit=True, connect_timeout=max(1, int(timeout_s)))


def _is_superuser(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    return bool(row and row[0])


def check_catalog(
    uri: str, settings: Settings, *, embedded: bool
) -> tuple[list[Finding], list[dict[str, Any]]]:
    """The catalog: reachable, migrated, its role; returns also its client rows (as stored)."""
    from athena.db.catalog import _migrations

    target = "embedded" if embedded else (mask_uri(uri) or "")
    try:
        conn = _connect(uri, settings.connect_timeout_s)
    except psycopg.Error as exc:
        return [Finding("catalog", target, "fatal", f"cannot connect: {_first_line(exc)}")], []
    out: list[Finding] = []
    registered: list[dict[str, Any]] = []
    with conn:
        try:
            applied = {
                r[0] for r in conn.execute("SELECT version FROM public.athena_schema_migrations")
            }
        except psycopg.Error:
            applied = set()
        bundled = {version for version, _, _ in _migrations()}
        pending = sorted(bundled - applied)
        if not applied:
            out.append(
                Finding(
                    "catalog",
                    target,
                    "warn",
                    "not migrated yet: athena serve applies every migration at start (under an advisory lock)",
                )
            )
        elif pending:
            out.append(
                Finding(
                    "catalog",
                    target,
                    "warn",
                    f"{len(pending)} migration(s) pending ({', '.join(map(str, pending))}): applied at the next start",
                )
            )
        else:
            out.append(
                Finding("catalog", target, "ok", f"reachable, {len(applied)} migrations applied")
            )
        if not embedded and _is_superuser(conn):
            out.append(
                Finding(
                    "catalog",
                    target,
                    "warn",
                    "the catalog role is a superuser; a dedicated owner role is enough (docs/deploy.md)",
                )
            )
        if applied:
            try:
                rows = conn.execute(
                    "SELECT to_jsonb(c) FROM athena.athena_clients c WHERE deleted_at IS NULL"
                ).fetchall()
                registered = [r[0] for r in rows]
            except psycopg.Error as exc:
                out.append(
                    Finding(
                        "catalog",
                        target,
                        "error",
                        f"cannot read the client catalog: {_first_line(exc)}",
                    )
                )
    return out, registered


def check_client(name: str, uri: str, settings: Settings) -> list[Finding]:
    """One client database with the role it is configured with: connect, provisioned, role."""
    from athena.services.provisioning import provision_status

    try:
        conn = _connect(uri, settings.connect_timeout_s)
    except psycopg.Error as exc:
        return [
            Finding(
                "client",
                name,
                "error",
                f"cannot connect as configured ({mask_uri(uri)}): {_first_line(exc)}",
            )
        ]
    out: list[Finding] = []
    with conn:
        role = conn.execute("SELECT current_user").fetchone()[0]  # type: ignore[index]
        status = provision_status(conn)
        if status["provisioned"]:
            out.append(
                Finding("client", name, "ok", f"reachable as {role}, Athena schema provisioned")
            )
        else:
            missing = ", ".join(status["missing_tables"])
            out.append(
                Finding(
                    "client",
                    name,
                    "warn",
                    f"reachable as {role}, but the Athena schema is not provisioned (missing {missing}): athena provision --uri …",
                )
            )
        if _is_superuser(conn):
            out.append(
                Finding(
                    "client",
                    name,
                    "warn",
                    f"role {role} is a superuser: give the gateway a least-privilege role (docs/deploy.md)",
                )
            )
    return out


# -- S3 and mirrors ---------------------------------------------------------------------------


def check_s3(settings: Settings) -> list[Finding]:
    if not settings.backup_s3_bucket:
        return []
    target = f"s3://{settings.backup_s3_bucket}/{settings.backup_s3_prefix}"
    try:
        import boto3
        from botocore.config import Config

        client = boto3.session.Session().client(
            "s3",
            endpoint_url=settings.backup_s3_endpoint,
            region_name=settings.backup_s3_region,
            config=Config(
                connect_timeout=settings.connect_timeout_s,
                read_timeout=10,
                retries={"max_attempts": 1},
            ),
        )
        client.head_bucket(Bucket=settings.backup_s3_bucket)
    except Exception as exc:
        return [
            Finding(
                "s3",
                target,
                "error",
                f"bucket not reachable: {type(exc).__name__}: {_first_line(exc)[:200]}",
            )
        ]
    return [Finding("s3", target, "ok", "bucket reachable with the configured credentials")]


def check_mirrors(settings: Settings) -> list[Finding]:
    import httpx

    out = []
    for url in settings.cluster_mirrors:
        try:
            answer = httpx.get(f"{url.rstrip('/')}/ping", timeout=settings.cluster_probe_timeout_s)
            ok = answer.status_code == 200 and answer.text == "pong"
            detail = "answers /ping" if ok else f"/ping answered HTTP {answer.status_code}"
        except httpx.HTTPError as exc:
            ok, detail = False, f"not answering: {type(exc).__name__}"
        out.append(Finding("mirror", url, "ok" if ok else "warn", detail))
    return out


# -- all of them ------------------------------------------------------------------------------


def _served_clients(
    settings: Settings, default_client_uri: str | None, rows: list[dict[str, Any]]
) -> tuple[dict[str, str], list[str]]:
    """Name → URI of every client the gateway would open a pool for — the gateway's own answer
    (``desired_clients``), so the check cannot look at other databases than the ones served —
    and the names whose sealed URI no configured key opens."""
    from athena.db.sealed import SealedValueUnreadable, sealer_for
    from athena.services.client_catalog import configured_clients, desired_clients

    sealer = sealer_for(settings, create=False)
    opened, unreadable = [], []
    for row in rows:
        try:
            opened.append({**row, "pg_uri": sealer.reveal(row.get("pg_uri"))})
        except SealedValueUnreadable:
            unreadable.append(row["client_name"])
            opened.append({**row, "pg_uri": None})
    wanted = desired_clients(configured_clients(settings, default_client_uri), opened)
    served = {name: e.uri for name, e in wanted.items() if e.uri and e.is_active}
    return served, [name for name in unreadable if name not in served]


def run_checks(
    settings: Settings,
    *,
    catalog_uri: str | None,
    embedded: bool,
    default_client_uri: str | None = None,
) -> list[Finding]:
    """Every check, the slow ones (connects) in parallel threads."""
    findings = check_settings(settings)
    if catalog_uri is None:
        findings.append(
            Finding(
                "catalog",
                "embedded",
                "ok",
                f"embedded PostgreSQL in {settings.data_dir} (not running: started by athena serve)",
            )
        )
        registered: list[dict[str, Any]] = []
    else:
        catalog_findings, registered = check_catalog(catalog_uri, settings, embedded=embedded)
        findings += catalog_findings
    clients, unreadable = _served_clients(settings, default_client_uri, registered)
    for name in unreadable:
        findings.append(
            Finding(
                "client",
                name,
                "error",
                "its stored URI opens with none of ATHENA_ENCRYPTION_KEYS (athena secrets)",
            )
        )
    jobs: list[Callable[[], list[Finding]]] = [
        (lambda n=name, u=uri: check_client(n, u, settings)) for name, uri in clients.items()
    ]
    jobs += [lambda: check_s3(settings), lambda: check_mirrors(settings)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        for result in pool.map(lambda job: job(), jobs):
            findings += result
    return findings


def as_json(findings: list[Finding]) -> list[dict[str, Any]]:
    return [f.__dict__ for f in findings]
