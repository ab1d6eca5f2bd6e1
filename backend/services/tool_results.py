"""MCP tool results as the text a chat model is shown (every kind of content block), and as a tool call stores
and streams them; both capped in size, with a note saying so."""

from __future__ import annotations

import json

from pydantic import JsonValue

from backend.mcp.models import JsonObject

ERROR_PREFIX = "[tool error] "
STORED_NOTE_BYTES = 200  # room kept for the note that says a stored result was cut


def text_for_model(content: list[JsonObject], structured: JsonObject | None, is_error: bool, max_bytes: int) -> str:
    """Text blocks as they are; images and binaries described (chat tool messages carry text only); structured
    content as JSON when no text stands for it. Cut at `max_bytes` with a note saying so."""
    parts = [_describe(block) for block in content]
    if structured is not None and not any(block.get("type") == "text" for block in content):
        parts.append(json.dumps(structured, ensure_ascii=False, separators=(",", ":")))
    text = "\n".join(part for part in parts if part) or "(the tool returned no content)"
    return cap(ERROR_PREFIX + text if is_error else text, max_bytes)


def error_for_model(detail: str, max_bytes: int) -> str:
    return cap(ERROR_PREFIX + detail, max_bytes)


def cap(text: str, max_bytes: int) -> str:
    encoded = text.encode()
    if len(encoded) <= max_bytes:
        return text
    kept = encoded[:max_bytes].decode(errors="ignore")
    return f"{kept}\n[cut: the result was {len(encoded)} bytes; only the first {max_bytes} are shown]"


def _describe(block: JsonObject) -> str:
    kind = block.get("type")
    if kind == "text":
        return _str(block.get("text"))
    if kind in ("image", "audio"):
        data = _str(block.get("data"))
        size = len(data) * 3 // 4 - data[-2:].count("=")  # decoded size, without decoding
        return f"[{kind} {_str(block.get('mimeType')) or 'of unknown type'}, {size} bytes, not shown]"
    if kind == "resource":
        resource = block.get("resource")
        if not isinstance(resource, dict):
            return "[embedded resource]"
        uri = _str(resource.get("uri"))
        if "text" in resource:
            return f"[resource {uri}]\n{_str(resource.get('text'))}"
        return f"[resource {uri}: {_str(resource.get('mimeType')) or 'binary'} data, not shown]"
    if kind == "resource_link":
        return f"[resource link {_str(block.get('uri'))} {_str(block.get('name'))}]".rstrip()
    return f"[{kind} content]"


def _str(value: JsonValue) -> str:
    return value if isinstance(value, str) else ""


def stored_result(content: list[JsonObject], structured: JsonObject | None, max_bytes: int) -> JsonObject:
    """What a tool call stores and streams: `{"content", "structured_content"}`, at most about `max_bytes` of
    JSON. A larger result keeps its blocks in order while they fit (the text block that overflows is cut), then a
    text block that says it was cut, and `truncated: {"original_bytes"}`; structured content only if it fits."""
    result: JsonObject = {"content": [*content], "structured_content": structured}
    size = _json_bytes(result)
    if size <= max_bytes:
        return result
    budget = max_bytes - STORED_NOTE_BYTES
    kept: list[JsonValue] = []
    for block in content:
        block_bytes = _json_bytes(block) + 1  # and its comma
        if block_bytes <= budget:
            kept.append(block)
            budget -= block_bytes
            continue
        text = block.get("text")
        if block.get("type") == "text" and isinstance(text, str):
            cut_block = {**block, "text": ""}
            kept.append({**cut_block, "text": _cut_json_text(text, budget - _json_bytes(cut_block))})
        break
    is_structured_kept = structured is not None and _json_bytes(structured) <= budget
    note = (
        f"[cut: the result was {size} bytes; only about {max_bytes} are stored (MCPCHAT_TOOL_RESULT_STORE_MAX_BYTES)]"
    )
    kept.append({"type": "text", "text": note})
    return {
        "content": kept,
        "structured_content": structured if is_structured_kept else None,
        "truncated": {"original_bytes": size},
    }


def _cut_json_text(text: str, max_json_bytes: int) -> str:
    """The longest start of `text` whose JSON string form (quotes and escapes included) fits `max_json_bytes`."""
    raw = text.encode()
    limit = max_json_bytes
    while limit > 0:
        piece = raw[:limit].decode(errors="ignore")
        over = _json_bytes(piece) - max_json_bytes
        if over <= 0:
            return piece
        limit -= over
    return ""


def _json_bytes(value: JsonValue) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
