"""The bundled calculator MCP server: arithmetic tools with annotations and output schemas, and one prompt."""

from __future__ import annotations

import argparse
import math
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

server = MCPServer(
    "calculator",
    version="1.0.0",
    instructions="Exact arithmetic. Prefer these tools to mental arithmetic.",
)

# Pure functions of their arguments: safe to call any number of times, touching nothing outside.
PURE = ToolAnnotations(readOnlyHint=True, destructiveHint=False, idempotentHint=True, openWorldHint=False)

Number = Annotated[float, Field(description="A finite number")]


class CalculationResult(BaseModel):
    result: float = Field(description="The exact result of the calculation")


Calculated = Annotated[CallToolResult, CalculationResult]


def _tidy(value: float) -> int | float:
    """5.0 reads as 5: integral results stay integers on the wire."""
    if not math.isfinite(value):
        raise ToolError(f"the result is not a finite number ({value})")
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def _answer(expression: str, value: float) -> CallToolResult:
    tidy = _tidy(value)
    return CallToolResult(
        content=[TextContent(type="text", text=f"{expression} = {tidy}")],
        structured_content={"result": tidy},
    )


@server.tool(title="Add two numbers", annotations=PURE)
def add(a: Number, b: Number) -> Calculated:
    """Add two numbers: a + b."""
    return _answer(f"{_tidy(a)} + {_tidy(b)}", a + b)


@server.tool(name="sum", title="Sum a list of numbers", annotations=PURE)
def sum_numbers(
    numbers: Annotated[list[float], Field(description="The numbers to add up", max_length=10_000)],
) -> Calculated:
    """Add up every number in a list (an empty list sums to 0)."""
    return _answer(" + ".join(str(_tidy(n)) for n in numbers) or "empty sum", math.fsum(numbers))


@server.tool(title="Sum several lists of numbers", annotations=PURE)
def sum_many(
    lists: Annotated[list[list[float]], Field(description="Lists of numbers; every number is added", max_length=1000)],
) -> Calculated:
    """Add up every number in several lists at once."""
    flat = [n for numbers in lists for n in numbers]
    return _answer(f"sum of {len(flat)} numbers in {len(lists)} lists", math.fsum(flat))


@server.tool(title="Multiply two numbers", annotations=PURE)
def multiply(a: Number, b: Number) -> Calculated:
    """Multiply two numbers: a * b."""
    return _answer(f"{_tidy(a)} * {_tidy(b)}", a * b)


@server.tool(title="Divide two numbers", annotations=PURE)
def divide(a: Number, b: Annotated[float, Field(description="The divisor; must not be zero")]) -> Calculated:
    """Divide a by b. Dividing by zero is an error result, not a crash."""
    if b == 0:
        raise ToolError("cannot divide by zero")
    return _answer(f"{_tidy(a)} / {_tidy(b)}", a / b)


@server.prompt(title="Explain a calculation")
def explain_calculation(expression: str) -> str:
    """Ask the model to work through an arithmetic expression step by step with the calculator's tools."""
    return (
        f"Work out {expression} step by step. Use the calculator tools for every operation, "
        "show each intermediate result, and finish with the final answer on its own line."
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mcp_servers.calculator", description=__doc__)
    parser.add_argument("--http", action="store_true", help="serve Streamable HTTP at /mcp instead of stdio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args(argv)
    if args.http:
        server.run("streamable-http", host=args.host, port=args.port)
    else:
        server.run()
