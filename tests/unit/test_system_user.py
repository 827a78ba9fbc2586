"""Root on a fresh machine: processes starting at once agree on the one system user they create.

Two test workers (or two gateways) found no ``embedded_postgres`` user and both ran useradd; one
chowned its PGDATA to a uid that the other's useradd replaced, and initdb failed with
"Permission denied". This races real processes on a user name no one has.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="creates a system user: needs root")

PROGRAM = """
import sys, time
from athena.db.embedded import _ensure_system_user
start = float(sys.argv[2])
while time.time() < start:
    pass
user = _ensure_system_user(sys.argv[1])
print(user.pw_uid, user.pw_gid)
"""


def test_processes_starting_at_once_create_one_user() -> None:
    name = f"athena_t{secrets.token_hex(4)}"
    start = __import__("time").time() + 1.5
    try:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", PROGRAM, name, str(start)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(6)
        ]
        results = [proc.communicate(timeout=60) for proc in procs]
        errors = [err for _, err in results if err.strip()]
        assert errors == [], errors[0][-800:]
        ids = {out.strip() for out, _ in results}
        entries = [
            line
            for line in Path("/etc/passwd").read_text().splitlines()
            if line.startswith(name + ":")
        ]
        assert len(entries) == 1, entries
        uid, gid = entries[0].split(":")[2:4]
        assert ids == {f"{uid} {gid}"}, ids
    finally:
        subprocess.run(["userdel", name], capture_output=True)
