"""What an operator sees from ``athena --help``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_help_lists_only_public_commands() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "athena", "--help"], capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0, shown.stderr
    assert "SUPPRESS" not in shown.stdout and "_worker" not in shown.stdout
    for command in ("serve", "backup", "keys", "provision"):
        assert command in shown.stdout


def test_install_prints_no_license_deprecation(tmp_path: Path) -> None:
    """setuptools >= 77 warns about a ``license = {text = …}`` table on every build (-v shows
    the backend's output, where the banner appears)."""
    root = Path(__file__).resolve().parents[2]
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-v",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(root),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    output = built.stdout + built.stderr
    assert "License classifiers are deprecated" not in output
    assert "project.license` as a TOML table is deprecated" not in output
    assert "SetuptoolsDeprecationWarning" not in output
