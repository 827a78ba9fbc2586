"""What ``pg_dump`` and ``pg_restore`` runs share: where the binaries are, how they connect,
how their stderr is captured and scrubbed.

The password never appears on a command line (visible in ``ps``) or in a log: the tools get a
conninfo string without it via ``--dbname`` and the password in ``PGPASSWORD``. Everything the
tools print is scrubbed of the URI and the password before it reaches a job or a response.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import trio
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from athena.config import Settings
from athena.db.embedded import pg_bin_dir
from athena.db.uris import mask_uri

# Only the end of stderr is kept: a failing tool says why in its last lines, and a runaway
# stream of warnings must not grow the gateway's memory.
STDERR_KEEP = 64 * 1024
ERROR_MAX_CHARS = 2000


@dataclass(frozen=True)
class ToolTarget:
    """A database as the PostgreSQL tools see it."""

    conninfo: str  # without the password
    password: str | None
    dbname: str
    uri: str

    @classmethod
    def from_uri(cls, uri: str) -> ToolTarget:
        params = conninfo_to_dict(uri)
        password = params.pop("password", None)
        return cls(
            conninfo=make_conninfo("", **params),
            password=password,
            dbname=str(params.get("dbname") or params.get("user") or ""),
            uri=uri,
        )

    def env(self) -> dict[str, str]:
        """The tool's environment: ours minus any PG* that could redirect it, plus the
        password and an application name that shows up in ``pg_stat_activity``."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["PGAPPNAME"] = "athena-backups"
        env.setdefault("PGCONNECT_TIMEOUT", "10")
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        return env

    def scrub(self, text: str) -> str:
        """``text`` with the URI and password replaced: safe for jobs and responses."""
        text = text.replace(self.uri, mask_uri(self.uri) or "***")
        if self.password:
            text = text.replace(self.password, "***")
        return text


def tool(settings: Settings, name: str) -> str:
    """Path of ``pg_dump`` / ``pg_restore`` matching the server (``ATHENA_PG_BIN_DIR``)."""
    path = Path(pg_bin_dir(settings.pg_bin_dir)) / name
    return str(path)


class StderrTail:
    """Collects a process's stderr, keeping only the last ``STDERR_KEEP`` bytes."""

    def __init__(self) -> None:
        self._buf = bytearray()

    async def collect(self, stream: trio.abc.ReceiveStream) -> None:
        while True:
            chunk = await stream.receive_some(16384)
            if not chunk:
                return
            self._buf += chunk
            if len(self._buf) > STDERR_KEEP:
                del self._buf[: len(self._buf) - STDERR_KEEP]

    def text(self) -> str:
        return self._buf.decode("utf-8", errors="replace")


def failure_reason(tool_name: str, returncode: int | None, stderr: str, target: ToolTarget) -> str:
    """One readable, scrubbed reason: the tool's error lines, else its exit status."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() or "fatal" in line.lower()]
    chosen = errors or lines[-5:]
    reason = "; ".join(chosen) if chosen else f"{tool_name} exited with status {returncode}"
    reason = target.scrub(reason)
    if len(reason) > ERROR_MAX_CHARS:
        reason = reason[: ERROR_MAX_CHARS - 1] + "…"
    return reason
