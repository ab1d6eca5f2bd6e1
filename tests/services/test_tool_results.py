"""What the model is shown of a tool result: every block kind, structured content, the size cap."""

from __future__ import annotations

import base64

from backend.mcp.models import JsonObject
from backend.services.tool_results import text_for_model


def test_text_for_model_describes_images_and_embedded_resources() -> None:
    png = base64.b64encode(b"\x89PNG" + b"\0" * 96).decode()
    content: list[JsonObject] = [
        {"type": "image", "data": png, "mimeType": "image/png"},
        {"type": "resource", "resource": {"uri": "test://doc", "text": "the document"}},
        {"type": "resource", "resource": {"uri": "test://bin", "blob": "AAAA", "mimeType": "application/pdf"}},
    ]
    text = text_for_model(content, None, is_error=False, max_bytes=10_000)
    assert text.splitlines() == [
        "[image image/png, 100 bytes, not shown]",
        "[resource test://doc]",
        "the document",
        "[resource test://bin: application/pdf data, not shown]",
    ]


def test_text_for_model_uses_structured_content_when_no_text_stands_for_it() -> None:
    assert text_for_model([], {"result": 5}, is_error=False, max_bytes=1000) == '{"result":5}'
    with_text = text_for_model([{"type": "text", "text": "2 + 3 = 5"}], {"result": 5}, False, 1000)
    assert with_text == "2 + 3 = 5"


def test_text_for_model_is_cut_with_a_note_when_over_the_cap() -> None:
    text = text_for_model([{"type": "text", "text": "é" * 5000}], None, is_error=True, max_bytes=1000)
    assert text.startswith("[tool error] ")
    kept, note = text.rsplit("\n", 1)
    assert len(kept.encode()) <= 1000
    assert note == "[cut: the result was 10013 bytes; only the first 1000 are shown]"
