"""Tool-call arguments as a model wrote them: JSON text that may be empty, invalid, or not an object.

The one place that parses them, for the chat loop, the stored history, the v1 API and the legacy API.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import JsonValue


def parse(text: str) -> Any:
    """The JSON value of `text` (empty text means no arguments: `{}`).

    Raises:
        json.JSONDecodeError: `text` is not valid JSON.
    """
    return json.loads(text) if text.strip() else {}


def as_object(text: str) -> dict[str, Any] | None:
    """The arguments as an object; None when they are invalid JSON or not an object."""
    try:
        value = parse(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def for_display(text: str) -> JsonValue:
    """What an API client is shown: the parsed JSON, or the raw text when it does not parse."""
    try:
        value: JsonValue = parse(text)
    except json.JSONDecodeError:
        return text
    return value


def replayable(text: str) -> str:
    """Arguments the model may be shown again: invalid ones (already answered with an error) become `{}`."""
    return text if as_object(text) is not None else "{}"
