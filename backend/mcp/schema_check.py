"""What an OpenAI function definition would reject in an MCP tool's name or input schema."""

from __future__ import annotations

import re
from collections.abc import Iterator

from pydantic import JsonValue

_FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_TOP_LEVEL_FORBIDDEN = ("anyOf", "oneOf", "allOf", "not", "enum")
MAX_DESCRIPTION_CHARS = 1024


def openai_schema_problems(name: str, description: str | None, schema: dict[str, JsonValue]) -> list[str]:
    """List the reasons an OpenAI chat completion would refuse this tool (empty: it is accepted)."""
    problems: list[str] = []
    if not _FUNCTION_NAME.fullmatch(name):
        problems.append(f"name {name!r} does not match ^[a-zA-Z0-9_-]{{1,64}}$")
    if description is not None and len(description) > MAX_DESCRIPTION_CHARS:
        problems.append(f"description is {len(description)} characters; the limit is {MAX_DESCRIPTION_CHARS}")
    if schema.get("type") != "object":
        problems.append(f"input schema must have type 'object' at the top, not {schema.get('type')!r}")
    for keyword in _TOP_LEVEL_FORBIDDEN:
        if keyword in schema:
            problems.append(f"input schema uses {keyword!r} at the top level")
    problems.extend(f"array at {path} has no 'items'" for path in _arrays_without_items(schema, "$"))
    return problems


def _arrays_without_items(node: JsonValue, path: str) -> Iterator[str]:
    if isinstance(node, dict):
        kind = node.get("type")
        is_array = kind == "array" or (isinstance(kind, list) and "array" in kind)
        if is_array and "items" not in node and "prefixItems" not in node:
            yield path
        for key, child in node.items():
            yield from _arrays_without_items(child, f"{path}.{key}")
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from _arrays_without_items(child, f"{path}[{index}]")
