"""JSON logs: one object per line, with the document and connection lifted into fields."""

from __future__ import annotations

import json
import logging

from collab.logs import JsonFormatter


def _record(message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            import sys

            exc_info = sys.exc_info()
    return logging.LogRecord(
        "collab.api.app", logging.WARNING, __file__, 1, message, args, exc_info
    )


def test_json_lines_carry_document_and_connection():
    line = JsonFormatter().format(
        _record("doc=%s peer=%d refused, closing with %d: %s", "team:notes", 42, 4029, "slow down")
    )
    entry = json.loads(line)
    assert entry["doc"] == "team:notes"
    assert entry["conn"] == 42
    assert entry["level"] == "warning"
    assert entry["logger"] == "collab.api.app"
    assert entry["event"] == "doc=team:notes peer=42 refused, closing with 4029: slow down"
    assert entry["ts"].endswith("+00:00")
    assert "\n" not in line


def test_json_lines_without_subject_and_with_a_traceback():
    entry = json.loads(JsonFormatter().format(_record("storage is failing", exc=True)))
    assert "doc" not in entry and "conn" not in entry
    assert "ValueError: boom" in entry["exc"]
