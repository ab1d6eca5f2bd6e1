"""A tool call's arguments are checked against its input schema before anything is sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.errors import InvalidArgumentsError
from backend.mcp.models import JsonObject, ToolInfo
from backend.services.mcp_service import McpService
from tests.support.specs import make_settings

NUMBERS: JsonObject = {
    "type": "object",
    "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
    "required": ["a", "b"],
}


def _tool(schema: JsonObject) -> ToolInfo:
    return ToolInfo(name="s__t", server="s", original_name="t", input_schema=schema)


@pytest.fixture
def mcp(tmp_path: Path) -> McpService:
    return McpService([], make_settings(tmp_path))


@pytest.mark.parametrize(
    ("schema", "arguments"),
    [
        (NUMBERS, {"a": 2, "b": 3.5}),
        ({"type": "object", "properties": {"s": {"type": "string", "pattern": "(?<=x)y"}}}, {"s": "xy"}),
        ({"type": "object", "properties": {"d": {"type": "string", "format": "date"}}}, {"d": "not a date"}),
    ],
)
def test_arguments_that_match_the_schema_pass(mcp: McpService, schema: JsonObject, arguments: JsonObject) -> None:
    mcp.validate_arguments(_tool(schema), arguments)  # formats are not asserted, as jsonschema does not


@pytest.mark.parametrize(
    ("arguments", "field", "message"),
    [
        ({"a": "two", "b": 3}, "a", "'two' is not of type 'number'"),
        ({"a": 2}, "(arguments)", "'b' is a required property"),
    ],
)
def test_arguments_that_do_not_match_are_refused_with_each_error(
    mcp: McpService, arguments: JsonObject, field: str, message: str
) -> None:
    with pytest.raises(InvalidArgumentsError) as caught:
        mcp.validate_arguments(_tool(NUMBERS), arguments)
    assert caught.value.extra["errors"] == [{"field": field, "message": message}]


def test_a_schema_with_a_remote_reference_is_checked_without_fetching_it(mcp: McpService) -> None:
    schema: JsonObject = {
        "type": "object",
        "properties": {"n": {"type": "integer"}, "x": {"$ref": "https://schemas.example.invalid/x.json"}},
    }
    mcp.validate_arguments(_tool(schema), {"n": 1})  # nothing fetched: the host does not resolve
    with pytest.raises(InvalidArgumentsError, match="n: 'one' is not of type 'integer'"):
        mcp.validate_arguments(_tool(schema), {"n": "one"})
