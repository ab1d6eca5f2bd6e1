from __future__ import annotations

from pydantic import JsonValue

from backend.mcp.schema_check import openai_schema_problems


def test_schema_check_accepts_a_plain_object_schema() -> None:
    schema: dict[str, JsonValue] = {
        "type": "object",
        "properties": {"xs": {"type": "array", "items": {"type": "number"}}},
    }
    assert openai_schema_problems("calc__sum", "Sum numbers", schema) == []


def test_schema_check_flags_what_openai_rejects() -> None:
    schema: dict[str, JsonValue] = {
        "type": "object",
        "anyOf": [{"required": ["a"]}, {"required": ["b"]}],
        "properties": {"tags": {"type": "array"}, "nested": {"type": ["array", "null"]}},
    }
    problems = openai_schema_problems("bad name", "x" * 2000, schema)
    assert any("does not match" in p for p in problems)
    assert any("2000 characters" in p for p in problems)
    assert any("'anyOf' at the top level" in p for p in problems)
    assert "array at $.properties.tags has no 'items'" in problems
    assert "array at $.properties.nested has no 'items'" in problems


def test_schema_check_flags_a_schema_that_is_not_an_object() -> None:
    assert openai_schema_problems("t", None, {"type": "string"}) == [
        "input schema must have type 'object' at the top, not 'string'"
    ]
