"""The log formatters (JSON and text) and their scrubbing safety net."""

from __future__ import annotations

import json
import logging
import sys

from athena.observability.logs import JsonFormatter, TextFormatter, scrub


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


def test_text_exception_is_one_line_with_its_type_and_place_not_its_traceback() -> None:
    try:
        raise ValueError("duplicate key value violates unique constraint: (email)=(a@b.example)")
    except ValueError:
        record = logging.LogRecord(
            "athena.supervisor", logging.ERROR, __file__, 1, "background task %s crashed",
            ("event_relay",), sys.exc_info(),
        )  # fmt: skip
    line = TextFormatter().format(record)
    assert "\n" not in line and "Traceback" not in line and "a@b.example" not in line
    assert "background task event_relay crashed" in line
    assert "(ValueError at test_log_format.py:" in line
    assert record.exc_info is not None, "the record is left whole for any other handler"
