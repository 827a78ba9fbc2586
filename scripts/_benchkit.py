"""Pieces every benchmark script shares: a gateway subprocess on a free loopback port, and the
CPU it spent (which, unlike req/s, does not depend on what else the machine is doing)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import httpx

from athena.db.embedded import free_port


def start_gateway(
    data_dir: Path, settings: dict[str, str], *, python_args: tuple[str, ...] = ()
) -> tuple[subprocess.Popen[bytes], str, IO[bytes]]:
    """``python [python_args] -m athena serve`` with ``settings`` (ATHENA_* variables) only;
    returns (process, base URL, log file) once it answers /ping."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATHENA_")}
    env.update(settings)
    log = open(data_dir / f"gateway-{port}.log", "ab")  # closed by stop_gateway
    proc = subprocess.Popen(
        [sys.executable, *python_args, "-m", "athena", "serve", "--port", str(port),
         "--data-dir", str(data_dir / f"gw-{port}")],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gateway exited early; see {log.name}")
        try:
            if httpx.get(f"{url}/ping", timeout=1).text == "pong":
                return proc, url, log
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("gateway did not start")


def stop_gateway(proc: subprocess.Popen[Any], log: IO[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


_TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """user+system CPU of ``pid`` and its descendants (worker processes), from /proc."""
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / _TICK
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except (OSError, IndexError, ValueError):
            continue
        todo.extend(int(c) for c in children)
    return total
