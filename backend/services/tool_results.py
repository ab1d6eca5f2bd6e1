"""MCP tool results as the text a chat model is shown: every kind of content block, capped in size."""

from __future__ import annotations

import json

from pydantic import JsonValue

from backend.mcp.models import JsonObject

ERROR_PREFIX = "[tool error] "


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
