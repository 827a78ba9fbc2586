"""``athena backup …`` against a running gateway, as an operator would type it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from backup_support import BackupEnv, table_fingerprints


def _athena(backup_env: BackupEnv, *args: str, key: str | None = None, cwd: Path | None = None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATHENA_")}
    if key is not None:
        env["ATHENA_KEY_12"] = key
    return subprocess.run(
        [sys.executable, "-m", "athena", "backup", *args, "--url", backup_env.server.url],
        env=env,
        stdin=subprocess.DEVNULL,  # not a terminal: `restore` must not ask for confirmation
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def test_cli_create_list_download_restore(backup_env: BackupEnv, work_dir: Path) -> None:
    key_text = backup_env.admin_key
    created = _athena(backup_env, "create", "source", "--label", "from the cli", key=key_text)
    assert created.returncode == 0, created.stderr
    result = json.loads(created.stdout)
    assert result["client_name"] == "source" and result["label"] == "from the cli"
    key = result["key"]

    listed = _athena(backup_env, "list", "--client", "source", "--json", key=key_text)
    assert listed.returncode == 0, listed.stderr
    assert key in [b["key"] for b in json.loads(listed.stdout)]
    plain = _athena(backup_env, "list", key=key_text)
    assert key in plain.stdout

    downloaded = _athena(
        backup_env, "download", key, "-o", str(work_dir / "x.dump.gz"), key=key_text
    )
    assert downloaded.returncode == 0, downloaded.stderr
    assert (work_dir / "x.dump.gz").read_bytes()[:2] == b"\x1f\x8b"  # gzip magic

    restored = _athena(backup_env, "restore", key, "target", key=key_text)
    assert restored.returncode == 0, restored.stderr
    assert json.loads(restored.stdout)["client_name"] == "target"
    pg = backup_env.pg
    assert table_fingerprints(pg, backup_env.databases["target"]) == table_fingerprints(
        pg, backup_env.databases["source"]
    )

    jobs = _athena(backup_env, "jobs", "--client", "target", "--json", key=key_text)
    assert json.loads(jobs.stdout)[0]["state"] == "succeeded"


def test_cli_reports_failures_as_one_line(backup_env: BackupEnv, work_dir: Path) -> None:
    no_key = _athena(backup_env, "list", cwd=work_dir)
    assert no_key.returncode == 2
    assert "admin key" in no_key.stderr and "Traceback" not in no_key.stderr

    # The admin key written by `athena serve` in its data dir is picked up.
    (work_dir / ".athena").mkdir()
    (work_dir / ".athena" / "admin.key").write_text(backup_env.admin_key + "\n")
    from_file = _athena(backup_env, "list", "--json", cwd=work_dir)
    assert from_file.returncode == 0, from_file.stderr

    unknown = _athena(backup_env, "create", "nope", key=backup_env.admin_key)
    assert unknown.returncode == 1
    assert "unknown client" in unknown.stderr and "Traceback" not in unknown.stderr

    failed = _athena(backup_env, "create", "broken", key=backup_env.admin_key)
    assert failed.returncode == 1
    assert "row-level security" in failed.stderr


def _on_a_terminal(backup_env: BackupEnv, *args: str) -> tuple[int, str, str]:
    """Run `athena backup …` with stderr on a pseudo-terminal: (exit code, stdout, what was drawn)."""
    import pty
    import re

    env = {k: v for k, v in os.environ.items() if not k.startswith("ATHENA_")}
    env.update(ATHENA_KEY_12=backup_env.admin_key, COLUMNS="120", TERM="xterm")
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "athena", "backup", *args, "--url", backup_env.server.url],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=follower,
            text=True,
        )
        os.close(follower)
        drawn = bytearray()
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            drawn += chunk
        stdout, _ = proc.communicate(timeout=120)
    finally:
        os.close(leader)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", drawn.decode(errors="replace"))
    return proc.returncode, stdout, text


def test_cli_progress_on_a_terminal(backup_env: BackupEnv, work_dir: Path) -> None:
    """On a terminal, rich draws the bar on stderr (phase, bytes, rate, percent); stdout stays
    the machine-readable result."""
    import re

    code, stdout, drawn = _on_a_terminal(backup_env, "create", "source")
    assert code == 0, drawn
    key = json.loads(stdout)["key"]
    assert "dumping" in drawn and "done" in drawn, drawn  # the job's phases
    assert "100%" in drawn, drawn  # a finished job fills the bar
    assert re.search(r"\d+(\.\d+)?(/\S+)? (bytes|KiB|MiB)", drawn), drawn

    target = work_dir / "t.dump.gz"
    code, stdout, drawn = _on_a_terminal(backup_env, "download", key, "-o", str(target))
    assert code == 0, drawn
    assert stdout.strip() == str(target)
    size = target.stat().st_size
    assert "download" in drawn and "100%" in drawn, drawn
    assert re.search(r"\d+(\.\d+)? ?[kKM]i?B/s", drawn), drawn  # the transfer rate
    assert f"{size / 1024:.1f}/{size / 1024:.1f} KiB" in drawn, drawn  # done/total, a known total

    # Not a terminal: nothing but the result.
    plain = _athena(backup_env, "download", key, "-o", str(target), key=backup_env.admin_key)
    assert plain.returncode == 0 and plain.stderr == "", plain.stderr
