"""Logging: JSON lines at the configured level and above, with the request's context."""

from __future__ import annotations

import json

import pytest
import structlog

from backend.logging import configure_logging


def test_events_below_the_level_are_dropped_and_the_rest_are_json_lines_with_their_context(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(level="warning", is_json=True)
    log = structlog.get_logger("mcpchat.test")
    structlog.contextvars.bind_contextvars(request_id="req-1")
    try:
        log.info("test.quiet", detail=1)
        log.warning("test.loud", detail=2)
    finally:
        structlog.contextvars.unbind_contextvars("request_id")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(line["event"], line["level"], line["request_id"], line["detail"]) for line in lines] == [
        ("test.loud", "warning", "req-1", 2)
    ]
