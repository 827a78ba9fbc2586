"""Every block of docs/deploy.md marked ``test`` runs, in order, as an operator would run it.

The guide's PostgreSQL fleet is a throwaway embedded server of this module's own (the guide
creates the catalog database and roles itself); ``PGHOST``/``PGPORT`` point at it and two free
ports stand in for the instances' 4052/4053.

Block tags (after the language): ``test`` runs it; ``db=NAME`` / ``user=ROLE`` say where SQL
runs (as that role, via SET ROLE); ``background`` starts a long-running command (an instance)
that is stopped with SIGTERM at the end and must exit 0; ``file=NAME`` writes the block to a file.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql
from support.pg import TestPostgres

from athena.db.embedded import free_port

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"
_FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


@dataclass
class Block:
    lang: str
    tags: dict[str, str]
    text: str
    line: int


def blocks() -> list[Block]:
    guide = GUIDE.read_text()
    out = []
    for match in _FENCE.finditer(guide):
        tags: dict[str, str] = {}
        for word in match.group(2).split():
            name, _, value = word.partition("=")
            tags[name] = value
        out.append(
            Block(match.group(1), tags, match.group(3), guide[: match.start()].count("\n") + 1)
        )
    return out


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestPostgres]:
    server = TestPostgres.start(tmp_path_factory.mktemp("fleet"))
    yield server
    server.stop()


def _run_sql(pg: TestPostgres, block: Block) -> None:
    db = block.tags.get("db") or "postgres"
    with psycopg.connect(pg.superuser_uri(db), autocommit=True) as conn:
        if block.tags.get("user"):
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(block.tags["user"])))
        # one statement at a time: CREATE DATABASE cannot run in a multi-statement string
        for statement in (s.strip() for s in block.text.split(";")):
            if statement:
                conn.execute(statement)  # type: ignore[arg-type]  # the guide's own SQL


def _wait_for(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the instance exited early:\n{log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ping", timeout=1).text == "pong":
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the instance on {port} never answered:\n{log.read_text()}")


def test_every_marked_command_of_the_guide(fleet: TestPostgres, tmp_path: Path) -> None:
    found = blocks()
    tested = [b for b in found if "test" in b.tags or "file" in b.tags]
    assert len(tested) >= 10, "the guide lost its tested commands"
    ports = {"PORT_A": free_port(), "PORT_B": free_port()}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATHENA_", "OTEL_"))}
    env.update(
        PGHOST="127.0.0.1",
        PGPORT=str(fleet.port),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        **{name: str(port) for name, port in ports.items()},
    )
    background: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for block in tested:
            where = f"docs/deploy.md line {block.line}"
            if "file" in block.tags:
                (tmp_path / block.tags["file"]).write_text(block.text)
            elif block.lang == "sql":
                _run_sql(fleet, block)
            elif block.lang == "sh" and "background" in block.tags:
                log = tmp_path / f"background-{block.line}.log"
                with open(log, "wb") as out:
                    proc = subprocess.Popen(
                        ["bash", "-euo", "pipefail", "-c", block.text],
                        cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
                    )  # fmt: skip
                background.append((proc, log))
                port_var = re.search(r'--port "\$\{(PORT_\w+)', block.text)
                assert port_var, f"{where}: a background block names its port"
                _wait_for(ports[port_var.group(1)], proc, log)
            elif block.lang == "sh":
                done = subprocess.run(
                    ["bash", "-euo", "pipefail", "-c", block.text],
                    cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
                )  # fmt: skip
                assert done.returncode == 0, f"{where} failed:\n{done.stdout}\n{done.stderr}"
            else:
                raise AssertionError(f"{where}: no way to run a {block.lang} block")
    finally:
        codes = []
        for proc, _ in background:
            proc.send_signal(signal.SIGTERM)
        for proc, log in background:
            try:
                codes.append(proc.wait(30))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(f"killed:\n{log.read_text()}")
    assert codes == [0] * len(background), codes  # SIGTERM: a clean shutdown
    # The instances logged JSON (log_format: json) and never a secret of the guide's.
    for _, log in background:
        text = log.read_text()
        assert "change-me-" not in text
        assert '"logger": "athena.access"' in text


def test_the_guide_is_linked_from_the_readme() -> None:
    readme = (GUIDE.parents[1] / "README.md").read_text()
    assert "docs/deploy.md" in readme
