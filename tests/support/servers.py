"""Real Athena servers for tests: ``python -m athena serve`` on a free loopback port."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from athena.db.embedded import free_port


@dataclass
class AthenaServer:
    """A gateway subprocess. ``env`` entries override the inherited environment."""

    data_dir: Path
    env: dict[str, str]
    args: list[str] = field(default_factory=list)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    _signalled: bool = False  # signal_stop sent the signal; stop only waits
    keep: bool = False  # lives to the end of the session, not of the module that started it

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> AthenaServer:
        self.port = self.port or free_port()
        self._signalled = False
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / f"server-{self.port}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ATHENA_")}
        env.update(self.env)
        cmd = [
            sys.executable, "-m", "athena", "serve",
            "--port", str(self.port), "--data-dir", str(self.data_dir), *self.args,
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"athena exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/ping", timeout=1).text == "pong" and self._all_serve():
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"athena did not answer /ping within {timeout}s:\n{self.log()}")

    def _all_serve(self) -> bool:
        """With ``--workers N``, whether every worker runs: /ping answers as soon as the first
        one does, and connections opened before the others are up all land on it. Each
        worker's series appears in /metrics once it runs (the admin key passes a metrics key)."""
        workers = (
            int(self.args[self.args.index("--workers") + 1]) if "--workers" in self.args else 1
        )
        if workers < 2:
            return True
        headers = {"Connection": "close"}
        if "ATHENA_KEY_12" in self.env:
            headers["apikey"] = self.env["ATHENA_KEY_12"]
        text = httpx.get(f"{self.url}/metrics", headers=headers, timeout=1).text
        return all(f'athena_uptime_seconds{{worker="{n}"}}' in text for n in range(workers))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def signal_stop(self, sig: int = signal.SIGTERM) -> None:
        """Ask the server to shut down without waiting (``stop`` waits); several servers
        signalled first shut down in parallel."""
        if self.proc is not None and self.proc.poll() is None and not self._signalled:
            self.proc.send_signal(sig)
            self._signalled = True

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        """Signal the server and wait; returns its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            if not self._signalled:
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def client(self, **headers: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def server_env(
    *,
    catalog_uri: str,
    admin_key: str,
    clients: dict[str, dict[str, Any]],
    **extra: str,
) -> dict[str, str]:
    env = {
        "ATHENA_CATALOG_URI": catalog_uri,
        "ATHENA_KEY_12": admin_key,
        "ATHENA_CLIENTS": json.dumps(clients),
        "ATHENA_REQUEST_LOG_FLUSH_SECONDS": "0.2",
        "ATHENA_CLUSTER_PROBE_INTERVAL_S": "1",
        # The suite's gateways share catalogs without encryption keys, as development ones do;
        # the refusal a production gateway gives instead is tested in test_sealed_uris.py.
        "ATHENA_ALLOW_PLAINTEXT_SECRETS": "true",
    }
    env.update(
        {k if k.startswith("ATHENA_") else f"ATHENA_{k.upper()}": v for k, v in extra.items()}
    )
    return env
