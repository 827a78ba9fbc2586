"""The JSON log formatter and its scrubbing safety net."""

from __future__ import annotations

import json
import logging
import sys

from athena.observability.logs import JsonFormatter, scrub


def test_scrub_masks_passwords_and_key_secrets() -> None:
    line = (
        "connect postgresql://app:s3cr3t@db:5432/x failed; key ath_0123456789abcdef."
        + "ab" * 20
        + " admin athena_admin_"
        + "cd" * 24
        + " dsn host=db password=hunter2 user=x"
    )
    out = scrub(line)
    for secret in ("s3cr3t", "ab" * 20, "cd" * 24, "hunter2"):
        assert secret not in out
    assert "postgresql://app:***@db:5432/x" in out
    assert "ath_0123456789abcdef.***" in out  # the public id stays: it names the key


def test_json_exception_is_its_type_and_place_not_its_message() -> None:
    try:
        raise ValueError("invalid input syntax for type integer: 'value-from-a-request'")
    except ValueError:
        record = logging.LogRecord(
            "athena.app", logging.ERROR, __file__, 1, "boom", None, sys.exc_info()
        )
    out = json.loads(JsonFormatter().format(record))
    assert out["error"] == "ValueError" and out["error_at"].startswith("test_log_format.py:")
    assert "value-from-a-request" not in json.dumps(out)
    assert out["level"] == "error" and out["logger"] == "athena.app" and out["message"] == "boom"
