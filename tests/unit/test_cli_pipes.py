"""A command whose reader goes away (``athena … | head``, ``grep -q``) exits as a tool killed by
SIGPIPE does: status 141, no traceback. It broke ``docs/deploy.md``'s key rotation under
``set -o pipefail`` once ``athena keys list --json`` printed more than a pipe holds."""

from __future__ import annotations

import os
import subprocess
import sys


def test_a_closed_stdout_is_exit_141_without_a_traceback() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will ever read: the first write fails with EPIPE
    try:
        done = subprocess.run(
            [sys.executable, "-m", "athena", "secrets", "generate"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 141, done.stderr
    assert b"Traceback" not in done.stderr and b"BrokenPipe" not in done.stderr, done.stderr


def test_an_open_stdout_still_gets_the_output() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "athena", "secrets", "generate"],
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip(), "secrets generate printed nothing"
