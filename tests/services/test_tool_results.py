"""What the model is shown of a tool result: every block kind, structured content, the size cap."""

from __future__ import annotations

import base64
import json

from backend.mcp.models import JsonObject
from backend.services.tool_results import stored_result, text_for_model


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


def test_stored_result_is_whole_when_it_fits() -> None:
    content: list[JsonObject] = [{"type": "text", "text": "2 + 3 = 5"}]
    assert stored_result(content, {"result": 5}, max_bytes=1000) == {
        "content": content,
        "structured_content": {"result": 5},
    }


def test_stored_result_keeps_the_blocks_that_fit_and_says_it_was_cut_when_an_image_is_too_large() -> None:
    image = base64.b64encode(b"\x89PNG" + b"\0" * 300_000).decode()
    content: list[JsonObject] = [
        {"type": "text", "text": "a screenshot:"},
        {"type": "image", "data": image, "mimeType": "image/png"},
        {"type": "text", "text": "after the image"},
    ]
    whole = {"content": content, "structured_content": {"width": 640}}
    original_bytes = len(json.dumps(whole, separators=(",", ":")))
    stored = stored_result(content, {"width": 640}, max_bytes=10_000)
    assert len(json.dumps(stored, separators=(",", ":"))) <= 10_000
    blocks = stored["content"]
    assert isinstance(blocks, list)
    assert blocks[0] == {"type": "text", "text": "a screenshot:"}
    assert blocks[-1] == {
        "type": "text",
        "text": f"[cut: the result was {original_bytes} bytes; only about 10000 are stored "
        "(MCPCHAT_TOOL_RESULT_STORE_MAX_BYTES)]",
    }
    assert len(blocks) == 2  # nothing after the image that did not fit
    assert stored["structured_content"] == {"width": 640}
    assert stored["truncated"] == {"original_bytes": original_bytes}


def test_stored_result_cuts_the_text_block_that_overflows_without_breaking_characters_or_escapes() -> None:
    text = 'é"\n' * 5_000
    stored = stored_result([{"type": "text", "text": text}], None, max_bytes=2_000)
    assert len(json.dumps(stored, ensure_ascii=False, separators=(",", ":")).encode()) <= 2_000
    blocks = stored["content"]
    assert isinstance(blocks, list) and isinstance(blocks[0], dict)
    kept = blocks[0]["text"]
    assert isinstance(kept, str) and text.startswith(kept) and len(kept) > 100
